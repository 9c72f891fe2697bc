//! The viewer's microphone in a desktop: its packets go through a playout buffer, are
//! decoded (a lost one concealed) and written into the pipe the desktop's default
//! source reads, so the desktop's programs record it like a microphone.
//! One viewer speaks at a time: the first to send, until it has been quiet a while.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oriel_media::{AudioDecoder, AUDIO_FRAME_LEN};
use oriel_protocol::audio::{JitterBuffer, Playout, AUDIO_FRAME};
use oriel_protocol::AudioPacket;

/// How often the playout looks for a due frame.
const TICK: Duration = Duration::from_millis(5);
/// A speaker quiet this long gives the microphone up to the next viewer that sends.
const HOLD: Duration = Duration::from_secs(1);
/// Packets waiting for the playout thread at most (a second of sound).
const QUEUE: usize = 50;

/// Where sessions hand the microphone packets of their viewers.
#[derive(Clone)]
pub struct MicrophoneFeed(mpsc::SyncSender<(u64, AudioPacket)>);

impl MicrophoneFeed {
    /// Hands on a packet of session `session`'s viewer; dropped if the playout is
    /// behind (as the network would drop it).
    pub fn send(&self, session: u64, packet: AudioPacket) {
        let _ = self.0.try_send((session, packet));
    }
}

/// The playout of viewers' microphones into one desktop; ends when dropped.
pub struct DesktopMicrophone {
    feed: MicrophoneFeed,
}

impl DesktopMicrophone {
    /// Plays into the pipe that feeds the desktop's default source (its sound server
    /// reads it). Between speakers it writes silence, so that the source's clock runs.
    pub fn start(pipe: &Path, desktop: &str) -> anyhow::Result<DesktopMicrophone> {
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            // A full pipe (the sound server stalled) drops frames instead of
            // stopping the playout.
            .custom_flags(libc::O_NONBLOCK)
            .open(pipe)
            .map_err(|e| {
                anyhow::anyhow!("cannot open the microphone pipe {}: {e}", pipe.display())
            })?;
        let mut decoder = AudioDecoder::new()?;
        let (tx, rx) = mpsc::sync_channel::<(u64, AudioPacket)>(QUEUE);
        let name = desktop.to_owned();
        std::thread::Builder::new()
            .name("microphone".into())
            .spawn(move || {
                let mut speaker: Option<(u64, Instant)> = None;
                let mut buffer = JitterBuffer::default();
                let mut next_silence = Instant::now();
                loop {
                    match rx.recv_timeout(TICK) {
                        Ok((session, packet)) => {
                            if speaker.is_some_and(|(s, _)| s != session) {
                                continue; // someone else speaks
                            }
                            if speaker.is_none() {
                                buffer = JitterBuffer::default();
                            }
                            let now = Instant::now();
                            speaker = Some((session, now));
                            buffer.push(packet, now);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // The desktop is gone.
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    let now = Instant::now();
                    if speaker.is_some_and(|(_, last)| now.duration_since(last) > HOLD) {
                        speaker = None;
                        next_silence = now;
                    }
                    let mut frames = Vec::new();
                    if speaker.is_some() {
                        while let Some(frame) = buffer.pop(now) {
                            let pcm = match frame {
                                Playout::Waiting => break,
                                Playout::Packet(p) => decoder.decode(Some(&p.opus)),
                                Playout::Conceal => decoder.decode(None),
                                Playout::Silence => Ok(vec![0; AUDIO_FRAME_LEN]),
                            };
                            match pcm {
                                Ok(pcm) => frames.push(pcm),
                                Err(e) => tracing::debug!(desktop = name, "microphone: {e}"),
                            }
                        }
                    } else {
                        while next_silence <= now {
                            frames.push(vec![0; AUDIO_FRAME_LEN]);
                            next_silence += AUDIO_FRAME;
                        }
                    }
                    for pcm in frames {
                        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
                        match pipe.write(&bytes) {
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) => {
                                tracing::warn!(
                                    desktop = name,
                                    "the desktop's microphone ended: {e}"
                                );
                                return;
                            }
                        }
                    }
                }
            })?;
        Ok(DesktopMicrophone {
            feed: MicrophoneFeed(tx),
        })
    }

    pub fn feed(&self) -> MicrophoneFeed {
        self.feed.clone()
    }
}
