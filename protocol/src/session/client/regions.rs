//! The client's video regions: from a stream's `Start` until a display frame ends them.
//! Pictures wait until the display frame they follow is applied; pictures of ended
//! regions are dropped (the exact pixels came with the end). While sound plays,
//! decodable pictures are held until their sound is heard (lip sync).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::messages::VideoFrame;
use crate::{Rect, Size};

/// Ended region ids remembered, to drop their late pictures.
const ENDED_MEMORY: usize = 1024;
/// Most regions at once (servers run a handful).
const MAX_REGIONS: usize = 64;
/// Pictures held back per region while earlier display frames are still on their way;
/// beyond this they are dropped and the region waits for a keyframe.
const MAX_WAITING: usize = 64;

#[derive(Debug)]
struct Region {
    rect: Rect,
    /// A picture could not be decoded: skip pictures until a keyframe.
    broken: bool,
    last_frame_no: u64,
    /// Pictures wait until this display frame is applied.
    after_frame: u64,
    waiting: VecDeque<VideoFrame>,
    /// Pictures to decode at their time, oldest first (already acknowledged).
    held: VecDeque<(Instant, VideoFrame)>,
    /// The newest picture acknowledged when it was held.
    acked_through: u64,
}

/// What to do with one picture.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Arrival {
    Decode(Rect, VideoFrame),
    /// Waiting for a keyframe; dropped (and acknowledged).
    Skip,
    /// Too many held back: dropped, and a keyframe is needed.
    Overflow,
    /// Held back until an earlier display frame is applied.
    Queued,
    /// The region already ended (or never started here): acknowledged, dropped.
    Stale,
}

#[derive(Debug, Default)]
pub(super) struct Regions {
    regions: HashMap<u64, Region>,
    ended: VecDeque<u64>,
}

impl Regions {
    pub(super) fn active(&self) -> usize {
        self.regions.len()
    }

    /// A region starts; `Ok(false)` when it had already ended.
    pub(super) fn start(
        &mut self,
        id: u64,
        rect: Rect,
        after_frame: u64,
        size: Size,
    ) -> Result<bool, String> {
        if self.ended.contains(&id) {
            return Ok(false);
        }
        if rect.is_empty() || !rect.fits_in(size) {
            return Err(format!("video region {rect:?} outside the desktop"));
        }
        if self.regions.len() >= MAX_REGIONS || self.regions.contains_key(&id) {
            return Err("too many or duplicate video regions".into());
        }
        self.regions.insert(
            id,
            Region {
                rect,
                broken: false,
                last_frame_no: 0,
                after_frame,
                waiting: VecDeque::new(),
                held: VecDeque::new(),
                acked_through: 0,
            },
        );
        Ok(true)
    }

    /// Ends regions; returns those that were active.
    pub(super) fn end(&mut self, ids: &[u64]) -> Vec<u64> {
        let mut ended = Vec::new();
        for id in ids {
            if self.regions.remove(id).is_some() {
                ended.push(*id);
            }
            if self.ended.len() == ENDED_MEMORY {
                self.ended.pop_front();
            }
            self.ended.push_back(*id);
        }
        ended
    }

    /// Pictures whose display frame is now applied, oldest first per region.
    pub(super) fn ready(&mut self, applied: u64) -> Vec<(u64, VideoFrame)> {
        let mut out = Vec::new();
        for (id, region) in &mut self.regions {
            if region.after_frame <= applied {
                out.extend(region.waiting.drain(..).map(|f| (*id, f)));
            }
        }
        out
    }

    /// One picture of region `id` arrived (or was released) with `applied` the last
    /// display frame applied.
    pub(super) fn arrive(
        &mut self,
        id: u64,
        frame: VideoFrame,
        applied: u64,
    ) -> Result<Arrival, String> {
        let Some(region) = self.regions.get_mut(&id) else {
            return Ok(Arrival::Stale);
        };
        if applied < region.after_frame {
            if region.waiting.len() == MAX_WAITING {
                region.waiting.clear();
                region.broken = true;
                return Ok(Arrival::Overflow);
            }
            region.waiting.push_back(frame);
            return Ok(Arrival::Queued);
        }
        if frame.frame_no <= region.last_frame_no {
            return Err(format!(
                "video picture {} of region {id} arrived after {}",
                frame.frame_no, region.last_frame_no
            ));
        }
        region.last_frame_no = frame.frame_no;
        if region.broken && !frame.keyframe {
            return Ok(Arrival::Skip);
        }
        Ok(Arrival::Decode(region.rect, frame))
    }

    /// Whether region `id` holds pictures (a later one must wait behind them).
    pub(super) fn is_holding(&self, id: u64) -> bool {
        self.regions.get(&id).is_some_and(|r| !r.held.is_empty())
    }

    /// Holds a decodable picture of region `id` until `due`, acknowledged now. When
    /// the region holds all it may, its oldest picture is returned to decode at once.
    pub(super) fn hold(
        &mut self,
        id: u64,
        due: Instant,
        frame: VideoFrame,
    ) -> Option<(Rect, VideoFrame)> {
        let region = self.regions.get_mut(&id)?;
        region.acked_through = region.acked_through.max(frame.frame_no);
        // Never earlier than the picture before it: pictures decode in order.
        let due = region.held.back().map_or(due, |(last, _)| due.max(*last));
        region.held.push_back((due, frame));
        (region.held.len() > MAX_WAITING)
            .then(|| region.held.pop_front())
            .flatten()
            .map(|(_, f)| (region.rect, f))
    }

    /// Held pictures whose time has come, oldest first per region.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(u64, Rect, VideoFrame)> {
        let mut out = Vec::new();
        for (id, region) in &mut self.regions {
            while region.held.front().is_some_and(|(due, _)| *due <= now) {
                if let Some((_, f)) = region.held.pop_front() {
                    out.push((*id, region.rect, f));
                }
            }
        }
        out
    }

    /// When the next held picture is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.regions
            .values()
            .filter_map(|r| r.held.front().map(|(due, _)| *due))
            .min()
    }

    /// Whether a decoded picture still needs its acknowledgement (held ones had it).
    pub(super) fn needs_ack(&self, id: u64, frame_no: u64) -> bool {
        self.regions
            .get(&id)
            .is_none_or(|r| frame_no > r.acked_through)
    }

    /// The driver decoded a picture: a broken one waits for a keyframe.
    pub(super) fn decoded(&mut self, id: u64, broken: bool) {
        if let Some(region) = self.regions.get_mut(&id) {
            region.broken = broken;
        }
    }
}
