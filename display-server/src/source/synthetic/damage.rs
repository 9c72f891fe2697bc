//! Damage bookkeeping: every drawing primitive reports the screen rectangle it touched,
//! and nearby rectangles are coalesced so the list stays short but tight.

use oriel_protocol::{Rect, Size};

use super::num::{bottom, right};

/// Past this many separate rectangles, a new one is merged into its cheapest partner so
/// the per-rectangle work on the server side stays bounded.
const MAX_RECTS: usize = 32;

/// Rectangles touched since the last [`Damage::take`], clipped to the screen.
#[derive(Debug)]
pub(crate) struct Damage {
    bounds: Rect,
    rects: Vec<Rect>,
}

impl Damage {
    pub(crate) fn new(size: Size) -> Self {
        Self {
            bounds: size.full_rect(),
            rects: Vec::new(),
        }
    }

    /// Records `rect` (clipped to the screen), merging it with rectangles it overlaps or
    /// nearly touches when the union wastes little area.
    pub(crate) fn add(&mut self, rect: Rect) {
        let mut rect = rect.intersect(&self.bounds);
        if rect.is_empty() {
            return;
        }
        // A grown rectangle may now be worth merging with ones skipped earlier: repeat.
        while let Some(i) = self.rects.iter().position(|r| worth_merging(r, &rect)) {
            rect = rect.union(&self.rects.swap_remove(i));
        }
        if self.rects.len() >= MAX_RECTS {
            if let Some(i) = self.cheapest_partner(&rect) {
                let partner = self.rects.swap_remove(i);
                self.add(rect.union(&partner));
                return;
            }
        }
        self.rects.push(rect);
    }

    /// Hands out the accumulated rectangles and starts afresh.
    pub(crate) fn take(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.rects)
    }

    pub(crate) fn clear(&mut self) {
        self.rects.clear();
    }

    fn cheapest_partner(&self, rect: &Rect) -> Option<usize> {
        (0..self.rects.len()).min_by_key(|&i| waste(&self.rects[i], rect))
    }
}

/// Pixels a union of `a` and `b` covers that neither of them does.
fn waste(a: &Rect, b: &Rect) -> u64 {
    let covered = a.area() + b.area() - a.intersect(b).area();
    a.union(b).area() - covered
}

/// Merge when the union adds at most 1/8 of the area actually damaged: adjacent glyphs and
/// a caret fuse into one rectangle, distant edits stay separate.
fn worth_merging(a: &Rect, b: &Rect) -> bool {
    let covered = a.area() + b.area() - a.intersect(b).area();
    waste(a, b) <= covered / 8
}

/// The parts of `a` not covered by `b`: at most four bands (top, bottom, left, right).
pub(crate) fn subtract(a: &Rect, b: &Rect) -> Vec<Rect> {
    let i = a.intersect(b);
    if i.is_empty() {
        return if a.is_empty() { Vec::new() } else { vec![*a] };
    }
    let mut out = Vec::with_capacity(4);
    let (a_bottom, i_bottom) = (bottom(a), bottom(&i));
    let (a_right, i_right) = (right(a), right(&i));
    out.push(Rect::new(a.x, a.y, a.width, i.y - a.y));
    out.push(Rect::new(a.x, i_bottom, a.width, a_bottom - i_bottom));
    out.push(Rect::new(a.x, i.y, i.x - a.x, i.height));
    out.push(Rect::new(i_right, i.y, a_right - i_right, i.height));
    out.retain(|r| !r.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_cells_merge_distant_ones_do_not() {
        let mut d = Damage::new(Size::new(1000, 1000));
        d.add(Rect::new(100, 100, 9, 18));
        d.add(Rect::new(109, 100, 9, 18));
        d.add(Rect::new(800, 800, 9, 18));
        let mut rects = d.take();
        rects.sort_by_key(|r| (r.y, r.x));
        assert_eq!(
            rects,
            vec![Rect::new(100, 100, 18, 18), Rect::new(800, 800, 9, 18)]
        );
        assert!(d.take().is_empty());
    }

    #[test]
    fn clipped_and_bounded() {
        let mut d = Damage::new(Size::new(100, 100));
        d.add(Rect::new(90, 90, 50, 50));
        d.add(Rect::new(200, 200, 5, 5));
        assert_eq!(d.take(), vec![Rect::new(90, 90, 10, 10)]);
        for i in 0..100 {
            d.add(Rect::new((i % 10) * 10, (i / 10) * 10, 1, 1));
        }
        assert!(d.take().len() <= MAX_RECTS);
    }

    #[test]
    fn subtract_leaves_the_uncovered_bands() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(3, 4, 10, 10);
        let parts = subtract(&a, &b);
        let area: u64 = parts.iter().map(Rect::area).sum();
        assert_eq!(area, 100 - 7 * 6);
        assert!(parts.iter().all(|p| p.intersect(&b).is_empty()));
        assert_eq!(subtract(&a, &a), Vec::<Rect>::new());
        assert_eq!(subtract(&a, &Rect::new(50, 50, 1, 1)), vec![a]);
    }
}
