//! What goes in and out of the server session core: its configuration, the events the
//! driver feeds it, the actions it asks for, and the encoder's orders and results.

use std::time::{Duration, Instant};

use super::super::{CloseCode, SendChannel};
use crate::messages::*;
use crate::{Rect, Size};

#[derive(Debug, Clone)]
pub struct ServerSessionConfig {
    /// What this server can do; the session runs with what both sides can.
    pub capabilities: Capabilities,
    /// Time from the connection to a complete hello.
    pub handshake_timeout: Duration,
    /// Most frames (and pictures per region) unacknowledged.
    pub frame_window: usize,
    /// Highest video bitrate, bits per second.
    pub max_video_bitrate: u32,
}

/// The driver's answer to [`ServerAction::Admit`]: the ticket and desktop are good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub session_id: u64,
    /// The size the client's framebuffer starts at.
    pub desktop_size: Size,
    /// Time between two captures of the desktop.
    pub frame_interval: Duration,
    /// The desktop's clipboard policy, if it has a clipboard.
    pub clipboard: Option<crate::ClipboardPolicy>,
    /// The desktop takes the client's microphone.
    pub microphone: bool,
}

/// A video region the encoder started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoStart {
    pub region_id: u64,
    pub rect: Rect,
    /// Its pictures may only be shown after this display frame.
    pub after_frame: u64,
}

/// One encoded picture, as a whole `VideoMsg::Frame` message with its length prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PictureReady {
    pub region_id: u64,
    pub frame_no: u64,
    pub message: Vec<u8>,
}

/// One encoded display frame, as a whole `FrameMsg` with its length prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameReady {
    pub frame_id: u64,
    /// The desktop's size as of this frame (it may carry a resize).
    pub size: Size,
    pub message: Vec<u8>,
}

/// What one [`ServerAction::Encode`] produced, and what the encoder has left to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    pub started: Vec<VideoStart>,
    pub ended: Vec<u64>,
    pub pictures: Vec<PictureReady>,
    pub frame: Option<FrameReady>,
    /// Damage or refinement waits for the next lossless frame.
    pub lossless_due: bool,
    /// Regions with a picture waiting.
    pub video_due: Vec<u64>,
    /// When a region expires if nothing changes.
    pub deadline: Option<Instant>,
}

/// What the encoder may do in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOrder {
    /// A lossless frame may go.
    pub lossless: bool,
    /// Regions whose window is full: no picture of theirs may go (new regions have room).
    pub full_regions: Vec<u64>,
    /// Video bitrate for all regions together.
    pub bitrate: u32,
    /// Regions whose client asked for a keyframe.
    pub keyframes: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    /// Bytes arrived on the control stream.
    ControlBytes(&'a [u8]),
    /// The client finished the control stream: it is done.
    ControlFinished,
    /// Bytes arrived on client stream `stream` (tag byte first); the client opens
    /// input streams.
    StreamBytes {
        stream: u64,
        bytes: &'a [u8],
    },
    /// The client finished stream `stream`.
    StreamFinished {
        stream: u64,
    },
    /// The hello passed the driver's checks (ticket, desktop, session limit).
    Admitted(Admitted),
    /// The driver refused the hello.
    Refused(Reject),
    /// The desktop has damage for this session.
    Damage,
    /// The encoder finished an [`ServerAction::Encode`].
    Encoded(Encoded),
    /// The transport's path estimates.
    Path {
        rtt: Duration,
        cwnd: u64,
        /// Packets the transport has declared lost so far.
        lost_packets: u64,
    },
    /// The source's cursor image; serials tell shapes apart (a driver's own default
    /// shape uses `u64::MAX`).
    CursorShape {
        serial: u64,
        shape: CursorMsg,
    },
    CursorPosition {
        x: u32,
        y: u32,
        visible: bool,
    },
    /// A cursor message went out: the next may be sent (latest wins meanwhile).
    CursorWritten,
    /// The session must end (log-off, reassignment, the desktop stopped or failed).
    Evicted(String),
    /// The desktop moved to another display server: the client is told where, and the
    /// session ends.
    Moved(crate::MovedTo),
    /// A clipboard message from the desktop's side, for this session's client.
    Clipboard(crate::ClipboardMsg),
    /// 20 ms of the desktop's sound.
    Audio(&'a crate::AudioPacket),
    /// A datagram from the client (its microphone).
    Datagram(&'a [u8]),
}

/// Something the server records about a session (metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Frames acknowledged, each with its send → ack time.
    FramesAcked(Vec<Duration>),
    PicturesAcked(usize),
    KeyframeRequested {
        granted: bool,
    },
    FramesInFlight(usize),
    PicturesInFlight(usize),
    RefreshIgnored,
    /// A clipboard transfer ended: data went (or was refused) one way.
    Clipboard {
        to_client: bool,
        format: crate::ClipFormat,
        bytes: usize,
        refused: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAction {
    /// Check the hello's ticket and desktop (its capabilities are already checked);
    /// answer with [`ServerEvent::Admitted`] or [`ServerEvent::Refused`].
    Admit(Hello),
    /// A hello was refused (by the capabilities check or the driver), for the logs.
    Rejected(Reject),
    /// Open this server stream (its tag is the first `Send`).
    Open(SendChannel),
    Send {
        channel: SendChannel,
        bytes: Vec<u8>,
    },
    /// Finish this server stream (a video region ended).
    Finish(SendChannel),
    /// Run the encoder; answer with [`ServerEvent::Encoded`].
    Encode(EncodeOrder),
    /// Put this input event into the desktop; the number is its place among the
    /// events the client sent (from 0), so that a server can tell a client which of
    /// them its desktop took.
    Inject(InputEvent, u64),
    /// Resend the whole desktop.
    Refresh,
    /// Ask the desktop for this size.
    Resize(Size),
    /// Hand this clipboard message, from the client or answering it, to the desktop's side.
    Clipboard(crate::ClipboardMsg),
    /// Send this datagram (an audio packet); it may be lost, never retransmitted.
    SendDatagram(Vec<u8>),
    /// 20 ms of the client's microphone, for the desktop.
    Microphone(crate::AudioPacket),
    Record(Record),
    /// Close the connection (after letting the control stream drain if the code lingers).
    Close {
        code: CloseCode,
        reason: String,
    },
}
