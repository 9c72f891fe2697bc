//! Oriel client: connects to a display server over QUIC, decodes frames into a local
//! framebuffer, acknowledges them and sends input. The `oriel` binary wraps it.

pub mod audio;
pub mod clipboard;
pub mod device;
mod error;
mod input;
pub mod launcher;
pub mod local;
pub mod microphone;
pub mod resume;
pub mod screenshot;
pub mod session;
pub mod stats;
mod streams;
pub mod video;
pub mod viewer;

pub use error::Moved;
pub use session::{
    ClientError, ConnectOptions, Controller, EndReason, InputSender, Outcome, Session, Shown,
    StopWhen,
};
pub use stats::{percentile, ClientStats, LiveStats};
