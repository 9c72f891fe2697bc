//! One client connection: handshake, then four independent streams. The display loop
//! keeps at most `frame_window` frames unacknowledged; while the window is full, damage
//! keeps merging in the session's sink and the newest pixels go out once room frees up.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use oriel_protocol::codec::{CodecError, EncodedFrame, Encoder, EncoderConfig, FrameMeta};
use oriel_protocol::handshake::check_hello;
use oriel_protocol::host_link::{HostMsg, SessionEvent};
use oriel_protocol::wire::encode_message;
use oriel_protocol::*;
use oriel_transport::{close, send_message, FramedRecv};
use tokio::sync::Notify;

use crate::cursor::default_arrow;
use crate::desktop::{lock, DamageSink, Desktop};
use crate::server::Shared;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames sent but not yet acknowledged.
struct InFlight {
    frames: Mutex<VecDeque<(u64, Instant)>>,
    acked: Notify,
}

impl InFlight {
    fn len(&self) -> usize {
        lock(&self.frames).len()
    }

    fn push(&self, frame_id: u64) -> usize {
        let mut f = lock(&self.frames);
        f.push_back((frame_id, Instant::now()));
        f.len()
    }

    /// Acks are cumulative: acknowledging a frame acknowledges every earlier one.
    fn ack(&self, frame_id: u64) -> Vec<Duration> {
        let mut f = lock(&self.frames);
        let mut rtts = Vec::new();
        while f.front().is_some_and(|(id, _)| *id <= frame_id) {
            if let Some((_, sent)) = f.pop_front() {
                rtts.push(sent.elapsed());
            }
        }
        drop(f);
        self.acked.notify_one();
        rtts
    }
}

/// Serves one connection until it ends; errors are logged and close the connection.
pub async fn serve(conn: quinn::Connection, shared: Arc<Shared>) {
    let remote = conn.remote_address();
    match run(&conn, &shared).await {
        Ok(()) => {
            tracing::info!(%remote, "session ended");
            // Ends the input streams too, so nothing outlives the session.
            conn.close(close::NORMAL, b"session ended");
        }
        Err(e) => {
            match conn.close_reason() {
                Some(quinn::ConnectionError::ApplicationClosed(c))
                    if c.error_code == close::NORMAL =>
                {
                    tracing::info!(%remote, "client disconnected");
                    return;
                }
                Some(quinn::ConnectionError::LocallyClosed) => return,
                _ => tracing::warn!(%remote, "session closed: {e:#}"),
            }
            if conn.close_reason().is_none() {
                shared.stats.protocol_errors.fetch_add(1, Relaxed);
                let reason = format!("{e:#}");
                conn.close(
                    close::PROTOCOL_ERROR,
                    &reason.as_bytes()[..reason.len().min(200)],
                );
            }
        }
    }
}

async fn run(conn: &quinn::Connection, shared: &Arc<Shared>) -> anyhow::Result<()> {
    let (mut control_tx, control_rx) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
        .await
        .context("no control stream within the handshake timeout")??;
    let mut control_rx = FramedRecv::new(control_rx, Channel::Control.max_message_len());
    let hello: Hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, control_rx.recv())
        .await
        .context("no hello within the handshake timeout")??
        .ok_or_else(|| anyhow!("control stream closed before hello"))?;

    let (desktop, caps, user) = match accept_hello(&hello, shared) {
        Ok(ok) => ok,
        Err(reject) => {
            shared.stats.sessions_rejected.fetch_add(1, Relaxed);
            if reject.code == RejectCode::BadTicket {
                shared.report(HostMsg::TicketRefused {
                    desktop: hello.desktop.clone(),
                    reason: reject.message.clone(),
                });
            }
            tracing::info!(desktop = hello.desktop, "refused: {}", reject.message);
            let limit = Channel::Control.max_message_len();
            send_message(&mut control_tx, &HelloReply::Reject(reject.clone()), limit).await?;
            let _ = control_tx.finish();
            // Give the reject a moment to reach the client before closing.
            let _ = tokio::time::timeout(Duration::from_secs(2), control_tx.stopped()).await;
            conn.close(close::REJECTED, reject.message.as_bytes());
            return Ok(());
        }
    };

    let event = |event| HostMsg::Session {
        desktop: hello.desktop.clone(),
        user: user.clone(),
        event,
    };
    shared.report(event(SessionEvent::Connected));
    let result = run_session(conn, shared, &hello, &desktop, caps, control_tx, control_rx).await;
    shared.report(event(SessionEvent::Disconnected));
    shared.stats.sessions_active.fetch_sub(1, Relaxed);
    result
}

/// The accepted session, its slot already reserved.
async fn run_session(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    hello: &Hello,
    desktop: &Arc<Desktop>,
    caps: Capabilities,
    mut control_tx: quinn::SendStream,
    control_rx: FramedRecv,
) -> anyhow::Result<()> {
    let session_id = shared.next_session_id.fetch_add(1, Relaxed);
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        session_id,
        desktop_size: desktop.size(),
        capabilities: caps,
    };
    send_message(
        &mut control_tx,
        &HelloReply::Welcome(welcome),
        Channel::Control.max_message_len(),
    )
    .await?;
    tracing::info!(
        session_id,
        desktop = desktop.name(),
        client = %hello.client_name,
        remote = %conn.remote_address(),
        "session started"
    );

    shared.stats.sessions_total.fetch_add(1, Relaxed);
    let sink = desktop.subscribe();
    let result = run_streams(conn, shared, desktop, &sink, caps, control_rx, control_tx).await;
    desktop.unsubscribe(&sink);
    result
}

/// Checks a hello; on success the desktop, the capabilities and the ticket's user
/// (empty in standalone mode).
fn accept_hello(
    hello: &Hello,
    shared: &Shared,
) -> Result<(Arc<Desktop>, Capabilities, String), Reject> {
    let caps = check_hello(hello, &shared.capabilities)?;
    let desktop = shared.desktops.get(&hello.desktop).ok_or_else(|| Reject {
        code: RejectCode::UnknownDesktop,
        message: format!("no desktop named '{}' on this server", hello.desktop),
    })?;
    let now = oriel_transport::unix_micros() / 1_000_000;
    let claims = shared
        .tickets
        .admit(&hello.ticket, &hello.desktop, now)
        .map_err(|e| Reject {
            code: RejectCode::BadTicket,
            message: format!("ticket refused: {e}"),
        })?;
    // Reserve the slot atomically so simultaneous hellos cannot overshoot the limit.
    let max = shared.config.max_sessions as u64;
    shared
        .stats
        .sessions_active
        .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
        .map_err(|_| Reject {
            code: RejectCode::ServerFull,
            message: "the server has reached its session limit".into(),
        })?;
    Ok((desktop, caps, claims.map(|c| c.user).unwrap_or_default()))
}

async fn run_streams(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    desktop: &Arc<Desktop>,
    sink: &Arc<DamageSink>,
    caps: Capabilities,
    control_rx: FramedRecv,
    _control_tx: quinn::SendStream,
) -> anyhow::Result<()> {
    let in_flight = InFlight {
        frames: Mutex::new(VecDeque::new()),
        acked: Notify::new(),
    };

    let mut cursor = conn.open_uni().await?;
    cursor.write_all(&[Channel::Cursor as u8]).await?;
    send_message(
        &mut cursor,
        &default_arrow(),
        Channel::Cursor.max_message_len(),
    )
    .await?;

    let mut display = conn.open_uni().await?;
    display.write_all(&[Channel::Display as u8]).await?;

    tokio::select! {
        r = display_loop(shared, desktop, sink, caps, &in_flight, &mut display) => r,
        r = control_loop(shared, sink, &in_flight, control_rx) => r,
        r = accept_input(conn, shared, desktop) => r,
        _ = desktop.kicked() => {
            conn.close(
                close::DESKTOP_GONE,
                b"session ended: logged off, or the desktop was stopped or reset",
            );
            Ok(())
        }
        e = conn.closed() => match e {
            quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => Ok(()),
            other => Err(other.into()),
        },
    }
}

async fn display_loop(
    shared: &Shared,
    desktop: &Arc<Desktop>,
    sink: &Arc<DamageSink>,
    caps: Capabilities,
    in_flight: &InFlight,
    display: &mut quinn::SendStream,
) -> anyhow::Result<()> {
    let window = shared.config.frame_window.max(1);
    let config = EncoderConfig {
        capabilities: caps,
        zstd_level: shared.config.zstd_level,
    };
    let mut encoder = Encoder::new(desktop.size(), config)?;
    let mut staging = Framebuffer::new(desktop.size());
    loop {
        while in_flight.len() >= window {
            in_flight.acked.notified().await;
        }
        while !sink.has_pending() {
            sink.changed().await;
        }
        let started = Instant::now();
        let (d, k) = (desktop.clone(), sink.clone());
        // Copying pixels under the source lock and encoding may both take milliseconds:
        // keep them off the async workers that move network traffic.
        let (enc, stg, result) = tokio::task::spawn_blocking(move || {
            let result = capture_and_encode(&d, &k, &mut encoder, &mut staging);
            (encoder, staging, result)
        })
        .await?;
        (encoder, staging) = (enc, stg);
        let Some(frame) = result? else { continue };
        let encode_us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;

        let bytes = encode_message(&frame.msg, Channel::Display.max_message_len())?;
        let n = in_flight.push(frame.msg.frame_id);
        shared.stats.note_in_flight(n);
        display.write_all(&bytes).await?;
        shared
            .stats
            .record_frame(&frame.stats, bytes.len(), encode_us);
    }
}

/// Takes the pending damage, copies those tiles of the screen and encodes them. Damage
/// is taken and pixels copied under the source lock, so the frame holds exactly the
/// source's state `sequence()`.
fn capture_and_encode(
    desktop: &Desktop,
    sink: &DamageSink,
    encoder: &mut Encoder,
    staging: &mut Framebuffer,
) -> Result<Option<EncodedFrame>, CodecError> {
    let (damage, seq) = {
        let source = desktop.source();
        let Some(damage) = sink.take() else {
            return Ok(None);
        };
        let pixels = source.pixels();
        for (c, r) in damage.mask.iter() {
            staging.copy_rect_from(pixels, &damage.mask.tile_rect(c, r));
        }
        (damage, source.sequence())
    };
    if damage.refresh {
        encoder.resend_everything();
    }
    let meta = FrameMeta {
        source_seq: seq,
        capture_unix_us: damage.oldest_unix_us,
    };
    encoder.encode(staging, &damage.mask, meta)
}

/// Refresh requests are honoured at most this often: each resends the whole desktop.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

async fn control_loop(
    shared: &Shared,
    sink: &DamageSink,
    in_flight: &InFlight,
    mut control_rx: FramedRecv,
) -> anyhow::Result<()> {
    let mut last_refresh: Option<Instant> = None;
    while let Some(msg) = control_rx.recv::<ClientControl>().await? {
        match msg {
            ClientControl::Ack { frame_id, .. } => {
                for rtt in in_flight.ack(frame_id) {
                    shared
                        .stats
                        .record_ack(rtt.as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
            ClientControl::RefreshRequest => {
                if last_refresh.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
                    tracing::debug!("refresh request ignored: too frequent");
                    continue;
                }
                last_refresh = Some(Instant::now());
                sink.request_refresh();
            }
        }
    }
    Ok(())
}

async fn accept_input(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    desktop: &Arc<Desktop>,
) -> anyhow::Result<()> {
    loop {
        let mut stream = conn.accept_uni().await?;
        let mut tag = [0u8; 1];
        stream.read_exact(&mut tag).await?;
        if Channel::from_tag(tag[0]) != Some(Channel::Input) {
            bail!("client opened a stream with unexpected tag {}", tag[0]);
        }
        let (shared, desktop, conn) = (shared.clone(), desktop.clone(), conn.clone());
        tokio::spawn(async move {
            if let Err(e) = input_loop(stream, &shared, &desktop).await {
                if conn.close_reason().is_some() {
                    return; // the connection ended; not the client's fault
                }
                shared.stats.protocol_errors.fetch_add(1, Relaxed);
                let reason = format!("input stream: {e:#}");
                conn.close(
                    close::PROTOCOL_ERROR,
                    &reason.as_bytes()[..reason.len().min(200)],
                );
            }
        });
    }
}

async fn input_loop(
    stream: quinn::RecvStream,
    shared: &Shared,
    desktop: &Arc<Desktop>,
) -> anyhow::Result<()> {
    let mut rx = FramedRecv::new(stream, Channel::Input.max_message_len());
    let size = desktop.size();
    while let Some(event) = rx.recv::<InputEvent>().await? {
        if let InputEvent::PointerMove { x, y } = event {
            if x >= size.width || y >= size.height {
                bail!(
                    "pointer position {x},{y} outside the {}x{} desktop",
                    size.width,
                    size.height
                );
            }
        }
        shared.stats.input_events.fetch_add(1, Relaxed);
        // The source lock may be held while the source renders a frame.
        let d = desktop.clone();
        tokio::task::spawn_blocking(move || d.inject(&event)).await?;
    }
    Ok(())
}
