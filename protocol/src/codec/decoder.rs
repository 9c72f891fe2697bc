//! Client side: applies frame messages to the client's framebuffer. Every field of a
//! frame is checked before it touches memory; a bad frame is an error, never a panic.

use crate::framebuffer::Framebuffer;
use crate::geometry::{Rect, Size};
use crate::messages::*;

use super::cache::{is_grid_tile, tile_key, TileCache};
use super::stream::StreamDecoder;
use super::{apply_copies, invalid, palette, CodecError};

/// What one decoded frame contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeReport {
    pub copies: u32,
    pub updates: u32,
    pub payload_bytes: u64,
}

/// More regions than any server runs at once.
const MAX_VIDEO_REGIONS_ENDED: usize = 256;

pub struct Decoder {
    fb: Framebuffer,
    caps: Capabilities,
    cache: TileCache<Box<[u32]>>,
    stream: StreamDecoder,
    last_frame_id: u64,
    last_source_seq: u64,
    copy_scratch: Vec<u32>,
    payload: Vec<u8>,
    tile: Vec<u32>,
}

impl Decoder {
    pub fn new(size: Size, caps: Capabilities) -> Result<Self, CodecError> {
        Ok(Self {
            fb: Framebuffer::new(size),
            caps,
            cache: TileCache::new(if caps.has(CAP_TILE_CACHE) {
                caps.tile_cache_entries.min(MAX_TILE_CACHE_ENTRIES)
            } else {
                0
            }),
            stream: StreamDecoder::new()?,
            last_frame_id: 0,
            last_source_seq: 0,
            copy_scratch: Vec::new(),
            payload: Vec::new(),
            tile: Vec::new(),
        })
    }

    pub fn framebuffer(&self) -> &Framebuffer {
        &self.fb
    }

    /// Starts from `screen`, the screen this client showed before (the server was told
    /// of it in the hello's held screen); false, and nothing changes, when its size is
    /// not the session's.
    pub fn hold(&mut self, screen: Framebuffer) -> bool {
        if screen.size() != self.fb.size() || self.last_frame_id != 0 {
            return false;
        }
        self.fb = screen;
        true
    }

    pub fn last_frame_id(&self) -> u64 {
        self.last_frame_id
    }

    /// Writes a decoded video picture into `rect` (checked against the desktop).
    pub fn blit(&mut self, rect: &Rect, pixels: &[u32]) -> Result<(), CodecError> {
        if rect.is_empty() || !rect.fits_in(self.fb.size()) || pixels.len() as u64 != rect.area() {
            return Err(invalid("video picture outside the desktop"));
        }
        self.fb.write_rect(rect, pixels);
        Ok(())
    }

    /// Where a video picture for `rect` goes: the framebuffer's pixels from the rect's
    /// top-left corner on, and the row stride, so a decoder can write in place.
    pub fn video_target(&mut self, rect: &Rect) -> Result<(&mut [u32], usize), CodecError> {
        if rect.is_empty() || !rect.fits_in(self.fb.size()) {
            return Err(invalid("video picture outside the desktop"));
        }
        let stride = self.fb.width() as usize;
        let start = rect.y as usize * stride + rect.x as usize;
        Ok((&mut self.fb.pixels_mut()[start..], stride))
    }

    /// Source sequence of the newest decoded frame.
    pub fn source_seq(&self) -> u64 {
        self.last_source_seq
    }

    /// Applies one frame. After an error the decoder's state is undefined and the
    /// connection must be dropped (the shared zstd stream cannot resynchronise).
    pub fn apply(&mut self, msg: &FrameMsg) -> Result<DecodeReport, CodecError> {
        if msg.frame_id <= self.last_frame_id {
            return Err(CodecError::OutOfOrder {
                got: msg.frame_id,
                last: self.last_frame_id,
            });
        }
        if let Some(size) = msg.resize {
            if size.width == 0 || size.height == 0 || size.area() > crate::MAX_DESKTOP_PIXELS {
                return Err(invalid(format!(
                    "resize to {}x{} is out of range",
                    size.width, size.height
                )));
            }
        }
        let size = msg.resize.unwrap_or(self.fb.size());
        let payload_len = self.validate(msg, size)?;
        if msg.resize.is_some() {
            // Tiles in the cache are kept: they are keyed by content, not position.
            self.fb = Framebuffer::new(size);
        }

        apply_copies(&mut self.fb, &msg.copies, &mut self.copy_scratch);

        self.payload.clear();
        self.payload.resize(payload_len, 0);
        self.stream
            .decompress_chunk(&msg.payload, &mut self.payload)?;

        let mut offset = 0usize;
        for update in &msg.updates {
            let rect = update.rect;
            match update.kind {
                UpdateKind::Solid(colour) => self.fb.fill(&rect, colour),
                UpdateKind::CacheHit(key) => {
                    let pixels = self
                        .cache
                        .get(key)
                        .ok_or_else(|| invalid(format!("cache miss for tile {key:016x}")))?;
                    if pixels.len() as u64 != rect.area() {
                        return Err(invalid("cached tile has another size"));
                    }
                    self.fb.write_rect(&rect, pixels);
                }
                UpdateKind::Palette { len } => {
                    let data = &self.payload[offset..offset + len as usize];
                    offset += len as usize;
                    self.tile.clear();
                    self.tile.resize(rect.pixel_count(), 0);
                    palette::decode(data, &mut self.tile)?;
                    self.store_tile(&rect);
                }
                UpdateKind::Raw => {
                    let len = rect.pixel_count() * 4;
                    let data = &self.payload[offset..offset + len];
                    offset += len;
                    self.tile.clear();
                    self.tile.extend(
                        data.chunks_exact(4)
                            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                    self.store_tile(&rect);
                }
            }
        }
        self.last_frame_id = msg.frame_id;
        self.last_source_seq = msg.source_seq;
        Ok(DecodeReport {
            copies: u32::try_from(msg.copies.len()).unwrap_or(u32::MAX),
            updates: u32::try_from(msg.updates.len()).unwrap_or(u32::MAX),
            payload_bytes: msg.payload.len() as u64,
        })
    }

    /// Checks every rect and length; returns the decompressed payload size.
    fn validate(&self, msg: &FrameMsg, size: Size) -> Result<usize, CodecError> {
        let area = size.area();
        if !msg.copies.is_empty() && !self.caps.has(CAP_COPY_RECT) {
            return Err(invalid("copy-rect was not negotiated"));
        }
        let mut copy_area = 0u64;
        for c in &msg.copies {
            let src = Rect::new(c.src_x, c.src_y, c.dst.width, c.dst.height);
            if c.dst.is_empty() || !c.dst.fits_in(size) || !src.fits_in(size) {
                return Err(invalid("copy-rect outside the desktop"));
            }
            copy_area += c.dst.area();
        }
        if copy_area > area * 2 {
            return Err(invalid("copy-rects cover more than twice the desktop"));
        }
        if msg.video_ended.len() > MAX_VIDEO_REGIONS_ENDED {
            return Err(invalid("too many video regions ended in one frame"));
        }
        if msg.updates.len() as u64 > area {
            return Err(invalid("more updates than pixels"));
        }
        let mut payload: u64 = 0;
        for u in &msg.updates {
            let r = u.rect;
            if r.is_empty() || !r.fits_in(size) {
                return Err(invalid(format!("update {r:?} outside the desktop")));
            }
            let needs = |flag| {
                if self.caps.has(flag) {
                    Ok(())
                } else {
                    Err(invalid("update uses a codec that was not negotiated"))
                }
            };
            match u.kind {
                UpdateKind::Solid(_) => needs(CAP_SOLID)?,
                UpdateKind::CacheHit(_) => {
                    needs(CAP_TILE_CACHE)?;
                    if !is_grid_tile(&r, size.width, size.height) {
                        return Err(invalid("cache hit for a rect that is not a tile"));
                    }
                }
                UpdateKind::Palette { len } => {
                    needs(CAP_PALETTE)?;
                    if u64::from(len) > palette::max_encoded_len(r.area()) {
                        return Err(invalid("palette data longer than possible"));
                    }
                    payload += u64::from(len);
                }
                UpdateKind::Raw => {
                    needs(CAP_ZSTD)?;
                    payload += r.area() * 4;
                }
            }
            if payload > area * 4 + 1024 * 1024 {
                return Err(invalid("updates need more payload than the desktop holds"));
            }
        }
        usize::try_from(payload).map_err(|_| invalid("payload larger than memory"))
    }

    /// Writes the decoded `self.tile` and caches it when it is a grid tile.
    fn store_tile(&mut self, rect: &Rect) {
        self.fb.write_rect(rect, &self.tile);
        let size = self.fb.size();
        if self.caps.has(CAP_TILE_CACHE) && is_grid_tile(rect, size.width, size.height) {
            let key = tile_key(rect, &self.tile);
            self.cache.insert(key, self.tile.clone().into_boxed_slice());
        }
    }
}
