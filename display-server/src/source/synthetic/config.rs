//! What the synthetic desktop shows: the workload, screen size, frame rate and script
//! length, and the limits they are checked against.

use std::str::FromStr;

use oriel_protocol::Size;

use super::error::SyntheticError;

/// Smallest desktop the layouts are designed for.
pub(crate) const MIN_SIZE: Size = Size::new(
    oriel_protocol::desktop_spec::SYNTHETIC_MIN_WIDTH,
    oriel_protocol::desktop_spec::SYNTHETIC_MIN_HEIGHT,
);
/// Largest side accepted (the screen and its backdrop are both held in memory).
pub(crate) const MAX_SIDE: u32 = 8192;
/// Largest pixel count accepted: 8K UHD.
pub(crate) const MAX_PIXELS: u64 = 7680 * 4320;
pub(crate) const MAX_FPS: u32 = 1000;

/// The activity the synthetic desktop simulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// The desktop is drawn once; only the taskbar clock changes, once a second.
    Idle,
    /// Text is typed into an editor, two characters per tick.
    Typing,
    /// A text viewer scrolls up continuously.
    Scroll,
    /// A window is dragged across the desktop.
    Drag,
    /// A 1280x720 region plays camera-like video.
    Video,
    /// Typing, a small video and an occasional window drag at once.
    Mixed,
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::Idle,
        Workload::Typing,
        Workload::Scroll,
        Workload::Drag,
        Workload::Video,
        Workload::Mixed,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Workload::Idle => "idle",
            Workload::Typing => "typing",
            Workload::Scroll => "scroll",
            Workload::Drag => "drag",
            Workload::Video => "video",
            Workload::Mixed => "mixed",
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A workload name that is not one of [`Workload::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown workload {name:?}: expected one of {}", workload_names())]
pub struct ParseWorkloadError {
    pub name: String,
}

fn workload_names() -> String {
    let names: Vec<&str> = Workload::ALL.iter().map(Workload::name).collect();
    names.join(", ")
}

impl FromStr for Workload {
    type Err = ParseWorkloadError;

    /// Accepts the names of [`Workload::name`], ignoring ASCII case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Workload::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ParseWorkloadError { name: s.to_owned() })
    }
}

/// Configuration of a [`super::SyntheticSource`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticConfig {
    pub workload: Workload,
    /// Screen size; 1920x1080 by default.
    pub size: Size,
    /// Ticks per second; 30 by default.
    pub fps: u32,
    /// The script stops changing the screen after this many ticks; `None` runs forever.
    pub max_ticks: Option<u64>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            workload: Workload::Mixed,
            size: Size::new(1920, 1080),
            fps: 30,
            max_ticks: None,
        }
    }
}

impl SyntheticConfig {
    /// Rejects configurations the source cannot run without clamping them silently.
    pub(crate) fn validate(&self) -> Result<(), SyntheticError> {
        let Size { width, height } = self.size;
        if width < MIN_SIZE.width || height < MIN_SIZE.height {
            return Err(SyntheticError::TooSmall(self.size));
        }
        if width > MAX_SIDE || height > MAX_SIDE || self.size.area() > MAX_PIXELS {
            return Err(SyntheticError::TooLarge(self.size));
        }
        if self.fps == 0 || self.fps > MAX_FPS {
            return Err(SyntheticError::BadFps(self.fps));
        }
        Ok(())
    }
}

#[cfg(test)]
mod workload_names {
    use super::Workload;

    #[test]
    fn the_broker_knows_every_workload() {
        let ours: Vec<&str> = Workload::ALL.iter().map(Workload::name).collect();
        assert_eq!(ours, oriel_protocol::desktop_spec::SYNTHETIC_WORKLOADS);
    }
}
