//! The streams a session reads and writes besides the display loop: the server's
//! display, cursor and video streams, and the client's input stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oriel_protocol::*;
use oriel_transport::{close, send_message, FramedRecv, TransportError};
use tokio::sync::mpsc;

use crate::session::{ClientError, InputSender};

const STREAMS_TIMEOUT: Duration = Duration::from_secs(15);

/// Accepts the server's video streams (one per region) for the rest of the session and
/// forwards their messages, tagged with the region, to the session loop.
pub(crate) async fn accept_video_streams(
    conn: quinn::Connection,
    tx: mpsc::Sender<(u64, VideoMsg)>,
) {
    while let Ok(mut stream) = conn.accept_uni().await {
        let mut tag = [0u8; 1];
        if stream.read_exact(&mut tag).await.is_err() {
            continue;
        }
        if Channel::from_tag(tag[0]) != Some(Channel::Video) {
            conn.close(close::PROTOCOL_ERROR, b"unexpected stream");
            return;
        }
        let (tx, conn) = (tx.clone(), conn.clone());
        tokio::spawn(async move {
            let mut rx = FramedRecv::new(stream, Channel::Video.max_message_len());
            let region = match rx.recv::<VideoMsg>().await {
                Ok(Some(start @ VideoMsg::Start { region_id, .. })) => {
                    if tx.send((region_id, start)).await.is_err() {
                        return;
                    }
                    region_id
                }
                Ok(None) => return,
                _ => {
                    conn.close(close::PROTOCOL_ERROR, b"video stream must start with Start");
                    return;
                }
            };
            loop {
                match rx.recv::<VideoMsg>().await {
                    Ok(Some(frame @ VideoMsg::Frame(_))) => {
                        if tx.send((region, frame)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Ok(Some(VideoMsg::Start { .. })) => {
                        conn.close(close::PROTOCOL_ERROR, b"second Start on a video stream");
                        return;
                    }
                    Err(e) => {
                        if conn.close_reason().is_none() {
                            tracing::warn!(region, "bad video stream: {e}");
                            conn.close(close::PROTOCOL_ERROR, b"bad video stream");
                        }
                        return;
                    }
                }
            }
        });
    }
}

/// The server opens the cursor and display streams right after `Welcome`, in either
/// order; each starts with its channel tag.
pub(crate) async fn accept_server_streams(
    conn: &quinn::Connection,
) -> Result<(FramedRecv, FramedRecv), ClientError> {
    let mut display = None;
    let mut cursor = None;
    while display.is_none() || cursor.is_none() {
        let mut stream = tokio::time::timeout(STREAMS_TIMEOUT, conn.accept_uni())
            .await
            .map_err(|_| ClientError::Protocol("server did not open its streams".into()))?
            .map_err(|e| ClientError::Lost(e.to_string()))?;
        let mut tag = [0u8; 1];
        stream
            .read_exact(&mut tag)
            .await
            .map_err(|e| ClientError::Protocol(format!("reading stream tag: {e}")))?;
        match Channel::from_tag(tag[0]) {
            Some(Channel::Display) if display.is_none() => {
                display = Some(FramedRecv::new(stream, Channel::Display.max_message_len()))
            }
            Some(Channel::Cursor) if cursor.is_none() => {
                cursor = Some(FramedRecv::new(stream, Channel::Cursor.max_message_len()))
            }
            _ => {
                conn.close(close::PROTOCOL_ERROR, b"unexpected stream");
                return Err(ClientError::Protocol(format!(
                    "server opened an unexpected stream (tag {})",
                    tag[0]
                )));
            }
        }
    }
    match (display, cursor) {
        (Some(d), Some(c)) => Ok((d, c)),
        _ => Err(ClientError::Protocol(
            "missing display or cursor stream".into(),
        )),
    }
}

pub(crate) async fn cursor_loop(mut rx: FramedRecv, shape: Arc<Mutex<Option<CursorMsg>>>) {
    while let Ok(Some(msg)) = rx.recv::<CursorMsg>().await {
        if let CursorMsg::Shape {
            width,
            height,
            ref pixels,
            ..
        } = msg
        {
            if width > 256
                || height > 256
                || pixels.len() != usize::from(width) * usize::from(height)
            {
                tracing::warn!("ignoring a malformed cursor shape");
                continue;
            }
            *shape.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
        }
    }
}

pub(crate) async fn control_notices(
    mut rx: FramedRecv,
    live: Arc<crate::LiveStats>,
    closing: Arc<Mutex<Option<String>>>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Ok(Some(msg)) = rx.recv::<ServerControl>().await {
        match msg {
            ServerControl::Closing { message } => {
                tracing::info!("server: {message}");
                *closing.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
            }
            ServerControl::Flow {
                frames_in_flight,
                frame_window,
                video_bitrate,
            } => {
                live.frames_in_flight
                    .store(u64::from(frames_in_flight), Relaxed);
                live.frame_window.store(u64::from(frame_window), Relaxed);
                live.video_bitrate.store(u64::from(video_bitrate), Relaxed);
            }
        }
    }
}

pub(crate) async fn spawn_input_writer(
    conn: &quinn::Connection,
) -> Result<InputSender, ClientError> {
    let mut stream = conn.open_uni().await.map_err(TransportError::from)?;
    stream
        .write_all(&[Channel::Input as u8])
        .await
        .map_err(TransportError::from)?;
    let (tx, mut rx) = mpsc::channel::<InputEvent>(256);
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if send_message(&mut stream, &event, Channel::Input.max_message_len())
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = stream.finish();
    });
    Ok(InputSender { tx })
}
