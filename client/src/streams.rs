//! The byte movers of a client session: tasks that read the server's streams into the
//! session's inbox, and the writer of the control stream.

use oriel_transport::pump;
use tokio::sync::mpsc;

/// Chunks queued between the stream readers and the session; beyond this QUIC flow
/// control holds the server back.
const INBOX: usize = 64;

/// What the stream readers tell the session.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Control stream bytes (`None`: the server finished it).
    Control(Option<Vec<u8>>),
    /// Bytes of a server stream (`None`: finished).
    Stream { id: u64, bytes: Option<Vec<u8>> },
    /// A stream broke: the connection is going, or the server reset it.
    Broken(String),
}

pub(crate) fn inbox() -> (mpsc::Sender<Inbound>, mpsc::Receiver<Inbound>) {
    mpsc::channel(INBOX)
}

/// Reads the control stream's receive side into the inbox.
pub(crate) fn read_control(stream: quinn::RecvStream, tx: mpsc::Sender<Inbound>) {
    pump::spawn_reader(stream, tx, |chunk| match chunk {
        Ok(bytes) => Inbound::Control(bytes),
        Err(e) => Inbound::Broken(format!("control stream: {e}")),
    });
}

/// Accepts the server's streams (display, cursor, video) for the rest of the connection
/// and reads each into the inbox.
pub(crate) fn accept_streams(conn: quinn::Connection, tx: mpsc::Sender<Inbound>) {
    pump::spawn_acceptor(conn, tx, |id, chunk| match chunk {
        Ok(bytes) => Inbound::Stream { id, bytes },
        Err(e) => Inbound::Broken(format!("reading stream: {e}")),
    });
}

/// Writes what the session sends on the control stream, in order, from a task of its
/// own (acks are small, but a write may wait for flow control).
pub(crate) fn control_writer(mut stream: quinn::SendStream) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = stream.finish();
    });
    tx
}
