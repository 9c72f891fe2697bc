//! Every message of the four channels. Each channel is its own QUIC stream so that
//! input, cursor and control never wait behind display data.

use serde::{Deserialize, Serialize};

use crate::geometry::{Rect, Size};

/// Version of this wire format; a server refuses a `Hello` with another major version.
pub const PROTOCOL_VERSION: u16 = 4;

/// TLS application protocol name.
pub const ALPN: &[u8] = b"oriel/1";

/// The channel a stream carries. A unidirectional stream starts with this tag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    /// Bidirectional, opened by the client: handshake, then acks and control.
    Control = 0,
    /// Server → client: frames.
    Display = 1,
    /// Client → server: keyboard and pointer.
    Input = 2,
    /// Server → client: cursor shape and position.
    Cursor = 3,
    /// Server → client: one video region's H.264 pictures. Each region gets a stream of
    /// its own, so a lost packet of one picture delays only that region.
    Video = 4,
    /// Clipboard messages, one stream each way (see [`crate::clipboard`]): a transfer
    /// of many megabytes waits behind nothing and holds up nothing.
    Clipboard = 5,
}

impl Channel {
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Self::Control),
            1 => Some(Self::Display),
            2 => Some(Self::Input),
            3 => Some(Self::Cursor),
            4 => Some(Self::Video),
            5 => Some(Self::Clipboard),
            _ => None,
        }
    }

    /// Largest message this channel accepts, in bytes. A peer announcing more is
    /// disconnected before anything is allocated.
    pub fn max_message_len(self) -> usize {
        match self {
            Self::Control => 64 * 1024,
            Self::Input => 4 * 1024,
            Self::Cursor => 1024 * 1024,
            Self::Display => 96 * 1024 * 1024,
            Self::Video => 16 * 1024 * 1024,
            Self::Clipboard => crate::clipboard::MAX_CLIPBOARD_BYTES as usize + 4096,
        }
    }
}

/// Codecs and features one side supports; the server answers with the intersection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Bit set of `CAP_*` flags.
    pub flags: u32,
    /// Entries in the client's tile cache (the server mirrors it).
    pub tile_cache_entries: u32,
}

pub const CAP_SOLID: u32 = 1 << 0;
pub const CAP_PALETTE: u32 = 1 << 1;
pub const CAP_ZSTD: u32 = 1 << 2;
pub const CAP_COPY_RECT: u32 = 1 << 3;
pub const CAP_TILE_CACHE: u32 = 1 << 4;
/// H.264 video regions on `Video` streams.
pub const CAP_H264: u32 = 1 << 5;
/// The clipboard channel.
pub const CAP_CLIPBOARD: u32 = 1 << 6;
/// The desktop's sound, as Opus in QUIC datagrams.
pub const CAP_AUDIO: u32 = 1 << 7;
/// The client's microphone, as Opus in QUIC datagrams to the desktop.
pub const CAP_MICROPHONE: u32 = 1 << 8;

/// Largest tile cache a client may ask for (64 MiB of 64x64 tiles).
pub const MAX_TILE_CACHE_ENTRIES: u32 = 4096;

/// Largest desktop edge the protocol accepts.
pub const MAX_DESKTOP_EDGE: u32 = 8192;

/// Largest desktop area: a frame of incompressible pixels must fit in one display
/// message (5120x2880 fits; 8K would need frames split across messages).
pub const MAX_DESKTOP_PIXELS: u64 = 16 * 1024 * 1024;

impl Capabilities {
    /// Everything this implementation can do.
    pub fn all() -> Self {
        Self {
            flags: CAP_SOLID
                | CAP_PALETTE
                | CAP_ZSTD
                | CAP_COPY_RECT
                | CAP_TILE_CACHE
                | CAP_H264
                | CAP_CLIPBOARD
                | CAP_AUDIO
                | CAP_MICROPHONE,
            tile_cache_entries: 2048,
        }
    }

    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// What both sides support.
    pub fn intersect(&self, other: &Capabilities) -> Capabilities {
        Capabilities {
            flags: self.flags & other.flags,
            tile_cache_entries: self
                .tile_cache_entries
                .min(other.tile_cache_entries)
                .min(MAX_TILE_CACHE_ENTRIES),
        }
    }
}

/// First message of a connection, client → server on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub capabilities: Capabilities,
    /// Desktop the client wants to see.
    pub desktop: String,
    /// Signed broker ticket (empty when the server runs without a broker).
    pub ticket: Vec<u8>,
    /// Size the client would like the desktop to have, if the source can resize.
    pub desired_size: Option<Size>,
    /// Free text for logs, e.g. "oriel/0.1.0 headless".
    pub client_name: String,
    /// The screen the client shows already (it follows a desktop that moved, or
    /// reconnects): the session sends only the tiles that differ from it.
    pub held: Option<HeldScreen>,
}

/// A screen a client holds, by content: its size and the
/// [`tile_key`](crate::codec::cache::tile_key) of each grid tile, row by row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldScreen {
    pub size: Size,
    pub tiles: Vec<u64>,
}

/// Most tiles a [`HeldScreen`] lists (a 5K screen's), so a hello stays small; a larger
/// screen is sent whole.
pub const MAX_HELD_TILES: usize = 6144;

/// Server's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Welcome(Welcome),
    Reject(Reject),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u16,
    pub session_id: u64,
    pub desktop_size: Size,
    /// Capabilities both sides will use.
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    UnsupportedVersion,
    UnknownDesktop,
    BadTicket,
    ServerFull,
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
}

/// Client → server on the control stream, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientControl {
    /// The client decoded this frame; `decode_us` is how long decoding took.
    Ack { frame_id: u64, decode_us: u32 },
    /// Send the whole desktop again (e.g. after the client lost its framebuffer).
    RefreshRequest,
    /// The client decoded this picture of a video region.
    VideoAck {
        region_id: u64,
        frame_no: u64,
        decode_us: u32,
    },
    /// The client cannot decode this region's stream any more: send a keyframe.
    KeyframeRequest { region_id: u64 },
    /// The client would like the desktop at this size (e.g. its window's). Desktops that
    /// can change size do, and a frame with `resize` follows; others ignore it.
    ResizeRequest { width: u32, height: u32 },
}

/// Where a desktop went (live migration): the display server that runs it now, its
/// certificate's SHA-256, and a ticket for this viewer's user there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedTo {
    /// `host:port`, as the broker gives clients.
    pub address: String,
    pub fingerprint: [u8; 32],
    pub ticket: Vec<u8>,
    /// How many of this session's input events (in the order the client sent them)
    /// the desktop took before it moved: the client sends the rest to the new server.
    pub input_taken: u64,
}

/// Server → client on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerControl {
    /// The session ends; `message` says why.
    Closing { message: String },
    /// How the server is pacing this session (twice a second), for the client's overlay:
    /// frames sent and not yet acknowledged, the most it allows, the video bitrate.
    Flow {
        frames_in_flight: u32,
        frame_window: u32,
        video_bitrate: u32,
    },
    /// The desktop moved to another display server: connect there for the same
    /// desktop (the screen it shows is the one this session showed); this session ends.
    Moved(MovedTo),
}

/// One frame: every update needed to bring the client from the previous frame to this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameMsg {
    pub frame_id: u64,
    /// Source frame counter at capture; the client has the source's state `source_seq`
    /// once this frame is decoded.
    pub source_seq: u64,
    /// Wall clock (µs since the Unix epoch) when the oldest damage in this frame was captured.
    pub capture_unix_us: u64,
    /// The desktop changed size: before anything else the client's framebuffer becomes
    /// this size, all black, and the frame's updates repaint it. Video regions that were
    /// playing are listed in `video_ended`.
    pub resize: Option<Size>,
    /// Moves, applied first and all reading the framebuffer as it was before this frame.
    pub copies: Vec<CopyRect>,
    /// Video regions that ended before this frame: the client drops their decoders and
    /// ignores their late pictures. Their exact pixels follow in `updates`.
    pub video_ended: Vec<u64>,
    /// Updates, applied in order after the moves.
    pub updates: Vec<RectUpdate>,
    /// This frame's chunk of the connection's persistent zstd stream: the bytes of every
    /// `Palette` and `Raw` update, in update order.
    pub payload: Vec<u8>,
}

/// A video region's stream, server → client: `Start` once, then its pictures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VideoMsg {
    /// The region's id and where its pictures go. Until the display stream ends the
    /// region, the server sends no lossless updates inside `rect`. Pictures may only be
    /// shown once display frame `after_frame` is applied: earlier frames were encoded
    /// before the region existed and may write or move pixels inside it.
    Start {
        region_id: u64,
        rect: Rect,
        after_frame: u64,
    },
    Frame(VideoFrame),
}

/// One H.264 picture of the region (Annex B; keyframes carry SPS and PPS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoFrame {
    /// Counts up from 1 within the region.
    pub frame_no: u64,
    pub source_seq: u64,
    /// Wall clock (µs since the Unix epoch) when the picture was captured.
    pub capture_unix_us: u64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// Pixels the client already has, moved: `dst` takes what was at (`src_x`, `src_y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRect {
    pub dst: Rect,
    pub src_x: u32,
    pub src_y: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RectUpdate {
    pub rect: Rect,
    pub kind: UpdateKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateKind {
    /// One colour over the whole rect.
    Solid(u32),
    /// `len` bytes of palette + indices (see `codec::palette`) from the payload.
    Palette { len: u32 },
    /// width*height*4 bytes of pixels from the payload.
    Raw,
    /// A tile the client has in its cache under this hash.
    CacheHit(u64),
}

/// Keyboard and pointer events, client → server. Keys are Linux evdev key codes
/// (physical keys, layout independent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEvent {
    Key { code: u16, down: bool },
    PointerMove { x: u32, y: u32 },
    PointerButton { button: PointerButton, down: bool },
    Wheel { dx: i16, dy: i16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PointerButton {
    Left,
    Middle,
    Right,
    Back,
    Forward,
}

/// Cursor channel, server → client. The client draws the cursor itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CursorMsg {
    /// A new cursor image, 0xAARRGGBB pixels, at most 256x256.
    Shape {
        width: u16,
        height: u16,
        hot_x: u16,
        hot_y: u16,
        pixels: Vec<u32>,
    },
    Position {
        x: u32,
        y: u32,
        visible: bool,
    },
}
