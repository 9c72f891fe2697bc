//! Server side: the client's last frame + the new screen + damage → one frame message.

use crate::framebuffer::Framebuffer;
use crate::geometry::{Rect, Size};
use crate::messages::*;
use crate::tiles::TileMask;

use super::cache::{is_grid_tile, tile_key, TileCache};
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

/// How a whole tile changed in the last frame: what video detection learns from the
/// lossless encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileVerdict {
    /// Most of the tile changed in ways only raw pixels could express (not a move, a
    /// fill, a cached tile or a few colours): what video looks like.
    Busy { tile: Rect, dirty: Rect },
    /// Less than half of the tile changed, in raw pixels (the edge of a video, or text).
    Partial { tile: Rect, dirty: Rect },
    /// Moved, or plain content (fills, few colours, cached), or unchanged.
    Calm { tile: Rect },
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
    /// Screen areas owned by video regions: never diffed, moved from, or encoded here.
    video: Vec<Rect>,
    /// Tiles whose pixels on the client are not known exactly (a video region covered
    /// them); they are sent whole at the next frame, damaged or not.
    unknown: TileMask,
    verdicts: Vec<TileVerdict>,
    /// The desktop changed size; the next frame says so.
    resized: Option<Size>,
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
            video: Vec::new(),
            unknown: TileMask::new(size),
            verdicts: Vec::new(),
            resized: None,
            scratch: Vec::new(),
            copy_scratch: Vec::new(),
            uncompressed: Vec::new(),
        })
    }

    /// The client of a new session shows `held` already (see [`HeldScreen`]): where
    /// `screen`'s tiles match it the client holds them, and only the others are sent,
    /// whole, at the first frame. A held screen of another size changes nothing.
    pub fn start_from_held(&mut self, screen: &Framebuffer, held: &crate::HeldScreen) {
        if screen.size() != self.client.size() || held.size != screen.size() {
            return;
        }
        let differ = held.differing(screen);
        self.client = screen.clone();
        self.unknown.merge(&differ);
    }

    /// Forgets what the client shows: the next frame sends every damaged tile, changed
    /// or not (for a client that asked for a refresh).
    pub fn resend_everything(&mut self) {
        self.resend = true;
    }

    /// The desktop is now `size`: the next frame tells the client, whose framebuffer then
    /// starts all black, so only what is not black gets sent. Video regions end.
    pub fn resize(&mut self, size: Size) {
        self.client = Framebuffer::new(size);
        self.unknown = TileMask::new(size);
        self.video.clear();
        self.last_vectors.clear();
        self.resend = false;
        self.resized = Some(size);
    }

    /// Sets the areas video regions own from the next frame on. Areas of regions that
    /// ended are sent losslessly at the next frame (build to lossless).
    pub fn set_video_regions(&mut self, regions: &[Rect]) {
        for old in &self.video {
            if !regions.contains(old) {
                self.unknown.mark_rect(old);
            }
        }
        self.video = regions.to_vec();
    }

    /// True when some pixels on the client are not exact yet, so a frame is due even
    /// without new damage.
    pub fn has_refinement(&self) -> bool {
        !self.unknown.is_empty()
    }

    /// Verdicts on the whole tiles of the last frame.
    pub fn verdicts(&self) -> &[TileVerdict] {
        &self.verdicts
    }

    /// Id of the last frame encoded (0 before the first).
    pub fn last_frame_id(&self) -> u64 {
        self.next_frame_id - 1
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
        let resend = std::mem::take(&mut self.resend);
        self.verdicts.clear();
        let mut work = damage.clone();
        work.merge(&self.unknown);
        // Pieces of damaged tiles outside video regions; `forced` ones are sent whole
        // because the client's pixels there are not known.
        let mut changed: Vec<Rect> = Vec::new();
        let mut forced: Vec<Rect> = Vec::new();
        for (c, r) in work.iter() {
            let tile = damage.tile_rect(c, r);
            let unknown = self.unknown.is_marked(c, r);
            let mut pieces = vec![tile];
            for hole in &self.video {
                pieces = pieces.iter().flat_map(|p| p.subtract(hole)).collect();
            }
            for piece in pieces {
                if resend || unknown {
                    forced.push(piece);
                } else if !screen.rect_eq(&self.client, &piece) {
                    changed.push(piece);
                }
            }
        }
        self.unknown.clear();
        let resize = self.resized.take();
        if changed.is_empty() && forced.is_empty() && resize.is_none() {
            return Ok(None);
        }

        let caps = self.config.capabilities;
        // A refresh must not build on pixels the client may have lost.
        let vectors = if caps.has(CAP_COPY_RECT) && changed.len() >= MIN_TILES_FOR_MOTION {
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
            changed_tiles: u32::try_from(changed.len() + forced.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        let mut copies: Vec<CopyRect> = Vec::new();
        let mut used_vectors: Vec<Vector> = Vec::new();
        if !vectors.is_empty() {
            for rect in &changed {
                if let Some((bounds, v)) = self.best_move(screen, rect, &vectors, &forced) {
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
        for tile in &forced {
            stats.raw_bytes += tile.area() * 4;
            self.encode_rect(screen, tile, &mut updates, &mut stats);
            self.client.copy_rect_from(screen, tile);
        }
        let size = screen.size();
        for tile in &changed {
            stats.raw_bytes += tile.area() * 4;
            let whole_tile = is_grid_tile(tile, size.width, size.height);
            let Some(dirty) = diff_bounds(screen, &self.client, tile) else {
                if whole_tile {
                    self.verdicts.push(TileVerdict::Calm { tile: *tile });
                }
                continue;
            };
            // Mostly-changed tiles go whole so the tile cache can recognise them.
            let mostly = dirty.area() * 2 >= tile.area();
            let rect = if mostly { *tile } else { dirty };
            self.encode_rect(screen, &rect, &mut updates, &mut stats);
            self.client.copy_rect_from(screen, &rect);
            if whole_tile {
                let raw = updates.last().is_some_and(|u| u.kind == UpdateKind::Raw);
                self.verdicts.push(match (raw, mostly) {
                    (true, true) => TileVerdict::Busy { tile: *tile, dirty },
                    (true, false) => TileVerdict::Partial { tile: *tile, dirty },
                    (false, _) => TileVerdict::Calm { tile: *tile },
                });
            }
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
                resize,
                copies,
                video_ended: Vec::new(),
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
        unknown: &[Rect],
    ) -> Option<(Rect, Vector)> {
        // The client's pixels under video regions, or where one just ended, are not
        // known exactly: never copy from there.
        let vectors: Vec<Vector> = vectors
            .iter()
            .copied()
            .filter(|v| {
                let src = shifted(tile, *v);
                !self.video.iter().chain(unknown).any(|r| r.intersects(&src))
            })
            .collect();
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
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "one tile's palette encoding, at most palette::max_encoded_len(64 * 64) bytes"
                )]
                let len = (self.uncompressed.len() - start) as u32;
                UpdateKind::Palette { len }
            }
            None => {
                self.uncompressed
                    .extend_from_slice(bytemuck::cast_slice(&self.scratch));
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

/// Where the pixels that `v` moves into `rect` come from (clamped at zero and at
/// `u32::MAX`: a vector pointing outside the screen never fits anyway).
fn shifted(rect: &Rect, v: Vector) -> Rect {
    let clamp = |c: i64| u32::try_from(c.max(0)).unwrap_or(u32::MAX);
    let x = clamp(i64::from(rect.x) - i64::from(v.0));
    let y = clamp(i64::from(rect.y) - i64::from(v.1));
    Rect::new(x, y, rect.width, rect.height)
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
/// The move fits (its source lies inside the screen), so [`shifted`] clamps nothing.
fn push_copy(copies: &mut Vec<CopyRect>, rect: Rect, v: Vector) {
    let Rect {
        x: src_x, y: src_y, ..
    } = shifted(&rect, v);
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
