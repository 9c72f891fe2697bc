//! Length-prefixed message framing: a little-endian `u32` length, then a bincode body.
//!
//! [`MessageReader`] is the sans-IO decoder: push whatever bytes arrived, pull whole
//! messages out. It checks the announced length against the channel's limit before
//! buffering anything, so a peer cannot make it allocate more than that limit.

use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("stream ended inside a message ({0} bytes left over)")]
    Truncated(usize),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Encodes one message with its length prefix; refuses messages over `limit`.
pub fn encode_message<T: Serialize>(msg: &T, limit: usize) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    bincode::serde::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let len = out.len() - 4;
    if len > limit || len > u32::MAX as usize {
        return Err(WireError::TooLarge { len, limit });
    }
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Decodes a message body (without prefix); the whole body must be consumed.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let (msg, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes after message",
            body.len() - used
        )));
    }
    Ok(msg)
}

/// Incremental decoder for one stream.
#[derive(Debug)]
pub struct MessageReader {
    limit: usize,
    buf: Vec<u8>,
    start: usize,
}

impl MessageReader {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// How many more bytes are needed before the next message can be decoded, once the
    /// length prefix is known; lets callers read exactly that much.
    pub fn wanted(&self) -> Result<usize, WireError> {
        let avail = self.buf.len() - self.start;
        if avail < 4 {
            return Ok(4 - avail);
        }
        let len = self.announced_len()?;
        Ok((4 + len).saturating_sub(avail))
    }

    fn announced_len(&self) -> Result<usize, WireError> {
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let len = u32::from_le_bytes(prefix) as usize;
        if len > self.limit {
            return Err(WireError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        Ok(len)
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        let avail = self.buf.len() - self.start;
        if avail < 4 {
            return Ok(None);
        }
        let len = self.announced_len()?;
        if avail < 4 + len {
            return Ok(None);
        }
        let body = &self.buf[self.start + 4..self.start + 4 + len];
        let msg = decode_body(body)?;
        self.start += 4 + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(msg))
    }

    /// Call at end of stream: errors if a partial message is left.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.buf.len() - self.start {
            0 => Ok(()),
            n => Err(WireError::Truncated(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Channel, ClientControl, InputEvent};

    #[test]
    fn round_trip_byte_by_byte() {
        let msgs = vec![
            ClientControl::Ack {
                frame_id: 7,
                decode_us: 120,
            },
            ClientControl::RefreshRequest,
        ];
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(encode_message(m, 1024).unwrap());
        }
        let mut reader = MessageReader::new(1024);
        let mut got = Vec::new();
        for b in bytes {
            reader.push(&[b]);
            while let Some(m) = reader.next_message::<ClientControl>().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
        reader.finish().unwrap();
    }

    #[test]
    fn oversized_prefix_is_refused_before_buffering() {
        let mut reader = MessageReader::new(Channel::Input.max_message_len());
        reader.push(&u32::MAX.to_le_bytes());
        assert!(matches!(
            reader.next_message::<InputEvent>(),
            Err(WireError::TooLarge { .. })
        ));
        assert!(reader.wanted().is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut reader = MessageReader::new(1024);
        reader.push(&[5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(reader.next_message::<InputEvent>().is_err());
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut body =
            bincode::serde::encode_to_vec(ClientControl::RefreshRequest, config()).unwrap();
        body.push(0);
        assert!(decode_body::<ClientControl>(&body).is_err());
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut reader = MessageReader::new(1024);
        reader.push(&[9, 0, 0]);
        assert!(reader.next_message::<ClientControl>().unwrap().is_none());
        assert!(matches!(reader.finish(), Err(WireError::Truncated(3))));
    }
}
