//! Desktop sources: where a desktop's pixels come from and where its input goes.

pub mod config;
pub mod kvm;
pub mod synthetic;
pub mod x11;
mod x11_capture;
mod x11_error;
mod x11_input;
mod x11_randr;
mod x11_shm;
pub mod xserver;
mod xvfb_file;

pub use config::{SourceConfig, DEFAULT_IMAGE};
use oriel_protocol::{Framebuffer, InputEvent, Rect, Size};

/// A desktop screen the server can capture.
///
/// The server calls [`FrameSource::poll`] at most once per frame interval while the screen
/// is busy, sooner after input (see `capture_pacer`); a source reports exactly the
/// rectangles that changed since the previous call, so the server only diffs and hashes
/// damaged tiles.
pub trait FrameSource: Send {
    fn size(&self) -> Size;

    /// How often the server should poll for damage.
    fn frame_interval(&self) -> std::time::Duration;

    /// A descriptor that becomes readable when the source has damage to report (an X
    /// connection's socket), so the server polls when the screen changes instead of at
    /// every frame interval. `None`: the source is polled at every interval.
    fn damage_signal(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// Whether damage the source already knows of waits for the next poll (read along
    /// with the last poll's replies, so its descriptor will not signal it).
    fn damage_waiting(&self) -> bool {
        false
    }

    /// Brings the source up to date and returns the damage since the last call.
    fn poll(&mut self) -> Vec<Rect>;

    /// The current screen.
    fn pixels(&self) -> &Framebuffer;

    /// Number of polls that produced damage so far: the client holds source state
    /// `sequence()` once it has decoded a frame carrying it.
    fn sequence(&self) -> u64;

    /// Delivers a keyboard or pointer event to the desktop.
    fn inject(&mut self, event: &InputEvent);

    /// Where input can go without the source: a key then need not wait for a capture
    /// in progress. `None`: input goes through [`FrameSource::inject`].
    fn input_sink(&self) -> Option<std::sync::Arc<dyn InputSink>> {
        None
    }

    /// The sound server of the desktop's programs, for sources that have one.
    fn sound_server(&self) -> Option<crate::audio::SoundAccess> {
        None
    }

    /// The X display whose clipboard the desktop shares, and how, for sources that
    /// have one.
    fn clipboard(&self) -> Option<(String, crate::clipboard::ClipboardSetting)> {
        None
    }

    /// The concrete source, for tools and tests that need more than this trait.
    fn as_any(&self) -> &dyn std::any::Any;

    /// The pointer as of the last poll, for sources that know it; clients draw it
    /// themselves. `None`: clients keep the default arrow.
    fn cursor(&self) -> Option<&SourceCursor> {
        None
    }

    /// Changes the desktop's size, for a client whose window has another; the next poll
    /// reports the new size (possibly a little later, as an X server applies it).
    fn request_resize(&mut self, size: Size) -> Result<(), String> {
        let _ = size;
        Err("this desktop cannot change its size".into())
    }

    /// Why the source can no longer show its desktop (e.g. its X server died); `None`
    /// while it works. A failed source stays failed.
    fn failure(&self) -> Option<String> {
        None
    }

    /// The newest `max_bytes` of the desktop's serial console, for sources that have one.
    fn console_log(&self, max_bytes: usize) -> Option<String> {
        let _ = max_bytes;
        None
    }

    /// Gauges and counters of the source for `/metrics`, labelled there by desktop.
    fn metrics(&self) -> Vec<SourceMetric> {
        Vec::new()
    }

    /// The desktop was stopped (`true`) or started again: sources that run something,
    /// like a VM, hold it still meanwhile. Capture is not called while paused.
    fn set_paused(&mut self, paused: bool) {
        let _ = paused;
    }
}

/// Input into a desktop, usable from any thread while the source captures.
pub trait InputSink: Send + Sync {
    fn inject(&self, event: &InputEvent);
}

/// One figure a source reports on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceMetric {
    /// The metric family's name; a counter's sample gets `_total` appended.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub value: u64,
}

/// Whether a [`SourceMetric`] only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl SourceMetric {
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Counter,
            value,
        }
    }

    pub fn gauge(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Gauge,
            value,
        }
    }
}

/// A source's pointer: its shape (a [`oriel_protocol::CursorMsg::Shape`]) with a serial
/// that changes when the shape does, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCursor {
    pub serial: u64,
    pub shape: oriel_protocol::CursorMsg,
    pub x: u32,
    pub y: u32,
    pub visible: bool,
}
