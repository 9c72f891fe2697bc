//! A screen a client already holds, by content ([`HeldScreen`]): a client that follows
//! a moved desktop, or reconnects, lists its tiles' hashes in its hello, and the new
//! session starts from what matches instead of repainting the whole screen.

use crate::codec::cache::tile_key;
use crate::framebuffer::Framebuffer;
use crate::messages::{HeldScreen, MAX_HELD_TILES};
use crate::tiles::TileMask;

impl HeldScreen {
    /// The hashes of `screen`'s tiles; `None` for a screen too large to list.
    pub fn of(screen: &Framebuffer) -> Option<HeldScreen> {
        let grid = TileMask::full(screen.size());
        if (grid.cols() as usize) * (grid.rows() as usize) > MAX_HELD_TILES {
            return None;
        }
        let mut scratch = Vec::new();
        let tiles = (0..grid.rows())
            .flat_map(|row| (0..grid.cols()).map(move |col| (col, row)))
            .map(|(col, row)| {
                let rect = grid.tile_rect(col, row);
                screen.read_rect(&rect, &mut scratch);
                tile_key(&rect, &scratch)
            })
            .collect();
        Some(HeldScreen {
            size: screen.size(),
            tiles,
        })
    }

    /// The tiles of `screen` that differ from this held screen (all of them when the
    /// sizes differ or the list does not fit the grid).
    pub fn differing(&self, screen: &Framebuffer) -> TileMask {
        let mut differ = TileMask::full(screen.size());
        let grid = differ.clone();
        if self.size != screen.size()
            || self.tiles.len() != (grid.cols() as usize) * (grid.rows() as usize)
        {
            return differ;
        }
        differ.clear();
        let mut scratch = Vec::new();
        for (i, (col, row)) in grid.iter().enumerate() {
            let rect = grid.tile_rect(col, row);
            screen.read_rect(&rect, &mut scratch);
            if tile_key(&rect, &scratch) != self.tiles[i] {
                differ.mark(col, row);
            }
        }
        differ
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rect, Size};

    #[test]
    fn only_tiles_that_changed_differ() {
        let mut screen = Framebuffer::new(Size::new(200, 100));
        screen.fill(&Rect::new(0, 0, 200, 100), 0x00_33_66_99);
        let held = HeldScreen::of(&screen).unwrap();
        assert_eq!(held.tiles.len(), 4 * 2);
        assert!(held.differing(&screen).is_empty());
        screen.set_pixel(199, 99, 1);
        screen.set_pixel(70, 10, 1);
        let differ = held.differing(&screen);
        assert_eq!(differ.iter().collect::<Vec<_>>(), vec![(1, 0), (3, 1)]);
        let other = Framebuffer::new(Size::new(100, 100));
        assert_eq!(held.differing(&other).count(), 4);
    }

    #[test]
    fn huge_screens_are_not_listed() {
        assert!(HeldScreen::of(&Framebuffer::new(Size::new(8192, 4096))).is_none());
    }
}
