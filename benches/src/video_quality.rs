//! Video quality against the truth, and the MJPEG baseline (SPICE's default stream
//! codec): what JPEG pictures of the same region at the same PSNR would cost.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource};
use oriel_display_server::source::FrameSource;
use oriel_media::luma_psnr;
use oriel_protocol::Rect;

/// A picture the client showed.
pub(crate) struct PictureSample {
    pub seq: u64,
    pub rect: Rect,
    pub pixels: Vec<u32>,
}

pub(crate) struct VideoScore {
    pub psnr_db: Vec<f64>,
    /// Mean bytes of a JPEG of each sampled picture at the H.264 picture's PSNR.
    pub jpeg_bytes_mean: f64,
}

/// Replays the source to each sample's sequence and scores the sample (samples must be
/// in sequence order).
pub(crate) fn score(
    config: &SyntheticConfig,
    samples: &[PictureSample],
) -> anyhow::Result<VideoScore> {
    let mut source = SyntheticSource::new(config.clone())?;
    let mut psnr_db = Vec::new();
    let mut jpeg_total = 0u64;
    let mut truth = Vec::new();
    for s in samples {
        anyhow::ensure!(source.advance_to(s.seq), "source ended before {}", s.seq);
        source.pixels().read_rect(&s.rect, &mut truth);
        let psnr = luma_psnr(&truth, &s.pixels);
        psnr_db.push(psnr);
        jpeg_total += jpeg_bytes_at(&truth, s.rect, psnr)?;
    }
    Ok(VideoScore {
        psnr_db,
        jpeg_bytes_mean: jpeg_total as f64 / samples.len().max(1) as f64,
    })
}

/// Size of the smallest-quality JPEG of `pixels` whose luma PSNR reaches `target`.
fn jpeg_bytes_at(pixels: &[u32], rect: Rect, target: f64) -> anyhow::Result<u64> {
    let rgb: Vec<u8> = pixels
        .iter()
        .flat_map(|&p| oriel_protocol::rgb_bytes(p))
        .collect();
    let encode = |quality: u8| -> anyhow::Result<(u64, f64)> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality).encode(
            &rgb,
            rect.width,
            rect.height,
            ExtendedColorType::Rgb8,
        )?;
        let decoded = image::load(Cursor::new(&out), image::ImageFormat::Jpeg)?.to_rgb8();
        let back: Vec<u32> = decoded
            .pixels()
            .map(|p| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]))
            .collect();
        Ok((out.len() as u64, luma_psnr(pixels, &back)))
    };
    // PSNR grows with quality: binary search the lowest quality that reaches the target.
    let (mut lo, mut hi) = (1u8, 100u8);
    let mut best = encode(100)?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (bytes, psnr) = encode(mid)?;
        if psnr >= target {
            best = (bytes, psnr);
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(best.0)
}
