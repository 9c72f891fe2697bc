//! Video-region detection from per-tile change history, after SPICE's stream detection
//! (≥ 96x96 px, ≥ 20 updates with ≤ 200 ms gaps, ends after 1 s without updates; we need
//! only 12 updates, because of the following filter, and every lossless 1080p frame of
//! video before detection costs megabytes), with one addition: a tile counts only when
//! the lossless encoder found it mostly changed in a way only raw pixels express.
//! Scrolls and drags are moves (copy-rect), typing changes a few cells, UI repaints are
//! fills, palettes or cache hits: none of them is video.
//!
//! A slow or stuttering player (a full-screen clip on a busy host draws 5-8 frames a
//! second, some 300 ms apart) is video too: where the encoder found raw pixels, gaps up
//! to half a second keep a streak, and 4 updates over 400 ms start a region. Sent
//! losslessly, each of those frames would be megabytes.
//!
//! Damage counts come from the source at capture rate (every poll), so detection does
//! not slow down when a slow link makes the session send fewer frames.

use crate::codec::TileVerdict;
use crate::geometry::{Rect, Size};
use crate::tiles::{tiles_covering, TILE};

#[derive(Debug, Clone, Copy)]
pub struct DetectorConfig {
    /// Updates in a row before a tile counts as playing video.
    pub min_updates: u32,
    /// Longest gap between two updates of a playing tile.
    pub max_gap_us: u64,
    /// Longest gap while the encoder finds the tile mostly changed in raw pixels.
    pub max_raw_gap_us: u64,
    /// A slower streak of raw changes plays once it lasted this long...
    pub min_slow_span_us: u64,
    /// ...with at least this many updates.
    pub min_slow_updates: u32,
    /// A region ends after this long without a change.
    pub end_after_us: u64,
    /// Smallest region edge.
    pub min_edge: u32,
    /// Fewest tiles in a region.
    pub min_tiles: usize,
    /// Most regions at once; further candidates stay lossless.
    pub max_regions: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            min_updates: 12,
            max_gap_us: 200_000,
            max_raw_gap_us: 500_000,
            min_slow_span_us: 400_000,
            min_slow_updates: 4,
            end_after_us: 1_000_000,
            min_edge: 96,
            min_tiles: 4,
            max_regions: 4,
        }
    }
}

/// Damage one tile received between two takes: how many polls hit it, and when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TileHits {
    pub hits: u32,
    pub first_us: u64,
    pub last_us: u64,
    /// Longest gap between two of these hits.
    pub max_gap_us: u64,
}

impl TileHits {
    /// Records a hit at `now_us`.
    pub fn hit(&mut self, now_us: u64) {
        if self.hits == 0 {
            self.first_us = now_us;
        } else {
            self.max_gap_us = self.max_gap_us.max(now_us.saturating_sub(self.last_us));
        }
        self.last_us = now_us;
        self.hits = self.hits.saturating_add(1);
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct TileState {
    /// Polls in a row that damaged the tile with short gaps, since `streak_start_us`.
    streak: u32,
    streak_start_us: u64,
    last_us: u64,
    /// The encoder's last verdict: changed pixels, and whether most of the tile changed.
    seen: Option<(Rect, bool)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoRegion {
    pub id: u64,
    /// Even-aligned, inside the screen.
    pub rect: Rect,
    pub last_change_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionEvent {
    Started { id: u64, rect: Rect },
    Ended { id: u64, rect: Rect },
}

pub struct VideoDetector {
    config: DetectorConfig,
    size: Size,
    cols: u32,
    rows: u32,
    tiles: Vec<TileState>,
    regions: Vec<VideoRegion>,
    next_id: u64,
}

impl VideoDetector {
    pub fn new(size: Size, config: DetectorConfig) -> Self {
        let cols = size.width.div_ceil(TILE);
        let rows = size.height.div_ceil(TILE);
        Self {
            config,
            size,
            cols,
            rows,
            tiles: vec![TileState::default(); (cols * rows) as usize],
            regions: Vec::new(),
            next_id: 1,
        }
    }

    pub fn regions(&self) -> &[VideoRegion] {
        &self.regions
    }

    /// Damage taken from the source for tile (`col`, `row`).
    pub fn observe_damage(&mut self, col: u32, row: u32, hits: &TileHits) {
        if hits.hits == 0 || col >= self.cols || row >= self.rows {
            return;
        }
        let gap = self.gap_of(col, row);
        let t = &mut self.tiles[(row * self.cols + col) as usize];
        let continues = t.streak > 0 && hits.first_us.saturating_sub(t.last_us) <= gap;
        if hits.max_gap_us > gap {
            // Only the hits after the long gap are in a row; count the last one.
            (t.streak, t.streak_start_us) = (1, hits.last_us);
        } else if continues {
            t.streak = t.streak.saturating_add(hits.hits);
        } else {
            (t.streak, t.streak_start_us) = (hits.hits, hits.first_us);
        }
        t.last_us = hits.last_us;
    }

    /// The longest gap that keeps the tile's streak: longer while its changes are raw.
    fn gap_of(&self, col: u32, row: u32) -> u64 {
        match self.tiles[(row * self.cols + col) as usize].seen {
            Some((_, true)) => self.config.max_raw_gap_us,
            _ => self.config.max_gap_us,
        }
    }

    /// What the lossless encoder found in the tiles it encoded.
    pub fn observe_verdicts(&mut self, verdicts: &[TileVerdict]) {
        for v in verdicts {
            let (tile, seen) = match *v {
                TileVerdict::Busy { tile, dirty } => (tile, Some((dirty, true))),
                TileVerdict::Partial { tile, dirty } => (tile, Some((dirty, false))),
                TileVerdict::Calm { tile } => (tile, None),
            };
            let (col, row) = (tile.x / TILE, tile.y / TILE);
            if col < self.cols && row < self.rows {
                let t = &mut self.tiles[(row * self.cols + col) as usize];
                t.seen = seen;
                if seen.is_none() {
                    t.streak = 0;
                }
            }
        }
    }

    /// Forgets region `id` without an event (e.g. no encoder could be made for it); its
    /// tiles start their history afresh.
    pub fn drop_region(&mut self, id: u64) {
        self.regions.retain(|r| r.id != id);
    }

    /// The pixels of region `id` changed at `now_us`.
    pub fn region_changed(&mut self, id: u64, now_us: u64) {
        if let Some(r) = self.regions.iter_mut().find(|r| r.id == id) {
            r.last_change_us = now_us;
        }
    }

    /// When the next region would expire without further changes.
    pub fn next_deadline_us(&self) -> Option<u64> {
        self.regions
            .iter()
            .map(|r| r.last_change_us + self.config.end_after_us)
            .min()
    }

    /// Ends regions that stopped changing and starts regions where tiles play video.
    pub fn update(&mut self, now_us: u64) -> Vec<RegionEvent> {
        let mut events = Vec::new();
        let end_after = self.config.end_after_us;
        self.regions.retain(|r| {
            let alive = now_us.saturating_sub(r.last_change_us) < end_after;
            if !alive {
                events.push(RegionEvent::Ended {
                    id: r.id,
                    rect: r.rect,
                });
            }
            alive
        });
        for candidate in self.candidates(now_us) {
            // A region that grew or moved: replace it by one covering both.
            let mut rect = candidate;
            let mut i = 0;
            while i < self.regions.len() {
                if touches(&self.regions[i].rect, &rect) {
                    let old = self.regions.remove(i);
                    if old.rect.union(&rect) == old.rect {
                        // Nothing new: keep the region as it is.
                        self.regions.insert(i, old);
                        rect = Rect::default();
                        break;
                    }
                    events.push(RegionEvent::Ended {
                        id: old.id,
                        rect: old.rect,
                    });
                    rect = rect.union(&old.rect);
                    i = 0;
                } else {
                    i += 1;
                }
            }
            if rect.is_empty() || self.regions.len() >= self.config.max_regions {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.regions.push(VideoRegion {
                id,
                rect,
                last_change_us: now_us,
            });
            self.forget_tiles(&rect);
            events.push(RegionEvent::Started { id, rect });
        }
        events
    }

    /// Clears the history of tiles a new region covers: the region speaks for them now.
    fn forget_tiles(&mut self, rect: &Rect) {
        let rows = tiles_covering(rect.y, rect.bottom());
        let cols = tiles_covering(rect.x, rect.right());
        for row in rows.start..rows.end.min(self.rows) {
            for col in cols.start..cols.end.min(self.cols) {
                self.tiles[(row * self.cols + col) as usize] = TileState::default();
            }
        }
    }

    /// Changing all the time, in raw pixels; `busy` asks for most of the tile too.
    fn playing(&self, col: u32, row: u32, now_us: u64, busy: bool) -> Option<Rect> {
        let t = &self.tiles[(row * self.cols + col) as usize];
        let (dirty, mostly) = t.seen?;
        let c = &self.config;
        let long_enough = t.streak >= c.min_updates
            || (mostly
                && t.streak >= c.min_slow_updates
                && t.last_us.saturating_sub(t.streak_start_us) >= c.min_slow_span_us);
        let playing = (mostly || !busy)
            && long_enough
            && now_us.saturating_sub(t.last_us) <= 2 * c.max_gap_us;
        playing.then_some(dirty)
    }

    fn is_hot(&self, col: u32, row: u32, now_us: u64) -> bool {
        self.playing(col, row, now_us, true).is_some()
    }

    /// Connected groups of hot tiles large and dense enough to be video, as even-aligned
    /// rects of their changed pixels.
    fn candidates(&self, now_us: u64) -> Vec<Rect> {
        let (cols, rows) = (self.cols, self.rows);
        let mut seen = vec![false; self.tiles.len()];
        let mut out = Vec::new();
        // `tiles` holds exactly `cols * rows` tiles.
        for start in 0..cols * rows {
            let (c0, r0) = (start % cols, start / cols);
            if seen[start as usize] || !self.is_hot(c0, r0, now_us) {
                continue;
            }
            // Flood fill over 4-neighbours.
            let mut stack = vec![(c0, r0)];
            seen[start as usize] = true;
            let mut count = 0usize;
            let mut bounds = Rect::default();
            let (mut cmin, mut cmax, mut rmin, mut rmax) = (c0, c0, r0, r0);
            while let Some((c, r)) = stack.pop() {
                count += 1;
                bounds = bounds.union(&self.playing(c, r, now_us, true).unwrap_or_default());
                (cmin, cmax, rmin, rmax) = (cmin.min(c), cmax.max(c), rmin.min(r), rmax.max(r));
                let neighbours = [
                    (c.wrapping_sub(1), r),
                    (c + 1, r),
                    (c, r.wrapping_sub(1)),
                    (c, r + 1),
                ];
                for (nc, nr) in neighbours {
                    if nc < cols && nr < rows {
                        let i = (nr * cols + nc) as usize;
                        if !seen[i] && self.is_hot(nc, nr, now_us) {
                            seen[i] = true;
                            stack.push((nc, nr));
                        }
                    }
                }
                // The video's edges only partly cover their tiles: take them along.
                for dr in -1..=1 {
                    for dc in -1..=1 {
                        let (Some(nc), Some(nr)) =
                            (c.checked_add_signed(dc), r.checked_add_signed(dr))
                        else {
                            continue;
                        };
                        if nc < cols && nr < rows {
                            if let Some(edge) = self.playing(nc, nr, now_us, false) {
                                bounds = bounds.union(&edge);
                            }
                        }
                    }
                }
            }
            let box_tiles = ((cmax - cmin + 1) * (rmax - rmin + 1)) as usize;
            let rect = self.even_aligned(&bounds);
            if count >= self.config.min_tiles
                && count * 2 >= box_tiles
                && rect.width >= self.config.min_edge
                && rect.height >= self.config.min_edge
            {
                out.push(rect);
            }
        }
        out
    }

    /// Grows `rect` to even coordinates (4:2:0 video needs even edges), inside the screen.
    fn even_aligned(&self, rect: &Rect) -> Rect {
        let x0 = rect.x & !1;
        let y0 = rect.y & !1;
        let max_x = u64::from(self.size.width & !1);
        let max_y = u64::from(self.size.height & !1);
        let x1 = (rect.right() + 1).min(max_x) & !1;
        let y1 = (rect.bottom() + 1).min(max_y) & !1;
        Rect::from_edges(x0, y0, x1, y1)
    }
}

/// Overlapping or sharing an edge.
fn touches(a: &Rect, b: &Rect) -> bool {
    let grown = Rect::new(
        a.x.saturating_sub(1),
        a.y.saturating_sub(1),
        a.width + 2,
        a.height + 2,
    );
    grown.intersects(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: Size = Size::new(1920, 1080);
    const FRAME_US: u64 = 33_333;

    fn tile(col: u32, row: u32) -> Rect {
        Rect::new(col * TILE, row * TILE, TILE, TILE)
    }

    /// One poll: the tiles in `area` are damaged, and the encoder calls them `busy`.
    fn frame(d: &mut VideoDetector, n: u64, area: Rect, busy: bool) -> Vec<RegionEvent> {
        let now = n * FRAME_US;
        let mut verdicts = Vec::new();
        for row in tiles_covering(area.y, area.bottom()) {
            for col in tiles_covering(area.x, area.right()) {
                let mut hits = TileHits::default();
                hits.hit(now);
                d.observe_damage(col, row, &hits);
                let t = tile(col, row);
                verdicts.push(if busy {
                    TileVerdict::Busy {
                        tile: t,
                        dirty: t.intersect(&area),
                    }
                } else {
                    TileVerdict::Calm { tile: t }
                });
            }
        }
        d.observe_verdicts(&verdicts);
        d.update(now)
    }

    #[test]
    fn a_playing_video_becomes_one_region_and_ends_after_a_second() {
        let mut d = VideoDetector::new(SIZE, DetectorConfig::default());
        let picture = Rect::new(301, 200, 640, 360);
        let mut started = None;
        for n in 1..=40 {
            let events = frame(&mut d, n, picture, true);
            if let Some(RegionEvent::Started { rect, .. }) = events.first() {
                assert!(started.is_none(), "one region only");
                started = Some((n, *rect));
            }
        }
        let (n, rect) = started.expect("video detected");
        assert_eq!(n, 12, "12 updates in a row");
        assert_eq!(
            rect,
            Rect::new(300, 200, 642, 360),
            "exact picture, even edges"
        );
        let id = d.regions()[0].id;
        d.region_changed(id, 40 * FRAME_US);
        assert!(d.update(40 * FRAME_US + 900_000).is_empty());
        assert_eq!(
            d.update(40 * FRAME_US + 1_000_000),
            vec![RegionEvent::Ended { id, rect }]
        );
    }

    #[test]
    fn calm_changes_small_areas_and_slow_updates_are_not_video() {
        // Moves and text are calm in the encoder's eyes.
        let mut d = VideoDetector::new(SIZE, DetectorConfig::default());
        for n in 1..100 {
            assert!(frame(&mut d, n, Rect::new(0, 0, 1000, 800), false).is_empty());
        }
        // Busy, but one tile: a blinking, animated icon.
        for n in 100..200 {
            assert!(frame(&mut d, n, Rect::new(70, 70, 40, 40), true).is_empty());
        }
        // Busy and large but every 600 ms: a slideshow.
        for n in 0..60 {
            assert!(frame(&mut d, 300 + n * 18, Rect::new(0, 0, 640, 360), true).is_empty());
        }
        // Calm (palettes, fills) every 300 ms: a UI ticking, however large.
        for n in 0..60 {
            assert!(frame(&mut d, 1500 + n * 9, Rect::new(0, 0, 640, 360), false).is_empty());
        }
    }

    #[test]
    fn a_stuttering_player_is_video_after_four_raw_frames_over_400_ms() {
        let mut d = VideoDetector::new(SIZE, DetectorConfig::default());
        let picture = Rect::new(0, 0, 1920, 1080);
        // 5-8 frames a second, uneven: gaps of 100-300 ms (3, 9, 6, 4, ... frames).
        let mut n = 1;
        let mut started = None;
        for (i, step) in [3, 9, 6, 4, 9, 3, 6].iter().cycle().take(12).enumerate() {
            n += step;
            if let Some(RegionEvent::Started { rect, .. }) = frame(&mut d, n, picture, true).first()
            {
                started.get_or_insert((i + 1, *rect));
            }
        }
        let (updates, rect) = started.expect("a stuttering video is detected");
        assert_eq!(rect, picture);
        // The first frame is seen before the encoder called it raw (short gaps then),
        // so the streak counts from the second: 4 updates spanning 400 ms or more.
        assert!(
            (4..=6).contains(&updates),
            "detected after {updates} frames"
        );
    }

    #[test]
    fn a_growing_video_replaces_its_region() {
        let mut d = VideoDetector::new(SIZE, DetectorConfig::default());
        for n in 1..=12 {
            frame(&mut d, n, Rect::new(0, 0, 256, 256), true);
        }
        let first = d.regions()[0];
        let mut events = Vec::new();
        for n in 13..=45 {
            events.extend(frame(&mut d, n, Rect::new(0, 0, 512, 256), true));
        }
        assert_eq!(
            events,
            vec![
                RegionEvent::Ended {
                    id: first.id,
                    rect: first.rect
                },
                RegionEvent::Started {
                    id: first.id + 1,
                    rect: Rect::new(0, 0, 512, 256)
                }
            ]
        );
    }
}
