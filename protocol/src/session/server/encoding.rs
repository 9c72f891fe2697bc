//! Driving the encoder: a step is asked for when the encoder is idle and something can
//! go out, and what it encoded is sent within the frame and video windows.

use std::time::Instant;

use super::events::{EncodeOrder, Encoded, Record, ServerAction};
use super::{Phase, ServerSession};
use crate::messages::VideoMsg;
use crate::session::SendChannel;
use crate::Size;

#[derive(Debug, Default)]
pub(super) struct Encoding {
    pub(super) busy: bool,
    pub(super) damage: bool,
    pub(super) lossless_due: bool,
    pub(super) video_due: Vec<u64>,
    pub(super) deadline: Option<Instant>,
}

impl ServerSession {
    /// Asks the encoder for a step when it is idle and something can go out: damage
    /// (taken even while the window is full, so it merges), room for a due frame or
    /// picture, or a region's expiry.
    pub(super) fn maybe_encode(&mut self, now: Instant) {
        let Some(flow) = self.flow.as_mut() else {
            return;
        };
        let e = &self.encoding;
        if self.phase != Phase::Running || e.busy {
            return;
        }
        let frame_room = flow.has_frame_room();
        let ready = e.damage
            || (frame_room && e.lossless_due)
            || e.video_due.iter().any(|r| flow.has_video_room(*r))
            || e.deadline.is_some_and(|d| d <= now);
        if !ready {
            return;
        }
        let order = EncodeOrder {
            lossless: frame_room,
            full_regions: self
                .video
                .iter()
                .copied()
                .filter(|r| !flow.has_video_room(*r))
                .collect(),
            bitrate: flow.bitrate(),
            keyframes: flow.take_keyframe_requests(),
        };
        self.encoding.busy = true;
        self.encoding.damage = false;
        self.push(ServerAction::Encode(order));
    }

    pub(super) fn encoded(&mut self, encoded: Encoded, now: Instant) {
        if !self.encoding.busy {
            return;
        }
        self.encoding.busy = false;
        self.encoding.lossless_due = encoded.lossless_due;
        self.encoding.video_due = encoded.video_due;
        self.encoding.deadline = encoded.deadline;
        for id in encoded.ended {
            if let Some(flow) = &mut self.flow {
                flow.region_ended(id);
            }
            if let Some(i) = self.video.iter().position(|r| *r == id) {
                self.video.swap_remove(i);
                self.push(ServerAction::Finish(SendChannel::Video(id)));
            }
        }
        for start in encoded.started {
            let channel = SendChannel::Video(start.region_id);
            self.video.push(start.region_id);
            self.open(channel);
            let msg = VideoMsg::Start {
                region_id: start.region_id,
                rect: start.rect,
                after_frame: start.after_frame,
            };
            self.send(channel, &msg);
        }
        for picture in encoded.pictures {
            let Some(flow) = self.flow.as_mut() else {
                return;
            };
            if !self.video.contains(&picture.region_id) {
                continue; // the encoder never started it
            }
            let n = flow.video_sent(
                picture.region_id,
                picture.frame_no,
                picture.message.len(),
                now,
            );
            self.record(Record::PicturesInFlight(n));
            self.push(ServerAction::Send {
                channel: SendChannel::Video(picture.region_id),
                bytes: picture.message,
            });
        }
        if let (Some(frame), Some(flow)) = (encoded.frame, self.flow.as_mut()) {
            let n = flow.frame_sent(frame.frame_id, frame.message.len(), now);
            self.size = frame.size;
            self.largest = Size::new(
                self.largest.width.max(frame.size.width),
                self.largest.height.max(frame.size.height),
            );
            self.record(Record::FramesInFlight(n));
            self.push(ServerAction::Send {
                channel: SendChannel::Display,
                bytes: frame.message,
            });
        }
        self.maybe_encode(now);
    }
}
