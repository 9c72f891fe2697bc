//! The client's video regions: one H.264 decoder per region, composited into the
//! framebuffer. A region lives from its stream's `Start` until a display frame ends it;
//! pictures that arrive after that are dropped (the exact pixels came with the end).

use std::collections::{HashMap, VecDeque};

use oriel_media::VideoDecoder;
use oriel_protocol::codec::Decoder;
use oriel_protocol::{Rect, VideoFrame};

use crate::session::ClientError;

/// Ended region ids remembered, to drop their late pictures.
const ENDED_MEMORY: usize = 1024;
/// Most regions at once (servers run a handful).
const MAX_REGIONS: usize = 64;

struct Region {
    rect: Rect,
    decoder: VideoDecoder,
    /// A picture could not be decoded: skip pictures until a keyframe.
    broken: bool,
    last_frame_no: u64,
    /// Pictures wait until this display frame is applied.
    after_frame: u64,
    waiting: VecDeque<VideoFrame>,
}

/// Pictures held back per region while earlier display frames are still on their way;
/// beyond this they are dropped and the region waits for a keyframe.
const MAX_WAITING: usize = 64;

/// What happened to one picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    /// Decoded into the framebuffer at `rect`.
    Shown { rect: Rect },
    /// Waiting for a keyframe; dropped.
    Skipped,
    /// Could not be decoded: ask for a keyframe.
    Broken,
    /// Held back until an earlier display frame arrives.
    Queued,
    /// The region already ended (or never started here).
    Stale,
}

#[derive(Default)]
pub struct VideoRegions {
    regions: HashMap<u64, Region>,
    ended: VecDeque<u64>,
}

impl VideoRegions {
    pub fn active(&self) -> usize {
        self.regions.len()
    }

    pub fn start(
        &mut self,
        id: u64,
        rect: Rect,
        after_frame: u64,
        decoder: &Decoder,
    ) -> Result<(), ClientError> {
        if self.ended.contains(&id) {
            return Ok(());
        }
        let fb = decoder.framebuffer().size();
        if rect.is_empty() || !rect.fits_in(fb) {
            return Err(ClientError::Protocol(format!(
                "video region {rect:?} outside the desktop"
            )));
        }
        if self.regions.len() >= MAX_REGIONS || self.regions.contains_key(&id) {
            return Err(ClientError::Protocol(
                "too many or duplicate video regions".into(),
            ));
        }
        let video = VideoDecoder::new(rect.size())
            .map_err(|e| ClientError::Protocol(format!("video region: {e}")))?;
        self.regions.insert(
            id,
            Region {
                rect,
                decoder: video,
                broken: false,
                last_frame_no: 0,
                after_frame,
                waiting: VecDeque::new(),
            },
        );
        Ok(())
    }

    /// Regions a display frame ended.
    pub fn end(&mut self, ids: &[u64]) {
        for id in ids {
            self.regions.remove(id);
            if self.ended.len() == ENDED_MEMORY {
                self.ended.pop_front();
            }
            self.ended.push_back(*id);
        }
    }

    /// Pictures whose display frame has now been applied, oldest first per region.
    pub fn ready(&mut self, decoder: &Decoder) -> Vec<(u64, VideoFrame)> {
        let applied = decoder.last_frame_id();
        let mut out = Vec::new();
        for (id, region) in &mut self.regions {
            if region.after_frame <= applied {
                out.extend(region.waiting.drain(..).map(|f| (*id, f)));
            }
        }
        out
    }

    /// Decodes one picture of region `id` into `decoder`'s framebuffer, or holds it back
    /// until the display frames it must follow are applied.
    pub fn picture(
        &mut self,
        id: u64,
        frame: VideoFrame,
        decoder: &mut Decoder,
    ) -> Result<Picture, ClientError> {
        let Some(region) = self.regions.get_mut(&id) else {
            return Ok(Picture::Stale);
        };
        if decoder.last_frame_id() < region.after_frame {
            if region.waiting.len() == MAX_WAITING {
                region.waiting.clear();
                region.broken = true;
                return Ok(Picture::Broken);
            }
            region.waiting.push_back(frame);
            return Ok(Picture::Queued);
        }
        if frame.frame_no <= region.last_frame_no {
            return Err(ClientError::Protocol(format!(
                "video picture {} of region {id} arrived after {}",
                frame.frame_no, region.last_frame_no
            )));
        }
        region.last_frame_no = frame.frame_no;
        if region.broken && !frame.keyframe {
            return Ok(Picture::Skipped);
        }
        let (target, stride) = decoder.video_target(&region.rect)?;
        match region.decoder.decode(&frame.data, target, stride) {
            Ok(true) => {
                region.broken = false;
                Ok(Picture::Shown { rect: region.rect })
            }
            Ok(false) => Ok(Picture::Skipped),
            Err(e) => {
                tracing::warn!(region = id, "video picture not decodable: {e}");
                region.broken = true;
                Ok(Picture::Broken)
            }
        }
    }
}
