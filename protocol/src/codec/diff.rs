//! Pixel comparisons the encoder builds on: where two framebuffers differ inside a tile,
//! and which part of a tile a move explains.

use crate::framebuffer::Framebuffer;
use crate::geometry::Rect;

use super::motion::Vector;

/// Bounding box of the pixels of `rect` that differ between `a` and `b`.
pub fn diff_bounds(a: &Framebuffer, b: &Framebuffer, rect: &Rect) -> Option<Rect> {
    let mut bounds: Option<(u32, u32, u32, u32)> = None;
    for dy in 0..rect.height {
        let (ra, rb) = (a.row(rect, dy), b.row(rect, dy));
        if ra == rb {
            continue;
        }
        // A row of `rect` holds `rect.width` pixels.
        let differs = |(_, (p, q)): &(u32, (&u32, &u32))| p != q;
        let pairs = || (0..rect.width).zip(ra.iter().zip(rb));
        let first = pairs().find(differs).map_or(0, |(i, _)| i);
        let last = pairs().rev().find(differs).map_or(0, |(i, _)| i);
        let y = rect.y + dy;
        bounds = Some(match bounds {
            None => (rect.x + first, y, rect.x + last, y),
            Some((x0, y0, x1, _)) => (x0.min(rect.x + first), y0, x1.max(rect.x + last), y),
        });
    }
    bounds.map(|(x0, y0, x1, y1)| Rect::new(x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

/// The source rect of `rect` displaced by `v`, when it lies inside the framebuffer.
pub fn source_of(rect: &Rect, v: Vector, fb: &Framebuffer) -> Option<Rect> {
    let sx = i64::from(rect.x) - i64::from(v.0);
    let sy = i64::from(rect.y) - i64::from(v.1);
    let (Ok(sx), Ok(sy)) = (u32::try_from(sx), u32::try_from(sy)) else {
        return None;
    };
    let src = Rect::new(sx, sy, rect.width, rect.height);
    src.fits_in(fb.size()).then_some(src)
}

/// True when all of `rect` in `new` equals `old` displaced by `v`.
pub fn moved_whole(new: &Framebuffer, old: &Framebuffer, rect: &Rect, v: Vector) -> bool {
    match source_of(rect, v, old) {
        Some(src) => (0..rect.height).all(|dy| new.row(rect, dy) == old.row(&src, dy)),
        None => false,
    }
}

/// How well `v` explains the changes in `rect`: the bounding box of changed pixels that
/// equal `old` displaced by `v`, and how many pixels inside that box a copy would get
/// right and wrong.
pub struct MoveFit {
    pub bounds: Rect,
    pub right: u32,
    pub wrong: u32,
}

pub fn move_fit(new: &Framebuffer, old: &Framebuffer, rect: &Rect, v: Vector) -> Option<MoveFit> {
    let (w, h) = (old.width(), old.height());
    let old_px = old.pixels();
    let moved = |x: u32, y: u32| -> Option<u32> {
        let sx = u32::try_from(i64::from(x) - i64::from(v.0))
            .ok()
            .filter(|&sx| sx < w)?;
        let sy = u32::try_from(i64::from(y) - i64::from(v.1))
            .ok()
            .filter(|&sy| sy < h)?;
        Some(old_px[sy as usize * w as usize + sx as usize])
    };
    let mut bounds: Option<(u32, u32, u32, u32)> = None;
    for dy in 0..rect.height {
        let y = rect.y + dy;
        let (rn, ro) = (new.row(rect, dy), old.row(rect, dy));
        if rn == ro {
            continue;
        }
        for (x, (p, q)) in (rect.x..rect.x + rect.width).zip(rn.iter().zip(ro)) {
            if p != q && moved(x, y) == Some(*p) {
                bounds = Some(match bounds {
                    None => (x, y, x, y),
                    Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
                });
            }
        }
    }
    let (x0, y0, x1, y1) = bounds?;
    let bounds = Rect::new(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
    let mut right = 0;
    let mut wrong = 0;
    for y in bounds.y..bounds.y + bounds.height {
        for x in bounds.x..bounds.x + bounds.width {
            if moved(x, y) == Some(new.pixel(x, y)) {
                right += 1;
            } else {
                wrong += 1;
            }
        }
    }
    Some(MoveFit {
        bounds,
        right,
        wrong,
    })
}

/// The colour of `rect` when every pixel has it.
pub fn solid_colour(fb: &Framebuffer, rect: &Rect) -> Option<u32> {
    let first = fb.pixel(rect.x, rect.y);
    (0..rect.height)
        .all(|dy| fb.row(rect, dy).iter().all(|p| *p == first))
        .then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Size;

    #[test]
    fn diff_bounds_is_tight() {
        let a = Framebuffer::new(Size::new(64, 64));
        let mut b = a.clone();
        b.set_pixel(10, 20, 1);
        b.set_pixel(30, 5, 1);
        let r = diff_bounds(&a, &b, &Rect::new(0, 0, 64, 64)).unwrap();
        assert_eq!(r, Rect::new(10, 5, 21, 16));
        assert!(diff_bounds(&a, &a, &Rect::new(0, 0, 64, 64)).is_none());
    }

    #[test]
    fn move_fit_finds_the_moved_part_only() {
        let size = Size::new(64, 64);
        let mut old = Framebuffer::new(size);
        for y in 0..64 {
            for x in 0..32 {
                old.set_pixel(x, y, x * 7 + y * 131 + 1);
            }
        }
        // Left half scrolls up by 3; right half stays black.
        let mut new = old.clone();
        for y in 0..61 {
            for x in 0..32 {
                new.set_pixel(x, y, old.pixel(x, y + 3));
            }
        }
        let fit = move_fit(&new, &old, &Rect::new(0, 0, 64, 64), (0, -3)).unwrap();
        assert_eq!(fit.bounds, Rect::new(0, 0, 32, 61));
        assert_eq!(fit.wrong, 0);
    }
}
