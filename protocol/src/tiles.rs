//! The 64x64 tile grid: damage is tracked and encoded per tile.

use crate::geometry::{Rect, Size};

/// Edge length of a tile in pixels.
pub const TILE: u32 = 64;

/// A set of dirty tiles. Its size is fixed by the desktop size, so accumulating damage
/// for a slow client never grows memory: new damage merges into the same bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileMask {
    size: Size,
    cols: u32,
    rows: u32,
    bits: Vec<u64>,
}

/// The tiles (columns or rows) that pixels `start..end` touch.
pub fn tiles_covering(start: u32, end: u64) -> std::ops::Range<u32> {
    // A far edge is at most 2^33, so the tile index after it always fits a `u32`.
    let last = u32::try_from(end.div_ceil(u64::from(TILE))).unwrap_or(u32::MAX);
    start / TILE..last
}

/// (col, row) of bit `i` in a grid `cols` wide.
#[expect(
    clippy::cast_possible_truncation,
    reason = "callers pass i < cols * rows with cols and rows u32s, so i % cols < cols and i / cols < rows"
)]
fn grid_position(i: usize, cols: usize) -> (u32, u32) {
    ((i % cols) as u32, (i / cols) as u32)
}

impl TileMask {
    pub fn new(size: Size) -> Self {
        let cols = size.width.div_ceil(TILE);
        let rows = size.height.div_ceil(TILE);
        let words = (cols as usize * rows as usize).div_ceil(64);
        Self {
            size,
            cols,
            rows,
            bits: vec![0; words],
        }
    }

    /// A mask with every tile dirty.
    pub fn full(size: Size) -> Self {
        let mut mask = Self::new(size);
        mask.mark_rect(&size.full_rect());
        mask
    }

    pub fn size(&self) -> Size {
        self.size
    }

    pub fn cols(&self) -> u32 {
        self.cols
    }

    pub fn rows(&self) -> u32 {
        self.rows
    }

    fn index(&self, col: u32, row: u32) -> usize {
        row as usize * self.cols as usize + col as usize
    }

    pub fn mark(&mut self, col: u32, row: u32) {
        let i = self.index(col, row);
        self.bits[i / 64] |= 1 << (i % 64);
    }

    pub fn is_marked(&self, col: u32, row: u32) -> bool {
        let i = self.index(col, row);
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Marks every tile `rect` touches (clipped to the desktop).
    pub fn mark_rect(&mut self, rect: &Rect) {
        let r = rect.intersect(&self.size.full_rect());
        if r.is_empty() {
            return;
        }
        let (c0, r0) = (r.x / TILE, r.y / TILE);
        // `r` lies inside the desktop, so its last column and row are `u32`s.
        let c1 = (r.x + (r.width - 1)) / TILE;
        let r1 = (r.y + (r.height - 1)) / TILE;
        for row in r0..=r1 {
            for col in c0..=c1 {
                self.mark(col, row);
            }
        }
    }

    /// Adds all tiles of another mask of the same size.
    pub fn merge(&mut self, other: &TileMask) {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= *b;
        }
    }

    pub fn clear(&mut self) {
        self.bits.fill(0);
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Pixel rectangle of tile (`col`, `row`), clipped at the right and bottom edges.
    pub fn tile_rect(&self, col: u32, row: u32) -> Rect {
        let x = col * TILE;
        let y = row * TILE;
        Rect::new(
            x,
            y,
            TILE.min(self.size.width - x),
            TILE.min(self.size.height - y),
        )
    }

    /// Dirty tiles in row-major order as (col, row).
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let cols = self.cols as usize;
        let total = cols * self.rows as usize;
        self.bits.iter().enumerate().flat_map(move |(w, &word)| {
            let mut word = word;
            std::iter::from_fn(move || {
                while word != 0 {
                    let bit = word.trailing_zeros() as usize;
                    word &= word - 1;
                    let i = w * 64 + bit;
                    if i < total {
                        return Some(grid_position(i, cols));
                    }
                }
                None
            })
        })
    }

    /// Bounding box in pixels of all dirty tiles.
    pub fn bounds(&self) -> Rect {
        self.iter().fold(Rect::default(), |acc, (c, r)| {
            acc.union(&self.tile_rect(c, r))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_rects_and_iterates_in_order() {
        let mut m = TileMask::new(Size::new(1920, 1080));
        assert_eq!((m.cols(), m.rows()), (30, 17));
        m.mark_rect(&Rect::new(63, 0, 2, 1));
        m.mark_rect(&Rect::new(1900, 1070, 100, 100));
        let tiles: Vec<_> = m.iter().collect();
        assert_eq!(tiles, vec![(0, 0), (1, 0), (29, 16)]);
        assert_eq!(m.tile_rect(29, 16), Rect::new(1856, 1024, 64, 56));
        assert_eq!(m.bounds(), Rect::new(0, 0, 1920, 1080));
    }

    #[test]
    fn full_mask_counts_every_tile() {
        let m = TileMask::full(Size::new(130, 65));
        assert_eq!(m.count(), 3 * 2);
        assert!(!m.is_empty());
    }
}
