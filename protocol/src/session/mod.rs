//! Session state machines, as `quinn-proto` is for QUIC: the drivers feed events in
//! (bytes received on a channel, a frame encoded, a timer, a kick) with the current
//! time, and carry out the actions that come out (bytes to send on a channel, encode
//! now, inject this input, close with a reason). No I/O, no clock reads, no threads:
//! every rule of a session can be tested with a fake clock and fuzzed.

pub mod client;
pub mod flow;
pub mod server;

use crate::messages::Channel;

/// A stream the server sends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendChannel {
    /// The bidirectional control stream the client opened.
    Control,
    Display,
    Cursor,
    /// One video region's stream.
    Video(u64),
    Clipboard,
}

impl SendChannel {
    /// The channel its messages belong to (tag and size limit).
    pub fn channel(self) -> Channel {
        match self {
            SendChannel::Control => Channel::Control,
            SendChannel::Display => Channel::Display,
            SendChannel::Cursor => Channel::Cursor,
            SendChannel::Video(_) => Channel::Video,
            SendChannel::Clipboard => Channel::Clipboard,
        }
    }
}

/// Why a connection closes; the drivers map these to QUIC application codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The session ended normally.
    Normal,
    /// The peer sent something malformed, oversized or out of order.
    ProtocolError,
    /// The handshake was refused (a `Reject` went out on the control stream).
    Rejected,
    /// The desktop went away or changed hands (a `Closing` went out first).
    DesktopGone,
}

impl CloseCode {
    /// Whether the control stream carries a message the peer should get before the
    /// connection closes: the driver lets it drain for a moment first.
    pub fn lingers(self) -> bool {
        matches!(self, CloseCode::Rejected | CloseCode::DesktopGone)
    }
}
