//! The desktop's sound on the client: packets go through the playout buffer
//! ([`JitterBuffer`]), are decoded (a lost one concealed), set to the viewer's volume
//! and played, 20 ms at a time, on the default output device or written to a WAV file
//! (`--audio-out`): what a speaker would have played, when. It also tells the
//! sessions how late sound is heard, so that they show video pictures with their
//! sound (lip sync).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oriel_media::{AudioDecoder, AUDIO_FRAME_LEN};
use oriel_protocol::audio::{JitterBuffer, Playout, AUDIO_RATE};
use oriel_protocol::AudioPacket;
use tokio::sync::{mpsc, watch};

/// How often the playout looks for a due frame.
const TICK: Duration = Duration::from_millis(5);
/// How long after the last sound video still waits for it: across pauses in speech or
/// music, not while the desktop stays silent.
const SYNC_MEMORY: Duration = Duration::from_secs(5);

/// What the playout did, for the statistics.
#[derive(Debug, Default)]
pub struct AudioFigures {
    pub packets: AtomicU64,
    pub concealed: AtomicU64,
    /// Capture in the desktop → written here, of the last packet played (µs).
    pub latency_us: AtomicU64,
    /// Packets that came after their time to play.
    pub late: AtomicU64,
    /// When the first frame was played (µs since the Unix epoch; 0: none yet). Frames
    /// follow each other every 20 ms from then, so this dates every sample.
    pub first_played_unix_us: AtomicU64,
    /// That latency for every packet played (the first million).
    latencies_us: std::sync::Mutex<Vec<u32>>,
    /// Every packet played (the first million).
    captures: std::sync::Mutex<Vec<PlayedPacket>>,
}

/// A packet played, for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayedPacket {
    /// Its place among the frames played (silent and concealed ones count).
    pub frame: u64,
    /// When the desktop captured its first sample (µs since the epoch).
    pub capture_unix_us: u64,
    /// When it was handed to the output (µs since the epoch).
    pub written_unix_us: u64,
}

impl AudioFigures {
    /// Every packet's capture → playout time so far, in µs.
    pub fn latencies_us(&self) -> Vec<u32> {
        self.latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every packet played so far, in order.
    pub fn packets_played(&self) -> Vec<PlayedPacket> {
        self.captures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn played(&self, packet: PlayedPacket) {
        let latency_us = packet
            .written_unix_us
            .saturating_sub(packet.capture_unix_us);
        self.latency_us.store(latency_us, Relaxed);
        let mut all = self.latencies_us.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() < 1 << 20 {
            all.push(u32::try_from(latency_us).unwrap_or(u32::MAX));
            let mut captures = self.captures.lock().unwrap_or_else(|e| e.into_inner());
            captures.push(packet);
        }
    }
}

/// How loud the sound plays: a volume in percent, and muted or not.
#[derive(Debug)]
pub struct Level {
    percent: AtomicU32,
    muted: AtomicBool,
}

impl Level {
    /// Most volume (the desktop's level doubled).
    pub const MAX_PERCENT: u32 = 200;

    pub fn percent(&self) -> u32 {
        self.percent.load(Relaxed)
    }

    pub fn set_percent(&self, percent: u32) {
        self.percent.store(percent.min(Self::MAX_PERCENT), Relaxed);
    }

    /// Changes the volume by `delta` points; returns the new volume.
    pub fn step(&self, delta: i32) -> u32 {
        let now = self.percent().saturating_add_signed(delta);
        self.set_percent(now);
        self.percent()
    }

    pub fn muted(&self) -> bool {
        self.muted.load(Relaxed)
    }

    /// Mutes or unmutes; returns whether it is muted now.
    pub fn toggle_mute(&self) -> bool {
        !self.muted.fetch_xor(true, Relaxed)
    }

    fn apply(&self, pcm: &mut [i16]) {
        let gain = if self.muted() { 0 } else { self.percent() };
        if gain != 100 {
            for s in pcm {
                let scaled = i32::from(*s) * gain as i32 / 100;
                *s = i16::try_from(scaled.clamp(i32::from(i16::MIN), i32::from(i16::MAX)))
                    .unwrap_or_default();
            }
        }
    }
}

/// Where the played frames go.
enum Sink {
    Wav(hound::WavWriter<std::io::BufWriter<std::fs::File>>),
    Speaker(crate::device::Speaker),
}

impl Sink {
    fn write(&mut self, pcm: &[i16]) -> anyhow::Result<()> {
        match self {
            Sink::Wav(wav) => {
                for &s in pcm {
                    wav.write_sample(s)?;
                }
            }
            Sink::Speaker(speaker) => speaker.play(pcm),
        }
        Ok(())
    }

    /// How long until what is written now is heard.
    fn latency(&self) -> Duration {
        match self {
            Sink::Wav(_) => Duration::ZERO,
            Sink::Speaker(speaker) => speaker.latency(),
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Sink::Wav(wav) = self {
            wav.finalize()?;
        }
        Ok(())
    }
}

/// Where the desktop's sound goes; shared by the sessions of one viewer.
#[derive(Clone)]
pub struct AudioOutput {
    packets: mpsc::UnboundedSender<AudioPacket>,
    pub figures: Arc<AudioFigures>,
    pub level: Arc<Level>,
    /// Capture in the desktop → heard here, in µs of this client's wall clock minus
    /// the server's; `None` while no sound plays.
    sound_delay: watch::Sender<Option<i64>>,
    done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<anyhow::Result<()>>>>>,
    stop: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for AudioOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioOutput").finish_non_exhaustive()
    }
}

impl AudioOutput {
    /// Plays into a 48 kHz stereo WAV file at `path`.
    pub fn to_wav(path: &Path) -> anyhow::Result<AudioOutput> {
        let spec = hound::WavSpec {
            channels: 2, // AUDIO_CHANNELS
            sample_rate: AUDIO_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let wav = hound::WavWriter::create(path, spec)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(Self::start(Sink::Wav(wav)))
    }

    /// Plays on the default output device.
    pub fn to_speaker() -> anyhow::Result<AudioOutput> {
        Ok(Self::start(Sink::Speaker(crate::device::Speaker::open()?)))
    }

    fn start(mut sink: Sink) -> AudioOutput {
        let (packets, mut rx) = mpsc::unbounded_channel::<AudioPacket>();
        let figures = Arc::new(AudioFigures::default());
        let level = Arc::new(Level {
            percent: AtomicU32::new(100),
            muted: AtomicBool::new(false),
        });
        let stop = Arc::new(tokio::sync::Notify::new());
        let (fig, lev, stopped) = (figures.clone(), level.clone(), stop.clone());
        let sound_delay = watch::Sender::new(None);
        let mut sync = LipSync::new(sound_delay.clone());
        let task = tokio::spawn(async move {
            let mut buffer = JitterBuffer::default();
            let mut decoder = AudioDecoder::new()?;
            let mut frames_played = 0u64;
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    packet = rx.recv() => match packet {
                        Some(p) => {
                            fig.packets.fetch_add(1, Relaxed);
                            buffer.push(p, Instant::now());
                        }
                        None => break,
                    },
                    _ = tick.tick() => {}
                    _ = stopped.notified() => break,
                }
                while let Some(frame) = buffer.pop(Instant::now()) {
                    let mut pcm = match frame {
                        Playout::Waiting => break,
                        Playout::Packet(p) => {
                            fig.played(PlayedPacket {
                                frame: frames_played,
                                capture_unix_us: p.capture_unix_us,
                                written_unix_us: oriel_transport::unix_micros(),
                            });
                            sync.heard(p.capture_unix_us, sink.latency());
                            decoder.decode(Some(&p.opus))?
                        }
                        Playout::Conceal => {
                            fig.concealed.fetch_add(1, Relaxed);
                            decoder.decode(None)?
                        }
                        Playout::Silence => vec![0; AUDIO_FRAME_LEN],
                    };
                    lev.apply(&mut pcm);
                    sink.write(&pcm)?;
                    frames_played += 1;
                    if fig.first_played_unix_us.load(Relaxed) == 0 {
                        // The frame just written starts now.
                        fig.first_played_unix_us
                            .store(oriel_transport::unix_micros(), Relaxed);
                    }
                }
                sync.expire();
            }
            fig.late.store(buffer.late, Relaxed);
            sink.finish()
        });
        AudioOutput {
            packets,
            figures,
            level,
            sound_delay,
            done: Arc::new(tokio::sync::Mutex::new(Some(task))),
            stop,
        }
    }

    /// How late sound is heard (see [`oriel_protocol::session::client::SoundDelay`]),
    /// as it changes.
    pub(crate) fn sound_delay(&self) -> watch::Receiver<Option<i64>> {
        self.sound_delay.subscribe()
    }

    pub(crate) fn play(&self, packet: AudioPacket) {
        let _ = self.packets.send(packet);
    }

    /// Stops playing and completes the file.
    pub async fn finish(&self) -> anyhow::Result<()> {
        self.stop.notify_one();
        if let Some(task) = self.done.lock().await.take() {
            task.await??;
        }
        Ok(())
    }
}

/// Tells the sessions how late sound is heard: smoothed over packets (the playout
/// tick wanders by a few ms), and only when that moves by a millisecond or more.
struct LipSync {
    out: watch::Sender<Option<i64>>,
    smoothed_us: Option<i64>,
    last_sound: Option<Instant>,
}

impl LipSync {
    fn new(out: watch::Sender<Option<i64>>) -> Self {
        Self {
            out,
            smoothed_us: None,
            last_sound: None,
        }
    }

    /// A packet captured at `capture_unix_us` was written; it is heard after `latency`.
    fn heard(&mut self, capture_unix_us: u64, latency: Duration) {
        let heard = oriel_transport::unix_micros()
            .saturating_add(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        let delay =
            i64::try_from(i128::from(heard) - i128::from(capture_unix_us)).unwrap_or(i64::MAX);
        let smoothed = match self.smoothed_us {
            Some(s) => s + (delay - s) / 8,
            None => delay,
        };
        self.smoothed_us = Some(smoothed);
        self.last_sound = Some(Instant::now());
        self.out.send_if_modified(|published| {
            let moved = published.is_none_or(|p| (p - smoothed).abs() >= 1000);
            if moved {
                *published = Some(smoothed);
            }
            moved
        });
    }

    /// No sound for a while: video no longer waits for it.
    fn expire(&mut self) {
        if self.last_sound.is_some_and(|t| t.elapsed() > SYNC_MEMORY) {
            self.last_sound = None;
            self.smoothed_us = None;
            self.out.send_replace(None);
        }
    }
}

/// The next change of how late sound is heard; never, without sound.
pub(crate) async fn next_sound_delay(
    delay: &mut Option<watch::Receiver<Option<i64>>>,
) -> Option<i64> {
    let Some(rx) = delay else {
        return std::future::pending().await;
    };
    match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        Err(_) => {
            *delay = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_scales_clamps_and_mutes() {
        let level = Level {
            percent: AtomicU32::new(100),
            muted: AtomicBool::new(false),
        };
        let mut pcm = [1000i16, -20_000];
        level.apply(&mut pcm);
        assert_eq!(pcm, [1000, -20_000]);
        assert_eq!(level.step(100), 200);
        assert_eq!(level.step(50), Level::MAX_PERCENT);
        level.apply(&mut pcm);
        assert_eq!(pcm, [2000, i16::MIN]);
        assert!(level.toggle_mute());
        level.apply(&mut pcm);
        assert_eq!(pcm, [0, 0]);
        assert!(!level.toggle_mute());
        assert_eq!(level.step(-500), 0);
    }
}
