//! What an admitted session holds on its desktop (its seat), and what the desktop tells
//! it: damage, an eviction, cursor changes, clipboard messages, sound. Input goes the
//! other way through an injector task of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use oriel_protocol::session::server::Encoded;
use oriel_protocol::{AudioPacket, ClipboardMsg, InputEvent};
use tokio::sync::mpsc;

use crate::desktop::{DamageSink, Desktop};
use crate::eviction::Admission;
use crate::figures::ViewerCounters;
use crate::pipeline::Pipeline;
use crate::slots::Slot;

/// What an admitted session holds on its desktop.
pub(crate) struct Seat {
    pub(crate) desktop: Arc<Desktop>,
    pub(crate) sink: Arc<DamageSink>,
    pub(crate) admission: Admission,
    pub(crate) user: String,
    pub(crate) pipeline: Option<Pipeline>,
    pub(crate) cursor: tokio::sync::watch::Receiver<Option<crate::source::SourceCursor>>,
    pub(crate) cursor_open: bool,
    pub(crate) evicted: Pin<Box<dyn Future<Output = String> + Send>>,
    pub(crate) inject: mpsc::UnboundedSender<(InputEvent, u64)>,
    /// How many of the client's input events the desktop took (see
    /// [`Desktop::inject_counted`]); a viewer told that the desktop moved resends the rest.
    pub(crate) input_taken: Arc<std::sync::atomic::AtomicU64>,
    /// What the host reports of this viewer at each heartbeat.
    pub(crate) figures: Arc<ViewerCounters>,
    pub(crate) video_regions: usize,
    /// The desktop's clipboard, and what it sends this session.
    pub(crate) clipboard: Option<(
        Arc<crate::clipboard::DesktopClipboard>,
        mpsc::UnboundedReceiver<ClipboardMsg>,
    )>,
    pub(crate) session_id: u64,
    /// The desktop's sound, packet by packet.
    pub(crate) audio: Option<tokio::sync::broadcast::Receiver<Arc<AudioPacket>>>,
    /// Where the viewer's microphone goes, if the desktop takes one.
    pub(crate) microphone: Option<crate::microphone::MicrophoneFeed>,
    pub(crate) _slot: Slot,
}

impl Seat {
    /// Counts an encoder step in the viewer's figures.
    pub(crate) fn count(&mut self, encoded: &Encoded) {
        if encoded.frame.is_some() || !encoded.pictures.is_empty() {
            self.figures.updated();
        }
        self.video_regions =
            (self.video_regions + encoded.started.len()).saturating_sub(encoded.ended.len());
    }
}

/// Injects a session's input in order, until the session ends or is evicted: a viewer
/// whose desktop changed hands must not type into it.
pub(crate) fn spawn_injector(
    desktop: Arc<Desktop>,
    admission: Admission,
    taken: Arc<std::sync::atomic::AtomicU64>,
) -> mpsc::UnboundedSender<(InputEvent, u64)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(InputEvent, u64)>();
    tokio::spawn(async move {
        while let Some((event, index)) = rx.recv().await {
            if desktop.is_evicted(&admission) {
                return;
            }
            // The source lock may be held while the source renders a frame.
            let (d, taken) = (desktop.clone(), taken.clone());
            if tokio::task::spawn_blocking(move || d.inject_counted(&event, index, &taken))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    tx
}

/// Something the session's desktop did.
pub(crate) enum SeatEvent {
    Damage,
    Evicted(String),
    Cursor,
    Clipboard(ClipboardMsg),
    Audio(Arc<AudioPacket>),
    Nothing,
}

/// Waits for the desktop: damage, an eviction (once), a cursor change.
pub(crate) async fn seat_event(seat: &mut Option<Seat>) -> SeatEvent {
    let Some(s) = seat else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = s.sink.changed() => SeatEvent::Damage,
        reason = &mut s.evicted => {
            s.evicted = Box::pin(std::future::pending());
            SeatEvent::Evicted(reason)
        }
        Some(msg) = clipboard_message(&mut s.clipboard) => SeatEvent::Clipboard(msg),
        packet = audio_packet(&mut s.audio) => packet.map_or(SeatEvent::Nothing, SeatEvent::Audio),
        changed = s.cursor.changed(), if s.cursor_open => match changed {
            Ok(()) => SeatEvent::Cursor,
            // The desktop is going: its eviction follows.
            Err(_) => {
                s.cursor_open = false;
                SeatEvent::Nothing
            }
        },
    }
}

/// The next clipboard message of the desktop for this session (never, without one).
async fn clipboard_message(
    clipboard: &mut Option<(
        Arc<crate::clipboard::DesktopClipboard>,
        mpsc::UnboundedReceiver<ClipboardMsg>,
    )>,
) -> Option<ClipboardMsg> {
    match clipboard {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The desktop's next audio packet (never, without sound). A session that fell behind
/// skips what it missed; when the sound ends, the session no longer waits for it.
async fn audio_packet(
    audio: &mut Option<tokio::sync::broadcast::Receiver<Arc<AudioPacket>>>,
) -> Option<Arc<AudioPacket>> {
    let Some(rx) = audio else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Ok(packet) => Some(packet),
        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
            *audio = None;
            None
        }
    }
}
