//! Damage pending for one session: what changed since its encoder last looked, with
//! when and how often each tile changed.

use std::sync::Mutex;

use oriel_protocol::tiles::tiles_covering;
use oriel_protocol::video::TileHits;
use oriel_protocol::{Rect, Size, TileMask, TILE};
use oriel_transport::unix_micros;
use tokio::sync::Notify;

use super::lock;

/// Damage pending for one session. It is a tile mask of fixed size, so however slowly
/// a client reads, pending damage never takes more memory: new damage merges in.
pub struct DamageSink {
    pending: Mutex<Pending>,
    notify: Notify,
    /// The desktop's size when the sink was made: what the session told its client.
    first_size: Size,
}

struct Pending {
    mask: TileMask,
    /// Capture time of the oldest damage not yet taken.
    oldest_unix_us: Option<u64>,
    /// The client asked for everything again.
    refresh: bool,
    /// Polls that damaged each tile (row-major), for video detection.
    hits: Vec<TileHits>,
}

/// Damage handed to a session's encoder.
pub struct TakenDamage {
    pub mask: TileMask,
    pub oldest_unix_us: u64,
    /// Resend every tile of `mask`, changed or not.
    pub refresh: bool,
    /// Polls that damaged each tile (row-major, `mask.cols()` per row).
    pub hits: Vec<TileHits>,
}

impl DamageSink {
    pub(super) fn new(size: Size) -> Self {
        Self {
            // A new viewer needs the whole screen.
            pending: Mutex::new(Pending {
                mask: TileMask::full(size),
                oldest_unix_us: Some(unix_micros()),
                refresh: false,
                hits: vec![TileHits::default(); tile_count(size)],
            }),
            notify: Notify::new(),
            first_size: size,
        }
    }

    /// The size the sink started at.
    pub fn first_size(&self) -> Size {
        self.first_size
    }

    /// The desktop's size as of the pending damage.
    pub fn size(&self) -> Size {
        lock(&self.pending).mask.size()
    }

    /// The desktop changed size: everything is pending again, at the new size (a
    /// session sees the size change in the damage it takes).
    pub(super) fn resize(&self, size: Size) {
        let mut p = lock(&self.pending);
        p.mask = TileMask::full(size);
        p.hits = vec![TileHits::default(); tile_count(size)];
        p.refresh = false;
        p.oldest_unix_us.get_or_insert_with(unix_micros);
        drop(p);
        self.notify.notify_one();
    }

    pub(super) fn add(&self, rects: &[Rect], now_us: u64) {
        let mut p = lock(&self.pending);
        let cols = p.mask.cols();
        let rows = p.mask.rows();
        for r in rects {
            p.mask.mark_rect(r);
            let (tile_rows, tile_cols) = (
                tiles_covering(r.y, r.bottom()),
                tiles_covering(r.x, r.right()),
            );
            for row in tile_rows.start..tile_rows.end.min(rows) {
                for col in tile_cols.start..tile_cols.end.min(cols) {
                    let h = &mut p.hits[(row * cols + col) as usize];
                    // Several rects of one poll count once.
                    if h.hits == 0 || h.last_us != now_us {
                        h.hit(now_us);
                    }
                }
            }
        }
        p.oldest_unix_us.get_or_insert(now_us);
        drop(p);
        self.notify.notify_one();
    }

    /// Marks the whole screen to be sent again, changed or not.
    pub fn request_refresh(&self) {
        let mut p = lock(&self.pending);
        let size = p.mask.size();
        p.mask.mark_rect(&size.full_rect());
        p.refresh = true;
        p.oldest_unix_us.get_or_insert_with(unix_micros);
        drop(p);
        self.notify.notify_one();
    }

    /// Takes all pending damage, leaving none; `None` when nothing is pending.
    pub fn take(&self) -> Option<TakenDamage> {
        let mut p = lock(&self.pending);
        if p.mask.is_empty() {
            return None;
        }
        let size = p.mask.size();
        Some(TakenDamage {
            mask: std::mem::replace(&mut p.mask, TileMask::new(size)),
            oldest_unix_us: p.oldest_unix_us.take().unwrap_or_else(unix_micros),
            refresh: std::mem::take(&mut p.refresh),
            hits: std::mem::replace(&mut p.hits, vec![TileHits::default(); tile_count(size)]),
        })
    }

    pub fn has_pending(&self) -> bool {
        !lock(&self.pending).mask.is_empty()
    }

    /// Waits until damage is (probably) pending.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

fn tile_count(size: Size) -> usize {
    (size.width.div_ceil(TILE) * size.height.div_ceil(TILE)) as usize
}
