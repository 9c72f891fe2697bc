//! Move detection for scrolls and window drags.
//!
//! Vertical scrolls, by far the commonest move, are found in one dimension first: each
//! row of the damaged area is hashed once in the old frame and once in the new, and rows
//! that reappear at another height vote for that shift. Only when that finds no clear
//! winner does the two-dimensional search below run.
//!
//! Content that moved between the client's frame and the new one shows up as the same
//! pixel runs at shifted positions. We take up to [`MAX_ANCHORS`] distinctive 32-pixel
//! runs from the new frame, slide a rolling hash over the old frame's damaged area to
//! find where each run was before, and vote for the displacement. The encoder then
//! verifies every tile against the winning vectors, so a wrong vote costs time, never
//! pixels.

use std::collections::HashMap;

use crate::framebuffer::Framebuffer;
use crate::geometry::Rect;

const RUN_LEN: u32 = 32;
const RUN: usize = RUN_LEN as usize;
const MAX_ANCHORS: usize = 512;
const BASE: u64 = 0x100_0000_01b3;
const FILTER_BITS: usize = 1 << 16;
/// A hash's bit in the filter: its low 16 bits (`FILTER_BITS` is 2^16).
const FILTER_MASK: u64 = (1 << 16) - 1;

/// A displacement: content at (x, y) in the old frame is at (x + dx, y + dy) now.
pub type Vector = (i32, i32);

fn run_hash(run: &[u32]) -> u64 {
    run.iter().fold(0u64, |h, &p| {
        h.wrapping_mul(BASE).wrapping_add(u64::from(p) + 1)
    })
}

/// Most likely displacements for the damaged `region`, best first (at most 3), plus
/// `previous` (a drag or scroll usually keeps its vector from frame to frame).
pub fn candidate_vectors(
    old: &Framebuffer,
    new: &Framebuffer,
    region: &Rect,
    previous: &[Vector],
) -> Vec<Vector> {
    let mut out: Vec<Vector> = Vec::new();
    if let Some(scroll) = vertical_scroll(old, new, region) {
        out.push(scroll);
    } else if region.width as usize >= RUN && region.height >= 2 {
        let anchors = pick_anchors(new, region);
        if !anchors.is_empty() {
            let votes = vote(old, region, &anchors);
            let mut ranked: Vec<(Vector, u32)> =
                votes.into_iter().filter(|(_, n)| *n >= 2).collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            out.extend(ranked.iter().take(3).map(|(v, _)| *v));
        }
    }
    for v in previous {
        if !out.contains(v) {
            out.push(*v);
        }
    }
    out
}

/// Rows of the region that are not a single colour, by hash (a flat row matches any
/// other flat row and says nothing about motion).
fn row_hashes(fb: &Framebuffer, region: &Rect) -> Vec<Option<u64>> {
    (0..region.height)
        .map(|dy| {
            let row = fb.row(region, dy);
            let flat = row.iter().all(|&p| p == row[0]);
            (!flat).then(|| xxhash_rust::xxh3::xxh3_64(bytemuck::cast_slice(row)))
        })
        .collect()
}

/// The vertical shift most of the region's changed, distinctive rows agree on, if
/// there is one: a scrolling terminal, document or list.
fn vertical_scroll(old: &Framebuffer, new: &Framebuffer, region: &Rect) -> Option<Vector> {
    if region.width == 0 || region.height < 2 {
        return None;
    }
    let before = row_hashes(old, region);
    let after = row_hashes(new, region);
    let mut rows_of: HashMap<u64, Vec<i64>> = HashMap::new();
    for (dy, h) in (0i64..).zip(&before) {
        if let Some(h) = h {
            rows_of.entry(*h).or_default().push(dy);
        }
    }
    let mut votes: HashMap<i64, u32> = HashMap::new();
    let mut moved_rows = 0u32;
    for ((dy, h), old) in (0i64..).zip(&after).zip(&before) {
        let Some(h) = h else { continue };
        if *old == Some(*h) {
            continue; // this row did not change
        }
        moved_rows += 1;
        // A row seen at many heights (a repeated pattern) is no evidence.
        let Some(sources) = rows_of.get(h).filter(|s| s.len() <= 4) else {
            continue;
        };
        for &from in sources {
            *votes.entry(dy - from).or_default() += 1;
        }
    }
    let (shift, count) = votes
        .into_iter()
        .max_by_key(|&(shift, n)| (n, std::cmp::Reverse(shift.abs())))?;
    // Most changed rows moved by it: a clear scroll.
    let shift = i32::try_from(shift).ok()?;
    (count >= 2 && count * 2 >= moved_rows).then_some((0, shift))
}

/// Distinctive runs of the new frame: sampled on a grid over the region, skipping
/// flat runs (they match everywhere and say nothing about motion).
fn pick_anchors(new: &Framebuffer, region: &Rect) -> HashMap<u64, Vec<(u32, u32)>> {
    let mut anchors: HashMap<u64, Vec<(u32, u32)>> = HashMap::new();
    let mut count = 0;
    let row_step = (region.height / 64).max(4);
    'rows: for dy in (0..region.height).step_by(row_step as usize) {
        let row = new.row(region, dy);
        // Every whole run of the row, with its offset in the region.
        for (dx, run) in (0..region.width).step_by(RUN).zip(row.chunks_exact(RUN)) {
            let distinct = run.windows(2).filter(|w| w[0] != w[1]).count();
            if distinct < 3 {
                continue;
            }
            anchors
                .entry(run_hash(run))
                .or_default()
                .push((region.x + dx, region.y + dy));
            count += 1;
            if count >= MAX_ANCHORS {
                break 'rows;
            }
        }
    }
    anchors
}

fn vote(
    old: &Framebuffer,
    region: &Rect,
    anchors: &HashMap<u64, Vec<(u32, u32)>>,
) -> HashMap<Vector, u32> {
    let mut filter = vec![0u64; FILTER_BITS / 64];
    for h in anchors.keys() {
        let bit = (*h & FILTER_MASK) as usize;
        filter[bit / 64] |= 1 << (bit % 64);
    }
    let top = BASE.wrapping_pow(RUN_LEN - 1);
    let mut votes: HashMap<Vector, u32> = HashMap::new();
    for dy in 0..region.height {
        let row = old.row(region, dy);
        let mut h = run_hash(&row[..RUN]);
        for x in 0..=row.len() - RUN {
            if x > 0 {
                let out = u64::from(row[x - 1]) + 1;
                let inn = u64::from(row[x + RUN - 1]) + 1;
                h = h
                    .wrapping_sub(out.wrapping_mul(top))
                    .wrapping_mul(BASE)
                    .wrapping_add(inn);
            }
            let bit = (h & FILTER_MASK) as usize;
            if filter[bit / 64] & (1 << (bit % 64)) == 0 {
                continue;
            }
            let Some(positions) = anchors.get(&h) else {
                continue;
            };
            let ox = region.x as i64 + x as i64;
            let oy = i64::from(region.y + dy);
            for &(ax, ay) in positions.iter().take(4) {
                // Only a desktop wider or taller than 2^31 pixels has longer moves.
                let (Ok(vx), Ok(vy)) = (
                    i32::try_from(i64::from(ax) - ox),
                    i32::try_from(i64::from(ay) - oy),
                ) else {
                    continue;
                };
                let v = (vx, vy);
                if v != (0, 0) {
                    *votes.entry(v).or_default() += 1;
                }
            }
        }
    }
    votes
}

/// Groups tile rects (on the 64x64 grid) into 8-connected clusters; returns each
/// cluster's bounding box and tile count. Searching per cluster keeps far-apart damage
/// (a typed glyph and a status bar) from turning into one screen-sized search.
pub fn clusters(tiles: &[Rect]) -> Vec<(Rect, usize)> {
    let cell = |r: &Rect| (r.x / crate::TILE, r.y / crate::TILE);
    let index: HashMap<(u32, u32), usize> = tiles
        .iter()
        .enumerate()
        .map(|(i, r)| (cell(r), i))
        .collect();
    let mut seen = vec![false; tiles.len()];
    let mut out = Vec::new();
    for start in 0..tiles.len() {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![start];
        let mut bounds = Rect::default();
        let mut count = 0;
        while let Some(i) = stack.pop() {
            bounds = bounds.union(&tiles[i]);
            count += 1;
            let (c, r) = cell(&tiles[i]);
            for dr in -1..=1 {
                for dc in -1..=1 {
                    let (Some(nc), Some(nr)) = (c.checked_add_signed(dc), r.checked_add_signed(dr))
                    else {
                        continue;
                    };
                    if let Some(&j) = index.get(&(nc, nr)) {
                        if !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
        }
        out.push((bounds, count));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Size;

    fn textured(size: Size, seed: u32) -> Framebuffer {
        let mut fb = Framebuffer::new(size);
        let mut s = seed;
        for p in fb.pixels_mut() {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *p = s & 0xff_ffff;
        }
        fb
    }

    #[test]
    fn finds_a_vertical_scroll() {
        let size = Size::new(256, 256);
        let old = textured(size, 7);
        let mut new = Framebuffer::new(size);
        // Content moves up by 13 pixels.
        for y in 0..243 {
            for x in 0..256 {
                new.set_pixel(x, y, old.pixel(x, y + 13));
            }
        }
        let v = candidate_vectors(&old, &new, &size.full_rect(), &[]);
        assert_eq!(v.first(), Some(&(0, -13)));
    }

    #[test]
    fn a_scroll_is_found_from_row_hashes_alone() {
        let size = Size::new(256, 256);
        let old = textured(size, 3);
        let mut new = old.clone();
        // Lines move down by 26 pixels; what scrolls in at the top is new.
        for y in (26..256).rev() {
            for x in 0..256 {
                new.set_pixel(x, y, old.pixel(x, y - 26));
            }
        }
        new.fill(&Rect::new(0, 0, 256, 26), 0x00ff00);
        let region = size.full_rect();
        assert_eq!(vertical_scroll(&old, &new, &region), Some((0, 26)));
        // Nothing moved, or a sideways drag: no vertical scroll.
        assert_eq!(vertical_scroll(&old, &old, &region), None);
        let mut sideways = Framebuffer::new(size);
        for y in 0..256 {
            for x in 0..250 {
                sideways.set_pixel(x + 6, y, old.pixel(x, y));
            }
        }
        assert_eq!(vertical_scroll(&old, &sideways, &region), None);
    }

    #[test]
    fn finds_a_diagonal_drag() {
        let size = Size::new(320, 240);
        let old = textured(size, 9);
        let mut new = Framebuffer::new(size);
        for y in 0..230 {
            for x in 0..300 {
                new.set_pixel(x + 20, y + 10, old.pixel(x, y));
            }
        }
        let v = candidate_vectors(&old, &new, &size.full_rect(), &[]);
        assert_eq!(v.first(), Some(&(20, 10)));
    }

    #[test]
    fn clusters_split_distant_damage() {
        let t = |c: u32, r: u32| Rect::new(c * 64, r * 64, 64, 64);
        let got = clusters(&[t(0, 0), t(1, 1), t(10, 10), t(11, 10)]);
        assert_eq!(
            got,
            vec![
                (Rect::new(0, 0, 128, 128), 2),
                (Rect::new(640, 640, 128, 64), 2)
            ]
        );
    }

    #[test]
    fn flat_frames_give_no_vectors() {
        let size = Size::new(128, 128);
        let old = Framebuffer::new(size);
        let new = Framebuffer::new(size);
        assert!(candidate_vectors(&old, &new, &size.full_rect(), &[]).is_empty());
    }
}
