//! One client connection, driven: the session core (`oriel_protocol::session::server`)
//! decides; this task moves bytes between it and the streams, runs the encoder when it
//! says so, injects input, and reports the session to the broker. One task owns the
//! core, so no flow state is shared between tasks.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use oriel_protocol::codec::EncoderConfig;
use oriel_protocol::host_link::{HostMsg, SessionEvent};
use oriel_protocol::session::server::{
    Admitted, EncodeOrder, Encoded, Record, ServerAction, ServerEvent, ServerSession,
    ServerSessionConfig,
};
use oriel_protocol::session::CloseCode;
use oriel_protocol::text;
use oriel_protocol::ticket::TicketError;
use oriel_protocol::*;
use oriel_transport::{close, pump};

use crate::cursor::default_arrow;
use crate::figures::ViewerCounters;
use crate::pipeline::Pipeline;
use crate::seat::{seat_event, spawn_injector, Seat, SeatEvent};
use crate::session_io::{self, Inbound, Writers};
use crate::shared::Shared;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection until it ends: a native client's QUIC connection (as a raw
/// session) or a browser's WebTransport session; both carry the same streams.
pub async fn serve(session: web_transport_quinn::Session, shared: Arc<Shared>) {
    let conn: quinn::Connection = (*session).clone();
    let remote = conn.remote_address();
    let now = Instant::now();
    let core = ServerSession::new(
        ServerSessionConfig {
            capabilities: shared.capabilities,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            frame_window: shared.config.frame_window,
            max_video_bitrate: shared.config.max_video_bitrate,
        },
        now,
    );
    let mut driver = Driver {
        conn: conn.clone(),
        session,
        shared,
        core,
        admitted: None,
        hello_desktop: String::new(),
        encoding: None,
    };
    match driver.run().await {
        Ok(()) => {
            tracing::info!(%remote, "session ended");
            // Ends the client's streams too, so nothing outlives the session.
            conn.close(close::NORMAL, b"session ended");
        }
        Err(e) => match conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == close::NORMAL => {
                tracing::info!(%remote, "client disconnected");
            }
            Some(quinn::ConnectionError::LocallyClosed) => {
                tracing::info!(%remote, "session closed: {e:#}");
            }
            Some(_) => tracing::warn!(%remote, "session closed: {e:#}"),
            None => {
                tracing::warn!(%remote, "session closed: {e:#}");
                driver.shared.stats.protocol_errors.fetch_add(1, Relaxed);
                let reason = format!("{e:#}");
                conn.close(close::PROTOCOL_ERROR, text::clip(&reason, 200).as_bytes());
            }
        },
    }
    driver.end();
}

type EncodeTask = tokio::task::JoinHandle<(Pipeline, anyhow::Result<Encoded>)>;

struct Driver {
    /// The QUIC connection under the session: its lifetime, path and statistics.
    conn: quinn::Connection,
    /// Streams and datagrams, with WebTransport's framing when a browser is on the other end.
    session: web_transport_quinn::Session,
    shared: Arc<Shared>,
    core: ServerSession,
    admitted: Option<Seat>,
    hello_desktop: String,
    encoding: Option<EncodeTask>,
}

impl Driver {
    async fn run(&mut self) -> anyhow::Result<()> {
        let (control_tx, control_rx) = tokio::select! {
            r = self.session.accept_bi() => r.context("no control stream")?,
            _ = pump::sleep_until(self.core.next_deadline()) => {
                anyhow::bail!("no control stream within the handshake timeout")
            }
        };
        let (inbox_tx, mut inbox) = session_io::inbox();
        session_io::read_control(control_rx, inbox_tx.clone());
        session_io::accept_streams(self.session.clone(), inbox_tx.clone());
        let mut writers = Writers::new(self.session.clone(), control_tx, inbox_tx);
        loop {
            while let Some(action) = self.core.poll_action() {
                if let Some(end) = self.act(action, &mut writers).await? {
                    return end;
                }
            }
            let now = Instant::now();
            tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(msg) => self.inbound(msg, now)?,
                    None => return Ok(()),
                },
                encoded = wait_encoded(&mut self.encoding) => {
                    self.encoding = None;
                    let (pipeline, encoded) = encoded?;
                    let seat = self.admitted.as_mut().context("encoded without a seat")?;
                    seat.pipeline = Some(pipeline);
                    let pending = seat.sink.has_pending();
                    let encoded = encoded?;
                    seat.count(&encoded);
                    self.feed_path(now);
                    self.core.handle(now, ServerEvent::Encoded(encoded));
                    if pending {
                        self.core.handle(now, ServerEvent::Damage);
                    }
                }
                event = seat_event(&mut self.admitted) => match event {
                    SeatEvent::Damage => {
                        self.feed_path(now);
                        self.core.handle(now, ServerEvent::Damage);
                    }
                    SeatEvent::Evicted(reason) => {
                        let moved = self.admitted.as_ref().and_then(|s| {
                            let mut to = s.desktop.moved_to()?;
                            // Input is held from the desktop's last copy on, so this
                            // count is final: the viewer resends what came after.
                            to.input_taken = s.input_taken.load(std::sync::atomic::Ordering::SeqCst);
                            Some(to)
                        });
                        let event = match moved {
                            Some(to) => ServerEvent::Moved(to),
                            None => ServerEvent::Evicted(reason),
                        };
                        self.core.handle(now, event);
                    }
                    SeatEvent::Cursor => self.feed_cursor(now),
                    SeatEvent::Clipboard(msg) => self.core.handle(now, ServerEvent::Clipboard(msg)),
                    SeatEvent::Audio(packet) => self.core.handle(now, ServerEvent::Audio(&packet)),
                    SeatEvent::Nothing => {}
                },
                Ok(datagram) = self.session.read_datagram() => {
                    self.core.handle(now, ServerEvent::Datagram(&datagram));
                }
                _ = pump::sleep_until(self.core.next_deadline()) => self.core.handle_timeout(Instant::now()),
                e = self.conn.closed() => return match e {
                    quinn::ConnectionError::ApplicationClosed(_)
                    | quinn::ConnectionError::LocallyClosed => Ok(()),
                    other => Err(other.into()),
                },
            }
        }
    }

    fn inbound(&mut self, msg: Inbound, now: Instant) -> anyhow::Result<()> {
        let event = match &msg {
            Inbound::Control(Some(bytes)) => ServerEvent::ControlBytes(bytes),
            Inbound::Control(None) => ServerEvent::ControlFinished,
            Inbound::Stream {
                id,
                bytes: Some(bytes),
            } => ServerEvent::StreamBytes { stream: *id, bytes },
            Inbound::Stream { id, bytes: None } => ServerEvent::StreamFinished { stream: *id },
            Inbound::CursorWritten => ServerEvent::CursorWritten,
            Inbound::Broken { what, error } => anyhow::bail!("{what}: {error}"),
        };
        self.core.handle(now, event);
        Ok(())
    }

    /// Carries out one action of the core; `Some` when the session is over.
    async fn act(
        &mut self,
        action: ServerAction,
        writers: &mut Writers,
    ) -> anyhow::Result<Option<anyhow::Result<()>>> {
        match action {
            ServerAction::Admit(hello) => {
                let now = Instant::now();
                self.hello_desktop = text::for_log(&hello.desktop).into_owned();
                match self.admit(&hello) {
                    Ok(admitted) => {
                        self.core.handle(now, ServerEvent::Admitted(admitted));
                        self.feed_first_cursor(now);
                        // A new viewer's sink starts with the whole screen pending.
                        self.core.handle(now, ServerEvent::Damage);
                    }
                    Err(reject) => self.core.handle(now, ServerEvent::Refused(reject)),
                }
            }
            ServerAction::Rejected(reject) => self.rejected(&reject),
            ServerAction::Open(channel) => writers.open(channel).await?,
            ServerAction::Send { channel, bytes } => {
                if let Some(seat) = &self.admitted {
                    seat.figures.sent(bytes.len());
                }
                writers.send(channel, bytes);
            }
            ServerAction::Finish(channel) => writers.finish(channel),
            ServerAction::Encode(order) => self.encode(order)?,
            ServerAction::Inject(event, index) => {
                self.shared.stats.input_events.fetch_add(1, Relaxed);
                if let Some(seat) = &self.admitted {
                    let _ = seat.inject.send((event, index));
                }
            }
            ServerAction::Refresh => {
                if let Some(seat) = &self.admitted {
                    seat.sink.request_refresh();
                }
            }
            ServerAction::Resize(size) => {
                if let Some(seat) = &self.admitted {
                    let desktop = seat.desktop.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(why) = desktop.request_resize(size) {
                            tracing::debug!(
                                desktop = desktop.name(),
                                "resize to {}x{} not done: {why}",
                                size.width,
                                size.height
                            );
                        }
                    });
                }
            }
            ServerAction::Record(record) => self.record(record),
            ServerAction::SendDatagram(bytes) => {
                self.shared.stats.audio_packets.fetch_add(1, Relaxed);
                self.shared
                    .stats
                    .audio_bytes
                    .fetch_add(bytes.len() as u64, Relaxed);
                // A full send buffer drops the packet, as the network would.
                let _ = self.session.send_datagram(bytes.into());
            }
            ServerAction::Microphone(packet) => {
                if let Some(seat) = &self.admitted {
                    if let Some(mic) = &seat.microphone {
                        mic.send(seat.session_id, packet);
                    }
                }
            }
            ServerAction::Clipboard(msg) => {
                if let Some(seat) = &self.admitted {
                    if let Some((clipboard, _)) = &seat.clipboard {
                        clipboard.route_from_session(seat.session_id, msg);
                    }
                }
            }
            ServerAction::Close { code, reason } => {
                return Ok(Some(self.close(code, &reason, writers).await));
            }
        }
        Ok(None)
    }

    /// Checks a hello's desktop, ticket and the session limit; on success the session
    /// holds its seat, and the sessions it supersedes (an earlier assignment's, or an
    /// earlier connection's) have been ended.
    fn admit(&mut self, hello: &Hello) -> Result<Admitted, Reject> {
        let shared = &self.shared;
        let desktop = shared.desktops.get(&hello.desktop).ok_or_else(|| Reject {
            code: RejectCode::UnknownDesktop,
            message: format!("no desktop named '{}' on this server", hello.desktop),
        })?;
        if let Some(failure) = desktop.failure() {
            return Err(Reject {
                code: RejectCode::UnknownDesktop,
                message: format!("desktop '{}' failed: {failure}", hello.desktop),
            });
        }
        let bad_ticket = |e: TicketError| Reject {
            code: RejectCode::BadTicket,
            message: format!("ticket refused: {e}"),
        };
        let now = oriel_transport::unix_micros() / 1_000_000;
        let claims = shared
            .tickets
            .admit(&hello.ticket, &hello.desktop, now)
            .map_err(bad_ticket)?;
        let slot = shared
            .slots
            .try_take(shared.config.max_sessions)
            .ok_or_else(|| Reject {
                code: RejectCode::ServerFull,
                message: "the server has reached its session limit".into(),
            })?;
        let session_id = shared.next_session_id.fetch_add(1, Relaxed);
        let generation = claims.as_ref().map(|c| c.generation);
        let admission = desktop
            .admit(session_id, generation)
            .map_err(|_| bad_ticket(TicketError::Revoked))?;
        let caps = self.core.capabilities();
        let encoder = EncoderConfig {
            capabilities: caps,
            zstd_level: shared.config.zstd_level,
        };
        let frame_interval = desktop.source().frame_interval();
        let max_fps = 1.0 / frame_interval.as_secs_f32();
        // The sink starts at the desktop's size; if the desktop resizes later, the
        // first frame after tells the client.
        let sink = desktop.subscribe();
        let pipeline = match Pipeline::new(sink.first_size(), encoder, max_fps) {
            Ok(mut p) => {
                // A client that followed the desktop here, or reconnects, keeps what
                // it shows: only what differs is sent.
                if let Some(held) = &hello.held {
                    p.start_from_held(desktop.source().pixels(), held);
                }
                p
            }
            Err(e) => {
                desktop.unsubscribe(&sink);
                return Err(Reject {
                    code: RejectCode::UnknownDesktop,
                    message: format!("cannot encode this desktop: {e}"),
                });
            }
        };
        let evicted = {
            let desktop = desktop.clone();
            Box::pin(async move { desktop.evicted(admission).await })
        };
        let user = claims.map(|c| c.user).unwrap_or_default();
        tracing::info!(
            session_id,
            desktop = desktop.name(),
            client = %text::for_log(&hello.client_name),
            remote = %self.conn.remote_address(),
            "session started"
        );
        shared.stats.sessions_total.fetch_add(1, Relaxed);
        let desktop_size = sink.first_size();
        let from = self.conn.remote_address().to_string();
        let figures = ViewerCounters::new(session_id, desktop.name(), from);
        shared.viewers.add(figures.clone());
        let input_taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let clipboard = desktop.clipboard().map(|c| (c.clone(), c.join(session_id)));
        let clipboard_policy = clipboard.as_ref().map(|(c, _)| c.policy());
        self.admitted = Some(Seat {
            audio: desktop.audio(),
            microphone: desktop.microphone(),
            clipboard,
            session_id,
            figures,
            video_regions: 0,
            cursor: desktop.cursor(),
            cursor_open: true,
            inject: spawn_injector(desktop.clone(), admission, input_taken.clone()),
            input_taken,
            desktop,
            sink,
            admission,
            user,
            pipeline: Some(pipeline),
            evicted,
            _slot: slot,
        });
        self.report(SessionEvent::Connected {
            from: self.conn.remote_address().to_string(),
        });
        Ok(Admitted {
            session_id,
            desktop_size,
            frame_interval,
            clipboard: clipboard_policy,
            microphone: self
                .admitted
                .as_ref()
                .is_some_and(|s| s.microphone.is_some()),
        })
    }

    fn rejected(&self, reject: &Reject) {
        self.shared.stats.sessions_rejected.fetch_add(1, Relaxed);
        let name = &self.hello_desktop;
        if reject.code == RejectCode::BadTicket {
            self.shared.report(HostMsg::TicketRefused {
                desktop: name.clone(),
                reason: text::for_log(&reject.message).into_owned(),
            });
        }
        tracing::info!(desktop = %name, "refused: {}", text::for_log(&reject.message));
    }

    /// Runs one encoder step off the async workers: copying pixels under the source
    /// lock and encoding may both take milliseconds.
    fn encode(&mut self, order: EncodeOrder) -> anyhow::Result<()> {
        let seat = self.admitted.as_mut().context("encode without a seat")?;
        let mut pipeline = seat.pipeline.take().context("encoder already running")?;
        let (desktop, sink, shared) =
            (seat.desktop.clone(), seat.sink.clone(), self.shared.clone());
        shared
            .stats
            .video_bitrate
            .store(u64::from(order.bitrate), Relaxed);
        self.encoding = Some(tokio::task::spawn_blocking(move || {
            let result = pipeline.step(&desktop, &sink, order, &shared.stats);
            (pipeline, result)
        }));
        Ok(())
    }

    fn record(&self, record: Record) {
        let stats = &self.shared.stats;
        match record {
            Record::FramesAcked(rtts) => {
                for rtt in rtts {
                    stats.record_ack(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
                }
            }
            Record::PicturesAcked(n) => {
                stats.video_acked.fetch_add(n as u64, Relaxed);
            }
            Record::KeyframeRequested { granted } => {
                stats.keyframe_requests.fetch_add(1, Relaxed);
                if !granted {
                    tracing::debug!("keyframe request ignored: too frequent");
                }
            }
            Record::FramesInFlight(n) => stats.note_in_flight(n),
            Record::PicturesInFlight(n) => {
                stats.max_pictures_in_flight.fetch_max(n as u64, Relaxed);
            }
            Record::RefreshIgnored => tracing::debug!("refresh request ignored: too frequent"),
            Record::Clipboard {
                to_client,
                format,
                bytes,
                refused,
            } => stats.record_clipboard(to_client, format, bytes, refused),
        }
    }

    async fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        writers: &mut Writers,
    ) -> anyhow::Result<()> {
        let quic_code = match code {
            CloseCode::Normal => close::NORMAL,
            CloseCode::ProtocolError => close::PROTOCOL_ERROR,
            CloseCode::Rejected => close::REJECTED,
            CloseCode::DesktopGone => close::DESKTOP_GONE,
        };
        if let Some(task) = self.encoding.take() {
            task.abort(); // nothing more of this session is encoded or sent
        }
        if code.lingers() {
            // The control stream is retransmitted until acknowledged, while a
            // CONNECTION_CLOSE is sent a few times and may be lost.
            writers.drain_control().await;
            // A browser drops what it received but has not yet read once the connection
            // closes: let the client read the reason and hang up first, for a moment.
            let _ = tokio::time::timeout(session_io::CLOSING_GRACE, self.conn.closed()).await;
        }
        self.conn
            .close(quic_code, text::clip(reason, 400).as_bytes());
        if code == CloseCode::ProtocolError {
            self.shared.stats.protocol_errors.fetch_add(1, Relaxed);
            anyhow::bail!("{}", text::for_log(reason));
        }
        Ok(())
    }

    fn feed_path(&mut self, now: Instant) {
        let path = self.conn.stats().path;
        if let Some(seat) = &self.admitted {
            seat.figures.set_path(path.rtt, seat.video_regions);
        }
        self.core.handle(
            now,
            ServerEvent::Path {
                rtt: path.rtt,
                cwnd: path.cwnd,
                lost_packets: path.lost_packets,
            },
        );
    }

    /// The source's cursor as the session starts, or the default arrow until the
    /// source has one.
    fn feed_first_cursor(&mut self, now: Instant) {
        let none_yet = self
            .admitted
            .as_ref()
            .is_some_and(|s| s.cursor.borrow().is_none());
        if none_yet {
            let shape = default_arrow();
            let serial = u64::MAX;
            self.core
                .handle(now, ServerEvent::CursorShape { serial, shape });
        } else {
            self.feed_cursor(now);
        }
    }

    fn feed_cursor(&mut self, now: Instant) {
        let Some(seat) = self.admitted.as_mut() else {
            return;
        };
        let Some(c) = seat.cursor.borrow_and_update().clone() else {
            return;
        };
        self.core.handle(
            now,
            ServerEvent::CursorShape {
                serial: c.serial,
                shape: c.shape,
            },
        );
        self.core.handle(
            now,
            ServerEvent::CursorPosition {
                x: c.x,
                y: c.y,
                visible: c.visible,
            },
        );
    }

    fn report(&self, event: SessionEvent) {
        if let Some(seat) = &self.admitted {
            self.shared.report(HostMsg::Session {
                desktop: seat.desktop.name().to_string(),
                user: seat.user.clone(),
                session: seat.admission.session,
                event,
            });
        }
    }

    /// Leaves the desktop: the broker hears the session ended, the slot is freed.
    fn end(&mut self) {
        if let Some(task) = self.encoding.take() {
            task.abort();
        }
        if self.admitted.is_some() {
            self.report(SessionEvent::Disconnected);
        }
        if let Some(seat) = self.admitted.take() {
            seat.desktop.unsubscribe(&seat.sink);
            self.shared.viewers.remove(&seat.figures);
            if let Some((clipboard, _)) = &seat.clipboard {
                clipboard.leave(seat.session_id);
            }
        }
    }
}

async fn wait_encoded(
    task: &mut Option<EncodeTask>,
) -> anyhow::Result<(Pipeline, anyhow::Result<Encoded>)> {
    match task {
        Some(t) => Ok(t.await?),
        None => std::future::pending().await,
    }
}
