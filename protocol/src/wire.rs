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

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes one message with its length prefix; refuses messages over `limit`.
pub fn encode_message<T: Serialize>(msg: &T, limit: usize) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    bincode::serde::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let len = out.len() - 4;
    let prefix = match u32::try_from(len) {
        Ok(prefix) if len <= limit => prefix,
        _ => return Err(WireError::TooLarge { len, limit }),
    };
    out[..4].copy_from_slice(&prefix.to_le_bytes());
    Ok(out)
}

/// Decodes a message body (without prefix); the whole body must be consumed.
///
/// bincode allocates a string or byte vector as long as its announced length before
/// reading it, so the decoder runs with a memory limit in proportion to the body: a few
/// bytes announcing gigabytes are refused instead of allocated (found by fuzzing).
/// bincode counts decoded structs at their in-memory size, up to ~6x their encoded
/// size (a `RectUpdate` is 32 bytes in memory, 6 on the wire), hence the factor.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    const MEMORY_PER_BYTE: usize = 8;
    let budget = body.len().saturating_mul(MEMORY_PER_BYTE);
    macro_rules! decode_within {
        ($($limit:literal),+) => {
            $(if budget <= $limit {
                return finish(body, bincode::serde::decode_from_slice(body, config().with_limit::<$limit>()));
            })+
        };
    }
    decode_within!(
        4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456, 1073741824
    );
    Err(WireError::TooLarge {
        len: body.len(),
        limit: 1073741824 / MEMORY_PER_BYTE,
    })
}

fn finish<T>(
    body: &[u8],
    decoded: Result<(T, usize), bincode::error::DecodeError>,
) -> Result<T, WireError> {
    let (msg, used) = decoded.map_err(|e| WireError::Malformed(e.to_string()))?;
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
    fn huge_announced_string_is_refused_without_allocating() {
        // A 6-byte Hello whose first string claims ~3.4 GB (a fuzzer find).
        let body = [0x00, 0xfc, 0x00, 0x0b, 0x0d, 0xcb];
        let mut reader = MessageReader::new(Channel::Control.max_message_len());
        let mut bytes = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
        bytes.extend(body);
        reader.push(&bytes);
        assert!(reader.next_message::<crate::Hello>().is_err());
        let huge_string = [0xfc, 0xff, 0xff, 0xff, 0x7f];
        assert!(decode_body::<String>(&huge_string).is_err());
    }

    #[test]
    fn many_small_updates_fit_the_memory_budget() {
        use crate::{FrameMsg, Rect, RectUpdate, UpdateKind};
        let updates = (0..5000)
            .map(|i| RectUpdate {
                rect: Rect::new(i % 100, 0, 1, 1),
                kind: UpdateKind::Solid(0),
            })
            .collect();
        let msg = FrameMsg {
            frame_id: 1,
            source_seq: 1,
            capture_unix_us: 0,
            resize: None,
            copies: vec![],
            video_ended: vec![],
            updates,
            payload: vec![],
        };
        let bytes = encode_message(&msg, usize::MAX).unwrap();
        assert_eq!(decode_body::<FrameMsg>(&bytes[4..]).unwrap(), msg);
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
