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

/// What waits for the output device.
#[derive(Default)]
struct PlayQueue {
    samples: VecDeque<i16>,
    /// Enough came to play without running dry at once.
    primed: bool,
}

impl PlayQueue {
    fn push(&mut self, pcm: &[i16]) {
        self.samples.extend(pcm);
        let excess = self.samples.len().saturating_sub(MAX_QUEUED);
        self.samples.drain(..excess);
        self.primed |= self.samples.len() >= PRIMED;
    }

    /// Fills `out`, with silence while not primed.
    fn pull(&mut self, out: &mut [i16]) {
        for sample in out.iter_mut() {
            *sample = match self.primed {
                true => self.samples.pop_front().unwrap_or_else(|| {
                    self.primed = false;
                    0
                }),
                false => 0,
            };
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
}
