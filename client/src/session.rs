//! A client session: pinned QUIC connection, handshake, then the display loop that
//! decodes and acknowledges frames while input and cursor use streams of their own.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oriel_protocol::codec::Decoder;
use oriel_protocol::handshake::check_welcome;
use oriel_protocol::*;
use oriel_transport::tls::pinned_client_config;
use oriel_transport::{close, send_message, unix_micros, Fingerprint, FramedRecv, TransportError};
use tokio::sync::mpsc;

use crate::stats::ClientStats;
use crate::streams::{
    accept_server_streams, accept_video_streams, control_notices, cursor_loop, spawn_input_writer,
};
use crate::video::{Picture, VideoRegions};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("the server refused the session ({code:?}): {message}")]
    Rejected { code: RejectCode, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("decoding a frame failed: {0}")]
    Decode(#[from] oriel_protocol::codec::CodecError),
    #[error("connection lost: {0}")]
    Lost(String),
    /// The server ended the session because the desktop went: stopped, reset, logged
    /// off, or failed (the message says which).
    #[error("{0}")]
    DesktopGone(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub addr: SocketAddr,
    /// SHA-256 of the server certificate; any other certificate is refused.
    pub fingerprint: Fingerprint,
    pub desktop: String,
    pub ticket: Vec<u8>,
    pub client_name: String,
    pub capabilities: Capabilities,
}

impl ConnectOptions {
    pub fn new(addr: SocketAddr, fingerprint: Fingerprint) -> Self {
        Self {
            addr,
            fingerprint,
            desktop: "default".into(),
            ticket: Vec::new(),
            client_name: format!("oriel/{}", env!("CARGO_PKG_VERSION")),
            capabilities: Capabilities::all(),
        }
    }
}

/// When [`Session::run`] returns.
#[derive(Debug, Clone, Default)]
pub struct StopWhen {
    /// When notified (e.g. on Ctrl-C).
    pub interrupt: Option<Arc<tokio::sync::Notify>>,
    /// After this long.
    pub duration: Option<Duration>,
    /// Once a frame carrying at least this source sequence is decoded.
    pub source_seq: Option<u64>,
    /// Once a display frame carrying at least this source sequence is decoded and no
    /// video region is active: the framebuffer then holds that state exactly.
    pub settled_seq: Option<u64>,
}

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

/// Sends input events on the input stream; cheap to clone.
#[derive(Clone)]
pub struct InputSender {
    pub(crate) tx: mpsc::Sender<InputEvent>,
}

impl InputSender {
    /// Queues an event; errors once the session has ended.
    pub async fn send(&self, event: InputEvent) -> Result<(), ClientError> {
        self.tx
            .send(event)
            .await
            .map_err(|_| ClientError::Lost("input stream closed".into()))
    }

    /// Queues an event without waiting (for UI threads); false when the queue is full
    /// or the session has ended, and the event is dropped.
    pub fn try_send(&self, event: InputEvent) -> bool {
        self.tx.try_send(event).is_ok()
    }
}

pub struct Session {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    welcome: Welcome,
    control_tx: quinn::SendStream,
    display: FramedRecv,
    input: InputSender,
    cursor_shape: Arc<Mutex<Option<CursorMsg>>>,
    video: mpsc::Receiver<(u64, VideoMsg)>,
    live: Arc<crate::stats::LiveStats>,
    /// Requests from the application (e.g. a window's size), sent on the control stream.
    requests: mpsc::Receiver<ClientControl>,
    requests_tx: mpsc::Sender<ClientControl>,
    /// Why the server is ending the session, when it said so on the control stream.
    closing: Arc<Mutex<Option<String>>>,
}

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

/// What the client just showed, for observers (tests and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// A display frame was applied.
    Frame { frame_id: u64, source_seq: u64 },
    /// A video picture was decoded into `rect`.
    Picture {
        region_id: u64,
        rect: Rect,
        source_seq: u64,
        keyframe: bool,
    },
}

impl Session {
    /// Dials, verifies the pinned certificate, and completes the handshake.
    pub async fn connect(opts: &ConnectOptions) -> Result<Session, ClientError> {
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

        let (mut control_tx, control_rx) = conn.open_bi().await.map_err(TransportError::from)?;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            capabilities: opts.capabilities,
            desktop: opts.desktop.clone(),
            ticket: opts.ticket.clone(),
            desired_size: None,
            client_name: opts.client_name.clone(),
        };
        send_message(&mut control_tx, &hello, Channel::Control.max_message_len()).await?;
        let mut control_rx = FramedRecv::new(control_rx, Channel::Control.max_message_len());
        let reply: HelloReply = tokio::time::timeout(HANDSHAKE_TIMEOUT, control_rx.recv())
            .await
            .map_err(|_| ClientError::Protocol("no answer to hello".into()))?
            .map_err(|e| lost_or(e, &conn))?
            .ok_or_else(|| ClientError::Protocol("server closed the control stream".into()))?;
        let welcome = match reply {
            HelloReply::Welcome(w) => w,
            HelloReply::Reject(r) => {
                return Err(ClientError::Rejected {
                    code: r.code,
                    message: r.message,
                })
            }
        };
        check_welcome(&welcome, &opts.capabilities).map_err(ClientError::Protocol)?;

        let (display, cursor) = accept_server_streams(&conn).await?;
        let cursor_shape = Arc::new(Mutex::new(None));
        tokio::spawn(cursor_loop(cursor, cursor_shape.clone()));
        let input = spawn_input_writer(&conn).await?;
        let (video_tx, video) = mpsc::channel(VIDEO_QUEUE);
        let (requests_tx, requests) = mpsc::channel(8);
        tokio::spawn(accept_video_streams(conn.clone(), video_tx));
        // The control stream's receive side carries only `ServerControl` notices.
        let live: Arc<crate::stats::LiveStats> = Arc::default();
        let closing = Arc::new(Mutex::new(None));
        tokio::spawn(control_notices(control_rx, live.clone(), closing.clone()));

        Ok(Session {
            closing,
            endpoint,
            conn,
            welcome,
            control_tx,
            display,
            input,
            cursor_shape,
            video,
            live,
            requests,
            requests_tx,
        })
    }

    /// A handle that sends requests (such as a new size) while the session runs.
    pub fn controller(&self) -> Controller {
        Controller {
            tx: self.requests_tx.clone(),
        }
    }

    /// Figures the session updates while it runs (for an overlay).
    pub fn live_stats(&self) -> Arc<crate::stats::LiveStats> {
        self.live.clone()
    }

    fn publish_live(&self, stats: &ClientStats, capture_unix_us: u64, regions: usize) {
        let live = &self.live;
        live.frames.store(stats.frames, Ordering::Relaxed);
        let bytes = self.display.bytes_received() + stats.video_bytes;
        live.bytes.store(bytes, Ordering::Relaxed);
        live.rtt_us
            .store(self.conn.rtt().as_micros() as u64, Ordering::Relaxed);
        let latency = since_capture(capture_unix_us);
        live.latency_us.store(u64::from(latency), Ordering::Relaxed);
        live.video_regions.store(regions as u64, Ordering::Relaxed);
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The newest cursor shape from the server, updated as shapes arrive.
    pub fn cursor_shape_handle(&self) -> Arc<Mutex<Option<CursorMsg>>> {
        self.cursor_shape.clone()
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
        let mut decoder = Decoder::new(self.welcome.desktop_size, self.welcome.capabilities)?;
        let mut regions = VideoRegions::default();
        let mut stats = ClientStats::default();
        let started = Instant::now();
        let deadline = stop.duration.map(|d| tokio::time::Instant::now() + d);
        let control_limit = Channel::Control.max_message_len();
        let video_allowed = self.welcome.capabilities.has(CAP_H264);
        let end = loop {
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
            let next = tokio::select! {
                r = self.display.recv::<FrameMsg>() => Next::Frame(r),
                Some(v) = self.video.recv() => Next::Video(v),
                Some(r) = self.requests.recv() => Next::Request(r),
                _ = deadline_passed => break EndReason::DurationElapsed,
                _ = interrupted => break EndReason::Interrupted,
            };
            let mut replies = Vec::new();
            let mut pictures = Vec::new();
            match next {
                Next::Request(request) => replies.push(request),
                Next::Frame(msg) => {
                    let msg = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => break EndReason::ServerClosed,
                        Err(e) => match closed_by_server(&self.conn) {
                            Some(_) => break EndReason::ServerClosed,
                            None => return Err(self.lost(e)),
                        },
                    };
                    let t0 = Instant::now();
                    regions.end(&msg.video_ended);
                    decoder.apply(&msg)?;
                    let decode_us = micros(t0.elapsed());
                    stats.latency_us.push(since_capture(msg.capture_unix_us));
                    stats.decode_us.push(decode_us);
                    stats.frames += 1;
                    self.publish_live(&stats, msg.capture_unix_us, regions.active());
                    observe(
                        Shown::Frame {
                            frame_id: msg.frame_id,
                            source_seq: msg.source_seq,
                        },
                        decoder.framebuffer(),
                    );
                    replies.push(ClientControl::Ack {
                        frame_id: msg.frame_id,
                        decode_us,
                    });
                    pictures = regions.ready(&decoder);
                }
                Next::Video((region_id, msg)) => {
                    if !video_allowed {
                        return Err(ClientError::Protocol("video was not negotiated".into()));
                    }
                    match msg {
                        VideoMsg::Start {
                            region_id,
                            rect,
                            after_frame,
                        } => regions.start(region_id, rect, after_frame, &decoder)?,
                        VideoMsg::Frame(frame) => pictures.push((region_id, frame)),
                    }
                }
            }
            for (region_id, frame) in pictures {
                let t0 = Instant::now();
                let (frame_no, keyframe) = (frame.frame_no, frame.keyframe);
                let (bytes, seq, capture) =
                    (frame.data.len(), frame.source_seq, frame.capture_unix_us);
                let picture = regions.picture(region_id, frame, &mut decoder)?;
                let decode_us = micros(t0.elapsed());
                match picture {
                    Picture::Queued => continue,
                    Picture::Shown { rect } => {
                        stats.video_frames += 1;
                        self.live.pictures.fetch_add(1, Ordering::Relaxed);
                        stats.video_bytes += bytes as u64;
                        stats.video_keyframes += u64::from(keyframe);
                        stats.video_decode_us.push(decode_us);
                        stats.video_latency_us.push(since_capture(capture));
                        observe(
                            Shown::Picture {
                                region_id,
                                rect,
                                source_seq: seq,
                                keyframe,
                            },
                            decoder.framebuffer(),
                        );
                    }
                    Picture::Broken => {
                        stats.keyframe_requests += 1;
                        replies.push(ClientControl::KeyframeRequest { region_id });
                    }
                    Picture::Skipped | Picture::Stale => {}
                }
                replies.push(ClientControl::VideoAck {
                    region_id,
                    frame_no,
                    decode_us,
                });
            }
            let mut send_failed = None;
            for reply in &replies {
                if let Err(e) = send_message(&mut self.control_tx, reply, control_limit).await {
                    send_failed = Some(e);
                    break;
                }
            }
            if let Some(e) = send_failed {
                match closed_by_server(&self.conn) {
                    Some(_) => break EndReason::ServerClosed,
                    None => return Err(self.lost(e)),
                }
            }
            if stop
                .source_seq
                .is_some_and(|seq| decoder.source_seq() >= seq)
            {
                break EndReason::SequenceReached;
            }
            if stop
                .settled_seq
                .is_some_and(|seq| decoder.source_seq() >= seq && regions.active() == 0)
            {
                break EndReason::Settled;
            }
        };
        stats.elapsed = started.elapsed();
        stats.bytes = self.display.bytes_received();
        self.conn.close(close::NORMAL, b"client done");
        self.endpoint.wait_idle().await;
        let cursor_shape = self
            .cursor_shape
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(Outcome {
            framebuffer: decoder.framebuffer().clone(),
            stats,
            end,
            cursor_shape,
        })
    }
}

/// Video pictures queued between the stream readers and the session loop; beyond this,
/// QUIC flow control holds the server back.
const VIDEO_QUEUE: usize = 64;

enum Next {
    Frame(Result<Option<FrameMsg>, TransportError>),
    Video((u64, VideoMsg)),
    Request(ClientControl),
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Capture on the server → now, µs (wall clocks; exact on one machine).
fn since_capture(capture_unix_us: u64) -> u32 {
    unix_micros()
        .saturating_sub(capture_unix_us)
        .min(u64::from(u32::MAX)) as u32
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

impl Session {
    /// The session broke: the desktop is gone when the server said so (on the control
    /// stream or in its close), else the connection was lost.
    fn lost(&self, e: TransportError) -> ClientError {
        let closing = self
            .closing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match (lost_or(e, &self.conn), closing) {
            (ClientError::DesktopGone(reason), _) => ClientError::DesktopGone(reason),
            (_, Some(reason)) => ClientError::DesktopGone(reason),
            (other, None) => other,
        }
    }
}

fn lost_or(e: TransportError, conn: &quinn::Connection) -> ClientError {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c))
            if c.error_code == close::DESKTOP_GONE =>
        {
            ClientError::DesktopGone(String::from_utf8_lossy(&c.reason).into_owned())
        }
        Some(reason) => ClientError::Lost(reason.to_string()),
        None => e.into(),
    }
}
