//! The tile cache. The client keeps recently received tiles by content hash; the server
//! keeps only the hashes, in an LRU of the same capacity driven by the same operations
//! in the same order, so it knows exactly what the client holds.

use std::num::NonZeroUsize;

use lru::LruCache;

use crate::geometry::Rect;
use crate::tiles::TILE;

/// Content key of a tile: 64-bit XXH3 of its pixels, seeded with its dimensions.
pub fn tile_key(rect: &Rect, pixels: &[u32]) -> u64 {
    let seed = (u64::from(rect.width) << 32) | u64::from(rect.height);
    let bytes: &[u8] = bytemuck::cast_slice(pixels);
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

/// True for rects that are exactly one tile of the grid: only those are cached, so both
/// sides agree on what enters the cache.
pub fn is_grid_tile(rect: &Rect, width: u32, height: u32) -> bool {
    rect.x.is_multiple_of(TILE)
        && rect.y.is_multiple_of(TILE)
        && rect.width == TILE.min(width.saturating_sub(rect.x))
        && rect.height == TILE.min(height.saturating_sub(rect.y))
        && rect.width > 0
        && rect.height > 0
}

/// An LRU keyed by tile hash; `V` is `()` on the server and the pixels on the client.
pub struct TileCache<V> {
    lru: Option<LruCache<u64, V>>,
}

impl<V> TileCache<V> {
    /// A cache of `entries` tiles; zero disables caching.
    pub fn new(entries: u32) -> Self {
        Self {
            lru: NonZeroUsize::new(entries as usize).map(LruCache::new),
        }
    }

    /// Looks up and marks as most recently used.
    pub fn get(&mut self, key: u64) -> Option<&V> {
        self.lru.as_mut()?.get(&key)
    }

    pub fn insert(&mut self, key: u64, value: V) {
        if let Some(lru) = self.lru.as_mut() {
            lru.put(key, value);
        }
    }

    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| l.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_caches_agree_on_eviction() {
        let mut server: TileCache<()> = TileCache::new(2);
        let mut client: TileCache<u32> = TileCache::new(2);
        for op in [(1, true), (2, true), (1, false), (3, true)] {
            if op.1 {
                server.insert(op.0, ());
                client.insert(op.0, u32::try_from(op.0).unwrap());
            } else {
                assert!(server.get(op.0).is_some());
                assert!(client.get(op.0).is_some());
            }
        }
        // 2 was least recently used on both sides.
        assert!(server.get(2).is_none() && client.get(2).is_none());
        assert!(server.get(1).is_some() && client.get(1).is_some());
    }

    #[test]
    fn grid_tiles_only() {
        assert!(is_grid_tile(&Rect::new(64, 0, 64, 64), 1920, 1080));
        assert!(is_grid_tile(&Rect::new(1856, 1024, 64, 56), 1920, 1080));
        assert!(!is_grid_tile(&Rect::new(64, 0, 128, 64), 1920, 1080));
        assert!(!is_grid_tile(&Rect::new(1, 0, 64, 64), 1920, 1080));
    }
}
