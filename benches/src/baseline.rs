//! Baselines the figures are compared against.

use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource};
use oriel_display_server::source::FrameSource;

/// What replaying the deterministic script gives: the baseline cost and the source
/// sequence the client must reach.
pub struct Replay {
    /// Bytes of every produced frame compressed whole with zstd level 1 (what a naive
    /// "compress the screen" streamer would send).
    pub zstd_full_frame_bytes: u64,
    /// The part of it spent on the first (full) frame.
    pub first_frame_zstd_bytes: u64,
    pub final_sequence: u64,
}

pub fn replay(config: &SyntheticConfig) -> anyhow::Result<Replay> {
    let mut source = SyntheticSource::new(config.clone())?;
    let ticks = config.max_ticks.unwrap_or(0);
    let mut total = 0u64;
    let mut first = None;
    let mut bytes = Vec::new();
    for _ in 0..ticks {
        if source.poll().is_empty() {
            continue;
        }
        bytes.clear();
        bytes.extend(
            source
                .pixels()
                .pixels()
                .iter()
                .flat_map(|p| p.to_le_bytes()),
        );
        let n = zstd::bulk::compress(&bytes, 1)?.len() as u64;
        first.get_or_insert(n);
        total += n;
    }
    Ok(Replay {
        zstd_full_frame_bytes: total,
        first_frame_zstd_bytes: first.unwrap_or(0),
        final_sequence: source.sequence(),
    })
}
