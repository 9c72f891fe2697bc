//! The server side of one display session: handshake and admission, the frame window
//! and video windows, acks, keyframe gating, rate control, cursor pacing, input
//! checks, resize and refresh requests, and closing with a reason.
//!
//! The driver owns the sockets, the desktop and the encoder. It feeds [`ServerEvent`]s
//! to [`ServerSession::handle`], calls [`ServerSession::handle_timeout`] at
//! [`ServerSession::next_deadline`], and carries out every [`ServerAction`] from
//! [`ServerSession::poll_action`] in order.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

mod clipboard;
mod cursor;
mod encoding;
mod events;

pub use events::*;

use super::flow::Flow;
use super::{CloseCode, SendChannel};
use crate::handshake::{check_hello, valid_desktop_size};
use crate::messages::*;
use crate::video::RateConfig;
use crate::wire::{encode_message, MessageReader};
use crate::Size;
use cursor::CursorPacer;
use encoding::Encoding;

/// How often the client hears how its session is paced.
const FLOW_REPORT_INTERVAL: Duration = Duration::from_millis(500);
/// Refresh requests are honoured at most this often: each resends the whole desktop.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// The smallest desktop edge a client may ask for.
const MIN_REQUESTED_EDGE: u32 = 64;
/// Input streams a client may have open at once (it needs one).
const MAX_INPUT_STREAMS: usize = 8;
/// The lowest video bitrate rate control goes down to.
const MIN_VIDEO_BITRATE: u32 = 150_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHello,
    Admitting,
    Running,
    Closed,
}

/// What a client stream carries, once its tag has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientStream {
    Untagged,
    Input,
    Clipboard,
}

/// One client stream: its tag, then input events or clipboard messages.
#[derive(Debug)]
struct InputStream {
    kind: ClientStream,
    reader: MessageReader,
}

#[derive(Debug)]
pub struct ServerSession {
    config: ServerSessionConfig,
    phase: Phase,
    caps: Capabilities,
    control: MessageReader,
    inputs: HashMap<u64, InputStream>,
    /// Input events read so far, across the input streams.
    inputs_seen: u64,
    actions: VecDeque<ServerAction>,
    handshake_deadline: Instant,
    flow: Option<Flow>,
    next_report: Option<Instant>,
    last_refresh: Option<Instant>,
    /// The desktop size the client has, and the largest it had (input in flight from
    /// before a shrink is dropped, not a protocol error).
    size: Size,
    largest: Size,
    encoding: Encoding,
    cursor: CursorPacer,
    video: Vec<u64>,
    /// The desktop's clipboard policy, once the session runs with a clipboard.
    clipboard: Option<crate::ClipboardPolicy>,
}

impl ServerSession {
    /// A session for a connection accepted at `now`.
    pub fn new(config: ServerSessionConfig, now: Instant) -> Self {
        Self {
            handshake_deadline: now + config.handshake_timeout,
            config,
            phase: Phase::AwaitingHello,
            caps: Capabilities {
                flags: 0,
                tile_cache_entries: 0,
            },
            control: MessageReader::new(Channel::Control.max_message_len()),
            inputs: HashMap::new(),
            inputs_seen: 0,
            actions: VecDeque::new(),
            flow: None,
            next_report: None,
            last_refresh: None,
            size: Size::new(0, 0),
            largest: Size::new(0, 0),
            encoding: Encoding::default(),
            cursor: CursorPacer::default(),
            video: Vec::new(),
            clipboard: None,
        }
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<ServerAction> {
        self.actions.pop_front()
    }

    /// When [`ServerSession::handle_timeout`] must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingHello | Phase::Admitting => Some(self.handshake_deadline),
            Phase::Running => {
                let region = self.encoding.deadline.filter(|_| !self.encoding.busy);
                match (self.next_report, region) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Phase::Closed => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The capabilities both sides have (after the hello).
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Frames the client has not acknowledged yet, the most it may have, and the video
    /// bitrate (zero before the session runs).
    pub fn pacing(&self) -> (usize, usize, u32) {
        self.flow.as_ref().map_or((0, 0, 0), |f| {
            (f.frames_in_flight(), f.window(), f.bitrate())
        })
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::AwaitingHello | Phase::Admitting if now >= self.handshake_deadline => {
                self.fail("no hello within the handshake timeout");
            }
            Phase::Running => {
                if self.next_report.is_some_and(|t| now >= t) {
                    self.next_report = Some(now + FLOW_REPORT_INTERVAL);
                    let (in_flight, window, bitrate) = self.pacing();
                    self.send_control(&ServerControl::Flow {
                        frames_in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
                        frame_window: u32::try_from(window).unwrap_or(u32::MAX),
                        video_bitrate: bitrate,
                    });
                }
                self.maybe_encode(now);
            }
            _ => {}
        }
    }

    pub fn handle(&mut self, now: Instant, event: ServerEvent<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        match event {
            ServerEvent::ControlBytes(bytes) => {
                self.control.push(bytes);
                self.read_control(now);
            }
            ServerEvent::ControlFinished => match self.control.finish() {
                Err(e) => self.fail(&format!("control stream: {e}")),
                Ok(()) if self.phase == Phase::Running => {
                    self.close(CloseCode::Normal, "session ended")
                }
                Ok(()) => self.fail("control stream closed before the handshake ended"),
            },
            ServerEvent::StreamBytes { stream, bytes } => self.stream_bytes(stream, bytes),
            ServerEvent::StreamFinished { stream } => {
                if let Some(s) = self.inputs.remove(&stream) {
                    if let Err(e) = s.reader.finish() {
                        self.fail(&format!("client stream: {e}"));
                    }
                }
            }
            ServerEvent::Admitted(admitted) if self.phase == Phase::Admitting => {
                self.start(admitted, now);
            }
            ServerEvent::Refused(reject) if self.phase == Phase::Admitting => self.refuse(reject),
            ServerEvent::Admitted(_) | ServerEvent::Refused(_) => {}
            ServerEvent::Damage => {
                self.encoding.damage = true;
                self.maybe_encode(now);
            }
            ServerEvent::Encoded(encoded) => self.encoded(encoded, now),
            ServerEvent::Path {
                rtt,
                cwnd,
                lost_packets,
            } => {
                if let Some(flow) = &mut self.flow {
                    flow.path(rtt, cwnd, lost_packets, now);
                }
            }
            ServerEvent::CursorShape { serial, shape } => {
                self.cursor.shape(serial, shape);
                self.send_cursor();
            }
            ServerEvent::CursorPosition { x, y, visible } => {
                self.cursor.position(x, y, visible);
                self.send_cursor();
            }
            ServerEvent::CursorWritten => {
                self.cursor.written();
                self.send_cursor();
            }
            ServerEvent::Evicted(reason) => {
                if self.phase == Phase::Running {
                    self.send_control(&ServerControl::Closing {
                        message: reason.clone(),
                    });
                }
                self.close(CloseCode::DesktopGone, &reason);
            }
            ServerEvent::Moved(to) => {
                if self.phase == Phase::Running {
                    self.send_control(&ServerControl::Moved(to));
                }
                self.close(CloseCode::DesktopGone, "the desktop moved to another host");
            }
            ServerEvent::Clipboard(msg) => self.clipboard_from_desktop(msg),
            ServerEvent::Audio(packet) => {
                if self.phase == Phase::Running && self.caps.has(CAP_AUDIO) {
                    self.push(ServerAction::SendDatagram(packet.to_datagram()));
                }
            }
            ServerEvent::Datagram(bytes) => {
                if self.phase != Phase::Running {
                    return; // it overtook the hello's answer: 20 ms of sound, dropped
                }
                if !self.caps.has(CAP_MICROPHONE) {
                    return self.fail("a datagram on a session without a microphone");
                }
                match crate::AudioPacket::from_datagram(bytes) {
                    Some(packet) => self.push(ServerAction::Microphone(packet)),
                    None => self.fail("a malformed microphone datagram"),
                }
            }
        }
    }

    fn read_control(&mut self, now: Instant) {
        loop {
            match self.phase {
                Phase::AwaitingHello => match self.control.next_message::<Hello>() {
                    Ok(Some(hello)) => self.hello(hello),
                    Ok(None) => return,
                    Err(e) => return self.fail(&format!("hello: {e}")),
                },
                // Nothing is read until the driver has answered the hello.
                Phase::Admitting | Phase::Closed => return,
                Phase::Running => match self.control.next_message::<ClientControl>() {
                    Ok(Some(msg)) => self.client_control(msg, now),
                    Ok(None) => return,
                    Err(e) => return self.fail(&format!("control stream: {e}")),
                },
            }
        }
    }

    fn hello(&mut self, hello: Hello) {
        match check_hello(&hello, &self.config.capabilities) {
            Ok(caps) => {
                self.caps = caps;
                self.phase = Phase::Admitting;
                self.push(ServerAction::Admit(hello));
            }
            Err(reject) => {
                self.phase = Phase::Admitting;
                self.refuse(reject);
            }
        }
    }

    fn refuse(&mut self, reject: Reject) {
        self.push(ServerAction::Rejected(reject.clone()));
        self.send_control(&HelloReply::Reject(reject.clone()));
        self.close(CloseCode::Rejected, &reject.message);
    }

    fn start(&mut self, admitted: Admitted, now: Instant) {
        let max_window = self.config.frame_window.max(1);
        let frame_interval_us =
            u64::try_from(admitted.frame_interval.as_micros()).unwrap_or(u64::MAX);
        self.flow = Some(Flow::new(
            RateConfig {
                min_bitrate: MIN_VIDEO_BITRATE,
                max_bitrate: self.config.max_video_bitrate,
                start_bitrate: self.config.max_video_bitrate / 2,
                frame_interval_us,
                min_window: max_window.min(2),
                max_window,
            },
            now,
        ));
        self.size = admitted.desktop_size;
        self.largest = admitted.desktop_size;
        self.phase = Phase::Running;
        if !admitted.microphone {
            self.caps.flags &= !CAP_MICROPHONE;
        }
        self.send_control(&HelloReply::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session_id: admitted.session_id,
            desktop_size: admitted.desktop_size,
            capabilities: self.caps,
        }));
        for channel in [SendChannel::Cursor, SendChannel::Display] {
            self.open(channel);
        }
        self.next_report = Some(now + FLOW_REPORT_INTERVAL);
        self.send_cursor();
        if self.caps.has(CAP_CLIPBOARD) {
            if let Some(policy) = admitted.clipboard {
                self.start_clipboard(policy);
            }
        }
        // Control messages that came with the hello.
        self.read_control(now);
        self.maybe_encode(now);
    }

    fn client_control(&mut self, msg: ClientControl, now: Instant) {
        let Some(flow) = self.flow.as_mut() else {
            return;
        };
        match msg {
            ClientControl::Ack { frame_id, .. } => {
                let acked = flow.frame_acked(frame_id, now);
                if !acked.is_empty() {
                    let rtts = acked.iter().map(|a| a.rtt).collect();
                    self.record(Record::FramesAcked(rtts));
                }
            }
            ClientControl::VideoAck {
                region_id,
                frame_no,
                decode_us,
            } => {
                let decode = Duration::from_micros(u64::from(decode_us));
                let acked = flow.video_acked(region_id, frame_no, decode, now).len();
                if acked > 0 {
                    self.record(Record::PicturesAcked(acked));
                }
            }
            ClientControl::KeyframeRequest { region_id } => {
                let granted = flow.request_keyframe(region_id, now);
                self.record(Record::KeyframeRequested { granted });
            }
            ClientControl::RefreshRequest => {
                if self
                    .last_refresh
                    .is_some_and(|t| now.saturating_duration_since(t) < REFRESH_INTERVAL)
                {
                    self.record(Record::RefreshIgnored);
                } else {
                    self.last_refresh = Some(now);
                    self.push(ServerAction::Refresh);
                }
            }
            ClientControl::ResizeRequest { width, height } => {
                let size = Size::new(width, height);
                if !valid_desktop_size(size)
                    || width < MIN_REQUESTED_EDGE
                    || height < MIN_REQUESTED_EDGE
                {
                    return self.fail(&format!(
                        "resize request to {width}x{height} is out of range"
                    ));
                }
                if size != self.size {
                    self.push(ServerAction::Resize(size));
                }
            }
        }
        self.maybe_encode(now);
    }

    fn stream_bytes(&mut self, stream: u64, mut bytes: &[u8]) {
        if !self.inputs.contains_key(&stream) && self.inputs.len() >= MAX_INPUT_STREAMS {
            return self.fail("too many input streams");
        }
        let input = self.inputs.entry(stream).or_insert_with(|| InputStream {
            kind: ClientStream::Untagged,
            reader: MessageReader::new(0),
        });
        if input.kind == ClientStream::Untagged {
            let Some((&tag, rest)) = bytes.split_first() else {
                return;
            };
            match Channel::from_tag(tag) {
                Some(Channel::Input) => {
                    input.kind = ClientStream::Input;
                    input.reader = MessageReader::new(Channel::Input.max_message_len());
                }
                Some(Channel::Clipboard) => {
                    let Some(limit) = self.clipboard_stream_limit() else {
                        return self.fail("client opened a clipboard stream without a clipboard");
                    };
                    if self
                        .inputs
                        .values()
                        .any(|s| s.kind == ClientStream::Clipboard)
                    {
                        return self.fail("client opened a second clipboard stream");
                    }
                    let input = self.inputs.get_mut(&stream).expect("inserted above");
                    input.kind = ClientStream::Clipboard;
                    input.reader = MessageReader::new(limit);
                }
                _ => {
                    return self.fail(&format!("client opened a stream with unexpected tag {tag}"))
                }
            }
            bytes = rest;
        }
        let Some(input) = self.inputs.get_mut(&stream) else {
            return;
        };
        input.reader.push(bytes);
        if input.kind == ClientStream::Clipboard {
            return self.read_clipboard(stream);
        }
        let mut events = Vec::new();
        let result = loop {
            match input.reader.next_message::<InputEvent>() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        for event in events {
            self.input(event);
        }
        if let Err(e) = result {
            self.fail(&format!("input stream: {e}"));
        }
    }

    fn input(&mut self, event: InputEvent) {
        let index = self.inputs_seen;
        self.inputs_seen += 1;
        if self.phase != Phase::Running {
            return; // evicted sessions no longer type into the desktop
        }
        if let InputEvent::PointerMove { x, y } = event {
            if x >= self.largest.width || y >= self.largest.height {
                let (w, h) = (self.size.width, self.size.height);
                return self.fail(&format!(
                    "pointer position {x},{y} outside the {w}x{h} desktop"
                ));
            }
            if x >= self.size.width || y >= self.size.height {
                return; // sent before the client saw the desktop shrink
            }
        }
        self.push(ServerAction::Inject(event, index));
    }

    /// Sends the newest cursor state once the previous message is written.
    fn send_cursor(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        if let Some(msg) = self.cursor.next_message() {
            self.send(SendChannel::Cursor, &msg);
        }
    }

    fn open(&mut self, channel: SendChannel) {
        self.push(ServerAction::Open(channel));
        self.push(ServerAction::Send {
            channel,
            bytes: vec![channel.channel() as u8],
        });
    }

    fn send_control<T: serde::Serialize>(&mut self, msg: &T) {
        self.send(SendChannel::Control, msg);
    }

    fn send<T: serde::Serialize>(&mut self, channel: SendChannel, msg: &T) {
        match encode_message(msg, channel.channel().max_message_len()) {
            Ok(bytes) => self.push(ServerAction::Send { channel, bytes }),
            Err(e) => self.fail(&format!("cannot send on {channel:?}: {e}")),
        }
    }

    /// Every action goes out through here: nothing follows the close.
    fn push(&mut self, action: ServerAction) {
        if self.phase != Phase::Closed {
            self.actions.push_back(action);
        }
    }

    fn record(&mut self, record: Record) {
        self.push(ServerAction::Record(record));
    }

    fn fail(&mut self, reason: &str) {
        self.close(CloseCode::ProtocolError, reason);
    }

    fn close(&mut self, code: CloseCode, reason: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.actions.push_back(ServerAction::Close {
            code,
            reason: reason.to_string(),
        });
    }
}
