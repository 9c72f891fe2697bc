//! Drawing surface that records damage: every write to the screen goes through a
//! [`Canvas`], so the damage reported by `poll` is exact by construction.

use oriel_protocol::{Framebuffer, Rect};

use super::damage::Damage;

/// A framebuffer plus (for the screen) the damage list its writes are reported to.
/// Off-screen surfaces (window backing stores, line strips) have no damage list.
pub(crate) struct Canvas<'a> {
    fb: &'a mut Framebuffer,
    damage: Option<&'a mut Damage>,
}

impl<'a> Canvas<'a> {
    pub(crate) fn new(fb: &'a mut Framebuffer, damage: &'a mut Damage) -> Self {
        Self {
            fb,
            damage: Some(damage),
        }
    }

    pub(crate) fn offscreen(fb: &'a mut Framebuffer) -> Self {
        Self { fb, damage: None }
    }

    fn clip(&self, rect: Rect) -> Rect {
        rect.intersect(&self.fb.size().full_rect())
    }

    fn mark(&mut self, rect: Rect) {
        if let Some(damage) = self.damage.as_deref_mut() {
            damage.add(rect);
        }
    }

    pub(crate) fn fill(&mut self, rect: Rect, color: u32) {
        let r = self.clip(rect);
        if r.is_empty() {
            return;
        }
        self.fb.fill(&r, color);
        self.mark(r);
    }

    /// Vertical gradient from `top` (first row) to `bottom` (last row).
    pub(crate) fn fill_vgradient(&mut self, rect: Rect, top: u32, bottom: u32) {
        let steps = rect.height.saturating_sub(1).max(1);
        self.paint_rows(rect, |dy, row| row.fill(lerp_color(top, bottom, dy, steps)));
    }

    /// Copies `src_rect` of `src` so that its top-left lands at (`x`, `y`).
    pub(crate) fn copy_from(&mut self, src: &Framebuffer, src_rect: Rect, x: u32, y: u32) {
        let s = src_rect.intersect(&src.size().full_rect());
        // Clipping against the screen only trims the right and bottom edges.
        let dst = self.clip(Rect::new(x, y, s.width, s.height));
        if dst.is_empty() {
            return;
        }
        let s = Rect::new(s.x, s.y, dst.width, dst.height);
        for dy in 0..dst.height {
            self.fb.row_mut(&dst, dy).copy_from_slice(src.row(&s, dy));
        }
        self.mark(dst);
    }

    /// Moves the content of `rect` up by `dy` rows (a memmove per row); the bottom `dy`
    /// rows keep stale pixels for the caller to repaint.
    pub(crate) fn scroll_up(&mut self, rect: Rect, dy: u32) {
        let r = self.clip(rect);
        if r.is_empty() || dy == 0 {
            return;
        }
        let stride = self.fb.width() as usize;
        let width = r.width as usize;
        let pixels = self.fb.pixels_mut();
        for row in r.y..(r.y + r.height).saturating_sub(dy) {
            let dst = row as usize * stride + r.x as usize;
            let src = dst + dy as usize * stride;
            pixels.copy_within(src..src + width, dst);
        }
        self.mark(r);
    }

    /// Hands each row of `rect` to `paint` as `(row offset within rect, pixels)`. Clipping
    /// only trims the right and bottom (coordinates are unsigned), so `pixels[0]` is always
    /// column `rect.x`. The whole clipped rectangle counts as damaged.
    pub(crate) fn paint_rows(&mut self, rect: Rect, mut paint: impl FnMut(u32, &mut [u32])) {
        let r = self.clip(rect);
        if r.is_empty() {
            return;
        }
        for dy in 0..r.height {
            paint(dy, self.fb.row_mut(&r, dy));
        }
        self.mark(r);
    }
}

/// Blends `src` over `dst` with coverage `alpha` (0..=255), all channels at once: the red
/// and blue lanes share one multiply, green gets another.
#[inline]
pub(crate) fn blend(dst: u32, src: u32, alpha: u8) -> u32 {
    let a = u32::from(alpha) + (u32::from(alpha) >> 7); // 0..=256, so 255 maps to exact src
    let inv = 256 - a;
    let rb = (((src & 0x00FF_00FF) * a + (dst & 0x00FF_00FF) * inv) >> 8) & 0x00FF_00FF;
    let g = (((src & 0x0000_FF00) * a + (dst & 0x0000_FF00) * inv) >> 8) & 0x0000_FF00;
    rb | g
}

/// Colour `step / steps` of the way from `from` to `to`.
pub(crate) fn lerp_color(from: u32, to: u32, step: u32, steps: u32) -> u32 {
    let steps = steps.max(1);
    // At most 255: the step is clamped to `steps`.
    let t = u8::try_from(u64::from(step.min(steps)) * 255 / u64::from(steps)).unwrap_or(u8::MAX);
    blend(from, to, t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oriel_protocol::Size;

    #[test]
    fn blend_endpoints_are_exact() {
        assert_eq!(blend(0x123456, 0xABCDEF, 0), 0x123456);
        assert_eq!(blend(0x123456, 0xABCDEF, 255), 0xABCDEF);
        let mid = blend(0x000000, 0xFFFFFF, 128);
        assert!((0x7F..=0x81).contains(&(mid & 0xFF)));
    }

    #[test]
    fn scroll_up_moves_rows() {
        let mut fb = Framebuffer::new(Size::new(4, 4));
        for y in 0..4 {
            for x in 0..4 {
                fb.set_pixel(x, y, y * 10 + x);
            }
        }
        let mut damage = Damage::new(fb.size());
        Canvas::new(&mut fb, &mut damage).scroll_up(Rect::new(1, 0, 2, 4), 1);
        assert_eq!(fb.pixel(1, 0), 11);
        assert_eq!(fb.pixel(2, 2), 32);
        assert_eq!(fb.pixel(0, 0), 0);
        assert_eq!(damage.take(), vec![Rect::new(1, 0, 2, 4)]);
    }
}
