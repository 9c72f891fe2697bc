//! Luma PSNR: how tests and benchmarks judge a lossy picture against the truth.

use crate::yuv::luma_of;

/// PSNR reported for identical pictures (the true value is infinite).
pub const PSNR_IDENTICAL: f64 = 100.0;

/// Full-range BT.601 luma of a 0x00RRGGBB pixel.
pub fn luma(px: u32) -> u8 {
    luma_of(px)
}

/// Peak signal-to-noise ratio of the luma of `got` against `truth`, in dB; both slices
/// hold the same picture's pixels. Identical pictures give [`PSNR_IDENTICAL`].
pub fn luma_psnr(truth: &[u32], got: &[u32]) -> f64 {
    assert_eq!(truth.len(), got.len(), "pictures of different sizes");
    if truth.is_empty() {
        return PSNR_IDENTICAL;
    }
    let sum: u64 = truth
        .iter()
        .zip(got)
        .map(|(&a, &b)| {
            let d = i64::from(luma_of(a)) - i64::from(luma_of(b));
            (d * d) as u64
        })
        .sum();
    if sum == 0 {
        return PSNR_IDENTICAL;
    }
    let mse = sum as f64 / truth.len() as f64;
    (10.0 * (255.0 * 255.0 / mse).log10()).min(PSNR_IDENTICAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_pictures_and_a_known_error() {
        let a = vec![0x404040u32; 100];
        assert_eq!(luma_psnr(&a, &a), PSNR_IDENTICAL);
        // Every luma off by 1: MSE 1, PSNR = 20 log10(255) = 48.13 dB.
        let b = vec![0x414141u32; 100];
        let p = luma_psnr(&a, &b);
        assert!((p - 48.13).abs() < 0.01, "{p}");
    }
}
