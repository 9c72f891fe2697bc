//! Lossless rect codecs and the frame encoder/decoder built on them.

pub mod cache;
pub mod decoder;
pub mod encoder;
pub mod motion;
pub mod palette;
pub mod stream;

pub use decoder::Decoder;
pub use encoder::{EncodedFrame, Encoder, EncoderConfig, FrameMeta, FrameStats};

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
