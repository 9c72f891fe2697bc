//! Errors of the synthetic desktop source.

use std::path::PathBuf;

use oriel_protocol::Size;

use super::config::{MAX_FPS, MAX_PIXELS, MAX_SIDE, MIN_SIZE};

#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    #[error(
        "desktop size {}x{} is too small: the synthetic desktop needs at least {}x{}",
        .0.width, .0.height, MIN_SIZE.width, MIN_SIZE.height
    )]
    TooSmall(Size),

    #[error(
        "desktop size {}x{} is too large: at most {MAX_SIDE} pixels per side and {MAX_PIXELS} pixels in all",
        .0.width, .0.height
    )]
    TooLarge(Size),

    #[error("frame rate {0} fps is out of range (1..={MAX_FPS})")]
    BadFps(u32),

    #[error(
        "cannot read font file {}: {io} (install the Debian package `{package}`)",
        path.display()
    )]
    FontUnavailable {
        path: PathBuf,
        package: &'static str,
        io: std::io::Error,
    },

    #[error("font file {} is not a usable TrueType font: {reason}", path.display())]
    FontInvalid { path: PathBuf, reason: String },
}
