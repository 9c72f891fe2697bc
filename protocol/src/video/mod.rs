//! Video regions, sans-IO: deciding which parts of the screen behave like video
//! ([`detect`]) and how fast to send them ([`rate`]). Time comes in as microseconds
//! from the caller, so both are deterministic under test.

pub mod detect;
pub mod rate;

pub use detect::{DetectorConfig, RegionEvent, TileHits, VideoDetector, VideoRegion};
pub use rate::{AckOf, RateConfig, RateController};
