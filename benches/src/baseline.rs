//! Baselines the figures are compared against.

use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource};
use std::time::{Duration, Instant};

use oriel_display_server::source::FrameSource;
use oriel_protocol::codec::stream::StreamEncoder;

/// What replaying the deterministic script gives: the baseline cost and the source
/// sequence the client must reach.
pub(crate) struct Replay {
    /// Bytes of every produced frame compressed whole with zstd level 1 (what a naive
    /// "compress the screen" streamer would send).
    pub zstd_full_frame_bytes: u64,
    /// The part of it spent on the first (full) frame.
    pub first_frame_zstd_bytes: u64,
    /// The general-purpose codec choice, measured on this content: the damaged pixels
    /// of every frame through one persistent zstd-1 stream, and through LZ4 frame by
    /// frame (LZ4 has no context that survives frames).
    pub general: GeneralCodecs,
    pub final_sequence: u64,
}

pub(crate) fn replay(config: &SyntheticConfig) -> anyhow::Result<Replay> {
    let mut source = SyntheticSource::new(config.clone())?;
    let ticks = config.max_ticks.unwrap_or(0);
    let mut total = 0u64;
    let mut first = None;
    let mut general = GeneralCodecs::default();
    let mut stream = StreamEncoder::new(1)?;
    let mut damaged = Vec::new();
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..ticks {
        let damage = source.poll();
        if damage.is_empty() {
            continue;
        }
        damaged.clear();
        for rect in &damage {
            for dy in 0..rect.height {
                damaged.extend(
                    source
                        .pixels()
                        .row(rect, dy)
                        .iter()
                        .flat_map(|p| p.to_le_bytes()),
                );
            }
        }
        general.input_bytes += damaged.len() as u64;
        let t = Instant::now();
        out.clear();
        stream.compress_chunk(&damaged, &mut out)?;
        general.zstd1_stream_time += t.elapsed();
        general.zstd1_stream_bytes += out.len() as u64;
        let t = Instant::now();
        general.lz4_bytes += lz4_flex::block::compress(&damaged).len() as u64;
        general.lz4_time += t.elapsed();
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
        general,
        final_sequence: source.sequence(),
    })
}

#[derive(Debug, Default)]
pub(crate) struct GeneralCodecs {
    pub input_bytes: u64,
    pub zstd1_stream_bytes: u64,
    pub zstd1_stream_time: Duration,
    pub lz4_bytes: u64,
    pub lz4_time: Duration,
}
