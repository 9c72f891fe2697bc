//! What a client saw: frames, bytes, frame rate, latency.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::Serialize;

/// The value at quantile `q` (0..=1) of `samples` (nearest rank); 0 when empty.
pub fn percentile(samples: &[u32], q: f64) -> u32 {
    if samples.is_empty() {
        return 0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "float to int saturates; the rank is clamped to 1..=len right here"
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    pub frames: u64,
    /// Display stream bytes received, length prefixes included.
    pub bytes: u64,
    pub elapsed: Duration,
    /// Capture on the server → decoded here, in µs (wall clocks; exact on one machine).
    pub latency_us: Vec<u32>,
    pub decode_us: Vec<u32>,
    /// H.264 pictures decoded, and their bytes (included in `bytes`).
    pub video_frames: u64,
    pub video_bytes: u64,
    pub video_keyframes: u64,
    /// Capture → picture decoded, µs.
    pub video_latency_us: Vec<u32>,
    pub video_decode_us: Vec<u32>,
    /// Keyframes asked for after a picture could not be decoded.
    pub keyframe_requests: u64,
    /// Frame decoded → its pixels handed to the window system, µs (windowed only).
    pub present_us: Vec<u32>,
}

/// Figures a running session keeps up to date, for an on-screen overlay.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Display frames and video pictures decoded.
    pub frames: AtomicU64,
    pub pictures: AtomicU64,
    /// Display and video bytes received.
    pub bytes: AtomicU64,
    /// The connection's smoothed RTT, µs.
    pub rtt_us: AtomicU64,
    /// Capture → decoded of the newest frame, µs.
    pub latency_us: AtomicU64,
    /// Video regions playing (each an H.264 stream).
    pub video_regions: AtomicU64,
    /// The server's pacing, as it last reported: frames unacknowledged, the most it
    /// allows, and its video bitrate (bit/s).
    pub frames_in_flight: AtomicU64,
    pub frame_window: AtomicU64,
    pub video_bitrate: AtomicU64,
}

/// The printable summary of [`ClientStats`].
#[derive(Debug, Clone, Serialize)]
pub struct StatsSummary {
    pub frames: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub fps: f64,
    pub kbit_per_s: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub decode_ms_p50: f64,
    pub video_frames: u64,
    pub video_bytes: u64,
    pub video_latency_ms_p50: f64,
    pub video_latency_ms_p99: f64,
    pub video_decode_ms_p50: f64,
    /// Windowed viewers: frames presented, and decoded → presented.
    pub presented: u64,
    pub present_ms_p50: f64,
    pub present_ms_p99: f64,
}

impl ClientStats {
    pub fn summary(&self) -> StatsSummary {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let ms = |us: u32| f64::from(us) / 1000.0;
        StatsSummary {
            frames: self.frames,
            bytes: self.bytes,
            seconds: self.elapsed.as_secs_f64(),
            fps: self.frames as f64 / secs,
            kbit_per_s: self.bytes as f64 * 8.0 / 1000.0 / secs,
            latency_ms_p50: ms(percentile(&self.latency_us, 0.5)),
            latency_ms_p99: ms(percentile(&self.latency_us, 0.99)),
            decode_ms_p50: ms(percentile(&self.decode_us, 0.5)),
            video_frames: self.video_frames,
            video_bytes: self.video_bytes,
            video_latency_ms_p50: ms(percentile(&self.video_latency_us, 0.5)),
            video_latency_ms_p99: ms(percentile(&self.video_latency_us, 0.99)),
            video_decode_ms_p50: ms(percentile(&self.video_decode_us, 0.5)),
            presented: self.present_us.len() as u64,
            present_ms_p50: ms(percentile(&self.present_us, 0.5)),
            present_ms_p99: ms(percentile(&self.present_us, 0.99)),
        }
    }
}

impl std::fmt::Display for StatsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames in {:.1} s ({:.1} fps), {} bytes ({:.0} kbit/s), latency p50 {:.2} ms p99 {:.2} ms, decode p50 {:.2} ms",
            self.frames,
            self.seconds,
            self.fps,
            self.bytes,
            self.kbit_per_s,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.decode_ms_p50
        )?;
        if self.video_frames > 0 {
            write!(
                f,
                "; video: {} pictures, {} bytes, latency p50 {:.2} ms p99 {:.2} ms, decode p50 {:.2} ms",
                self.video_frames,
                self.video_bytes,
                self.video_latency_ms_p50,
                self.video_latency_ms_p99,
                self.video_decode_ms_p50
            )?;
        }
        if self.presented > 0 {
            write!(
                f,
                "; window: {} frames presented, decoded → presented p50 {:.2} ms p99 {:.2} ms",
                self.presented, self.present_ms_p50, self.present_ms_p99
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&s, 0.5), 50);
        assert_eq!(percentile(&s, 0.99), 99);
        assert_eq!(percentile(&s, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
