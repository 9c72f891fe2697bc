//! The viewer's microphone: 20 ms frames of 48 kHz stereo, coded as Opus packets for
//! the desktop, from the default input device (`--microphone`) or a WAV file played in
//! real time (`--audio-in`, for headless viewers and tests). It starts when the first
//! session asks for it and carries on across reconnections.

use std::path::Path;
use std::sync::{Arc, Mutex};

use oriel_media::{Packetizer, AUDIO_FRAME_LEN};
use oriel_protocol::audio::{AUDIO_FRAME, AUDIO_RATE};
use oriel_protocol::AudioPacket;
use tokio::sync::broadcast;

/// Opus bitrate of the microphone: speech and music, stereo.
const MIC_BITRATE: i32 = 64_000;
/// Packets a session may fall behind by before it skips (a second).
const QUEUE: usize = 50;
/// Longest WAV file taken as a microphone (ten minutes of 48 kHz stereo).
const MAX_WAV_SAMPLES: usize = 10 * 60 * 48_000 * 2;

/// Where the microphone's packets come from; shared by the sessions of one viewer.
#[derive(Clone)]
pub struct Microphone {
    packets: broadcast::Sender<Arc<AudioPacket>>,
    /// The sound to send, until the first session asks for it.
    pending: Arc<Mutex<Option<Source>>>,
    /// The input device, once recording.
    recorder: Arc<Mutex<Option<crate::device::Recorder>>>,
}

enum Source {
    Wav(Vec<i16>),
    Device,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone").finish_non_exhaustive()
    }
}

impl Microphone {
    /// A microphone that says what the WAV file at `path` holds (48 kHz, 16-bit, mono
    /// or stereo), once, then is silent.
    pub fn from_wav(path: &Path) -> anyhow::Result<Microphone> {
        let mut reader = hound::WavReader::open(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let spec = reader.spec();
        anyhow::ensure!(
            spec.sample_rate == AUDIO_RATE
                && spec.bits_per_sample == 16
                && spec.sample_format == hound::SampleFormat::Int
                && (1..=2).contains(&spec.channels),
            "{}: a microphone WAV must be 48000 Hz, 16-bit, mono or stereo (it is {} Hz, {}-bit, {} channels)",
            path.display(),
            spec.sample_rate,
            spec.bits_per_sample,
            spec.channels
        );
        anyhow::ensure!(
            reader.len() as usize <= MAX_WAV_SAMPLES,
            "{}: longer than ten minutes",
            path.display()
        );
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let stereo = match spec.channels {
            1 => samples.iter().flat_map(|&s| [s, s]).collect(),
            _ => samples,
        };
        Ok(Self::with(Source::Wav(stereo)))
    }

    /// The default input device (opened when the first session asks for it).
    pub fn default_input() -> Microphone {
        Self::with(Source::Device)
    }

    fn with(source: Source) -> Microphone {
        Microphone {
            packets: broadcast::channel(QUEUE).0,
            pending: Arc::new(Mutex::new(Some(source))),
            recorder: Arc::new(Mutex::new(None)),
        }
    }

    /// The packets from now on; the first call starts the sound.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AudioPacket>> {
        let rx = self.packets.subscribe();
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match pending {
            Some(Source::Wav(samples)) => {
                tokio::spawn(say(samples, self.packets.clone()));
            }
            Some(Source::Device) => match record(self.packets.clone()) {
                Ok(recorder) => {
                    *self.recorder.lock().unwrap_or_else(|e| e.into_inner()) = Some(recorder);
                }
                Err(e) => tracing::warn!("the microphone is not sent: {e:#}"),
            },
            None => {}
        }
        rx
    }
}

/// Records the default input device, frame by frame.
fn record(packets: broadcast::Sender<Arc<AudioPacket>>) -> anyhow::Result<crate::device::Recorder> {
    let mut packetizer = Packetizer::new(MIC_BITRATE)?;
    let mut frame = Vec::with_capacity(AUDIO_FRAME_LEN);
    crate::device::Recorder::open(move |block| {
        for chunk in block.chunks(AUDIO_FRAME_LEN) {
            let room = AUDIO_FRAME_LEN - frame.len();
            frame.extend_from_slice(&chunk[..room.min(chunk.len())]);
            let rest = &chunk[room.min(chunk.len())..];
            if frame.len() == AUDIO_FRAME_LEN {
                // The frame's first sample came 20 ms before its last.
                let captured = oriel_transport::unix_micros().saturating_sub(20_000);
                match packetizer.frame(&frame, captured) {
                    Ok(Some(packet)) => {
                        let _ = packets.send(Arc::new(packet));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("microphone: {e}"),
                }
                frame.clear();
                frame.extend_from_slice(rest);
            }
        }
    })
}

/// Sends `samples` frame by frame in real time, then the silence after them.
async fn say(samples: Vec<i16>, packets: broadcast::Sender<Arc<AudioPacket>>) {
    let mut packetizer = match Packetizer::new(MIC_BITRATE) {
        Ok(p) => p,
        Err(e) => return tracing::warn!("the microphone cannot code its sound: {e}"),
    };
    let mut tick = tokio::time::interval(AUDIO_FRAME);
    let silence = vec![0i16; AUDIO_FRAME_LEN];
    let frames = samples.chunks(AUDIO_FRAME_LEN).chain([&silence[..]]);
    for frame in frames {
        tick.tick().await;
        let mut frame = frame.to_vec();
        frame.resize(AUDIO_FRAME_LEN, 0);
        let captured = oriel_transport::unix_micros();
        match packetizer.frame(&frame, captured) {
            Ok(Some(packet)) => {
                let _ = packets.send(Arc::new(packet));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("microphone: {e}"),
        }
    }
}

/// The microphone's next packet for a session (never, without one). A session that
/// fell behind skips what it missed.
pub(crate) async fn next_packet(
    mic: &mut Option<broadcast::Receiver<Arc<AudioPacket>>>,
) -> Option<Arc<AudioPacket>> {
    let Some(rx) = mic else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Ok(packet) => Some(packet),
        Err(broadcast::error::RecvError::Lagged(_)) => None,
        Err(broadcast::error::RecvError::Closed) => {
            *mic = None;
            None
        }
    }
}
