//! How a session ended and what it showed on the way, for the application and for
//! observers (tests and benchmarks).

use oriel_protocol::{CursorMsg, Framebuffer, Rect};

use crate::stats::ClientStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    DurationElapsed,
    SequenceReached,
    Settled,
    Interrupted,
    ServerClosed,
}

pub struct Outcome {
    pub framebuffer: Framebuffer,
    pub stats: ClientStats,
    pub end: EndReason,
    /// The last cursor shape the server sent.
    pub cursor_shape: Option<CursorMsg>,
}

/// What the client just showed, for observers (tests and benchmarks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// A display frame was applied.
    Frame {
        frame_id: u64,
        source_seq: u64,
        /// When the desktop's oldest change in it was captured (µs since the epoch).
        capture_unix_us: u64,
        /// Where it changed the screen: its moves and updates, or their bounding box
        /// when there are many; the whole screen when it resized it.
        changed: Vec<Rect>,
    },
    /// A video picture was decoded into `rect`.
    Picture {
        region_id: u64,
        rect: Rect,
        source_seq: u64,
        keyframe: bool,
        /// When the desktop captured it (µs since the epoch).
        capture_unix_us: u64,
    },
}
