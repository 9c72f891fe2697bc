//! What the drivers of sans-IO sessions share: stream readers (a task per stream reads
//! chunks as they arrive and hands them, wrapped as the session's inbox wants them, to
//! one channel; the channel is bounded, so a session that falls behind holds its peer
//! back through QUIC flow control) and the wait for the core's next deadline.

use std::future::Future;
use std::time::Instant;

use tokio::sync::mpsc;

/// Largest chunk read from a stream at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// What one read of a stream gave: bytes, the end of the stream (`Ok(None)`), or why it
/// broke.
pub type Chunk = Result<Option<Vec<u8>>, String>;

/// A stream chunks are read from: quinn's own, or a WebTransport session's.
pub trait ChunkSource: Send + 'static {
    /// The next chunk of at most `max` bytes; `Ok(None)` at the end of the stream.
    fn next_chunk(&mut self, max: usize) -> impl Future<Output = Chunk> + Send;
}

impl ChunkSource for quinn::RecvStream {
    async fn next_chunk(&mut self, max: usize) -> Chunk {
        match self.read_chunk(max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes.to_vec())),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl ChunkSource for web_transport_quinn::RecvStream {
    async fn next_chunk(&mut self, max: usize) -> Chunk {
        match self.read_chunk(max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes.to_vec())),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A connection whose peer opens unidirectional streams.
pub trait UniStreams: Send + 'static {
    type Stream: ChunkSource;
    /// The peer's next stream; `None` once the connection is gone.
    fn next_stream(&self) -> impl Future<Output = Option<Self::Stream>> + Send;
}

impl UniStreams for quinn::Connection {
    type Stream = quinn::RecvStream;
    async fn next_stream(&self) -> Option<quinn::RecvStream> {
        self.accept_uni().await.ok()
    }
}

impl UniStreams for web_transport_quinn::Session {
    type Stream = web_transport_quinn::RecvStream;
    async fn next_stream(&self) -> Option<web_transport_quinn::RecvStream> {
        self.accept_uni().await.ok()
    }
}

/// Reads `stream` until it ends or breaks, sending each chunk through `wrap` to `tx`.
pub fn spawn_reader<T: Send + 'static>(
    mut stream: impl ChunkSource,
    tx: mpsc::Sender<T>,
    wrap: impl Fn(Chunk) -> T + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            let chunk = stream.next_chunk(READ_CHUNK).await;
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
    conn: impl UniStreams,
    tx: mpsc::Sender<T>,
    wrap: impl Fn(u64, Chunk) -> T + Clone + Send + Sync + 'static,
) {
    tokio::spawn(async move {
        let mut next_id = 0u64;
        while let Some(stream) = conn.next_stream().await {
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
