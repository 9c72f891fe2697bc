//! The desktop's sound on the client: packets go through the playout buffer
//! ([`JitterBuffer`]), are decoded (a lost one concealed) and written, 20 ms at a time,
//! to a WAV file (`--audio-out`): what a speaker would have played, when.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oriel_media::{AudioDecoder, AUDIO_FRAME_LEN};
use oriel_protocol::audio::{JitterBuffer, Playout, AUDIO_RATE};
use oriel_protocol::AudioPacket;
use tokio::sync::mpsc;

/// How often the playout looks for a due frame.
const TICK: Duration = Duration::from_millis(5);

/// What the playout did, for the statistics.
#[derive(Debug, Default)]
pub struct AudioFigures {
    pub packets: AtomicU64,
    pub concealed: AtomicU64,
    /// Capture in the desktop → written here, of the last packet played (µs).
    pub latency_us: AtomicU64,
    /// Packets that came after their time to play.
    pub late: AtomicU64,
    /// That latency for every packet played (the first million).
    latencies_us: std::sync::Mutex<Vec<u32>>,
}

impl AudioFigures {
    /// Every packet's capture → playout time so far, in µs.
    pub fn latencies_us(&self) -> Vec<u32> {
        self.latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn played(&self, latency_us: u64) {
        self.latency_us.store(latency_us, Relaxed);
        let mut all = self.latencies_us.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() < 1 << 20 {
            all.push(u32::try_from(latency_us).unwrap_or(u32::MAX));
        }
    }
}

/// Where the desktop's sound goes; shared by the sessions of one viewer.
#[derive(Clone)]
pub struct AudioOutput {
    packets: mpsc::UnboundedSender<AudioPacket>,
    pub figures: Arc<AudioFigures>,
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
        let mut wav = hound::WavWriter::create(path, spec)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        let (packets, mut rx) = mpsc::unbounded_channel::<AudioPacket>();
        let figures = Arc::new(AudioFigures::default());
        let stop = Arc::new(tokio::sync::Notify::new());
        let (fig, stopped) = (figures.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut buffer = JitterBuffer::default();
            let mut decoder = AudioDecoder::new()?;
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
                    let pcm = match frame {
                        Playout::Waiting => break,
                        Playout::Packet(p) => {
                            let latency =
                                oriel_transport::unix_micros().saturating_sub(p.capture_unix_us);
                            fig.played(latency);
                            decoder.decode(Some(&p.opus))?
                        }
                        Playout::Conceal => {
                            fig.concealed.fetch_add(1, Relaxed);
                            decoder.decode(None)?
                        }
                        Playout::Silence => vec![0; AUDIO_FRAME_LEN],
                    };
                    for s in pcm {
                        wav.write_sample(s)?;
                    }
                }
            }
            fig.late.store(buffer.late, Relaxed);
            wav.finalize()?;
            Ok(())
        });
        Ok(AudioOutput {
            packets,
            figures,
            done: Arc::new(tokio::sync::Mutex::new(Some(task))),
            stop,
        })
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
