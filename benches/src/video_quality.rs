//! Video quality against the truth, and the MJPEG baseline (SPICE's default stream
//! codec): what JPEG pictures of the same region at the same PSNR would cost, made the
//! way SPICE makes them — libjpeg-turbo, 4:2:0 chroma subsampling.

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
    let image = turbojpeg::Image {
        pixels: rgb.as_slice(),
        width: usize::try_from(rect.width)?,
        pitch: usize::try_from(rect.width)? * 3,
        height: usize::try_from(rect.height)?,
        format: turbojpeg::PixelFormat::RGB,
    };
    let mut compressor = turbojpeg::Compressor::new()?;
    compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2);
    let mut decompressor = turbojpeg::Decompressor::new()?;
    let mut back_rgb = vec![0u8; rgb.len()];
    let mut encode = |quality: u8| -> anyhow::Result<(u64, f64)> {
        compressor.set_quality(i32::from(quality));
        let jpeg = compressor.compress_to_vec(image)?;
        decompressor.decompress(
            &jpeg,
            turbojpeg::Image {
                pixels: back_rgb.as_mut_slice(),
                width: image.width,
                pitch: image.pitch,
                height: image.height,
                format: turbojpeg::PixelFormat::RGB,
            },
        )?;
        let back: Vec<u32> = back_rgb
            .chunks_exact(3)
            .map(|p| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]))
            .collect();
        Ok((jpeg.len() as u64, luma_psnr(pixels, &back)))
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
