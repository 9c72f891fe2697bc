//! A client session, driven: the session core (`oriel_protocol::session::client`)
//! decides; this task moves bytes between it and the streams, applies frames to the
//! framebuffer, decodes pictures, and tells observers what it showed.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oriel_protocol::codec::Decoder;
use oriel_protocol::session::client::{
    ClientAction, ClientEvent, ClientSession, ClientSessionConfig,
};
use oriel_protocol::*;
use oriel_transport::tls::pinned_client_config;
use oriel_transport::{close, pump, unix_micros};
use tokio::sync::{mpsc, watch};

pub use crate::error::ClientError;
pub use crate::input::InputSender;
use crate::stats::{ClientStats, LiveStats};
use crate::streams::{self, Inbound};
use crate::video::VideoDecoders;

mod options;
mod outcome;

pub use options::{ConnectOptions, StopWhen};
pub use outcome::{EndReason, Outcome, Shown};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Asks the server for things on behalf of the application, while the session runs.
#[derive(Clone)]
pub struct Controller {
    tx: mpsc::Sender<ClientControl>,
}

impl Controller {
    /// Asks for the desktop at `width` x `height` (desktops that can resize do); false
    /// if the request could not be queued.
    pub fn request_resize(&self, width: u32, height: u32) -> bool {
        self.tx
            .try_send(ClientControl::ResizeRequest { width, height })
            .is_ok()
    }
}

pub struct Session {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    core: ClientSession,
    welcome: Welcome,
    inbox: mpsc::Receiver<Inbound>,
    control: mpsc::UnboundedSender<Vec<u8>>,
    input: InputSender,
    decoder: Decoder,
    cursor: watch::Sender<Option<CursorMsg>>,
    live: Arc<LiveStats>,
    /// Requests from the application (e.g. a window's size), sent on the control stream.
    requests: mpsc::Receiver<ClientControl>,
    requests_tx: mpsc::Sender<ClientControl>,
    /// What this session was opened with (a moved desktop is followed with them).
    opts: ConnectOptions,
    /// The client's clipboard stream, once opened.
    clipboard_out: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl Session {
    /// Dials, verifies the pinned certificate, and completes the handshake.
    pub async fn connect(opts: &ConnectOptions) -> Result<Session, ClientError> {
        Self::connect_holding(opts, None).await
    }

    /// Like [`Session::connect`] for a client that shows `held` already (it follows
    /// a desktop that moved): the server sends only the tiles that differ from it.
    pub async fn connect_holding(
        opts: &ConnectOptions,
        held: Option<Framebuffer>,
    ) -> Result<Session, ClientError> {
        Self::connect_following(opts, held, None).await
    }

    /// Like [`Session::connect_holding`], sending what `input` queued (the input of
    /// the session whose desktop moved here) before anything typed later.
    pub async fn connect_following(
        opts: &ConnectOptions,
        held: Option<Framebuffer>,
        input: Option<InputSender>,
    ) -> Result<Session, ClientError> {
        let connect_err = |reason: String| ClientError::Connect {
            addr: opts.addr,
            reason,
        };
        let bind: SocketAddr = if opts.addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_err(e.to_string()))?;
        endpoint.set_default_client_config(pinned_client_config(opts.fingerprint, ALPN)?);
        let connecting = endpoint
            .connect(opts.addr, "oriel")
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .map_err(|_| connect_err("timed out".into()))?
            .map_err(|e| connect_err(e.to_string()))?;

        let (control_tx, control_rx) = conn
            .open_bi()
            .await
            .map_err(oriel_transport::TransportError::from)?;
        let (inbox_tx, mut inbox) = streams::inbox();
        streams::read_control(control_rx, inbox_tx.clone());
        streams::accept_streams(conn.clone(), inbox_tx);
        let control = streams::control_writer(control_tx);
        let hello = Hello {
            version: PROTOCOL_VERSION,
            capabilities: opts.offered_capabilities(),
            desktop: opts.desktop.clone(),
            ticket: opts.ticket.clone(),
            desired_size: None,
            client_name: opts.client_name.clone(),
            held: held.as_ref().and_then(HeldScreen::of),
        };
        let mut core = ClientSession::new(
            ClientSessionConfig {
                hello,
                handshake_timeout: HANDSHAKE_TIMEOUT,
            },
            Instant::now(),
        );
        let welcome = loop {
            // Until the welcome, the core only sends on the control stream.
            let mut welcome = None;
            while let Some(action) = core.poll_action() {
                match action {
                    ClientAction::SendControl(bytes) => {
                        let _ = control.send(bytes);
                    }
                    ClientAction::Welcomed(w) => {
                        welcome = Some(w);
                        break;
                    }
                    ClientAction::Fail(e) => {
                        conn.close(close::PROTOCOL_ERROR, b"handshake failed");
                        return Err(e.into());
                    }
                    _ => {}
                }
            }
            if let Some(w) = welcome {
                break w;
            }
            tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(Inbound::Broken(e)) => return Err(lost(&conn, &core, e)),
                    Some(msg) => feed(&mut core, &msg),
                    None => {
                        return Err(lost(&conn, &core, "connection closed".into()))
                    }
                },
                _ = pump::sleep_until(core.next_deadline()) => core.handle_timeout(Instant::now()),
            }
        };
        let input = crate::input::open_input(&conn, input).await?;
        let mut decoder = Decoder::new(welcome.desktop_size, welcome.capabilities)?;
        if let Some(screen) = held {
            decoder.hold(screen);
        }
        let (requests_tx, requests) = mpsc::channel(8);
        Ok(Session {
            endpoint,
            conn,
            core,
            welcome,
            inbox,
            control,
            input,
            decoder,
            cursor: watch::Sender::new(None),
            live: Arc::default(),
            requests,
            requests_tx,
            opts: opts.clone(),
            clipboard_out: None,
        })
    }

    /// What this session was opened with.
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// A handle that sends requests (such as a new size) while the session runs.
    pub fn controller(&self) -> Controller {
        Controller {
            tx: self.requests_tx.clone(),
        }
    }

    /// Figures the session updates while it runs (for an overlay).
    pub fn live_stats(&self) -> Arc<LiveStats> {
        self.live.clone()
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The newest cursor shape from the server; changes as shapes arrive.
    pub fn cursor_shape_handle(&self) -> watch::Receiver<Option<CursorMsg>> {
        self.cursor.subscribe()
    }

    pub fn input(&self) -> InputSender {
        self.input.clone()
    }

    /// Decodes and acknowledges frames until `stop`; `read_delay` throttles reading
    /// (to emulate a slow client).
    pub async fn run(
        self,
        stop: StopWhen,
        read_delay: Option<Duration>,
    ) -> Result<Outcome, ClientError> {
        self.run_observed(stop, read_delay, |_, _| {}).await
    }

    /// Like [`Session::run`], calling `observe` after every frame and picture shown.
    pub async fn run_observed(
        mut self,
        stop: StopWhen,
        read_delay: Option<Duration>,
        mut observe: impl FnMut(Shown, &Framebuffer),
    ) -> Result<Outcome, ClientError> {
        let mut video = VideoDecoders::default();
        let mut stats = ClientStats::default();
        let started = Instant::now();
        let deadline = stop.duration.map(|d| tokio::time::Instant::now() + d);
        let mut local_clipboard = match &self.opts.clipboard {
            Some(port) => Some(port.attach().await),
            None => None,
        };
        let mut sound_delay = self.opts.audio.as_ref().map(|a| a.sound_delay());
        if let Some(delay) = sound_delay.as_ref().and_then(|d| *d.borrow()) {
            self.tell_sound_delay(Some(delay));
        }
        let mut microphone = match &self.opts.microphone {
            Some(mic) if self.welcome.capabilities.has(CAP_MICROPHONE) => Some(mic.subscribe()),
            _ => None,
        };
        let end = 'session: loop {
            while let Some(action) = self.core.poll_action() {
                match self.act(action, &mut video, &mut stats, &mut observe)? {
                    Some(end) => break 'session end,
                    None => continue,
                }
            }
            if stop
                .source_seq
                .is_some_and(|seq| self.decoder.source_seq() >= seq)
            {
                break EndReason::SequenceReached;
            }
            if stop.settled_seq.is_some_and(|seq| {
                self.decoder.source_seq() >= seq && self.core.active_regions() == 0
            }) {
                break EndReason::Settled;
            }
            if let Some(delay) = read_delay {
                tokio::time::sleep(delay).await;
            }
            let deadline_passed = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let interrupted = async {
                match &stop.interrupt {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let now = Instant::now();
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(Inbound::Broken(e)) => match closed_by_server(&self.conn) {
                        Some(_) => break EndReason::ServerClosed,
                        None => return Err(self.lost(e)),
                    },
                    Some(msg) => feed(&mut self.core, &msg),
                    // Every reader has ended: the connection closed while no stream of
                    // the server's was open to report it (say, before the first frame).
                    None => match closed_by_server(&self.conn) {
                        Some(_) => break EndReason::ServerClosed,
                        None => return Err(self.lost("connection closed".into())),
                    },
                },
                Some(request) = self.requests.recv() => {
                    self.core.handle(now, ClientEvent::Request(request));
                }
                Ok(datagram) = self.conn.read_datagram() => {
                    self.core.handle(now, ClientEvent::Datagram(&datagram));
                }
                delay = crate::audio::next_sound_delay(&mut sound_delay) => self.tell_sound_delay(delay),
                Some(packet) = crate::microphone::next_packet(&mut microphone) => {
                    self.core.handle(now, ClientEvent::Microphone(&packet));
                }
                Some(msg) = crate::clipboard::next_local(&mut local_clipboard) => {
                    self.core.handle(now, ClientEvent::Clipboard(msg));
                }
                _ = pump::sleep_until(self.core.next_deadline()) => self.core.handle_timeout(Instant::now()),
                _ = deadline_passed => break EndReason::DurationElapsed,
                _ = interrupted => break EndReason::Interrupted,
            }
        };
        stats.elapsed = started.elapsed();
        stats.bytes = self.core.display_bytes();
        self.conn.close(close::NORMAL, b"client done");
        self.endpoint.wait_idle().await;
        let cursor_shape = self.cursor.borrow().clone();
        Ok(Outcome {
            framebuffer: self.decoder.framebuffer().clone(),
            stats,
            end,
            cursor_shape,
        })
    }

    /// Carries out one action of the core; `Some` when the session is over.
    fn act(
        &mut self,
        action: ClientAction,
        video: &mut VideoDecoders,
        stats: &mut ClientStats,
        observe: &mut impl FnMut(Shown, &Framebuffer),
    ) -> Result<Option<EndReason>, ClientError> {
        match action {
            ClientAction::SendControl(bytes) => {
                let _ = self.control.send(bytes);
            }
            ClientAction::Welcomed(_) => {}
            ClientAction::ApplyFrame(msg) => {
                let t0 = Instant::now();
                self.decoder.apply(&msg)?;
                let decode_us = micros(t0.elapsed());
                stats.latency_us.push(since_capture(msg.capture_unix_us));
                stats.decode_us.push(decode_us);
                stats.frames += 1;
                self.publish_live(stats, msg.capture_unix_us);
                observe(
                    Shown::Frame {
                        frame_id: msg.frame_id,
                        source_seq: msg.source_seq,
                        capture_unix_us: msg.capture_unix_us,
                        changed: changed_area(&msg, self.decoder.framebuffer().size()),
                    },
                    self.decoder.framebuffer(),
                );
                let applied = ClientEvent::FrameApplied {
                    frame_id: msg.frame_id,
                    decode_us,
                };
                self.core.handle(Instant::now(), applied);
            }
            ClientAction::StartRegion { region_id, rect } => {
                if let Err(e) = video.start(region_id, rect) {
                    self.conn.close(close::PROTOCOL_ERROR, b"bad video region");
                    return Err(ClientError::Protocol(e));
                }
            }
            ClientAction::EndRegion(region_id) => video.end(region_id),
            ClientAction::DecodePicture {
                region_id,
                rect,
                frame,
            } => {
                let t0 = Instant::now();
                let (target, stride) = self.decoder.video_target(&rect)?;
                let result = video.decode(region_id, &frame.data, target, stride);
                let decode_us = micros(t0.elapsed());
                if result == session::client::PictureResult::Shown {
                    stats.video_frames += 1;
                    self.live.pictures.fetch_add(1, Ordering::Relaxed);
                    stats.video_bytes += frame.data.len() as u64;
                    stats.video_keyframes += u64::from(frame.keyframe);
                    stats.video_decode_us.push(decode_us);
                    stats
                        .video_latency_us
                        .push(since_capture(frame.capture_unix_us));
                    observe(
                        Shown::Picture {
                            region_id,
                            rect,
                            source_seq: frame.source_seq,
                            keyframe: frame.keyframe,
                            capture_unix_us: frame.capture_unix_us,
                        },
                        self.decoder.framebuffer(),
                    );
                }
                let decoded = ClientEvent::PictureDecoded {
                    region_id,
                    frame_no: frame.frame_no,
                    decode_us,
                    result,
                };
                self.core.handle(Instant::now(), decoded);
            }
            ClientAction::KeyframeRequested(_) => stats.keyframe_requests += 1,
            ClientAction::Cursor(msg @ CursorMsg::Shape { .. }) => {
                self.cursor.send_replace(Some(msg));
            }
            ClientAction::Cursor(CursorMsg::Position { .. }) => {}
            ClientAction::Pacing {
                frames_in_flight,
                frame_window,
                video_bitrate,
            } => {
                let live = &self.live;
                live.frames_in_flight
                    .store(u64::from(frames_in_flight), Ordering::Relaxed);
                live.frame_window
                    .store(u64::from(frame_window), Ordering::Relaxed);
                live.video_bitrate
                    .store(u64::from(video_bitrate), Ordering::Relaxed);
            }
            ClientAction::Closing(reason) => tracing::info!("server: {reason}"),
            ClientAction::SendDatagram(bytes) => {
                // A full send buffer drops the packet, as the network would.
                let _ = self.conn.send_datagram(bytes.into());
            }
            ClientAction::Audio(packet) => {
                if let Some(out) = &self.opts.audio {
                    out.play(packet);
                }
            }
            ClientAction::Clipboard(msg) => {
                if let Some(port) = &self.opts.clipboard {
                    port.deliver(msg);
                }
            }
            ClientAction::SendClipboard(bytes) => {
                let conn = &self.conn;
                let out = self
                    .clipboard_out
                    .get_or_insert_with(|| crate::clipboard::writer(conn.clone()));
                let _ = out.send(bytes);
            }
            ClientAction::Moved(to) => {
                tracing::info!("the desktop moved to {}", to.address);
                // What is typed from now on waits for the session that follows.
                self.input.hand_over();
            }
            ClientAction::Ended => return Ok(Some(EndReason::ServerClosed)),
            ClientAction::Fail(e) => {
                self.conn.close(close::PROTOCOL_ERROR, b"protocol error");
                return Err(e.into());
            }
        }
        Ok(None)
    }

    /// Tells the core how late sound is heard now, so that pictures wait for it.
    fn tell_sound_delay(&mut self, delay_us: Option<i64>) {
        let delay = delay_us.map(|delay_us| session::client::SoundDelay {
            delay_us,
            unix_us: unix_micros(),
        });
        self.core
            .handle(Instant::now(), ClientEvent::SoundDelay(delay));
    }

    fn publish_live(&self, stats: &ClientStats, capture_unix_us: u64) {
        let live = &self.live;
        live.frames.store(stats.frames, Ordering::Relaxed);
        let bytes = self.core.display_bytes() + stats.video_bytes;
        live.bytes.store(bytes, Ordering::Relaxed);
        live.rtt_us.store(
            u64::try_from(self.conn.rtt().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let latency = since_capture(capture_unix_us);
        live.latency_us.store(u64::from(latency), Ordering::Relaxed);
        live.video_regions
            .store(self.core.active_regions() as u64, Ordering::Relaxed);
    }

    /// The session broke: the desktop is gone when the server said so (on the control
    /// stream or in its close), else the connection was lost.
    fn lost(&self, error: String) -> ClientError {
        match lost(&self.conn, &self.core, error) {
            ClientError::Moved(mut moved) => {
                moved.held = Some(self.decoder.framebuffer().clone());
                self.input.hand_over();
                moved.input = Some(self.input.clone());
                ClientError::Moved(moved)
            }
            other => other,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.input.end_unless_handed_over();
    }
}

fn feed(core: &mut ClientSession, msg: &Inbound) {
    let now = Instant::now();
    let event = match msg {
        Inbound::Control(Some(bytes)) => ClientEvent::ControlBytes(bytes),
        Inbound::Control(None) => ClientEvent::ControlFinished,
        Inbound::Stream {
            id,
            bytes: Some(bytes),
        } => ClientEvent::StreamBytes { stream: *id, bytes },
        Inbound::Stream { id, bytes: None } => ClientEvent::StreamFinished { stream: *id },
        Inbound::Broken(_) => return,
    };
    core.handle(now, event);
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Capture on the server → now, µs (wall clocks; exact on one machine).
fn since_capture(capture_unix_us: u64) -> u32 {
    u32::try_from(unix_micros().saturating_sub(capture_unix_us)).unwrap_or(u32::MAX)
}

/// The server's reason when it ended the session normally (finished or shutting down);
/// `None` for network failures and protocol errors, which are errors for the caller.
fn closed_by_server(conn: &quinn::Connection) -> Option<String> {
    match conn.close_reason()? {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == close::NORMAL || c.error_code == close::SHUTDOWN =>
        {
            Some(String::from_utf8_lossy(&c.reason).into_owned())
        }
        _ => None,
    }
}

/// Why a connection broke: the desktop is gone (the close says so, or the server said
/// why on the control stream), or it was lost.
fn lost(conn: &quinn::Connection, core: &ClientSession, error: String) -> ClientError {
    if let Some(to) = core.moved_to() {
        return ClientError::Moved(Box::new(crate::error::Moved {
            to: to.clone(),
            held: None,
            input: None,
        }));
    }
    match (conn.close_reason(), core.closing_reason()) {
        (Some(quinn::ConnectionError::ApplicationClosed(c)), _)
            if c.error_code == close::DESKTOP_GONE =>
        {
            ClientError::DesktopGone(String::from_utf8_lossy(&c.reason).into_owned())
        }
        (_, Some(reason)) => ClientError::DesktopGone(reason.into()),
        (Some(reason), None) => ClientError::Lost(reason.to_string()),
        (None, None) => ClientError::Lost(error),
    }
}

/// Beyond this many rectangles a frame reports their bounding box as changed.
const MAX_CHANGED_RECTS: usize = 16;

/// Where `msg` changed a `size` screen (see [`Shown::Frame`]).
fn changed_area(msg: &FrameMsg, size: Size) -> Vec<Rect> {
    if msg.resize.is_some() {
        return vec![size.full_rect()];
    }
    let rects = msg
        .copies
        .iter()
        .map(|c| c.dst)
        .chain(msg.updates.iter().map(|u| u.rect));
    if msg.copies.len() + msg.updates.len() <= MAX_CHANGED_RECTS {
        rects.collect()
    } else {
        rects.reduce(|a, b| a.union(&b)).into_iter().collect()
    }
}
