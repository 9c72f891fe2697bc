//! Server counters, exported on `/metrics` and read by tests and benchmarks.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use oriel_protocol::codec::FrameStats;

use crate::desktop::lock;

/// Most encode-time samples kept (enough for a long benchmark, bounded for a server).
const MAX_SAMPLES: usize = 1 << 20;

#[derive(Default)]
pub struct ServerStats {
    pub sessions_total: AtomicU64,
    pub sessions_rejected: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_acked: AtomicU64,
    /// Display-stream bytes written (messages with their length prefixes).
    pub display_bytes: AtomicU64,
    /// What the changed tiles of sent frames would cost uncompressed.
    pub raw_bytes: AtomicU64,
    pub tiles_changed: AtomicU64,
    pub tiles_solid: AtomicU64,
    pub tiles_copied: AtomicU64,
    pub tiles_cache_hit: AtomicU64,
    pub tiles_palette: AtomicU64,
    pub tiles_raw: AtomicU64,
    /// Highest number of unacknowledged frames any session had.
    pub max_frames_in_flight: AtomicU64,
    /// Highest number of unacknowledged pictures any video region had.
    pub max_pictures_in_flight: AtomicU64,
    pub input_events: AtomicU64,
    /// Video regions started.
    pub video_regions: AtomicU64,
    pub video_frames: AtomicU64,
    pub video_keyframes: AtomicU64,
    pub video_bytes: AtomicU64,
    pub video_acked: AtomicU64,
    pub keyframe_requests: AtomicU64,
    /// Pictures the encoder's rate control dropped.
    pub video_skipped: AtomicU64,
    /// Video bitrate the rate controller last chose for a session, bits per second.
    pub video_bitrate: AtomicU64,
    video_encode_us: Mutex<Vec<u32>>,
    encode_us: Mutex<Vec<u32>>,
    frame_bytes: Mutex<Vec<u32>>,
    ack_rtt_us: Mutex<Vec<u32>>,
}

impl ServerStats {
    pub fn record_frame(&self, stats: &FrameStats, wire_bytes: usize, encode_us: u32) {
        self.frames_sent.fetch_add(1, Relaxed);
        self.display_bytes.fetch_add(wire_bytes as u64, Relaxed);
        self.raw_bytes.fetch_add(stats.raw_bytes, Relaxed);
        self.tiles_changed
            .fetch_add(u64::from(stats.changed_tiles), Relaxed);
        self.tiles_solid.fetch_add(u64::from(stats.solid), Relaxed);
        self.tiles_copied
            .fetch_add(u64::from(stats.copies), Relaxed);
        self.tiles_cache_hit
            .fetch_add(u64::from(stats.cache_hits), Relaxed);
        self.tiles_palette
            .fetch_add(u64::from(stats.palette), Relaxed);
        self.tiles_raw.fetch_add(u64::from(stats.raw), Relaxed);
        push_sample(&self.encode_us, encode_us);
        push_sample(&self.frame_bytes, wire_bytes.min(u32::MAX as usize) as u32);
    }

    pub fn record_video(&self, bytes: usize, keyframe: bool, encode_us: u32) {
        self.video_frames.fetch_add(1, Relaxed);
        self.video_bytes.fetch_add(bytes as u64, Relaxed);
        if keyframe {
            self.video_keyframes.fetch_add(1, Relaxed);
        }
        push_sample(&self.video_encode_us, encode_us);
    }

    /// H.264 encode times in microseconds.
    pub fn video_encode_samples(&self) -> Vec<u32> {
        lock(&self.video_encode_us).clone()
    }

    pub fn record_ack(&self, rtt_us: u32) {
        self.frames_acked.fetch_add(1, Relaxed);
        push_sample(&self.ack_rtt_us, rtt_us);
    }

    pub fn note_in_flight(&self, n: usize) {
        self.max_frames_in_flight.fetch_max(n as u64, Relaxed);
    }

    /// Encode times in microseconds, in the order frames were sent.
    pub fn encode_samples(&self) -> Vec<u32> {
        lock(&self.encode_us).clone()
    }

    /// Display-stream bytes of each frame, in the order frames were sent.
    pub fn frame_byte_samples(&self) -> Vec<u32> {
        lock(&self.frame_bytes).clone()
    }

    /// Send → ack times in microseconds.
    pub fn ack_rtt_samples(&self) -> Vec<u32> {
        lock(&self.ack_rtt_us).clone()
    }

    /// Prometheus text exposition.
    pub fn render_prometheus(&self, frames_produced: u64, sessions_active: usize) -> String {
        let mut out = String::new();
        let counters = [
            (
                "oriel_sessions_total",
                "Sessions accepted",
                &self.sessions_total,
            ),
            (
                "oriel_sessions_rejected_total",
                "Sessions refused at handshake",
                &self.sessions_rejected,
            ),
            (
                "oriel_protocol_errors_total",
                "Connections closed for malformed input",
                &self.protocol_errors,
            ),
            (
                "oriel_frames_sent_total",
                "Frames sent to clients",
                &self.frames_sent,
            ),
            (
                "oriel_frames_acked_total",
                "Frames acknowledged by clients",
                &self.frames_acked,
            ),
            (
                "oriel_display_bytes_total",
                "Display stream bytes sent",
                &self.display_bytes,
            ),
            (
                "oriel_raw_bytes_total",
                "Uncompressed size of the changed tiles sent",
                &self.raw_bytes,
            ),
            (
                "oriel_tiles_changed_total",
                "Changed tiles encoded",
                &self.tiles_changed,
            ),
            (
                "oriel_video_regions_total",
                "Video regions detected and streamed as H.264",
                &self.video_regions,
            ),
            (
                "oriel_video_frames_total",
                "H.264 pictures sent",
                &self.video_frames,
            ),
            (
                "oriel_video_keyframes_total",
                "H.264 keyframes sent",
                &self.video_keyframes,
            ),
            (
                "oriel_video_bytes_total",
                "H.264 bytes sent",
                &self.video_bytes,
            ),
            (
                "oriel_keyframe_requests_total",
                "Keyframes requested by clients",
                &self.keyframe_requests,
            ),
            (
                "oriel_input_events_total",
                "Input events injected",
                &self.input_events,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP oriel_tiles_by_codec_total Changed tiles by codec\n# TYPE oriel_tiles_by_codec_total counter");
        for (codec, value) in [
            ("solid", &self.tiles_solid),
            ("copy", &self.tiles_copied),
            ("cache", &self.tiles_cache_hit),
            ("palette", &self.tiles_palette),
            ("zstd", &self.tiles_raw),
        ] {
            let _ = writeln!(
                out,
                "oriel_tiles_by_codec_total{{codec=\"{codec}\"}} {}",
                value.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP oriel_video_bitrate_bps Video bitrate last chosen by rate control\n# TYPE oriel_video_bitrate_bps gauge\noriel_video_bitrate_bps {}",
            self.video_bitrate.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP oriel_sessions_active Connected sessions\n# TYPE oriel_sessions_active gauge\noriel_sessions_active {sessions_active}"
        );
        let _ = writeln!(
            out,
            "# HELP oriel_source_frames_total Source polls that produced damage\n# TYPE oriel_source_frames_total counter\noriel_source_frames_total {frames_produced}"
        );
        out
    }
}

fn push_sample(samples: &Mutex<Vec<u32>>, value: u32) {
    let mut s = lock(samples);
    if s.len() < MAX_SAMPLES {
        s.push(value);
    }
}
