//! Where the desktop goes in the window: scaled to fit, aspect kept, centred, black
//! around; and the way back, for the pointer.

use oriel_protocol::{Framebuffer, Rect, Size};

/// The desktop's place in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub desktop: Size,
    pub window: Size,
    /// Top-left corner and size of the desktop's image in the window.
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Layout {
    /// The largest image of `desktop` that fits `window` with the desktop's aspect.
    pub(super) fn fit(desktop: Size, window: Size) -> Layout {
        let (dw, dh) = (
            u64::from(desktop.width.max(1)),
            u64::from(desktop.height.max(1)),
        );
        let (ww, wh) = (u64::from(window.width), u64::from(window.height));
        // Width-bound unless that makes it too tall.
        let (width, height) = if ww * dh <= wh * dw {
            (ww, ww * dh / dw)
        } else {
            (wh * dw / dh, wh)
        };
        // The image fits the window, so none of these saturates.
        let fit = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Layout {
            desktop,
            window,
            x: fit((ww - width) / 2),
            y: fit((wh - height) / 2),
            width: fit(width),
            height: fit(height),
        }
    }

    /// The desktop pixel under window position (`wx`, `wy`); `None` outside the image.
    pub(super) fn desktop_pixel(&self, wx: f64, wy: f64) -> Option<(u32, u32)> {
        let (fx, fy) = (wx - f64::from(self.x), wy - f64::from(self.y));
        if fx < 0.0 || fy < 0.0 || fx >= f64::from(self.width) || fy >= f64::from(self.height) {
            return None;
        }
        let x = pixel_index(fx * f64::from(self.desktop.width) / f64::from(self.width));
        let y = pixel_index(fy * f64::from(self.desktop.height) / f64::from(self.height));
        Some((
            x.min(self.desktop.width - 1),
            y.min(self.desktop.height - 1),
        ))
    }

    /// Where the desktop's image lies in the window.
    pub(super) fn image_rect(&self) -> Rect {
        Rect::new(self.x, self.y, self.width, self.height)
    }

    /// The window pixels that show desktop rect `r` (a few more where scaled).
    pub(super) fn window_rect(&self, r: &Rect) -> Rect {
        let scale =
            |v: u64, image: u32, desktop: u32| v * u64::from(image) / u64::from(desktop.max(1));
        let up = |v: u64, image: u32, desktop: u32| {
            (v * u64::from(image)).div_ceil(u64::from(desktop.max(1)))
        };
        let (dw, dh) = (self.desktop.width, self.desktop.height);
        let x0 = scale(u64::from(r.x), self.width, dw);
        let y0 = scale(u64::from(r.y), self.height, dh);
        let x1 = up(r.right(), self.width, dw);
        let y1 = up(r.bottom(), self.height, dh);
        // Within the image, so each fits in u32.
        let fit = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Rect::new(
            self.x + fit(x0),
            self.y + fit(y0),
            fit(x1 - x0),
            fit(y1 - y0),
        )
        .intersect(&self.image_rect())
    }

    /// Draws `fb` into `out` (the window's pixels, row-major), nearest-neighbour when
    /// scaled, and clears the border.
    pub(super) fn draw(&self, fb: &Framebuffer, out: &mut [u32], columns: &mut Vec<u32>) {
        let (x0, w) = (self.x as usize, self.width as usize);
        let rows = self.y as usize..(self.y + self.height) as usize;
        for (row, line) in out.chunks_exact_mut(self.window.width as usize).enumerate() {
            if rows.contains(&row) {
                line[..x0].fill(0);
                line[x0 + w..].fill(0);
            } else {
                line.fill(0);
            }
        }
        self.draw_rect(fb, out, columns, &self.image_rect());
    }

    /// Draws the part of `fb` that window rect `clip` shows into `out`.
    pub(super) fn draw_rect(
        &self,
        fb: &Framebuffer,
        out: &mut [u32],
        columns: &mut Vec<u32>,
        clip: &Rect,
    ) {
        let clip = clip.intersect(&self.image_rect());
        let ww = self.window.width as usize;
        let (x0, y0, w, h) = (
            self.x as usize,
            self.y as usize,
            self.width as usize,
            self.height as usize,
        );
        let src = fb.pixels();
        let sw = fb.width() as usize;
        let same = self.width == fb.width() && self.height == fb.height();
        if !same {
            columns.clear();
            // Below `sw`, the framebuffer's u32 width.
            columns.extend((0..w).map(|x| u32::try_from(x * sw / w.max(1)).unwrap_or(u32::MAX)));
        }
        let (cx, cw) = (clip.x as usize, clip.width as usize);
        for row in clip.y as usize..(clip.y + clip.height) as usize {
            let dst = &mut out[row * ww + cx..][..cw];
            let sy = if same {
                row - y0
            } else {
                (row - y0) * fb.height() as usize / h.max(1)
            };
            let src_row = &src[sy * sw..][..sw];
            if same {
                dst.copy_from_slice(&src_row[cx - x0..][..cw]);
            } else {
                for (d, &sx) in dst.iter_mut().zip(&columns[cx - x0..]) {
                    *d = src_row[sx as usize];
                }
            }
        }
    }
}

/// A non-negative pixel position, rounded down.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; callers pass non-negative positions and clamp to the desktop"
)]
fn pixel_index(v: f64) -> u32 {
    v as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_with_the_aspect_kept_and_centred() {
        let l = Layout::fit(Size::new(1920, 1080), Size::new(1000, 1000));
        assert_eq!((l.x, l.y, l.width, l.height), (0, 219, 1000, 562));
        let l = Layout::fit(Size::new(640, 480), Size::new(640, 480));
        assert_eq!((l.x, l.y, l.width, l.height), (0, 0, 640, 480));
        let l = Layout::fit(Size::new(100, 100), Size::new(300, 100));
        assert_eq!((l.x, l.y, l.width, l.height), (100, 0, 100, 100));
    }

    #[test]
    fn pointer_maps_back_to_desktop_pixels() {
        let l = Layout::fit(Size::new(200, 100), Size::new(100, 100));
        assert_eq!(l.desktop_pixel(0.0, 25.0), Some((0, 0)));
        assert_eq!(l.desktop_pixel(99.9, 74.9), Some((199, 99)));
        assert_eq!(l.desktop_pixel(50.0, 10.0), None, "in the border");
    }

    #[test]
    fn draws_1_to_1_and_scaled() {
        let size = Size::new(4, 2);
        let fb = Framebuffer::from_pixels(size, (0..8).collect()).unwrap();
        let mut cols = Vec::new();
        let l = Layout::fit(size, Size::new(4, 4));
        let mut out = vec![9; 16];
        l.draw(&fb, &mut out, &mut cols);
        assert_eq!(out, [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0]);
        let l = Layout::fit(size, Size::new(2, 1));
        let mut out = vec![9; 2];
        l.draw(&fb, &mut out, &mut cols);
        assert_eq!(out, [0, 2]);
    }

    #[test]
    fn a_changed_rect_redraws_only_the_window_pixels_that_show_it() {
        let size = Size::new(8, 4);
        let fb = Framebuffer::from_pixels(size, (1..=32).collect()).unwrap();
        let mut cols = Vec::new();
        // 1:1 with a border of one row above and below.
        let l = Layout::fit(size, Size::new(8, 6));
        let r = Rect::new(2, 1, 3, 2);
        let w = l.window_rect(&r);
        assert_eq!(w, Rect::new(2, 2, 3, 2));
        let mut out = vec![7; 48];
        l.draw_rect(&fb, &mut out, &mut cols, &w);
        for y in 0..6u32 {
            for x in 0..8u32 {
                let inside = (2..5).contains(&x) && (2..4).contains(&y);
                let want = if inside { fb.pixel(x, y - 1) } else { 7 };
                assert_eq!(out[(y * 8 + x) as usize], want, "({x},{y})");
            }
        }
        // Halved: the window rect covers every pixel showing the desktop rect.
        let l = Layout::fit(size, Size::new(4, 2));
        let w = l.window_rect(&Rect::new(3, 1, 1, 1));
        assert_eq!(w, Rect::new(1, 0, 1, 1));
        let mut out = vec![7; 8];
        l.draw_rect(&fb, &mut out, &mut cols, &w);
        assert_eq!(out, [7, fb.pixel(2, 0), 7, 7, 7, 7, 7, 7]);
        // Whatever is asked, only the image is drawn.
        let mut out = vec![7; 8];
        l.draw_rect(&fb, &mut out, &mut cols, &Rect::new(0, 0, 100, 100));
        let mut whole = vec![7; 8];
        l.draw(&fb, &mut whole, &mut cols);
        assert_eq!(out, whole);
    }
}
