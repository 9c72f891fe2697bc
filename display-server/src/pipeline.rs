//! One session's display pipeline: damage in; lossless frames, H.264 pictures of video
//! regions and region changes out. Runs on a blocking thread and does no I/O.
//!
//! Damage is taken from the session's sink whenever there is some and merged into
//! `pending`; what goes out depends on the flow-control budget. Video regions own their
//! rect: the lossless encoder leaves it alone until the region ends, and then sends it
//! exactly (build to lossless).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use oriel_media::{VideoEncoder, VideoEncoderConfig};
use oriel_protocol::codec::{CodecError, EncodedFrame, Encoder, EncoderConfig, FrameMeta};
use oriel_protocol::session::server::{EncodeOrder, Encoded, FrameReady, PictureReady, VideoStart};
use oriel_protocol::video::{DetectorConfig, RegionEvent, VideoDetector};
use oriel_protocol::wire::encode_message;
use oriel_protocol::{Channel, Framebuffer, Rect, Size, TileMask, VideoFrame, VideoMsg, CAP_H264};

use crate::desktop::{DamageSink, Desktop};
use crate::stats::ServerStats;

/// A video region being encoded.
struct RegionCoder {
    id: u64,
    rect: Rect,
    encoder: VideoEncoder,
    /// The region's pixels as last seen, to tell real changes from damage; what the
    /// next picture encodes.
    last: Vec<u32>,
    dirty: bool,
    keyframe: bool,
    frame_no: u64,
    capture_unix_us: u64,
}

/// What video may go out in one step.
pub(crate) struct Budget<'a> {
    /// Whether a picture of this region fits in its window.
    pub video_room: &'a dyn Fn(u64) -> bool,
    /// Video bitrate for all regions together.
    pub bitrate: u32,
    /// Regions whose client asked for a keyframe.
    pub keyframes: Vec<u64>,
}

pub(crate) struct VideoOut {
    pub region_id: u64,
    pub frame: VideoFrame,
    pub encode_us: u32,
}

#[derive(Default)]
pub(crate) struct Output {
    pub video: Vec<VideoOut>,
    /// New regions: id, rect, and the last display frame encoded before them.
    pub started: Vec<(u64, Rect, u64)>,
    pub ended: Vec<u64>,
    /// Pictures rate control dropped.
    pub skipped: u32,
}

pub(crate) struct Pipeline {
    encoder: Encoder,
    /// `None` when the client cannot decode H.264: everything stays lossless.
    detector: Option<VideoDetector>,
    staging: Framebuffer,
    pending: TileMask,
    regions: Vec<RegionCoder>,
    /// Regions ended since the last lossless frame.
    ended: Vec<u64>,
    /// Regions a resize ended, whose streams the session has yet to close.
    ended_by_resize: Vec<u64>,
    source_seq: u64,
    oldest_capture_us: Option<u64>,
    epoch: Instant,
    max_fps: f32,
}

impl Pipeline {
    pub(crate) fn new(size: Size, config: EncoderConfig, max_fps: f32) -> Result<Self, CodecError> {
        let video = config.capabilities.has(CAP_H264);
        Ok(Self {
            encoder: Encoder::new(size, config)?,
            detector: video.then(|| VideoDetector::new(size, DetectorConfig::default())),
            staging: Framebuffer::new(size),
            pending: TileMask::new(size),
            regions: Vec::new(),
            ended: Vec::new(),
            ended_by_resize: Vec::new(),
            source_seq: 0,
            oldest_capture_us: None,
            epoch: Instant::now(),
            max_fps,
        })
    }

    /// The client shows `held` already: only the tiles of `screen` that differ from
    /// it are sent at the first frame (see [`Encoder::start_from_held`]).
    pub(crate) fn start_from_held(
        &mut self,
        screen: &oriel_protocol::Framebuffer,
        held: &oriel_protocol::HeldScreen,
    ) {
        self.encoder.start_from_held(screen, held);
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Takes the sink's damage and copies those tiles of the screen. Damage is taken and
    /// pixels copied under the source lock, so they belong to one source state.
    pub(crate) fn take(&mut self, desktop: &Desktop, sink: &DamageSink) {
        let damage = {
            let source = desktop.source();
            let Some(damage) = sink.take() else {
                return;
            };
            if damage.mask.size() != self.staging.size() {
                self.resize(damage.mask.size());
            }
            let pixels = source.pixels();
            for (c, r) in damage.mask.iter() {
                self.staging
                    .copy_rect_from(pixels, &damage.mask.tile_rect(c, r));
            }
            self.source_seq = source.sequence();
            damage
        };
        if damage.refresh {
            self.encoder.resend_everything();
            for r in &mut self.regions {
                r.keyframe = true;
            }
        }
        let cols = damage.mask.cols();
        if let Some(detector) = &mut self.detector {
            for (c, r) in damage.mask.iter() {
                detector.observe_damage(c, r, &damage.hits[(r * cols + c) as usize]);
            }
        }
        // A region is playing while its pixels change, whether or not there is room to
        // send them: checked here, at capture rate, so a slow link does not end it.
        let now = self.now_us();
        for region in &mut self.regions {
            if !damage
                .mask
                .iter()
                .any(|(c, r)| damage.mask.tile_rect(c, r).intersects(&region.rect))
            {
                continue;
            }
            if !self.staging.rect_holds(&region.rect, &region.last) {
                self.staging.read_rect(&region.rect, &mut region.last);
                region.dirty = true;
                region.capture_unix_us = damage.oldest_unix_us;
                if let Some(d) = &mut self.detector {
                    d.region_changed(region.id, now);
                }
            }
        }
        self.pending.merge(&damage.mask);
        let oldest = self.oldest_capture_us.get_or_insert(damage.oldest_unix_us);
        *oldest = (*oldest).min(damage.oldest_unix_us);
    }

    /// The desktop changed size: every region ends, and the next frame repaints the
    /// screen at its new size.
    fn resize(&mut self, size: Size) {
        self.encoder.resize(size);
        if let Some(detector) = &mut self.detector {
            *detector = VideoDetector::new(size, DetectorConfig::default());
        }
        self.staging = Framebuffer::new(size);
        self.pending = TileMask::new(size);
        for region in self.regions.drain(..) {
            self.ended.push(region.id);
            self.ended_by_resize.push(region.id);
        }
    }

    /// One encoder step: takes the damage, starts and ends regions, encodes the pictures
    /// and the lossless frame the order allows.
    pub(crate) fn step(
        &mut self,
        desktop: &Desktop,
        sink: &DamageSink,
        order: EncodeOrder,
        stats: &ServerStats,
    ) -> anyhow::Result<Encoded> {
        let pipeline = self;
        pipeline.take(desktop, sink);
        let full = order.full_regions;
        let room = |id: u64| !full.contains(&id);
        let out = pipeline.step_video(Budget {
            video_room: &room,
            bitrate: order.bitrate,
            keyframes: order.keyframes,
        });
        stats
            .video_skipped
            .fetch_add(u64::from(out.skipped), Relaxed);
        stats
            .video_regions
            .fetch_add(out.started.len() as u64, Relaxed);
        let mut pictures = Vec::with_capacity(out.video.len());
        for v in out.video {
            stats.record_video(v.frame.data.len(), v.frame.keyframe, v.encode_us);
            let frame_no = v.frame.frame_no;
            let message =
                encode_message(&VideoMsg::Frame(v.frame), Channel::Video.max_message_len())?;
            pictures.push(PictureReady {
                region_id: v.region_id,
                frame_no,
                message,
            });
        }
        let mut frame = None;
        if order.lossless && pipeline.lossless_due() {
            if let Some((encoded, encode_us)) = pipeline.step_lossless()? {
                let message = encode_message(&encoded.msg, Channel::Display.max_message_len())?;
                stats.record_frame(&encoded.stats, message.len(), encode_us);
                frame = Some(FrameReady {
                    frame_id: encoded.msg.frame_id,
                    size: pipeline.size(),
                    message,
                });
            }
        }
        Ok(Encoded {
            started: out
                .started
                .into_iter()
                .map(|(region_id, rect, after_frame)| VideoStart {
                    region_id,
                    rect,
                    after_frame,
                })
                .collect(),
            ended: out.ended,
            pictures,
            frame,
            lossless_due: pipeline.lossless_due(),
            video_due: pipeline.due_regions(),
            deadline: pipeline.deadline(),
        })
    }

    /// A lossless frame is due (damage, a region to refine, or an end to announce).
    pub(crate) fn lossless_due(&self) -> bool {
        !self.pending.is_empty() || self.encoder.has_refinement() || !self.ended.is_empty()
    }

    /// Regions with a picture to send.
    pub(crate) fn due_regions(&self) -> Vec<u64> {
        self.regions
            .iter()
            .filter(|r| r.dirty || r.keyframe)
            .map(|r| r.id)
            .collect()
    }

    /// The desktop's size as the encoder has it.
    pub(crate) fn size(&self) -> Size {
        self.staging.size()
    }

    /// When a region expires if nothing changes: the loop must wake then.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let us = self.detector.as_ref()?.next_deadline_us()?;
        Some(self.epoch + std::time::Duration::from_micros(us))
    }

    /// Starts and ends regions and encodes the pictures the budget allows. Pictures go
    /// out before the lossless frame of the same step is even encoded.
    pub(crate) fn step_video(&mut self, budget: Budget<'_>) -> Output {
        let mut out = Output {
            ended: std::mem::take(&mut self.ended_by_resize),
            ..Default::default()
        };
        for id in &budget.keyframes {
            if let Some(r) = self.regions.iter_mut().find(|r| r.id == *id) {
                r.keyframe = true;
            }
        }
        self.update_regions(budget.bitrate, &mut out);
        self.encode_video(&budget, &mut out);
        out
    }

    /// Encodes the pending lossless damage (and refinements, and region ends) as one
    /// frame, with its encode time in µs.
    pub(crate) fn step_lossless(&mut self) -> Result<Option<(EncodedFrame, u32)>, CodecError> {
        let meta = FrameMeta {
            source_seq: self.source_seq,
            capture_unix_us: self
                .oldest_capture_us
                .unwrap_or_else(oriel_transport::unix_micros),
        };
        let started = Instant::now();
        let frame = self.encoder.encode(&self.staging, &self.pending, meta)?;
        let encode_us = elapsed_us(started);
        self.pending.clear();
        self.oldest_capture_us = None;
        if let Some(detector) = &mut self.detector {
            detector.observe_verdicts(self.encoder.verdicts());
        }
        Ok(frame.map(|mut f| {
            f.msg.video_ended = std::mem::take(&mut self.ended);
            (f, encode_us)
        }))
    }

    /// Ends expired regions and starts new ones; the lossless encoder learns the result.
    fn update_regions(&mut self, bitrate: u32, out: &mut Output) {
        let now = self.now_us();
        let Some(detector) = &mut self.detector else {
            return;
        };
        for event in detector.update(now) {
            match event {
                RegionEvent::Ended { id, .. } => {
                    self.regions.retain(|r| r.id != id);
                    self.ended.push(id);
                    out.ended.push(id);
                }
                RegionEvent::Started { id, rect } => {
                    let config = VideoEncoderConfig {
                        bitrate: bitrate.min(
                            u32::try_from(region_ceiling(rect, self.max_fps)).unwrap_or(u32::MAX),
                        ),
                        max_fps: self.max_fps,
                    };
                    match VideoEncoder::new(rect.size(), config) {
                        Ok(encoder) => {
                            tracing::debug!(id, ?rect, "video region started");
                            self.regions.push(RegionCoder {
                                id,
                                rect,
                                encoder,
                                last: Vec::new(),
                                dirty: true,
                                keyframe: false,
                                frame_no: 0,
                                capture_unix_us: oriel_transport::unix_micros(),
                            });
                            out.started.push((id, rect, self.encoder.last_frame_id()));
                        }
                        Err(e) => {
                            tracing::debug!(?rect, "region stays lossless: {e}");
                            detector.drop_region(id);
                        }
                    }
                }
            }
        }
        let rects: Vec<Rect> = self.regions.iter().map(|r| r.rect).collect();
        self.encoder.set_video_regions(&rects);
    }

    fn encode_video(&mut self, budget: &Budget<'_>, out: &mut Output) {
        let total_area: u64 = self.regions.iter().map(|r| r.rect.area()).sum();
        let now_ms = self.now_us() / 1000;
        for region in &mut self.regions {
            if !(region.dirty || region.keyframe) || !(budget.video_room)(region.id) {
                continue;
            }
            region.dirty = false;
            if region.last.is_empty() {
                // A new region: its first picture.
                self.staging.read_rect(&region.rect, &mut region.last);
            }
            // Regions share the bitrate by area, each up to what its size is worth.
            let share = (u64::from(budget.bitrate) * region.rect.area() / total_area.max(1))
                .min(region_ceiling(region.rect, self.max_fps));
            if let Err(e) = region
                .encoder
                .set_bitrate(u32::try_from(share).unwrap_or(u32::MAX))
            {
                tracing::warn!("video bitrate: {e}");
            }
            if std::mem::take(&mut region.keyframe) {
                region.encoder.request_keyframe();
            }
            let started = Instant::now();
            match region.encoder.encode(&region.last, now_ms) {
                Ok(Some(video)) => {
                    region.frame_no += 1;
                    out.video.push(VideoOut {
                        region_id: region.id,
                        frame: VideoFrame {
                            frame_no: region.frame_no,
                            source_seq: self.source_seq,
                            capture_unix_us: region.capture_unix_us,
                            keyframe: video.keyframe,
                            data: video.data,
                        },
                        encode_us: elapsed_us(started),
                    });
                }
                Ok(None) => out.skipped += 1, // rate control dropped this picture
                Err(e) => tracing::warn!(region = region.id, "video encode failed: {e}"),
            }
        }
    }
}

/// Bits per pixel and picture beyond which more bitrate buys little quality. Smooth
/// content saturates early (the synthetic 1280x720 video at 30 fps: 1.5 Mbit/s gave
/// 39.7 dB, 16 Mbit/s 40.2 dB), film grain does not: the grainy zoom of
/// `oriel-bench --source x11 --workload video-window` showed 29.5 dB in the viewer at
/// 0.08 (2.0 Mbit/s) and 31.9 dB at 0.2 (4.6 Mbit/s). 0.2 is 5.5 Mbit/s at 720p30 and
/// 12 Mbit/s at 1080p30; rate control lowers it whenever the path needs.
const MAX_BITS_PER_PIXEL: f64 = 0.2;

/// Highest useful bitrate of a region of this size.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; the product is a non-negative bitrate"
)]
fn region_ceiling(rect: Rect, fps: f32) -> u64 {
    (rect.area() as f64 * f64::from(fps) * MAX_BITS_PER_PIXEL) as u64
}

fn elapsed_us(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}
