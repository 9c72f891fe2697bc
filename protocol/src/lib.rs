//! Oriel's wire protocol and display codecs, sans-IO: no sockets, no async runtime.
//! Both ends feed bytes in and get messages and pixels out, so everything here is
//! testable and fuzzable without a network.

#![forbid(unsafe_code)]

pub mod audio;
pub mod clipboard;
pub mod framebuffer;
pub mod geometry;
pub mod host_link;
pub mod messages;
pub mod migration_ticket;
pub mod text;
pub mod ticket;
pub mod tiles;
pub mod video;

pub use audio::AudioPacket;
pub use clipboard::{ClipFormat, ClipboardMsg, ClipboardPolicy, Selection};
pub use framebuffer::{rgb_bytes, Framebuffer};
pub use geometry::{Rect, Size};
pub use messages::*;
pub use tiles::{TileMask, TILE};
pub mod api;
pub mod codec;
pub mod desktop_spec;
pub mod handshake;
mod held;
pub mod session;
pub mod whole;
pub mod wire;
