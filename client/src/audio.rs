//! The desktop's sound on the client: packets go through the playout buffer
//! ([`JitterBuffer`]), are decoded (a lost one concealed), set to the viewer's volume
//! and played, 20 ms at a time, on the default output device or written to a WAV file
//! (`--audio-out`): what a speaker would have played, when.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
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
    /// When the first frame was played (µs since the Unix epoch; 0: none yet). Frames
    /// follow each other every 20 ms from then, so this dates every sample.
    pub first_played_unix_us: AtomicU64,
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
                    let mut pcm = match frame {
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
                    lev.apply(&mut pcm);
                    sink.write(&pcm)?;
                    if fig.first_played_unix_us.load(Relaxed) == 0 {
                        // The frame just written starts now.
                        fig.first_played_unix_us
                            .store(oriel_transport::unix_micros(), Relaxed);
                    }
                }
            }
            fig.late.store(buffer.late, Relaxed);
            sink.finish()
        });
        AudioOutput {
            packets,
            figures,
            level,
            done: Arc::new(tokio::sync::Mutex::new(Some(task))),
            stop,
        }
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
