//! The client side of one display session: the hello and the welcome, the server's
//! streams and their order, display frames and their acks, video regions and their
//! pictures, keyframe requests, the cursor, and the server's notices.
//!
//! The driver owns the sockets, the framebuffer and the H.264 decoders. It feeds
//! [`ClientEvent`]s to [`ClientSession::handle`], calls
//! [`ClientSession::handle_timeout`] at [`ClientSession::next_deadline`], and carries
//! out every [`ClientAction`] from [`ClientSession::poll_action`] in order.

mod clipboard;
mod events;
mod regions;

pub use events::*;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::handshake::check_welcome;
use crate::messages::*;
use crate::wire::{encode_message, MessageReader};
use crate::Size;
use regions::{Arrival, Regions};

/// Largest cursor image edge accepted.
const MAX_CURSOR_EDGE: u16 = 256;
/// Video streams the server may have open at once (beyond the regions it runs, a few
/// finishing).
const MAX_STREAMS: usize = 128;
/// Longest a picture is held for its sound: beyond, sound that late is not worth
/// lagging the video for.
const MAX_HOLD: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingWelcome,
    Running,
    Closed,
}

/// What a server stream turned out to be.
#[derive(Debug)]
enum Stream {
    /// Its tag has not arrived yet.
    Untagged,
    Display(MessageReader),
    Cursor(MessageReader),
    /// A video region's stream, before and after its `Start`.
    Video {
        reader: MessageReader,
        region: Option<u64>,
    },
    Clipboard(MessageReader),
}

#[derive(Debug)]
pub struct ClientSession {
    phase: Phase,
    ours: Capabilities,
    control: MessageReader,
    streams: HashMap<u64, Stream>,
    has_display: bool,
    has_cursor: bool,
    actions: VecDeque<ClientAction>,
    /// When the handshake must have gone further.
    deadline: Option<Instant>,
    handshake_timeout: std::time::Duration,
    welcome: Option<Welcome>,
    /// The desktop size as of the frames handed out.
    size: Size,
    /// The last frame the driver applied.
    applied: u64,
    source_seq: u64,
    regions: Regions,
    closing: Option<String>,
    /// Where the desktop went, if the server said it moved.
    moved: Option<crate::MovedTo>,
    /// Display stream bytes received (after its tag).
    display_bytes: u64,
    clipboard: clipboard::ClientClipboard,
    /// How late sound is heard, as of an instant: pictures wait for their sound.
    sound: Option<(Instant, SoundDelay)>,
}

impl ClientSession {
    /// A session whose connection was just made at `now`; its hello is the first action.
    pub fn new(config: ClientSessionConfig, now: Instant) -> Self {
        let mut session = Self {
            phase: Phase::AwaitingWelcome,
            ours: config.hello.capabilities,
            control: MessageReader::new(Channel::Control.max_message_len()),
            streams: HashMap::new(),
            has_display: false,
            has_cursor: false,
            actions: VecDeque::new(),
            deadline: Some(now + config.handshake_timeout),
            handshake_timeout: config.handshake_timeout,
            welcome: None,
            size: Size::new(0, 0),
            applied: 0,
            source_seq: 0,
            regions: Regions::default(),
            closing: None,
            moved: None,
            display_bytes: 0,
            clipboard: clipboard::ClientClipboard::default(),
            sound: None,
        };
        session.send_control(&config.hello);
        session
    }

    pub fn poll_action(&mut self) -> Option<ClientAction> {
        self.actions.pop_front()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadline
            .into_iter()
            .chain(self.regions.next_due())
            .min()
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    pub fn welcome(&self) -> Option<&Welcome> {
        self.welcome.as_ref()
    }

    /// Video regions playing now.
    pub fn active_regions(&self) -> usize {
        self.regions.active()
    }

    /// The source sequence of the last frame applied.
    pub fn source_seq(&self) -> u64 {
        self.source_seq
    }

    /// Display stream bytes received, length prefixes included.
    pub fn display_bytes(&self) -> u64 {
        self.display_bytes
    }

    /// Why the server said it ends the session, if it did.
    pub fn closing_reason(&self) -> Option<&str> {
        self.closing.as_deref()
    }

    /// Where the desktop went, if the server said it moved (live migration).
    pub fn moved_to(&self) -> Option<&crate::MovedTo> {
        self.moved.as_ref()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.release_held(now);
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        self.deadline = None;
        match self.phase {
            Phase::AwaitingWelcome => self.fail("no answer to hello"),
            Phase::Running => self.fail("server did not open its streams"),
            Phase::Closed => {}
        }
    }

    pub fn handle(&mut self, now: Instant, event: ClientEvent<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        match event {
            ClientEvent::ControlBytes(bytes) => {
                self.control.push(bytes);
                self.read_control(now);
            }
            ClientEvent::ControlFinished => {
                if let Err(e) = self.control.finish() {
                    self.fail(&format!("control stream: {e}"));
                } else if self.phase == Phase::AwaitingWelcome {
                    self.fail("server closed the control stream");
                }
            }
            ClientEvent::StreamBytes { stream, bytes } => self.stream_bytes(stream, bytes, now),
            ClientEvent::StreamFinished { stream } => self.stream_finished(stream),
            ClientEvent::FrameApplied {
                frame_id,
                decode_us,
            } => {
                self.applied = self.applied.max(frame_id);
                self.send_control(&ClientControl::Ack {
                    frame_id,
                    decode_us,
                });
                for (region, frame) in self.regions.ready(self.applied) {
                    self.picture(region, frame, now);
                }
            }
            ClientEvent::PictureDecoded {
                region_id,
                frame_no,
                decode_us,
                result,
            } => {
                match result {
                    PictureResult::Shown => self.regions.decoded(region_id, false),
                    PictureResult::Broken => {
                        self.regions.decoded(region_id, true);
                        self.keyframe_request(region_id);
                    }
                    PictureResult::Skipped => {}
                }
                if self.regions.needs_ack(region_id, frame_no) {
                    self.video_ack(region_id, frame_no, decode_us);
                }
            }
            ClientEvent::Request(request) => {
                if self.phase == Phase::Running {
                    self.send_control(&request);
                }
            }
            ClientEvent::Clipboard(msg) => self.clipboard_from_local(msg),
            ClientEvent::Datagram(bytes) => {
                let audio = self
                    .welcome
                    .as_ref()
                    .is_some_and(|w| w.capabilities.has(CAP_AUDIO));
                if self.phase != Phase::Running {
                    return; // it overtook the welcome: 20 ms of sound, dropped
                }
                if !audio {
                    return self.fail("a datagram on a session without audio");
                }
                match crate::AudioPacket::from_datagram(bytes) {
                    Some(packet) => self.push(ClientAction::Audio(packet)),
                    None => self.fail("a malformed audio datagram"),
                }
            }
            ClientEvent::Microphone(packet) => {
                let taken = self
                    .welcome
                    .as_ref()
                    .is_some_and(|w| w.capabilities.has(CAP_MICROPHONE));
                if self.phase == Phase::Running && taken {
                    self.push(ClientAction::SendDatagram(packet.to_datagram()));
                }
            }
            ClientEvent::SoundDelay(delay) => self.sound = delay.map(|d| (now, d)),
        }
    }

    fn read_control(&mut self, now: Instant) {
        if self.phase == Phase::AwaitingWelcome {
            match self.control.next_message::<HelloReply>() {
                Ok(None) => return,
                Ok(Some(HelloReply::Welcome(welcome))) => {
                    if let Err(e) = check_welcome(&welcome, &self.ours) {
                        return self.fail(&e);
                    }
                    self.size = welcome.desktop_size;
                    self.phase = Phase::Running;
                    // The streams may have come first (they need not wait for the
                    // control stream): then nothing is awaited any more.
                    let streams_open = self.has_display && self.has_cursor;
                    self.deadline = (!streams_open).then(|| now + self.handshake_timeout);
                    self.welcome = Some(welcome.clone());
                    self.push(ClientAction::Welcomed(welcome));
                    // Streams that arrived before the welcome.
                    let waiting: Vec<u64> = self.streams.keys().copied().collect();
                    for id in waiting {
                        self.read_stream(id, now);
                    }
                }
                Ok(Some(HelloReply::Reject(r))) => {
                    return self.close(SessionError::Rejected {
                        code: r.code,
                        message: r.message,
                    });
                }
                Err(e) => return self.fail(&format!("hello reply: {e}")),
            }
        }
        while self.phase == Phase::Running {
            match self.control.next_message::<ServerControl>() {
                Ok(Some(ServerControl::Closing { message })) => {
                    self.closing = Some(message.clone());
                    self.push(ClientAction::Closing(message));
                }
                Ok(Some(ServerControl::Moved(to))) => {
                    self.closing = Some("the desktop moved to another host".into());
                    self.moved = Some(to.clone());
                    self.push(ClientAction::Moved(to));
                }
                Ok(Some(ServerControl::Flow {
                    frames_in_flight,
                    frame_window,
                    video_bitrate,
                })) => self.push(ClientAction::Pacing {
                    frames_in_flight,
                    frame_window,
                    video_bitrate,
                }),
                Ok(None) => return,
                Err(e) => return self.fail(&format!("control stream: {e}")),
            }
        }
    }

    fn stream_bytes(&mut self, id: u64, mut bytes: &[u8], now: Instant) {
        if !self.streams.contains_key(&id) && self.streams.len() >= MAX_STREAMS {
            return self.fail("the server opened too many streams");
        }
        let stream = self.streams.entry(id).or_insert(Stream::Untagged);
        if matches!(stream, Stream::Untagged) {
            let Some((&tag, rest)) = bytes.split_first() else {
                return;
            };
            bytes = rest;
            let reader = |c: Channel| MessageReader::new(c.max_message_len());
            *stream = match Channel::from_tag(tag) {
                Some(Channel::Display) if !self.has_display => {
                    self.has_display = true;
                    Stream::Display(reader(Channel::Display))
                }
                Some(Channel::Cursor) if !self.has_cursor => {
                    self.has_cursor = true;
                    Stream::Cursor(reader(Channel::Cursor))
                }
                Some(Channel::Video) => Stream::Video {
                    reader: reader(Channel::Video),
                    region: None,
                },
                Some(Channel::Clipboard) if !self.clipboard.stream_seen => {
                    self.clipboard.stream_seen = true;
                    Stream::Clipboard(reader(Channel::Clipboard))
                }
                _ => return self.fail(&format!("server opened an unexpected stream (tag {tag})")),
            };
            if self.has_display && self.has_cursor && self.phase == Phase::Running {
                self.deadline = None;
            }
        }
        match stream {
            Stream::Display(r) => {
                self.display_bytes += bytes.len() as u64;
                r.push(bytes);
            }
            Stream::Cursor(r) | Stream::Video { reader: r, .. } | Stream::Clipboard(r) => {
                r.push(bytes)
            }
            Stream::Untagged => {}
        }
        // Nothing is read before the welcome says what the session is.
        if self.phase == Phase::Running {
            self.read_stream(id, now);
        }
    }

    fn stream_finished(&mut self, id: u64) {
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        let error = match &stream {
            Stream::Display(r) => match r.finish() {
                Ok(()) => {
                    self.phase = Phase::Closed;
                    self.deadline = None;
                    self.actions.push_back(ClientAction::Ended);
                    return;
                }
                Err(e) => Some(format!("display stream ended early: {e}")),
            },
            Stream::Cursor(r) | Stream::Video { reader: r, .. } | Stream::Clipboard(r) => {
                r.finish().err().map(|e| format!("stream ended early: {e}"))
            }
            Stream::Untagged => None,
        };
        if let Some(e) = error {
            self.fail(&e);
        }
    }

    fn read_stream(&mut self, id: u64, now: Instant) {
        loop {
            let Some(stream) = self.streams.get_mut(&id) else {
                return;
            };
            let result = match stream {
                Stream::Untagged => return,
                Stream::Display(r) => r.next_message::<FrameMsg>().map(|m| m.map(Msg::Frame)),
                Stream::Cursor(r) => r.next_message::<CursorMsg>().map(|m| m.map(Msg::Cursor)),
                Stream::Clipboard(r) => r
                    .next_message::<crate::ClipboardMsg>()
                    .map(|m| m.map(Msg::Clipboard)),
                Stream::Video { reader, region } => {
                    let region = *region;
                    reader
                        .next_message::<VideoMsg>()
                        .map(|m| m.map(|m| Msg::Video(region, m)))
                }
            };
            let msg = match result {
                Ok(Some(msg)) => msg,
                Ok(None) => return,
                Err(e) => return self.fail(&format!("bad stream: {e}")),
            };
            match msg {
                Msg::Frame(frame) => self.frame(frame),
                Msg::Cursor(cursor) => self.cursor(cursor),
                Msg::Clipboard(msg) => self.clipboard_from_server(msg),
                Msg::Video(
                    None,
                    VideoMsg::Start {
                        region_id,
                        rect,
                        after_frame,
                    },
                ) => {
                    if let Some(Stream::Video { region, .. }) = self.streams.get_mut(&id) {
                        *region = Some(region_id);
                    }
                    match self.regions.start(region_id, rect, after_frame, self.size) {
                        Ok(true) => self.push(ClientAction::StartRegion { region_id, rect }),
                        Ok(false) => {}
                        Err(e) => return self.fail(&e),
                    }
                }
                Msg::Video(Some(region), VideoMsg::Frame(frame)) => {
                    if !self.video_allowed() {
                        return self.fail("video was not negotiated");
                    }
                    self.picture(region, frame, now);
                }
                Msg::Video(None, VideoMsg::Frame(_)) => {
                    return self.fail("video stream must start with Start")
                }
                Msg::Video(Some(_), VideoMsg::Start { .. }) => {
                    return self.fail("second Start on a video stream")
                }
            }
            if self.phase == Phase::Closed {
                return;
            }
        }
    }

    fn video_allowed(&self) -> bool {
        self.welcome
            .as_ref()
            .is_some_and(|w| w.capabilities.has(CAP_H264))
    }

    fn frame(&mut self, frame: FrameMsg) {
        for id in self.regions.end(&frame.video_ended) {
            self.push(ClientAction::EndRegion(id));
        }
        if let Some(size) = frame.resize {
            self.size = size;
        }
        self.source_seq = self.source_seq.max(frame.source_seq);
        self.push(ClientAction::ApplyFrame(frame));
    }

    fn picture(&mut self, region_id: u64, frame: VideoFrame, now: Instant) {
        let frame_no = frame.frame_no;
        match self.regions.arrive(region_id, frame, self.applied) {
            Ok(Arrival::Decode(rect, frame)) => {
                let due = self.heard_at(frame.capture_unix_us, now);
                if due.is_none() && !self.regions.is_holding(region_id) {
                    return self.push(ClientAction::DecodePicture {
                        region_id,
                        rect,
                        frame,
                    });
                }
                // Held for its sound; acknowledged now, as what the path delivered.
                let early = self.regions.hold(region_id, due.unwrap_or(now), frame);
                if let Some((rect, frame)) = early {
                    self.push(ClientAction::DecodePicture {
                        region_id,
                        rect,
                        frame,
                    });
                }
                self.video_ack(region_id, frame_no, 0);
                self.release_held(now);
            }
            Ok(Arrival::Queued) => {}
            Ok(Arrival::Skip | Arrival::Stale) => self.video_ack(region_id, frame_no, 0),
            Ok(Arrival::Overflow) => {
                self.keyframe_request(region_id);
                self.video_ack(region_id, frame_no, 0);
            }
            Err(e) => self.fail(&e),
        }
    }

    /// When the sound captured with a picture at `capture_unix_us` is heard, if that
    /// is later than `now` (and a sound is playing).
    fn heard_at(&self, capture_unix_us: u64, now: Instant) -> Option<Instant> {
        let (at, sound) = self.sound?;
        let heard = i128::from(capture_unix_us) + i128::from(sound.delay_us);
        let after_event = heard - i128::from(sound.unix_us);
        let hold = u64::try_from(after_event).ok()?;
        let due = at + Duration::from_micros(hold);
        (due > now).then(|| due.min(now + MAX_HOLD))
    }

    /// Pictures held for their sound whose time has come.
    fn release_held(&mut self, now: Instant) {
        for (region_id, rect, frame) in self.regions.due(now) {
            self.push(ClientAction::DecodePicture {
                region_id,
                rect,
                frame,
            });
        }
    }

    fn cursor(&mut self, msg: CursorMsg) {
        if let CursorMsg::Shape {
            width,
            height,
            ref pixels,
            ..
        } = msg
        {
            if width > MAX_CURSOR_EDGE
                || height > MAX_CURSOR_EDGE
                || pixels.len() != usize::from(width) * usize::from(height)
            {
                return; // a malformed shape is ignored, the last good one stays
            }
        }
        self.push(ClientAction::Cursor(msg));
    }

    fn keyframe_request(&mut self, region_id: u64) {
        self.push(ClientAction::KeyframeRequested(region_id));
        self.send_control(&ClientControl::KeyframeRequest { region_id });
    }

    fn video_ack(&mut self, region_id: u64, frame_no: u64, decode_us: u32) {
        self.send_control(&ClientControl::VideoAck {
            region_id,
            frame_no,
            decode_us,
        });
    }

    fn send_control<T: serde::Serialize>(&mut self, msg: &T) {
        match encode_message(msg, Channel::Control.max_message_len()) {
            Ok(bytes) => self.push(ClientAction::SendControl(bytes)),
            Err(e) => self.fail(&format!("cannot send: {e}")),
        }
    }

    /// Queues an action; nothing follows the session's end (a stream may still hold
    /// bytes read in the same batch).
    fn push(&mut self, action: ClientAction) {
        if self.phase != Phase::Closed {
            self.actions.push_back(action);
        }
    }

    fn fail(&mut self, reason: &str) {
        self.close(SessionError::Protocol(reason.to_string()));
    }

    fn close(&mut self, error: SessionError) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.deadline = None;
            self.actions.push_back(ClientAction::Fail(error));
        }
    }
}

/// A message read from a server stream.
enum Msg {
    Frame(FrameMsg),
    Cursor(CursorMsg),
    Video(Option<u64>, VideoMsg),
    Clipboard(crate::ClipboardMsg),
}
