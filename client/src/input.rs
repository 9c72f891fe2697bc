//! The input stream: keys and pointer events go out on a stream of their own, written by
//! a task of their own, so they never wait behind display traffic.
//!
//! The queue outlives a session that hands over: when the desktop moves to another
//! server, the old server says how many of the events written to it its desktop took;
//! the rest, and what is typed while the viewer connects to the new server, go there,
//! in order, once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use oriel_protocol::{Channel, InputEvent};
use oriel_transport::{send_message, TransportError};
use tokio::sync::mpsc;

use crate::error::ClientError;

/// Input events queued before the writer; beyond this `try_send` drops.
const INPUT_QUEUE: usize = 256;

/// A writer sends the queue to a session.
const LIVE: u8 = 0;
/// The session's desktop moved: the queue waits for the next session's writer.
const HANDING_OVER: u8 = 1;
/// The session ended for good: sending fails.
const ENDED: u8 = 2;

struct Queue {
    rx: tokio::sync::Mutex<mpsc::Receiver<InputEvent>>,
    state: AtomicU8,
    /// Events to send before the queue: one a writer took but could not write, and
    /// those a moved desktop's old server did not take. The next writer sends them.
    unsent: Mutex<VecDeque<InputEvent>>,
    /// What the session's writer wrote, for resending.
    written: Mutex<Written>,
}

/// The events a session's writer wrote: how many, and the newest of them.
#[derive(Default)]
struct Written {
    count: u64,
    newest: VecDeque<InputEvent>,
}

/// Most written events kept for resending (seconds of fast typing).
const KEPT_WRITTEN: usize = 1024;

/// Sends input events on the input stream; cheap to clone.
#[derive(Clone)]
pub struct InputSender {
    tx: mpsc::Sender<InputEvent>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for InputSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputSender")
            .field("state", &self.queue.state.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl InputSender {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        Self {
            tx,
            queue: Arc::new(Queue {
                rx: tokio::sync::Mutex::new(rx),
                state: AtomicU8::new(LIVE),
                unsent: Mutex::new(VecDeque::new()),
                written: Mutex::new(Written::default()),
            }),
        }
    }

    fn ended(&self) -> bool {
        self.queue.state.load(Ordering::SeqCst) == ENDED
    }

    /// Queues an event; errors once the session has ended.
    pub async fn send(&self, event: InputEvent) -> Result<(), ClientError> {
        let closed = || ClientError::Lost("input stream closed".into());
        if self.ended() {
            return Err(closed());
        }
        self.tx.send(event).await.map_err(|_| closed())
    }

    /// Queues an event without waiting (for UI threads); false when the queue is full
    /// or the session has ended, and the event is dropped.
    pub fn try_send(&self, event: InputEvent) -> bool {
        !self.ended() && self.tx.try_send(event).is_ok()
    }

    /// The desktop moved: keep what is typed for the session that follows it.
    pub(crate) fn hand_over(&self) {
        self.queue.state.store(HANDING_OVER, Ordering::SeqCst);
    }

    /// The desktop moved, and its old server took the first `taken` of the events
    /// this session wrote: the rest go to the next session first, ahead of anything
    /// typed since. Waits until the old session's writer has stopped.
    pub(crate) async fn resend_after(&self, taken: u64) {
        let _stopped = self.queue.rx.lock().await;
        let resend: Vec<InputEvent> = {
            let mut written = lock(&self.queue.written);
            let first = written.count - written.newest.len() as u64;
            let skip = usize::try_from(taken.saturating_sub(first)).unwrap_or(usize::MAX);
            let resend = written.newest.drain(..).skip(skip).collect();
            *written = Written::default();
            resend
        };
        let mut unsent = lock(&self.queue.unsent);
        for event in resend.into_iter().rev() {
            unsent.push_front(event);
        }
    }

    /// Its session is over: unless its desktop moved (and a session follows it),
    /// sending fails from now on.
    pub(crate) fn end_unless_handed_over(&self) {
        let _ = self
            .queue
            .state
            .compare_exchange(LIVE, ENDED, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The session that was to follow the desktop never came.
    pub(crate) fn end(&self) {
        self.queue.state.store(ENDED, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the input stream and starts its writer, on a new queue or on `carried`, the
/// queue of the session this one follows.
pub(crate) async fn open_input(
    conn: &quinn::Connection,
    carried: Option<InputSender>,
) -> Result<InputSender, ClientError> {
    let mut stream = conn.open_uni().await.map_err(TransportError::from)?;
    stream
        .write_all(&[Channel::Input as u8])
        .await
        .map_err(TransportError::from)?;
    let sender = carried.unwrap_or_else(InputSender::new);
    sender.queue.state.store(LIVE, Ordering::SeqCst);
    let queue = sender.queue.clone();
    let conn = conn.clone();
    tokio::spawn(async move {
        // The writer before this one gives the queue up when its connection closes.
        let mut rx = queue.rx.lock().await;
        let max = Channel::Input.max_message_len();
        let unsent = || lock(&queue.unsent);
        // This session counts what it writes from zero, as its server counts.
        *lock(&queue.written) = Written::default();
        loop {
            let first = unsent().pop_front();
            let event = match first {
                Some(event) => event,
                None => tokio::select! {
                    biased;
                    _ = conn.closed() => break,
                    event = rx.recv() => match event {
                        Some(event) => event,
                        None => break,
                    },
                },
            };
            if send_message(&mut stream, &event, max).await.is_err() {
                unsent().push_front(event);
                break;
            }
            let mut written = lock(&queue.written);
            written.count += 1;
            written.newest.push_back(event);
            if written.newest.len() > KEPT_WRITTEN {
                written.newest.pop_front();
            }
        }
        let _ = stream.finish();
    });
    Ok(sender)
}
