//! One client connection: handshake, then independent streams: control, display, input,
//! cursor, and one per video region. The display loop keeps at most a window of frames
//! (and of pictures per region) unacknowledged; while a window is full, damage keeps
//! merging and the newest pixels go out once room frees up.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use oriel_protocol::codec::EncoderConfig;
use oriel_protocol::handshake::check_hello;
use oriel_protocol::host_link::{HostMsg, SessionEvent};
use oriel_protocol::text;
use oriel_protocol::ticket::TicketError;
use oriel_protocol::video::RateConfig;
use oriel_protocol::wire::encode_message;
use oriel_protocol::*;
use oriel_transport::{close, send_message, FramedRecv};
use tokio::sync::mpsc;

use crate::cursor::default_arrow;
use crate::desktop::{DamageSink, Desktop};
use crate::eviction::Admission;
use crate::flow::Flow;
use crate::pipeline::{Budget, Pipeline};
use crate::server::Shared;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const PRIORITY_CURSOR: i32 = 2;
const PRIORITY_DISPLAY: i32 = 1;
const PRIORITY_VIDEO: i32 = 0;

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

    let session_id = shared.next_session_id.fetch_add(1, Relaxed);
    let (desktop, caps, user, admission) = match accept_hello(&hello, shared, session_id) {
        Ok(ok) => ok,
        Err(reject) => {
            shared.stats.sessions_rejected.fetch_add(1, Relaxed);
            // Everything from the client is bounded before it is logged or reported.
            let name = text::for_log(&hello.desktop);
            if reject.code == RejectCode::BadTicket {
                shared.report(HostMsg::TicketRefused {
                    desktop: name.to_string(),
                    reason: text::for_log(&reject.message).into_owned(),
                });
            }
            tracing::info!(desktop = %name, "refused: {}", text::for_log(&reject.message));
            let limit = Channel::Control.max_message_len();
            send_message(&mut control_tx, &HelloReply::Reject(reject.clone()), limit).await?;
            let _ = control_tx.finish();
            // Give the reject a moment to reach the client before closing.
            let _ = tokio::time::timeout(Duration::from_secs(2), control_tx.stopped()).await;
            conn.close(close::REJECTED, text::clip(&reject.message, 400).as_bytes());
            return Ok(());
        }
    };

    let event = |event| HostMsg::Session {
        desktop: hello.desktop.clone(),
        user: user.clone(),
        session: session_id,
        event,
    };
    shared.report(event(SessionEvent::Connected));
    let result = run_session(
        conn, shared, &hello, &desktop, caps, admission, control_tx, control_rx,
    )
    .await;
    shared.report(event(SessionEvent::Disconnected));
    shared.stats.sessions_active.fetch_sub(1, Relaxed);
    result
}

/// The accepted session, its slot already reserved.
#[allow(clippy::too_many_arguments)]
async fn run_session(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    hello: &Hello,
    desktop: &Arc<Desktop>,
    caps: Capabilities,
    admission: Admission,
    mut control_tx: quinn::SendStream,
    control_rx: FramedRecv,
) -> anyhow::Result<()> {
    let session_id = admission.session;
    // The sink starts at the desktop's size; if the desktop resizes later, the first
    // frame after tells the client.
    let sink = desktop.subscribe();
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        session_id,
        desktop_size: sink.size(),
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
        client = %text::for_log(&hello.client_name),
        remote = %conn.remote_address(),
        "session started"
    );

    shared.stats.sessions_total.fetch_add(1, Relaxed);
    let streams = run_streams(
        conn,
        shared,
        desktop,
        &sink,
        caps,
        (control_rx, control_tx),
        admission,
    );
    let result = streams.await;
    desktop.unsubscribe(&sink);
    result
}

/// Checks a hello; on success the desktop, the capabilities, the ticket's user (empty
/// in standalone mode) and the admission, which has already ended the sessions this
/// one supersedes (an earlier assignment's, or an earlier connection's).
fn accept_hello(
    hello: &Hello,
    shared: &Shared,
    session_id: u64,
) -> Result<(Arc<Desktop>, Capabilities, String, Admission), Reject> {
    let caps = check_hello(hello, &shared.capabilities)?;
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
    let generation = claims.as_ref().map(|c| c.generation);
    let admission = desktop.admit(session_id, generation).map_err(|_| {
        shared.stats.sessions_active.fetch_sub(1, Relaxed);
        bad_ticket(TicketError::Revoked)
    })?;
    Ok((
        desktop,
        caps,
        claims.map(|c| c.user).unwrap_or_default(),
        admission,
    ))
}

async fn run_streams(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    desktop: &Arc<Desktop>,
    sink: &Arc<DamageSink>,
    caps: Capabilities,
    (control_rx, mut control_tx): (FramedRecv, quinn::SendStream),
    admission: Admission,
) -> anyhow::Result<()> {
    let interval = desktop.source().frame_interval();
    let max_window = shared.config.frame_window.max(1);
    let flow = Flow::new(RateConfig {
        min_bitrate: 150_000,
        max_bitrate: shared.config.max_video_bitrate,
        start_bitrate: shared.config.max_video_bitrate / 2,
        frame_interval_us: interval.as_micros() as u64,
        min_window: max_window.min(2),
        max_window,
    });

    // When the link is the bottleneck, quinn sends higher priorities first: the cursor,
    // then UI and text, then video, which adapts its rate instead.
    let mut cursor = conn.open_uni().await?;
    cursor.set_priority(PRIORITY_CURSOR)?;
    cursor.write_all(&[Channel::Cursor as u8]).await?;
    let cursor_updates = desktop.cursor();
    let initial = cursor_updates.borrow().clone();
    if initial.is_none() {
        let limit = Channel::Cursor.max_message_len();
        send_message(&mut cursor, &default_arrow(), limit).await?;
    }
    tokio::spawn(cursor_loop(
        conn.clone(),
        cursor,
        cursor_updates,
        desktop.clone(),
        admission,
    ));

    let mut display = conn.open_uni().await?;
    display.set_priority(PRIORITY_DISPLAY)?;
    display.write_all(&[Channel::Display as u8]).await?;

    // An eviction ends the display, input and pacing loops at once (no frame of a
    // desktop that changed hands goes out after it); then the client is told why.
    let reason = tokio::select! {
        r = display_loop(conn, shared, desktop, sink, caps, &flow, &mut display) => return r,
        r = control_loop(shared, desktop, sink, &flow, control_rx) => return r,
        r = flow_reports(&flow, &mut control_tx) => return r,
        reason = desktop.evicted(admission) => reason,
        r = accept_input(conn, shared, desktop, admission) => return r,
        e = conn.closed() => return match e {
            quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => Ok(()),
            other => Err(other.into()),
        },
    };
    say_closing(&mut control_tx, &reason).await;
    conn.close(close::DESKTOP_GONE, text::clip(&reason, 400).as_bytes());
    Ok(())
}

async fn display_loop(
    conn: &quinn::Connection,
    shared: &Shared,
    desktop: &Arc<Desktop>,
    sink: &Arc<DamageSink>,
    caps: Capabilities,
    flow: &Flow,
    display: &mut quinn::SendStream,
) -> anyhow::Result<()> {
    let config = EncoderConfig {
        capabilities: caps,
        zstd_level: shared.config.zstd_level,
    };
    let max_fps = 1.0 / desktop.source().frame_interval().as_secs_f32();
    // The client's decoder has the size its welcome gave (the sink's first size).
    let mut pipeline = Pipeline::new(sink.first_size(), config, max_fps)?;
    let mut video_streams: HashMap<u64, mpsc::UnboundedSender<VideoMsg>> = HashMap::new();
    loop {
        let path = conn.stats().path;
        flow.path(path.rtt, path.cwnd);
        // Wait until something can go out: damage (taken even while the window is
        // full, so it merges), room for a due frame or picture, or a region's expiry.
        loop {
            let room = |id| flow.has_video_room(id);
            let ready = sink.has_pending()
                || (flow.has_frame_room() && pipeline.lossless_due())
                || pipeline.video_due(&room)
                || pipeline.deadline().is_some_and(|d| d <= Instant::now());
            if ready {
                break;
            }
            let deadline = pipeline.deadline();
            tokio::select! {
                _ = sink.changed() => {}
                _ = flow.changed.notified() => {}
                _ = sleep_until_opt(deadline) => {}
            }
        }

        let d = desktop.clone();
        let k = sink.clone();
        let bitrate = flow.bitrate();
        shared
            .stats
            .video_bitrate
            .store(u64::from(bitrate), Relaxed);
        let keyframes = flow.take_keyframe_requests();
        let in_flight: HashMap<u64, bool> = video_streams
            .keys()
            .map(|id| (*id, flow.has_video_room(*id)))
            .collect();
        // Copying pixels under the source lock and encoding may both take milliseconds:
        // keep them off the async workers that move network traffic.
        let (p, out) = tokio::task::spawn_blocking(move || {
            pipeline.take(&d, &k);
            // New regions have nothing in flight yet.
            let room = |id: u64| in_flight.get(&id).copied().unwrap_or(true);
            let out = pipeline.step_video(Budget {
                video_room: &room,
                bitrate,
                keyframes,
            });
            (pipeline, out)
        })
        .await?;
        pipeline = p;
        shared
            .stats
            .video_skipped
            .fetch_add(u64::from(out.skipped), Relaxed);
        for id in &out.ended {
            video_streams.remove(id);
            flow.region_ended(*id);
        }
        for &(region_id, rect, after_frame) in &out.started {
            shared.stats.video_regions.fetch_add(1, Relaxed);
            let start = VideoMsg::Start {
                region_id,
                rect,
                after_frame,
            };
            let tx = open_video_stream(conn, start).await?;
            video_streams.insert(region_id, tx);
        }
        for v in out.video {
            let bytes = v.frame.data.len();
            shared
                .stats
                .record_video(bytes, v.frame.keyframe, v.encode_us);
            let n = flow.video_sent(v.region_id, v.frame.frame_no, bytes);
            shared
                .stats
                .max_pictures_in_flight
                .fetch_max(n as u64, Relaxed);
            if let Some(tx) = video_streams.get(&v.region_id) {
                let _ = tx.send(VideoMsg::Frame(v.frame));
            }
        }

        if !(flow.has_frame_room() && pipeline.lossless_due()) {
            continue;
        }
        let (p, result) = tokio::task::spawn_blocking(move || {
            let result = pipeline.step_lossless();
            (pipeline, result)
        })
        .await?;
        pipeline = p;
        if let Some((frame, encode_us)) = result? {
            let bytes = encode_message(&frame.msg, Channel::Display.max_message_len())?;
            let n = flow.frame_sent(frame.msg.frame_id, bytes.len());
            shared.stats.note_in_flight(n);
            display.write_all(&bytes).await?;
            shared
                .stats
                .record_frame(&frame.stats, bytes.len(), encode_us);
        }
    }
}

/// Sends the source's pointer as it changes: the shape when its serial changes, the
/// position otherwise. Ends with the session (the stream fails, or it is evicted) or
/// the desktop.
async fn cursor_loop(
    conn: quinn::Connection,
    mut stream: quinn::SendStream,
    mut updates: tokio::sync::watch::Receiver<Option<crate::source::SourceCursor>>,
    desktop: Arc<Desktop>,
    admission: Admission,
) {
    let evicted = desktop.evicted(admission);
    tokio::pin!(evicted);
    let limit = Channel::Cursor.max_message_len();
    let mut sent_serial = None;
    let mut sent_position = None;
    loop {
        let current = updates.borrow_and_update().clone();
        if let Some(c) = current {
            if sent_serial != Some(c.serial) {
                if send_message(&mut stream, &c.shape, limit).await.is_err() {
                    return;
                }
                sent_serial = Some(c.serial);
            }
            let position = (c.x, c.y, c.visible);
            if sent_position != Some(position) {
                let msg = CursorMsg::Position {
                    x: c.x,
                    y: c.y,
                    visible: c.visible,
                };
                if send_message(&mut stream, &msg, limit).await.is_err() {
                    return;
                }
                sent_position = Some(position);
            }
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return },
            _ = conn.closed() => return,
            _ = &mut evicted => return,
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Opens a region's video stream; pictures sent to the returned channel are written in
/// order by a task of their own, so a slow region never holds up the display stream.
/// Dropping the sender finishes the stream.
async fn open_video_stream(
    conn: &quinn::Connection,
    start: VideoMsg,
) -> anyhow::Result<mpsc::UnboundedSender<VideoMsg>> {
    let mut stream = conn.open_uni().await?;
    stream.set_priority(PRIORITY_VIDEO)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<VideoMsg>();
    tokio::spawn(async move {
        let limit = Channel::Video.max_message_len();
        if stream.write_all(&[Channel::Video as u8]).await.is_err()
            || send_message(&mut stream, &start, limit).await.is_err()
        {
            return;
        }
        while let Some(msg) = rx.recv().await {
            if send_message(&mut stream, &msg, limit).await.is_err() {
                return; // the client stopped reading this region, or the session ended
            }
        }
        let _ = stream.finish();
    });
    Ok(tx)
}

/// Refresh requests are honoured at most this often: each resends the whole desktop.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Tells the client twice a second how its session is paced (for its overlay).
async fn flow_reports(flow: &Flow, control_tx: &mut quinn::SendStream) -> anyhow::Result<()> {
    let limit = Channel::Control.max_message_len();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        ticker.tick().await;
        let report = ServerControl::Flow {
            frames_in_flight: flow.frames_in_flight() as u32,
            frame_window: flow.window() as u32,
            video_bitrate: flow.bitrate(),
        };
        send_message(control_tx, &report, limit).await?;
    }
}

/// Tells the client why its session ends, on the control stream: the connection's close
/// carries the reason too, but a CONNECTION_CLOSE is sent at most a few times and may
/// be lost, while the stream is retransmitted until acknowledged.
async fn say_closing(control_tx: &mut quinn::SendStream, reason: &str) {
    let closing = ServerControl::Closing {
        message: reason.to_string(),
    };
    let limit = Channel::Control.max_message_len();
    if send_message(control_tx, &closing, limit).await.is_ok() && control_tx.finish().is_ok() {
        // Until the client has it (or a moment has passed), then close.
        let _ = tokio::time::timeout(CLOSING_GRACE, control_tx.stopped()).await;
    }
}

/// How long an evicted session waits for the client to acknowledge why.
const CLOSING_GRACE: Duration = Duration::from_secs(2);

/// The smallest desktop edge a client may ask for.
const MIN_REQUESTED_EDGE: u32 = 64;

async fn control_loop(
    shared: &Shared,
    desktop: &Arc<Desktop>,
    sink: &DamageSink,
    flow: &Flow,
    mut control_rx: FramedRecv,
) -> anyhow::Result<()> {
    let mut last_refresh: Option<Instant> = None;
    while let Some(msg) = control_rx.recv::<ClientControl>().await? {
        match msg {
            ClientControl::Ack { frame_id, .. } => {
                for a in flow.frame_acked(frame_id) {
                    shared
                        .stats
                        .record_ack(a.rtt.as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
            ClientControl::VideoAck {
                region_id,
                frame_no,
                ..
            } => {
                let acked = flow.video_acked(region_id, frame_no);
                shared
                    .stats
                    .video_acked
                    .fetch_add(acked.len() as u64, Relaxed);
            }
            ClientControl::KeyframeRequest { region_id } => {
                shared.stats.keyframe_requests.fetch_add(1, Relaxed);
                if !flow.request_keyframe(region_id) {
                    tracing::debug!(region_id, "keyframe request ignored: too frequent");
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
            ClientControl::ResizeRequest { width, height } => {
                let size = oriel_protocol::Size::new(width, height);
                if !oriel_protocol::handshake::valid_desktop_size(size)
                    || width < MIN_REQUESTED_EDGE
                    || height < MIN_REQUESTED_EDGE
                {
                    bail!("resize request to {width}x{height} is out of range");
                }
                if size == desktop.size() {
                    continue;
                }
                let d = desktop.clone();
                let resized = tokio::task::spawn_blocking(move || d.request_resize(size)).await?;
                if let Err(why) = resized {
                    tracing::debug!(
                        desktop = desktop.name(),
                        "resize to {width}x{height} not done: {why}"
                    );
                }
            }
        }
    }
    Ok(())
}

async fn accept_input(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    desktop: &Arc<Desktop>,
    admission: Admission,
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
            if let Err(e) = input_loop(stream, &shared, &desktop, admission).await {
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

/// Injects the client's input until its stream ends or the session is evicted: a
/// viewer whose desktop changed hands must not type into it.
async fn input_loop(
    stream: quinn::RecvStream,
    shared: &Shared,
    desktop: &Arc<Desktop>,
    admission: Admission,
) -> anyhow::Result<()> {
    let mut rx = FramedRecv::new(stream, Channel::Input.max_message_len());
    while let Some(event) = rx.recv::<InputEvent>().await? {
        if desktop.is_evicted(&admission) {
            return Ok(());
        }
        if let InputEvent::PointerMove { x, y } = event {
            let size = desktop.size();
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
