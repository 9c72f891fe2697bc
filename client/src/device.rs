//! The local sound devices, through cpal (ALSA, which reaches PulseAudio or PipeWire
//! through its plugin): the default output plays the desktop's sound, the default
//! input is the microphone. cpal's streams stay on a thread of their own (they are not
//! `Send` everywhere), which keeps them until told to stop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use oriel_protocol::audio::{AUDIO_CHANNELS, AUDIO_RATE};

/// Samples (both channels) queued for the device at most: 150 ms. More means the
/// device fell behind; the oldest go, so that the sound does not lag for good.
const MAX_QUEUED: usize = AUDIO_RATE as usize * 3 / 20 * AUDIO_CHANNELS;
/// Samples queued before the device plays (again, after running dry): 60 ms, so that
/// a device asking a little more than 20 ms at a time, and a late playout tick, find
/// enough.
const PRIMED: usize = AUDIO_RATE as usize * 3 / 50 * AUDIO_CHANNELS;

/// The desktop's clock and this sound card's drift apart (by 100 ppm or so): the queue
/// would grow or run dry. Once it has settled, its level is kept within this many
/// samples (10 ms) of where it settled by dropping or repeating one frame in
/// [`SLIP_EVERY`] — 0.1 %, which nobody hears.
const SLIP_TOLERANCE_SAMPLES: usize = AUDIO_RATE as usize / 100 * AUDIO_CHANNELS;
const SLIP_TOLERANCE: f64 = SLIP_TOLERANCE_SAMPLES as f64;
const SLIP_EVERY: usize = 1000;
/// Device pulls after (re)priming before the level's average is taken as its target.
const SETTLE_PULLS: u32 = 100;

/// What waits for the output device.
#[derive(Default)]
struct PlayQueue {
    samples: VecDeque<i16>,
    /// Enough came to play without running dry at once.
    primed: bool,
    /// The level after each pull (samples), averaged; and where it settled.
    level: f64,
    target: Option<f64>,
    pulls: u32,
    /// Frames played since the last slip.
    since_slip: usize,
    /// Frames dropped or repeated to follow the drift.
    slips: u64,
}

impl PlayQueue {
    fn push(&mut self, pcm: &[i16]) {
        self.samples.extend(pcm);
        let excess = self.samples.len().saturating_sub(MAX_QUEUED);
        self.samples.drain(..excess);
        if !self.primed && self.samples.len() >= PRIMED {
            self.primed = true;
            self.pulls = 0;
            self.target = None;
        }
    }

    /// Fills `out`, with silence while not primed.
    fn pull(&mut self, out: &mut [i16]) {
        for frame in out.chunks_mut(AUDIO_CHANNELS) {
            if !self.primed || self.samples.len() < frame.len() {
                // Dry: silence until enough came again.
                self.primed = false;
                frame.fill(0);
                continue;
            }
            self.since_slip += 1;
            let drift = self.drift();
            if drift != 0 && self.since_slip >= SLIP_EVERY && self.samples.len() >= 2 * frame.len()
            {
                self.since_slip = 0;
                self.slips += 1;
                if drift > 0 {
                    // Too much queued: one frame is skipped.
                    self.samples.drain(..frame.len());
                } else {
                    // Too little: this frame plays twice.
                    for (i, sample) in frame.iter_mut().enumerate() {
                        *sample = self.samples[i];
                    }
                    continue;
                }
            }
            for sample in frame.iter_mut() {
                *sample = self.samples.pop_front().unwrap_or(0);
            }
        }
        if self.primed {
            let level = self.samples.len() as f64;
            self.pulls = self.pulls.saturating_add(1);
            self.level = match self.pulls {
                1 => level,
                _ => self.level + (level - self.level) / 16.0,
            };
            if self.pulls == SETTLE_PULLS {
                self.target = Some(self.level);
            }
        }
    }

    /// +1 when the queue holds more than where it settled, -1 when less, 0 near it.
    fn drift(&self) -> i8 {
        match self.target {
            Some(t) if self.level > t + SLIP_TOLERANCE => 1,
            Some(t) if self.level < t - SLIP_TOLERANCE => -1,
            _ => 0,
        }
    }
}

/// How long `samples` (both channels) play.
fn samples_duration(samples: usize) -> Duration {
    let frames = samples / AUDIO_CHANNELS;
    Duration::from_micros(u64::try_from(frames).unwrap_or(0) * 1_000_000 / u64::from(AUDIO_RATE))
}

fn stream_config() -> cpal::StreamConfig {
    cpal::StreamConfig {
        channels: 2, // AUDIO_CHANNELS
        sample_rate: cpal::SampleRate(AUDIO_RATE),
        buffer_size: cpal::BufferSize::Default,
    }
}

/// Keeps a cpal stream alive on its thread; the stream stops when this is dropped.
struct StreamThread {
    _stop: mpsc::Sender<()>,
}

impl StreamThread {
    /// Builds a stream with `build` on a new thread and starts it.
    fn start(
        name: &str,
        build: impl FnOnce() -> anyhow::Result<cpal::Stream> + Send + 'static,
    ) -> anyhow::Result<StreamThread> {
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let stream = match build().and_then(|s| s.play().map(|()| s).map_err(Into::into)) {
                    Ok(stream) => stream,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                // Until the owner goes.
                let _ = stopped.recv();
                drop(stream);
            })?;
        ready_rx
            .recv()
            .context("the sound device thread ended at once")??;
        Ok(StreamThread { _stop: stop })
    }
}

/// The default output device, fed 48 kHz stereo.
pub struct Speaker {
    queue: Arc<Mutex<PlayQueue>>,
    /// From the device's callback to when a sample queued then is heard (µs).
    device_latency_us: Arc<AtomicU64>,
    _stream: StreamThread,
}

impl Speaker {
    pub fn open() -> anyhow::Result<Speaker> {
        let queue = Arc::new(Mutex::new(PlayQueue::default()));
        let pull = queue.clone();
        let device_latency_us = Arc::new(AtomicU64::new(0));
        let latency = device_latency_us.clone();
        let stream = StreamThread::start("speaker", move || {
            let device = cpal::default_host()
                .default_output_device()
                .context("no sound output device")?;
            let stream = device.build_output_stream(
                &stream_config(),
                move |out: &mut [i16], info: &cpal::OutputCallbackInfo| {
                    let mut queue = pull.lock().unwrap_or_else(|e| e.into_inner());
                    queue.pull(out);
                    // What is queued next plays after this block, which starts playing
                    // at the stream's playback instant.
                    let stamp = info.timestamp();
                    let until_played = stamp.playback.duration_since(&stamp.callback);
                    let block = samples_duration(out.len());
                    let total = until_played.unwrap_or_default() + block;
                    latency.store(u64::try_from(total.as_micros()).unwrap_or(0), Relaxed);
                },
                |e| tracing::warn!("sound output: {e}"),
                None,
            )?;
            Ok(stream)
        })
        .context("cannot play sound on the default output device")?;
        Ok(Speaker {
            queue,
            device_latency_us,
            _stream: stream,
        })
    }

    /// How long until a sample queued now is heard.
    pub fn latency(&self) -> Duration {
        let queued = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .samples
            .len();
        samples_duration(queued) + Duration::from_micros(self.device_latency_us.load(Relaxed))
    }

    /// Queues samples to play after those queued already.
    pub fn play(&self, pcm: &[i16]) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.push(pcm);
    }
}

/// The default input device, read as 48 kHz stereo; `take` gets each block it
/// delivers, on the device's thread.
pub struct Recorder {
    _stream: StreamThread,
}

impl Recorder {
    pub fn open(mut take: impl FnMut(&[i16]) + Send + 'static) -> anyhow::Result<Recorder> {
        let stream = StreamThread::start("microphone", move || {
            let device = cpal::default_host()
                .default_input_device()
                .context("no sound input device")?;
            let stream = device.build_input_stream(
                &stream_config(),
                move |block: &[i16], _: &cpal::InputCallbackInfo| take(block),
                |e| tracing::warn!("sound input: {e}"),
                None,
            )?;
            Ok(stream)
        })
        .context("cannot record from the default input device")?;
        Ok(Recorder { _stream: stream })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_plays_once_primed_and_waits_again_after_running_dry() {
        let mut q = PlayQueue::default();
        let mut out = vec![1i16; 100];
        q.push(&vec![7; PRIMED - 1]);
        q.pull(&mut out);
        assert!(out.iter().all(|&s| s == 0), "not primed: silence");
        q.push(&[7]);
        q.pull(&mut out);
        assert!(out.iter().all(|&s| s == 7));
        let mut rest = vec![1i16; PRIMED];
        q.pull(&mut rest);
        assert_eq!(rest[PRIMED - 101], 7);
        assert_eq!(rest[PRIMED - 100..], vec![0; 100], "dry: silence");
        q.push(&[7; 10]);
        q.pull(&mut out[..5]);
        assert_eq!(out[..5], [0; 5], "waits to be primed again");
        q.push(&vec![7; MAX_QUEUED * 2]);
        assert_eq!(q.samples.len(), MAX_QUEUED);
    }

    /// Five minutes of a desktop whose clock runs `ppm` fast (negative: slow) against
    /// the device's, which pulls 10 ms at a time: (lowest and highest level after
    /// settling, times it ran dry after priming, slips).
    fn five_minutes_drifting(ppm: f64) -> (usize, usize, u32, u64) {
        let mut q = PlayQueue::default();
        let frame = 960 * AUDIO_CHANNELS;
        let mut pushed = 0.0f64;
        let (mut low, mut high, mut dry) = (usize::MAX, 0, 0);
        let mut out = vec![0i16; 480 * AUDIO_CHANNELS];
        for pull in 1..=30_000u32 {
            // What the desktop has made by now, in whole 20 ms packets.
            let made = f64::from(pull) * 480.0 * (1.0 + ppm / 1e6) + 3.0 * 960.0;
            while pushed + 960.0 <= made {
                q.push(&vec![1; frame]);
                pushed += 960.0;
            }
            let was_primed = q.primed;
            q.pull(&mut out);
            if was_primed && !q.primed {
                dry += 1;
            }
            if q.target.is_some() {
                low = low.min(q.samples.len());
                high = high.max(q.samples.len());
            }
        }
        (low, high, dry, q.slips)
    }

    #[test]
    fn the_queue_follows_a_drifting_clock_without_running_dry_or_growing() {
        // The level moves by whole packets as they come, and by the tolerance.
        let slack = SLIP_TOLERANCE_SAMPLES + 960 * AUDIO_CHANNELS;
        let (low0, high0, dry0, slips0) = five_minutes_drifting(0.0);
        assert_eq!((dry0, slips0), (0, 0), "no drift, nothing to do");
        for ppm in [500.0, -500.0] {
            let (low, high, dry, slips) = five_minutes_drifting(ppm);
            assert_eq!(dry, 0, "{ppm} ppm: ran dry");
            assert!(slips > 0, "{ppm} ppm: never slipped");
            // Without slips 500 ppm is 150 ms in five minutes: the queue would run dry
            // or overflow.
            assert!(
                high <= high0 + slack && low + slack >= low0,
                "{ppm} ppm: level {low}..{high}, without drift {low0}..{high0}"
            );
        }
    }
}
