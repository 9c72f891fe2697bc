//! What the drivers of sans-IO sessions share: stream readers (a task per stream reads
//! chunks as they arrive and hands them, wrapped as the session's inbox wants them, to
//! one channel; the channel is bounded, so a session that falls behind holds its peer
//! back through QUIC flow control) and the wait for the core's next deadline.

use std::time::Instant;

use tokio::sync::mpsc;

/// Largest chunk read from a stream at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// What one read of a stream gave: bytes, the end of the stream (`Ok(None)`), or why it
/// broke.
pub type Chunk = Result<Option<Vec<u8>>, String>;

/// Reads `stream` until it ends or breaks, sending each chunk through `wrap` to `tx`.
pub fn spawn_reader<T: Send + 'static>(
    mut stream: quinn::RecvStream,
    tx: mpsc::Sender<T>,
    wrap: impl Fn(Chunk) -> T + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            let chunk = match stream.read_chunk(READ_CHUNK, true).await {
                Ok(chunk) => Ok(chunk.map(|c| c.bytes.to_vec())),
                Err(e) => Err(e.to_string()),
            };
            let last = !matches!(chunk, Ok(Some(_)));
            if tx.send(wrap(chunk)).await.is_err() || last {
                return;
            }
        }
    });
}

/// Accepts the peer's unidirectional streams for the rest of the connection and reads
/// each with [`spawn_reader`]; `wrap` gets the stream's number (in the order they
/// opened) with each chunk.
pub fn spawn_acceptor<T: Send + 'static>(
    conn: quinn::Connection,
    tx: mpsc::Sender<T>,
    wrap: impl Fn(u64, Chunk) -> T + Clone + Send + Sync + 'static,
) {
    tokio::spawn(async move {
        let mut next_id = 0u64;
        while let Ok(stream) = conn.accept_uni().await {
            let id = next_id;
            next_id += 1;
            let wrap = wrap.clone();
            spawn_reader(stream, tx.clone(), move |chunk| wrap(id, chunk));
        }
    });
}

/// Resolves at the session core's next deadline; never when it has none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
