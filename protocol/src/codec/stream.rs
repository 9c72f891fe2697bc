//! The connection's persistent zstd stream. Every frame's payload is one flushed chunk
//! of a single compression stream, so the window (8 MiB) keeps what was sent before:
//! glyphs, words and icons the client has already seen compress to back-references,
//! as SPICE's GLZ global dictionary does.

use zstd::stream::raw::{CParameter, DParameter, Decoder, Encoder, InBuffer, Operation, OutBuffer};

use super::{invalid, CodecError};

/// log2 of the shared window; the decoder refuses streams that ask for more.
pub const WINDOW_LOG: u32 = 23;

pub struct StreamEncoder {
    zstd: Encoder<'static>,
}

impl StreamEncoder {
    pub fn new(level: i32) -> Result<Self, CodecError> {
        let mut zstd = Encoder::new(level)?;
        zstd.set_parameter(CParameter::WindowLog(WINDOW_LOG))?;
        Ok(Self { zstd })
    }

    /// Compresses `data` as the next chunk, appending to `out`. An empty `data` yields
    /// an empty chunk.
    pub fn compress_chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if data.is_empty() {
            return Ok(());
        }
        out.reserve(zstd::zstd_safe::compress_bound(data.len()) + 64);
        let mut input = InBuffer::around(data);
        while input.pos < data.len() {
            grow_if_full(out);
            let mut output = OutBuffer::around_pos(out, out.len());
            self.zstd.run(&mut input, &mut output)?;
        }
        loop {
            grow_if_full(out);
            let mut output = OutBuffer::around_pos(out, out.len());
            let remaining = self.zstd.flush(&mut output)?;
            if remaining == 0 {
                return Ok(());
            }
        }
    }
}

fn grow_if_full(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < 1024 {
        out.reserve(64 * 1024);
    }
}

pub struct StreamDecoder {
    zstd: Decoder<'static>,
}

impl StreamDecoder {
    pub fn new() -> Result<Self, CodecError> {
        let mut zstd = Decoder::new()?;
        zstd.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))?;
        Ok(Self { zstd })
    }

    /// Decompresses one chunk into `out`, which must come out exactly full: a chunk
    /// that yields more or fewer bytes than the frame announced is an error, and more
    /// than `out.len()` is never produced.
    pub fn decompress_chunk(&mut self, chunk: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        if chunk.is_empty() {
            return if out.is_empty() {
                Ok(())
            } else {
                Err(invalid("payload is empty but updates need pixels"))
            };
        }
        let mut input = InBuffer::around(chunk);
        let mut written = 0;
        loop {
            let mut output = OutBuffer::around_pos(&mut out[..], written);
            self.zstd.run(&mut input, &mut output)?;
            let progress = output.pos() - written;
            written = output.pos();
            if input.pos == chunk.len() && progress == 0 {
                break;
            }
            if written == out.len() && input.pos == chunk.len() {
                break;
            }
            if progress == 0 && written == out.len() {
                return Err(invalid("payload decompresses to more bytes than announced"));
            }
        }
        // Anything still buffered inside zstd would be excess output.
        let mut probe = [0u8; 1];
        let mut output = OutBuffer::around(&mut probe[..]);
        self.zstd.run(&mut InBuffer::around(&[]), &mut output)?;
        if output.pos() != 0 {
            return Err(invalid("payload decompresses to more bytes than announced"));
        }
        if written != out.len() {
            return Err(invalid(format!(
                "payload decompresses to {written} bytes, frame announced {}",
                out.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_share_context() {
        let mut enc = StreamEncoder::new(1).unwrap();
        let mut dec = StreamDecoder::new().unwrap();
        let text: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut first = Vec::new();
        enc.compress_chunk(&text, &mut first).unwrap();
        let mut second = Vec::new();
        enc.compress_chunk(&text, &mut second).unwrap();
        assert!(
            second.len() * 10 < first.len(),
            "{} vs {}",
            second.len(),
            first.len()
        );
        for chunk in [&first, &second] {
            let mut out = vec![0; text.len()];
            dec.decompress_chunk(chunk, &mut out).unwrap();
            assert_eq!(out, text);
        }
    }

    #[test]
    fn wrong_announced_length_is_an_error() {
        let mut enc = StreamEncoder::new(1).unwrap();
        let mut chunk = Vec::new();
        enc.compress_chunk(&[1u8; 5000], &mut chunk).unwrap();
        let mut dec = StreamDecoder::new().unwrap();
        assert!(dec.decompress_chunk(&chunk, &mut [0; 4999]).is_err());
        let mut dec = StreamDecoder::new().unwrap();
        assert!(dec.decompress_chunk(&chunk, &mut [0; 5001]).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut dec = StreamDecoder::new().unwrap();
        assert!(dec
            .decompress_chunk(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3], &mut [0; 64])
            .is_err());
    }
}
