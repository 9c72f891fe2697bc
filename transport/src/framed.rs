//! Length-prefixed messages over quinn streams, using the sans-IO `MessageReader`.

use oriel_protocol::wire::{encode_message, MessageReader};
use serde::{de::DeserializeOwned, Serialize};

use crate::TransportError;

/// Receives whole messages from one stream, refusing any over the channel's limit.
pub struct FramedRecv {
    stream: quinn::RecvStream,
    reader: MessageReader,
    bytes: u64,
}

impl FramedRecv {
    pub fn new(stream: quinn::RecvStream, limit: usize) -> Self {
        Self {
            stream,
            reader: MessageReader::new(limit),
            bytes: 0,
        }
    }

    /// The next message, or `None` when the peer finished the stream cleanly.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, TransportError> {
        loop {
            if let Some(msg) = self.reader.next_message()? {
                return Ok(Some(msg));
            }
            // `wanted` validates the length prefix first, so an oversized message is
            // refused before its body is read.
            let want = self.reader.wanted()?.max(1);
            match self.stream.read_chunk(want, true).await? {
                Some(chunk) => {
                    self.bytes += chunk.bytes.len() as u64;
                    self.reader.push(&chunk.bytes);
                }
                None => {
                    self.reader.finish()?;
                    return Ok(None);
                }
            }
        }
    }

    /// Bytes received so far, prefixes included.
    pub fn bytes_received(&self) -> u64 {
        self.bytes
    }

    pub fn stream_mut(&mut self) -> &mut quinn::RecvStream {
        &mut self.stream
    }
}

/// Sends one message; returns the bytes written.
pub async fn send_message<T: Serialize>(
    stream: &mut quinn::SendStream,
    msg: &T,
    limit: usize,
) -> Result<usize, TransportError> {
    let bytes = encode_message(msg, limit)?;
    stream.write_all(&bytes).await?;
    Ok(bytes.len())
}
