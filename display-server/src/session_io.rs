//! The byte movers of a session: one task per stream, reading chunks into the session's
//! inbox or writing what the session core sends, so that no stream waits for another.

use std::collections::HashMap;
use std::time::Duration;

use oriel_protocol::session::SendChannel;
use oriel_transport::pump;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Chunks queued between the stream readers and the session; beyond this QUIC flow
/// control holds the client back.
const INBOX: usize = 64;
/// How long a closing session waits for the client to acknowledge why.
pub(crate) const CLOSING_GRACE: Duration = Duration::from_secs(2);

const PRIORITY_CURSOR: i32 = 2;
const PRIORITY_DISPLAY: i32 = 1;
const PRIORITY_VIDEO: i32 = 0;
/// A clipboard of many megabytes goes when nothing on screen waits.
const PRIORITY_CLIPBOARD: i32 = -1;

/// What the session's tasks tell it.
#[derive(Debug)]
pub(crate) enum Inbound {
    Control(Option<Vec<u8>>),
    /// Bytes of a client stream (`None`: the client finished it).
    Stream {
        id: u64,
        bytes: Option<Vec<u8>>,
    },
    /// A cursor message was written.
    CursorWritten,
    /// A stream broke (the connection is going, or the client reset it).
    Broken {
        what: &'static str,
        error: String,
    },
}

pub(crate) fn inbox() -> (mpsc::Sender<Inbound>, mpsc::Receiver<Inbound>) {
    mpsc::channel(INBOX)
}

/// Reads the control stream's receive side into the inbox.
pub(crate) fn read_control(stream: web_transport_quinn::RecvStream, tx: mpsc::Sender<Inbound>) {
    pump::spawn_reader(stream, tx, |chunk| match chunk {
        Ok(bytes) => Inbound::Control(bytes),
        Err(error) => Inbound::Broken {
            what: "control stream",
            error,
        },
    });
}

/// Accepts the client's streams (input) for the rest of the connection and reads each
/// into the inbox; a reset stream ends like a finished one.
pub(crate) fn accept_streams(conn: web_transport_quinn::Session, tx: mpsc::Sender<Inbound>) {
    pump::spawn_acceptor(conn, tx, |id, chunk| Inbound::Stream {
        id,
        bytes: chunk.ok().flatten(),
    });
}

/// The session's send streams, each written by a task of its own.
pub(crate) struct Writers {
    conn: web_transport_quinn::Session,
    inbox: mpsc::Sender<Inbound>,
    streams: HashMap<SendChannel, mpsc::UnboundedSender<Vec<u8>>>,
    control: Option<JoinHandle<()>>,
    /// Set to stop every stream but the control stream at once (an eviction: nothing
    /// queued for a desktop that changed hands goes out).
    stop: watch::Sender<bool>,
}

impl Writers {
    pub(crate) fn new(
        conn: web_transport_quinn::Session,
        control: web_transport_quinn::SendStream,
        inbox: mpsc::Sender<Inbound>,
    ) -> Self {
        let (stop, _) = watch::channel(false);
        let mut writers = Self {
            conn,
            inbox,
            streams: HashMap::new(),
            control: None,
            stop,
        };
        writers.control = Some(writers.spawn(SendChannel::Control, control));
        writers
    }

    /// Opens a server stream.
    pub(crate) async fn open(
        &mut self,
        channel: SendChannel,
    ) -> Result<(), web_transport_quinn::SessionError> {
        let stream = self.conn.open_uni().await?;
        let priority = match channel {
            SendChannel::Cursor => PRIORITY_CURSOR,
            SendChannel::Display => PRIORITY_DISPLAY,
            SendChannel::Video(_) | SendChannel::Control => PRIORITY_VIDEO,
            SendChannel::Clipboard => PRIORITY_CLIPBOARD,
        };
        let _ = stream.set_priority(priority);
        self.spawn(channel, stream);
        Ok(())
    }

    fn spawn(
        &mut self,
        channel: SendChannel,
        mut stream: web_transport_quinn::SendStream,
    ) -> JoinHandle<()> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.streams.insert(channel, tx);
        let inbox = self.inbox.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            let control = channel == SendChannel::Control;
            loop {
                let bytes = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s), if !control => None,
                    bytes = rx.recv() => Some(bytes),
                };
                let Some(bytes) = bytes else {
                    // Nothing more goes out, and the stream stays open until the
                    // connection closes: a finish or reset now would reach the client
                    // before the reason on the control stream.
                    let _ = stream.stopped().await;
                    return;
                };
                let Some(bytes) = bytes else { break };
                if let Err(e) = stream.write_all(&bytes).await {
                    // A client may stop reading a video region or the cursor; the
                    // display or control stream breaking ends the session.
                    if matches!(channel, SendChannel::Display | SendChannel::Control) {
                        let what = if control {
                            "control stream"
                        } else {
                            "a stream"
                        };
                        let _ = inbox.try_send(Inbound::Broken {
                            what,
                            error: e.to_string(),
                        });
                    }
                    return;
                }
                if channel == SendChannel::Cursor {
                    let _ = inbox.send(Inbound::CursorWritten).await;
                }
            }
            let _ = stream.finish();
            if control {
                // Until the client has what was said last (or a moment has passed).
                let _ = tokio::time::timeout(CLOSING_GRACE, stream.stopped()).await;
            }
        })
    }

    /// Queues bytes on a stream; bytes for a stream that is gone are dropped.
    pub(crate) fn send(&self, channel: SendChannel, bytes: Vec<u8>) {
        if let Some(tx) = self.streams.get(&channel) {
            let _ = tx.send(bytes);
        }
    }

    /// Finishes a stream once what is queued on it is written.
    pub(crate) fn finish(&mut self, channel: SendChannel) {
        self.streams.remove(&channel);
    }

    /// Stops every stream but control at once, finishes control and waits until the
    /// client has read it (or the grace has passed).
    pub(crate) async fn drain_control(&mut self) {
        let _ = self.stop.send(true);
        self.streams.clear();
        if let Some(control) = self.control.take() {
            let _ = tokio::time::timeout(CLOSING_GRACE + Duration::from_secs(1), control).await;
        }
    }
}
