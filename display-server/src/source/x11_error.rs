//! Errors of the X11 source and its helpers (shared memory, RandR, the X servers it
//! starts), apart so the helpers need not import the source.

use oriel_protocol::Rect;

#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    #[error("cannot connect to X display {display}: {reason}")]
    Connect { display: String, reason: String },
    #[error("the X server lacks the {0} extension")]
    MissingExtension(&'static str),
    #[error("X request failed: {0}")]
    Request(String),
    #[error("the X screen is {width}x{height}, empty or larger than the protocol allows")]
    TooLarge { width: u32, height: u32 },
    #[error("starting an X server: {0}")]
    Spawn(String),
}

/// `rect` in the core protocol's 16-bit fields: x, y (`i16`), width, height (`u16`).
pub(super) fn x11_rect(rect: &Rect) -> Result<(i16, i16, u16, u16), X11Error> {
    let outside = |_| {
        X11Error::Request(format!(
            "{rect:?} is outside the X protocol's 16-bit coordinates"
        ))
    };
    Ok((
        i16::try_from(rect.x).map_err(outside)?,
        i16::try_from(rect.y).map_err(outside)?,
        u16::try_from(rect.width).map_err(outside)?,
        u16::try_from(rect.height).map_err(outside)?,
    ))
}

/// An X request or reply error, as an [`X11Error`].
pub(super) fn request<E: std::fmt::Display>(e: E) -> X11Error {
    X11Error::Request(e.to_string())
}
