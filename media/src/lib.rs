//! Lossy media for Oriel's video regions and sound: H.264 through openh264, the colour
//! conversion both ends share, the quality metric the tests and benchmarks use, and Opus.
//!
//! No I/O here either: the display server feeds pixels in and gets bitstreams out, the
//! client feeds bitstreams in and gets pixels out.

mod h264;
mod opus;
mod quality;
mod yuv;

pub use h264::{EncodedVideo, VideoDecoder, VideoEncoder, VideoEncoderConfig};
pub use opus::{AudioDecoder, AudioEncoder, Packetizer, FRAME_LEN as AUDIO_FRAME_LEN};
pub use quality::{luma, luma_psnr, PSNR_IDENTICAL};
pub use yuv::I420;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("video size {width}x{height} is not supported: {reason}")]
    Size {
        width: u32,
        height: u32,
        reason: &'static str,
    },
    #[error("openh264: {0}")]
    Codec(String),
    #[error("the stream decoded to {got_w}x{got_h}, the region is {want_w}x{want_h}")]
    WrongSize {
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
}
