//! Server counters, exported on `/metrics` (see [`crate::metrics`]) and read by tests
//! and benchmarks.

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
    /// Clipboard transfers by direction (to the client first), format (text, PNG) and
    /// outcome (passed, refused); their bytes by direction. Never their content.
    pub clipboard_transfers: [[[AtomicU64; 2]; 2]; 2],
    pub clipboard_bytes: [AtomicU64; 2],
    /// Audio packets (Opus datagrams) sent, and their bytes.
    pub audio_packets: AtomicU64,
    pub audio_bytes: AtomicU64,
    video_encode_us: Mutex<Vec<u32>>,
    encode_us: Mutex<Vec<u32>>,
    frame_bytes: Mutex<Vec<u32>>,
    ack_rtt_us: Mutex<Vec<u32>>,
}

impl ServerStats {
    pub fn record_clipboard(
        &self,
        to_client: bool,
        format: oriel_protocol::ClipFormat,
        bytes: usize,
        refused: bool,
    ) {
        let way = usize::from(!to_client);
        let format = match format {
            oriel_protocol::ClipFormat::Text => 0,
            oriel_protocol::ClipFormat::Png => 1,
        };
        self.clipboard_transfers[way][format][usize::from(refused)].fetch_add(1, Relaxed);
        self.clipboard_bytes[way].fetch_add(bytes as u64, Relaxed);
    }

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
        push_sample(
            &self.frame_bytes,
            u32::try_from(wire_bytes).unwrap_or(u32::MAX),
        );
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
}

fn push_sample(samples: &Mutex<Vec<u32>>, value: u32) {
    let mut s = lock(samples);
    if s.len() < MAX_SAMPLES {
        s.push(value);
    }
}
