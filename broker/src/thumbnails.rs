//! Desktop thumbnails the broker got from hosts lately: however many consoles refresh a
//! desktop's picture, its host is asked at most once a second for each size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a thumbnail is handed out again.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// Most thumbnails kept: beyond it the cache is emptied (each is a few kB).
const MAX_KEPT: usize = 4096;

type Size = (u32, u32);
/// A PNG and when it came.
type Kept = (Instant, Arc<Vec<u8>>);

#[derive(Default)]
pub struct ThumbnailCache(Mutex<HashMap<(String, Size), Kept>>);

impl ThumbnailCache {
    /// A fresh thumbnail of desktop `id` at `size`, if one was fetched lately.
    pub fn get(&self, id: &str, size: Size) -> Option<Arc<Vec<u8>>> {
        let kept = crate::lock(&self.0);
        let (at, png) = kept.get(&(id.to_string(), size))?;
        (at.elapsed() < FRESH_FOR).then(|| png.clone())
    }

    /// Keeps a thumbnail just fetched; returns it shared.
    pub fn put(&self, id: &str, size: Size, png: Vec<u8>) -> Arc<Vec<u8>> {
        let png = Arc::new(png);
        let mut kept = crate::lock(&self.0);
        kept.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert((id.to_string(), size), (Instant::now(), png.clone()));
        png
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thumbnail_is_kept_for_its_size_only_a_moment() {
        let cache = ThumbnailCache::default();
        assert!(cache.get("d", (320, 200)).is_none());
        cache.put("d", (320, 200), vec![1, 2, 3]);
        assert_eq!(cache.get("d", (320, 200)).unwrap().as_slice(), &[1, 2, 3]);
        assert!(cache.get("d", (100, 100)).is_none());
        assert!(cache.get("e", (320, 200)).is_none());
        crate::lock(&cache.0)
            .values_mut()
            .for_each(|(at, _)| *at -= FRESH_FOR);
        assert!(cache.get("d", (320, 200)).is_none());
    }
}
