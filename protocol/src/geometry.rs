//! Rectangles and sizes in desktop pixel coordinates.

use serde::{Deserialize, Serialize};

/// Width and height of a desktop or a rectangle, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    pub fn area(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// The area as a buffer length. Exact on 64-bit targets; on narrower ones an area
    /// beyond the address space saturates (no buffer that large could exist anyway).
    pub fn pixel_count(self) -> usize {
        usize::try_from(self.area()).unwrap_or(usize::MAX)
    }

    pub fn full_rect(self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }
}

/// An axis-aligned rectangle; `x`/`y` is the top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// The area as a buffer length; see [`Size::pixel_count`].
    pub fn pixel_count(&self) -> usize {
        self.size().pixel_count()
    }

    /// One past the right edge, computed without overflow.
    pub fn right(&self) -> u64 {
        u64::from(self.x) + u64::from(self.width)
    }

    /// One past the bottom edge, computed without overflow.
    pub fn bottom(&self) -> u64 {
        u64::from(self.y) + u64::from(self.height)
    }

    /// True when the rectangle lies entirely inside a surface of `size`.
    pub fn fits_in(&self, size: Size) -> bool {
        self.right() <= u64::from(size.width) && self.bottom() <= u64::from(size.height)
    }

    pub fn intersect(&self, other: &Rect) -> Rect {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self.right().min(other.right());
        let y1 = self.bottom().min(other.bottom());
        Rect::from_edges(x0, y0, x1, y1)
    }

    /// The rectangle from (`x0`, `y0`) up to (not including) `x1`, `y1`; empty when the
    /// far edges are not beyond the near ones.
    pub fn from_edges(x0: u32, y0: u32, x1: u64, y1: u64) -> Rect {
        if u64::from(x0) >= x1 || u64::from(y0) >= y1 {
            return Rect::default();
        }
        Rect::new(x0, y0, span(x0, x1), span(y0, y1))
    }

    pub fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }

    pub fn intersects(&self, other: &Rect) -> bool {
        !self.intersect(other).is_empty()
    }

    /// The parts of `self` outside `hole`: at most four rectangles (bands above and
    /// below, then the left and right parts of the middle band).
    pub fn subtract(&self, hole: &Rect) -> Vec<Rect> {
        let cut = self.intersect(hole);
        if cut.is_empty() {
            return vec![*self];
        }
        let mut parts = Vec::with_capacity(4);
        let bottom = self.bottom();
        if cut.y > self.y {
            parts.push(Rect::new(self.x, self.y, self.width, cut.y - self.y));
        }
        if cut.bottom() < bottom {
            let y = saturate_u32(cut.bottom());
            parts.push(Rect::new(self.x, y, self.width, span(y, bottom)));
        }
        if cut.x > self.x {
            parts.push(Rect::new(self.x, cut.y, cut.x - self.x, cut.height));
        }
        if cut.right() < self.right() {
            let x = saturate_u32(cut.right());
            parts.push(Rect::new(x, cut.y, span(x, self.right()), cut.height));
        }
        parts
    }

    /// Smallest rectangle covering both (an empty rectangle covers nothing).
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        let x0 = self.x.min(other.x);
        let y0 = self.y.min(other.y);
        let x1 = self.right().max(other.right());
        let y1 = self.bottom().max(other.bottom());
        Rect::new(x0, y0, span(x0, x1), span(y0, y1))
    }
}

/// The area `rects` cover, as rectangles that do not overlap: horizontal bands with
/// the runs of columns covered in each, neighbouring bands with the same runs merged.
/// Drawing reported rectangle by rectangle overlaps (a terminal's scroll, then its new
/// line, then the next scroll): whoever reads those pixels reads each once this way.
pub fn disjoint(rects: &[Rect]) -> Vec<Rect> {
    let rects: Vec<&Rect> = rects.iter().filter(|r| !r.is_empty()).collect();
    let mut edges: Vec<u64> = rects
        .iter()
        .flat_map(|r| [u64::from(r.y), r.bottom()])
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let mut out = Vec::new();
    // The runs of the band being built, from `top` down to the edge now reached.
    let mut runs: Vec<(u32, u64)> = Vec::new();
    let mut top = 0;
    for band in edges.windows(2) {
        let (band_top, band_bottom) = (band[0], band[1]);
        let mut covering: Vec<(u32, u64)> = rects
            .iter()
            .filter(|r| u64::from(r.y) <= band_top && r.bottom() >= band_bottom)
            .map(|r| (r.x, r.right()))
            .collect();
        covering.sort_unstable();
        let mut merged: Vec<(u32, u64)> = Vec::with_capacity(covering.len());
        for (x0, x1) in covering {
            match merged.last_mut() {
                Some(last) if u64::from(x0) <= last.1 => last.1 = last.1.max(x1),
                _ => merged.push((x0, x1)),
            }
        }
        if merged != runs {
            push_band(&runs, top, band_top, &mut out);
            (runs, top) = (merged, band_top);
        }
    }
    if let Some(&bottom) = edges.last() {
        push_band(&runs, top, bottom, &mut out);
    }
    out
}

/// The rectangles of one band of [`disjoint`]: `runs` of columns from `top` to `bottom`.
fn push_band(runs: &[(u32, u64)], top: u64, bottom: u64, out: &mut Vec<Rect>) {
    let top = saturate_u32(top);
    out.extend(
        runs.iter()
            .map(|&(x0, x1)| Rect::from_edges(x0, top, x1, bottom))
            .filter(|r| !r.is_empty()),
    );
}

/// A coordinate or length that left `u32` (a far edge computed in `u64`), saturated.
/// Only rectangles that reach past `u32::MAX` ever saturate.
fn saturate_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The length from `near` up to (not including) `far`, saturated at `u32::MAX`;
/// `far` must not be below `near`.
fn span(near: u32, far: u64) -> u32 {
    saturate_u32(far - u64::from(near))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_leaves_exactly_the_outside() {
        let tile = Rect::new(0, 0, 64, 64);
        assert_eq!(tile.subtract(&Rect::new(100, 100, 5, 5)), vec![tile]);
        assert!(tile.subtract(&Rect::new(0, 0, 64, 64)).is_empty());
        let parts = tile.subtract(&Rect::new(10, 20, 30, 5));
        assert_eq!(parts.len(), 4);
        let area: u64 = parts.iter().map(|r| r.area()).sum();
        assert_eq!(area, 64 * 64 - 30 * 5);
        for (i, a) in parts.iter().enumerate() {
            assert!(!a.intersects(&Rect::new(10, 20, 30, 5)));
            for b in &parts[i + 1..] {
                assert!(!a.intersects(b));
            }
        }
    }

    #[test]
    fn intersect_and_union() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, 5, 10, 10);
        assert_eq!(a.intersect(&b), Rect::new(5, 5, 5, 5));
        assert_eq!(a.union(&b), Rect::new(0, 0, 15, 15));
        assert!(a.intersect(&Rect::new(20, 20, 1, 1)).is_empty());
        assert_eq!(Rect::default().union(&b), b);
    }

    #[test]
    fn fits_without_overflow() {
        let r = Rect::new(u32::MAX, 0, u32::MAX, 1);
        assert!(!r.fits_in(Size::new(100, 100)));
    }

    /// Every pixel of a small grid: covered by `rects`, and by how many of them.
    fn coverage(rects: &[Rect]) -> Vec<u8> {
        let mut grid = vec![0u8; 40 * 40];
        for r in rects {
            for y in r.y..r.y + r.height {
                for x in r.x..r.x + r.width {
                    grid[(y * 40 + x) as usize] += 1;
                }
            }
        }
        grid
    }

    #[test]
    fn a_scroll_and_its_new_line_become_one_rectangle() {
        let scroll = Rect::new(3, 3, 1896, 1014);
        let line = Rect::new(3, 1017, 1896, 13);
        let rects = [scroll, line, scroll, Rect::new(3, 1017, 780, 13)];
        assert_eq!(disjoint(&rects), vec![Rect::new(3, 3, 1896, 1027)]);
        assert!(disjoint(&[]).is_empty());
        assert!(disjoint(&[Rect::new(5, 5, 0, 9)]).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn disjoint_covers_exactly_the_union_once(
            raw in proptest::collection::vec((0u32..39, 0u32..39, 0u32..20, 0u32..20), 0..12)
        ) {
            let rects: Vec<Rect> = raw
                .iter()
                .map(|&(x, y, w, h)| Rect::new(x, y, w.min(40 - x), h.min(40 - y)))
                .collect();
            let pieces = disjoint(&rects);
            let want: Vec<u8> = coverage(&rects).iter().map(|&n| u8::from(n > 0)).collect();
            proptest::prop_assert_eq!(coverage(&pieces), want);
            proptest::prop_assert!(pieces.len() <= 2 * rects.len() * rects.len().max(1));
        }
    }
}
