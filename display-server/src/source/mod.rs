//! Desktop sources: where a desktop's pixels come from and where its input goes.

pub mod synthetic;

use oriel_protocol::{Framebuffer, InputEvent, Rect, Size};

/// A desktop screen the server can capture.
///
/// The server calls [`FrameSource::poll`] at the source's frame interval; a source reports
/// exactly the rectangles that changed since the previous call, so the server only diffs
/// and hashes damaged tiles.
pub trait FrameSource: Send {
    fn size(&self) -> Size;

    /// How often the server should poll for damage.
    fn frame_interval(&self) -> std::time::Duration;

    /// Brings the source up to date and returns the damage since the last call.
    fn poll(&mut self) -> Vec<Rect>;

    /// The current screen.
    fn pixels(&self) -> &Framebuffer;

    /// Number of polls that produced damage so far: the client holds source state
    /// `sequence()` once it has decoded a frame carrying it.
    fn sequence(&self) -> u64;

    /// Delivers a keyboard or pointer event to the desktop.
    fn inject(&mut self, event: &InputEvent);

    /// The concrete source, for tools and tests that need more than this trait.
    fn as_any(&self) -> &dyn std::any::Any;
}
