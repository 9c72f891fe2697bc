//! Lossless rect codecs and the frame encoder/decoder built on them.

pub mod cache;
pub mod decoder;
pub mod diff;
pub mod encoder;
pub mod motion;
pub mod palette;
pub mod stream;

pub use decoder::Decoder;
pub use encoder::{EncodedFrame, Encoder, EncoderConfig, FrameMeta, FrameStats, TileVerdict};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
    #[error("invalid frame: {0}")]
    Invalid(String),
    #[error("frame {got} arrived after frame {last}: frames must arrive in order")]
    OutOfOrder { got: u64, last: u64 },
}

pub(crate) fn invalid(msg: impl Into<String>) -> CodecError {
    CodecError::Invalid(msg.into())
}

/// Applies moves the way both ends must: every source is read from the framebuffer as
/// it was before the frame, then every destination is written. Rects must fit.
pub(crate) fn apply_copies(
    fb: &mut crate::Framebuffer,
    copies: &[crate::CopyRect],
    scratch: &mut Vec<u32>,
) {
    scratch.clear();
    for c in copies {
        let src = crate::Rect::new(c.src_x, c.src_y, c.dst.width, c.dst.height);
        for dy in 0..src.height {
            scratch.extend_from_slice(fb.row(&src, dy));
        }
    }
    let mut offset = 0;
    for c in copies {
        let n = c.dst.pixel_count();
        fb.write_rect(&c.dst, &scratch[offset..offset + n]);
        offset += n;
    }
}
