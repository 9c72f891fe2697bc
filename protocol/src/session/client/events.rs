//! What goes in and out of the client session core.

use std::time::Duration;

use crate::messages::*;
use crate::Rect;

#[derive(Debug, Clone)]
pub struct ClientSessionConfig {
    /// The hello to send: desktop, ticket, name and what this client can do.
    pub hello: Hello,
    /// Time from the connection to the welcome, and from the welcome to the server's
    /// display and cursor streams.
    pub handshake_timeout: Duration,
}

/// How a picture the driver decoded turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureResult {
    /// Decoded into the framebuffer.
    Shown,
    /// The decoder had nothing to show yet.
    Skipped,
    /// Not decodable: a keyframe is needed.
    Broken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    /// Bytes arrived on the control stream.
    ControlBytes(&'a [u8]),
    /// The server finished the control stream.
    ControlFinished,
    /// Bytes arrived on server stream `stream` (its tag byte first).
    StreamBytes { stream: u64, bytes: &'a [u8] },
    /// The server finished stream `stream`.
    StreamFinished { stream: u64 },
    /// The driver applied the frame of [`ClientAction::ApplyFrame`].
    FrameApplied { frame_id: u64, decode_us: u32 },
    /// The driver decoded the picture of [`ClientAction::DecodePicture`].
    PictureDecoded {
        region_id: u64,
        frame_no: u64,
        decode_us: u32,
        result: PictureResult,
    },
    /// The application asks the server for something (a new size).
    Request(ClientControl),
    /// A clipboard message from the client's own clipboard, for the desktop.
    Clipboard(crate::ClipboardMsg),
    /// A datagram from the server (an audio packet).
    Datagram(&'a [u8]),
    /// 20 ms of the client's microphone, for the desktop (dropped if it takes none).
    Microphone(&'a crate::AudioPacket),
    /// How late the desktop's sound is heard here (`None`: no sound is playing). Video
    /// pictures are then held until their sound is heard (lip sync).
    SoundDelay(Option<SoundDelay>),
}

/// When sound is heard: what was captured at wall clock `c` (the server's) is heard at
/// `c + delay_us` (this client's wall clock; the two clocks need not agree, so this
/// may even be negative), and `unix_us` is this client's wall clock at the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoundDelay {
    pub delay_us: i64,
    pub unix_us: u64,
}

/// Why a client session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the server refused the session ({code:?}): {message}")]
    Rejected { code: RejectCode, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Bytes to send on the control stream.
    SendControl(Vec<u8>),
    /// The server welcomed the session.
    Welcomed(Welcome),
    /// Apply this frame to the framebuffer, then answer [`ClientEvent::FrameApplied`].
    ApplyFrame(FrameMsg),
    /// A video region starts: make its decoder.
    StartRegion { region_id: u64, rect: Rect },
    /// A region ended: drop its decoder.
    EndRegion(u64),
    /// Decode this picture into `rect`, then answer [`ClientEvent::PictureDecoded`].
    /// While sound plays, a picture comes when its sound is heard (it was acknowledged
    /// when it arrived).
    DecodePicture {
        region_id: u64,
        rect: Rect,
        frame: VideoFrame,
    },
    /// A picture could not be decoded and a keyframe was asked for.
    KeyframeRequested(u64),
    /// The server's cursor shape or position.
    Cursor(CursorMsg),
    /// How the server paces this session.
    Pacing {
        frames_in_flight: u32,
        frame_window: u32,
        video_bitrate: u32,
    },
    /// The server said why it ends the session.
    Closing(String),
    /// The desktop moved to another display server (the session ends): connect there.
    Moved(crate::MovedTo),
    /// A clipboard message from the desktop's side (or a refusal of the client's
    /// request), for the client's own clipboard.
    Clipboard(crate::ClipboardMsg),
    /// Bytes for the client's clipboard stream: open it (one uni stream) at the first,
    /// which starts with its tag.
    SendClipboard(Vec<u8>),
    /// 20 ms of the desktop's sound, for the playout buffer.
    Audio(crate::AudioPacket),
    /// Send this datagram (a microphone packet); it may be lost, never retransmitted.
    SendDatagram(Vec<u8>),
    /// The server finished its display stream: the session is over.
    Ended,
    /// The session failed; close the connection.
    Fail(SessionError),
}
