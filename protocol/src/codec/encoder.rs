//! Server side: the client's last frame + the new screen + damage → one frame message.

use crate::framebuffer::Framebuffer;
use crate::geometry::{Rect, Size};
use crate::messages::*;
use crate::tiles::TileMask;

use super::cache::{bytemuck_cast, is_grid_tile, tile_key, TileCache};
use super::diff::{diff_bounds, move_fit, moved_whole, solid_colour};
use super::motion::{candidate_vectors, clusters, Vector};
use super::stream::StreamEncoder;
use super::{apply_copies, palette, CodecError};

/// Moves are searched only in clusters of at least this many changed tiles: small damage
/// (typing) is cheaper to send than to search.
const MIN_TILES_FOR_MOTION: usize = 4;

/// A partial move must explain at least this many pixels of a tile to be worth a copy.
const MIN_MOVE_PIXELS: u32 = 64;
/// Palette+RLE only for rects with at most this many colours; richer rects (anti-aliased
/// text, gradients) compress better as raw pixels in the shared zstd stream, where they
/// match earlier frames byte for byte. Measured with oriel-bench (bytes, 1080p):
///
/// | max colours | idle first frame | typing per frame | scroll per frame |
/// |---|---|---|---|
/// | 2   | 144 057 | 223 | 1 007 |
/// | 8   | 108 097 | 225 | 1 023 |
/// | 16  |  89 076 | 233 | 1 046 |
/// | 64  |  88 526 | 354 | 1 441 |
/// | 256 | 126 090 | 326 | 1 458 |
const PALETTE_MAX: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct EncoderConfig {
    /// Capabilities negotiated with the client.
    pub capabilities: Capabilities,
    pub zstd_level: i32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            capabilities: Capabilities::all(),
            zstd_level: 1,
        }
    }
}

/// What the caller knows about the frame beyond its pixels.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameMeta {
    pub source_seq: u64,
    pub capture_unix_us: u64,
}

/// Counters of one encoded frame, for stats and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    pub changed_tiles: u32,
    /// Bytes the changed tiles would cost uncompressed.
    pub raw_bytes: u64,
    pub solid: u32,
    pub copies: u32,
    pub cache_hits: u32,
    pub palette: u32,
    pub raw: u32,
    pub payload_bytes: u64,
}

pub struct EncodedFrame {
    pub msg: FrameMsg,
    pub stats: FrameStats,
}

pub struct Encoder {
    config: EncoderConfig,
    /// Exactly what the client's framebuffer holds after the last frame.
    client: Framebuffer,
    cache: TileCache<()>,
    stream: StreamEncoder,
    next_frame_id: u64,
    last_vectors: Vec<Vector>,
    resend: bool,
    scratch: Vec<u32>,
    copy_scratch: Vec<u32>,
    uncompressed: Vec<u8>,
}

impl Encoder {
    pub fn new(size: Size, config: EncoderConfig) -> Result<Self, CodecError> {
        let caps = config.capabilities;
        Ok(Self {
            config,
            client: Framebuffer::new(size),
            cache: TileCache::new(if caps.has(CAP_TILE_CACHE) {
                caps.tile_cache_entries.min(MAX_TILE_CACHE_ENTRIES)
            } else {
                0
            }),
            stream: StreamEncoder::new(config.zstd_level)?,
            next_frame_id: 1,
            last_vectors: Vec::new(),
            resend: false,
            scratch: Vec::new(),
            copy_scratch: Vec::new(),
            uncompressed: Vec::new(),
        })
    }

    /// Forgets what the client shows: the next frame sends every damaged tile, changed
    /// or not (for a client that asked for a refresh).
    pub fn resend_everything(&mut self) {
        self.resend = true;
    }

    /// The client's framebuffer as of the last encoded frame.
    pub fn client_view(&self) -> &Framebuffer {
        &self.client
    }

    /// Encodes the tiles of `damage` where `screen` differs from what the client has.
    /// Returns `None` when nothing actually changed.
    pub fn encode(
        &mut self,
        screen: &Framebuffer,
        damage: &TileMask,
        meta: FrameMeta,
    ) -> Result<Option<EncodedFrame>, CodecError> {
        if screen.size() != self.client.size() || damage.size() != screen.size() {
            return Err(super::invalid("screen, damage and encoder sizes differ"));
        }
        let changed: Vec<Rect> = damage
            .iter()
            .map(|(c, r)| damage.tile_rect(c, r))
            .filter(|rect| self.resend || !screen.rect_eq(&self.client, rect))
            .collect();
        let resend = std::mem::take(&mut self.resend);
        if changed.is_empty() {
            return Ok(None);
        }

        let caps = self.config.capabilities;
        // A refresh must not build on pixels the client may have lost.
        let vectors = if !resend && caps.has(CAP_COPY_RECT) && changed.len() >= MIN_TILES_FOR_MOTION
        {
            if self.last_vectors_still_fit(screen, &changed) {
                // A scroll or drag usually keeps its speed: skip the search.
                self.last_vectors.clone()
            } else {
                let mut vectors = self.last_vectors.clone();
                for (region, tiles) in clusters(&changed) {
                    if tiles < MIN_TILES_FOR_MOTION {
                        continue;
                    }
                    for v in candidate_vectors(&self.client, screen, &region, &[]) {
                        if !vectors.contains(&v) {
                            vectors.push(v);
                        }
                    }
                }
                vectors
            }
        } else {
            Vec::new()
        };

        let mut stats = FrameStats {
            changed_tiles: changed.len() as u32,
            ..Default::default()
        };
        let mut copies: Vec<CopyRect> = Vec::new();
        let mut used_vectors: Vec<Vector> = Vec::new();
        if !vectors.is_empty() {
            for rect in &changed {
                if let Some((bounds, v)) = self.best_move(screen, rect, &vectors) {
                    stats.copies += 1;
                    if !used_vectors.contains(&v) {
                        used_vectors.push(v);
                    }
                    push_copy(&mut copies, bounds, v);
                }
            }
            // From here on the client view includes the moves, so what is left to send
            // is only what the moves did not explain.
            apply_copies(&mut self.client, &copies, &mut self.copy_scratch);
        }

        let mut updates: Vec<RectUpdate> = Vec::new();
        self.uncompressed.clear();
        for tile in &changed {
            stats.raw_bytes += tile.area() * 4;
            let dirty = if resend {
                *tile
            } else {
                match diff_bounds(screen, &self.client, tile) {
                    Some(dirty) => dirty,
                    None => continue,
                }
            };
            // Mostly-changed tiles go whole so the tile cache can recognise them.
            let rect = if dirty.area() * 2 >= tile.area() {
                *tile
            } else {
                dirty
            };
            self.encode_rect(screen, &rect, &mut updates, &mut stats);
            self.client.copy_rect_from(screen, &rect);
        }
        debug_assert!(changed.iter().all(|t| screen.rect_eq(&self.client, t)));

        let mut payload = Vec::new();
        self.stream
            .compress_chunk(&self.uncompressed, &mut payload)?;
        stats.payload_bytes = payload.len() as u64;

        self.last_vectors = used_vectors;
        let frame_id = self.next_frame_id;
        self.next_frame_id += 1;
        Ok(Some(EncodedFrame {
            msg: FrameMsg {
                frame_id,
                source_seq: meta.source_seq,
                capture_unix_us: meta.capture_unix_us,
                copies,
                updates,
                payload,
            },
            stats,
        }))
    }

    /// True when last frame's moves still explain at least half of a sample of the
    /// changed tiles.
    fn last_vectors_still_fit(&self, screen: &Framebuffer, changed: &[Rect]) -> bool {
        if self.last_vectors.is_empty() {
            return false;
        }
        let step = (changed.len() / 16).max(1);
        let sample: Vec<&Rect> = changed.iter().step_by(step).collect();
        let fits = sample
            .iter()
            .filter(|t| {
                self.last_vectors
                    .iter()
                    .any(|v| moved_whole(screen, &self.client, t, *v))
            })
            .count();
        fits * 2 >= sample.len()
    }

    /// The move that explains most of `tile`'s change, as the rect to copy and the vector.
    fn best_move(
        &self,
        screen: &Framebuffer,
        tile: &Rect,
        vectors: &[Vector],
    ) -> Option<(Rect, Vector)> {
        if let Some(v) = vectors
            .iter()
            .find(|v| moved_whole(screen, &self.client, tile, **v))
        {
            return Some((*tile, *v));
        }
        vectors
            .iter()
            .filter_map(|v| move_fit(screen, &self.client, tile, *v).map(|fit| (fit, *v)))
            // A copy that gets much of its rect wrong only moves work to the residual.
            .filter(|(fit, _)| fit.right >= MIN_MOVE_PIXELS && fit.wrong * 4 <= fit.right)
            .max_by_key(|(fit, _)| fit.right)
            .map(|(fit, v)| (fit.bounds, v))
    }

    /// Encodes one rect of `screen` with the cheapest lossless codec.
    fn encode_rect(
        &mut self,
        screen: &Framebuffer,
        rect: &Rect,
        updates: &mut Vec<RectUpdate>,
        stats: &mut FrameStats,
    ) {
        let caps = self.config.capabilities;
        if caps.has(CAP_SOLID) {
            if let Some(colour) = solid_colour(screen, rect) {
                stats.solid += 1;
                push_solid(updates, *rect, colour);
                return;
            }
        }
        screen.read_rect(rect, &mut self.scratch);
        let cacheable =
            caps.has(CAP_TILE_CACHE) && is_grid_tile(rect, screen.width(), screen.height());
        let key = cacheable.then(|| tile_key(rect, &self.scratch));
        if let Some(key) = key {
            if self.cache.get(key).is_some() {
                stats.cache_hits += 1;
                updates.push(RectUpdate {
                    rect: *rect,
                    kind: UpdateKind::CacheHit(key),
                });
                return;
            }
        }
        let palette = caps
            .has(CAP_PALETTE)
            .then(|| palette::collect_palette(&self.scratch, PALETTE_MAX))
            .flatten();
        let kind = match palette {
            Some(colours) => {
                let start = self.uncompressed.len();
                palette::encode(&self.scratch, &colours, &mut self.uncompressed);
                stats.palette += 1;
                UpdateKind::Palette {
                    len: (self.uncompressed.len() - start) as u32,
                }
            }
            None => {
                self.uncompressed
                    .extend_from_slice(bytemuck_cast(&self.scratch));
                stats.raw += 1;
                UpdateKind::Raw
            }
        };
        if let Some(key) = key {
            self.cache.insert(key, ());
        }
        updates.push(RectUpdate { rect: *rect, kind });
    }
}

/// Appends a solid fill, extending the previous one when it continues the same row.
fn push_solid(updates: &mut Vec<RectUpdate>, rect: Rect, colour: u32) {
    if let Some(last) = updates.last_mut() {
        if last.kind == UpdateKind::Solid(colour)
            && last.rect.y == rect.y
            && last.rect.height == rect.height
            && last.rect.right() == u64::from(rect.x)
        {
            last.rect.width += rect.width;
            return;
        }
    }
    updates.push(RectUpdate {
        rect,
        kind: UpdateKind::Solid(colour),
    });
}

/// Appends a move, extending the previous one when it continues the same row.
fn push_copy(copies: &mut Vec<CopyRect>, rect: Rect, v: Vector) {
    let src_x = (i64::from(rect.x) - i64::from(v.0)) as u32;
    let src_y = (i64::from(rect.y) - i64::from(v.1)) as u32;
    if let Some(last) = copies.last_mut() {
        if last.dst.y == rect.y
            && last.dst.height == rect.height
            && last.dst.right() == u64::from(rect.x)
            && u64::from(last.src_x) + u64::from(last.dst.width) == u64::from(src_x)
            && last.src_y == src_y
        {
            last.dst.width += rect.width;
            return;
        }
    }
    copies.push(CopyRect {
        dst: rect,
        src_x,
        src_y,
    });
}
