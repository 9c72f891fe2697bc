//! RGB ↔ I420 (YUV 4:2:0) in full-range BT.601, the JFIF convention: both ends are ours,
//! so we keep all 256 luma levels instead of the 219 of TV range. Integer maths in 16.16
//! fixed point; buffers are reused from frame to frame.

/// Fixed-point one.
const ONE: i32 = 1 << 16;
/// `x` in 16.16 fixed point, rounded.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; only used on BT.601 coefficients below 2, far inside i32"
)]
const fn fix(x: f64) -> i32 {
    (x * ONE as f64 + 0.5) as i32
}

/// An I420 picture: a full-resolution luma plane and two quarter-resolution chroma planes.
/// Width and height are even.
#[derive(Debug, Clone, Default)]
pub struct I420 {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl I420 {
    /// Resizes the planes for a `width` x `height` picture (both even).
    pub fn reshape(&mut self, width: usize, height: usize) {
        debug_assert!(width.is_multiple_of(2) && height.is_multiple_of(2));
        self.width = width;
        self.height = height;
        self.y.resize(width * height, 0);
        self.u.resize(width * height / 4, 0);
        self.v.resize(width * height / 4, 0);
    }

    /// Converts `rgb` (0x00RRGGBB, `width` x `height`, row-major) into this picture.
    pub fn from_rgb(&mut self, rgb: &[u32], width: usize, height: usize) {
        self.reshape(width, height);
        assert_eq!(rgb.len(), width * height, "pixel count must match the size");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { rgb_to_i420_avx2(rgb, width, height, self) };
            return;
        }
        rgb_to_i420(rgb, width, height, self);
    }
}

/// The same loops compiled for AVX2, where they vectorise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rgb_to_i420_avx2(rgb: &[u32], width: usize, height: usize, pic: &mut I420) {
    rgb_to_i420(rgb, width, height, pic)
}

#[inline(always)]
fn rgb_to_i420(rgb: &[u32], width: usize, height: usize, pic: &mut I420) {
    for (y_row, rgb_row) in pic.y.chunks_exact_mut(width).zip(rgb.chunks_exact(width)) {
        for (out, &px) in y_row.iter_mut().zip(rgb_row) {
            *out = luma_of(px);
        }
    }
    let cw = width / 2;
    for cy in 0..height / 2 {
        let top = &rgb[2 * cy * width..][..width];
        let bottom = &rgb[(2 * cy + 1) * width..][..width];
        let u_row = &mut pic.u[cy * cw..][..cw];
        let v_row = &mut pic.v[cy * cw..][..cw];
        for cx in 0..cw {
            let quad = [
                top[2 * cx],
                top[2 * cx + 1],
                bottom[2 * cx],
                bottom[2 * cx + 1],
            ];
            let (mut r, mut g, mut b) = (0i32, 0i32, 0i32);
            for px in quad {
                r += ((px >> 16) & 0xff) as i32;
                g += ((px >> 8) & 0xff) as i32;
                b += (px & 0xff) as i32;
            }
            // Sums of four: the coefficients carry the division by 4.
            let cb = (-fix(0.168736 / 4.0) * r - fix(0.331264 / 4.0) * g
                + fix(0.5 / 4.0) * b
                + (128 << 16)
                + ONE / 2)
                >> 16;
            let cr = (fix(0.5 / 4.0) * r - fix(0.418688 / 4.0) * g - fix(0.081312 / 4.0) * b
                + (128 << 16)
                + ONE / 2)
                >> 16;
            u_row[cx] = cb.clamp(0, 255) as u8;
            v_row[cx] = cr.clamp(0, 255) as u8;
        }
    }
}

/// Full-range BT.601 luma of a 0x00RRGGBB pixel.
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the three weights sum to exactly ONE, so the rounded sum of 8-bit channels is 0..=255"
)]
pub(crate) fn luma_of(px: u32) -> u8 {
    let r = ((px >> 16) & 0xff) as i32;
    let g = ((px >> 8) & 0xff) as i32;
    let b = (px & 0xff) as i32;
    ((fix(0.299) * r + fix(0.587) * g + fix(0.114) * b + ONE / 2) >> 16) as u8
}

/// Converts planes with the given strides into `out` (0x00RRGGBB, `width` x `height`,
/// rows `out_stride` pixels apart, e.g. straight into a framebuffer).
/// Chroma contributions are expanded once per chroma row (two pixel rows), so the pixel
/// loop is a plain, vectorisable zip.
pub(crate) fn to_rgb(
    planes: (&[u8], &[u8], &[u8]),
    strides: (usize, usize, usize),
    (width, height): (usize, usize),
    out: &mut [u32],
    out_stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { i420_to_rgb_avx2(planes, strides, (width, height), out, out_stride) };
        return;
    }
    i420_to_rgb(planes, strides, (width, height), out, out_stride)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn i420_to_rgb_avx2(
    planes: (&[u8], &[u8], &[u8]),
    strides: (usize, usize, usize),
    size: (usize, usize),
    out: &mut [u32],
    out_stride: usize,
) {
    i420_to_rgb(planes, strides, size, out, out_stride)
}

#[inline(always)]
fn i420_to_rgb(
    (y_plane, u_plane, v_plane): (&[u8], &[u8], &[u8]),
    (y_stride, u_stride, v_stride): (usize, usize, usize),
    (width, height): (usize, usize),
    out: &mut [u32],
    out_stride: usize,
) {
    let chroma_width = width.div_ceil(2);
    let (mut dr, mut dg, mut db) = (vec![0i32; width], vec![0i32; width], vec![0i32; width]);
    for row in 0..height {
        if row % 2 == 0 {
            let u_row = &u_plane[(row / 2) * u_stride..][..chroma_width];
            let v_row = &v_plane[(row / 2) * v_stride..][..chroma_width];
            for x in 0..width {
                let (cb, cr) = (i32::from(u_row[x / 2]) - 128, i32::from(v_row[x / 2]) - 128);
                dr[x] = fix(1.402) * cr + ONE / 2;
                dg[x] = -fix(0.344136) * cb - fix(0.714136) * cr + ONE / 2;
                db[x] = fix(1.772) * cb + ONE / 2;
            }
        }
        let y_row = &y_plane[row * y_stride..][..width];
        let out_row = &mut out[row * out_stride..][..width];
        for ((((px, &l), &r), &g), &b) in out_row.iter_mut().zip(y_row).zip(&dr).zip(&dg).zip(&db) {
            let l = i32::from(l) << 16;
            let r = ((l + r) >> 16).clamp(0, 255) as u32;
            let g = ((l + g) >> 16).clamp(0, 255) as u32;
            let b = ((l + b) >> 16).clamp(0, 255) as u32;
            *px = (r << 16) | (g << 8) | b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_primaries_survive_a_round_trip_closely() {
        // 2x2 blocks of one colour each, so chroma subsampling loses nothing.
        let colours = [
            0x000000, 0xffffff, 0x808080, 0xff0000, 0x00ff00, 0x0000ff, 0x3c6e9b,
        ];
        for c in colours {
            let rgb = vec![c; 4 * 4];
            let mut pic = I420::default();
            pic.from_rgb(&rgb, 4, 4);
            let mut back = vec![0u32; 16];
            to_rgb((&pic.y, &pic.u, &pic.v), (4, 2, 2), (4, 4), &mut back, 4);
            for (&a, &b) in rgb.iter().zip(&back) {
                for shift in [0, 8, 16] {
                    let (x, y) = ((a >> shift) & 0xff, (b >> shift) & 0xff);
                    assert!(x.abs_diff(y) <= 2, "{c:06x} became {b:06x}");
                }
            }
        }
    }

    #[test]
    fn the_vectorised_and_plain_conversions_agree() {
        let (w, h) = (66usize, 34usize);
        let rgb: Vec<u32> = (0u32..)
            .take(w * h)
            .map(|i| i.wrapping_mul(2_654_435_761) & 0xff_ffff)
            .collect();
        let mut fast = I420::default();
        fast.from_rgb(&rgb, w, h);
        let mut plain = I420::default();
        plain.reshape(w, h);
        rgb_to_i420(&rgb, w, h, &mut plain);
        assert_eq!((&fast.y, &fast.u, &fast.v), (&plain.y, &plain.u, &plain.v));
        let (mut a, mut b) = (vec![0u32; w * h], vec![0u32; w * h]);
        let planes = (&fast.y[..], &fast.u[..], &fast.v[..]);
        to_rgb(planes, (w, w / 2, w / 2), (w, h), &mut a, w);
        i420_to_rgb(planes, (w, w / 2, w / 2), (w, h), &mut b, w);
        assert_eq!(a, b);
    }

    #[test]
    fn luma_of_white_and_black() {
        assert_eq!(luma_of(0xffffff), 255);
        assert_eq!(luma_of(0), 0);
    }
}
