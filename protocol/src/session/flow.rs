//! Flow control of one session: frames and video pictures in flight, acks, keyframe
//! requests, and the rate controller they feed. Time comes in as an argument.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::video::{AckOf, RateConfig, RateController};

/// Keyframes on request at most this often per region.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Bytes in flight always allowed, whatever the congestion window says.
const MIN_BYTE_BUDGET: u64 = 64 * 1024;

/// Regions whose keyframe grants are remembered: sessions have a few video regions, a
/// client asking for many more (made-up ids) is not served, and the map stays small.
const MAX_KEYFRAME_REGIONS: usize = 64;

/// What one sent frame or picture is waiting for.
#[derive(Debug, Clone, Copy)]
struct Sent {
    id: u64,
    at: Instant,
    bytes: u64,
}

/// An acknowledged frame or picture: its send → ack time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub rtt: Duration,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct Flow {
    epoch: Instant,
    frames: VecDeque<Sent>,
    video: HashMap<u64, VecDeque<Sent>>,
    /// Video bytes sent, (time µs, bytes), over the last second.
    video_sent: VecDeque<(u64, u64)>,
    keyframe_requests: Vec<u64>,
    /// When each region last got a keyframe on request: a client asking again and again
    /// gets one per `KEYFRAME_INTERVAL`, not a stream of them.
    keyframes_granted: HashMap<u64, Instant>,
    rate: RateController,
    /// The transport's congestion window: bytes the path takes without queueing more.
    cwnd: u64,
}

impl Flow {
    pub fn new(rate: RateConfig, now: Instant) -> Self {
        Self {
            epoch: now,
            frames: VecDeque::new(),
            video: HashMap::new(),
            video_sent: VecDeque::new(),
            keyframe_requests: Vec::new(),
            keyframes_granted: HashMap::new(),
            rate: RateController::new(rate),
            cwnd: u64::MAX,
        }
    }

    fn micros(&self, now: Instant) -> u64 {
        micros_of(now.saturating_duration_since(self.epoch))
    }

    /// Frames that may be unacknowledged right now.
    pub fn window(&self) -> usize {
        self.rate.window()
    }

    /// Pictures of one region that may be unacknowledged right now.
    pub fn video_window(&self) -> usize {
        self.rate.video_window()
    }

    pub fn bitrate(&self) -> u32 {
        self.rate.bitrate()
    }

    /// Frames sent and not yet acknowledged.
    pub fn frames_in_flight(&self) -> usize {
        self.frames.len()
    }

    /// A frame may go: fewer than the window in flight, and unless nothing is in flight,
    /// fewer bytes than the congestion window (large frames on a slow link would
    /// otherwise queue seconds of data behind which small updates wait).
    pub fn has_frame_room(&self) -> bool {
        let bytes: u64 = self.frames.iter().map(|s| s.bytes).sum();
        let budget = self.cwnd.max(MIN_BYTE_BUDGET);
        self.frames.is_empty() || (self.frames.len() < self.window() && bytes < budget)
    }

    pub fn has_video_room(&self, region: u64) -> bool {
        self.video.get(&region).map_or(0, VecDeque::len) < self.video_window()
    }

    /// Records a sent frame; returns how many are now in flight.
    pub fn frame_sent(&mut self, frame_id: u64, bytes: usize, now: Instant) -> usize {
        self.frames.push_back(Sent {
            id: frame_id,
            at: now,
            bytes: bytes as u64,
        });
        self.frames.len()
    }

    /// Records a sent picture; returns how many of its region are now in flight.
    pub fn video_sent(&mut self, region: u64, frame_no: u64, bytes: usize, now: Instant) -> usize {
        let queue = self.video.entry(region).or_default();
        queue.push_back(Sent {
            id: frame_no,
            at: now,
            bytes: bytes as u64,
        });
        let in_flight = queue.len();
        let t = self.micros(now);
        self.video_sent.push_back((t, bytes as u64));
        while self
            .video_sent
            .front()
            .is_some_and(|(sent, _)| sent + 1_000_000 < t)
        {
            self.video_sent.pop_front();
        }
        in_flight
    }

    /// The region ended: nothing of it is waited for any more.
    pub fn region_ended(&mut self, region: u64) {
        self.video.remove(&region);
        self.keyframes_granted.remove(&region);
        self.keyframe_requests.retain(|r| *r != region);
    }

    /// Acks are cumulative: acknowledging a frame acknowledges every earlier one. An
    /// ack for a frame never sent acknowledges what was sent and nothing more.
    pub fn frame_acked(&mut self, frame_id: u64, now: Instant) -> Vec<Acked> {
        let acked = pop_acked(&mut self.frames, frame_id, now);
        let t = self.micros(now);
        for a in &acked {
            self.rate.on_ack(t, a.bytes, micros_of(a.rtt), AckOf::Frame);
        }
        acked
    }

    /// As [`Self::frame_acked`], for pictures of `region`; the client took `decode`
    /// to decode `frame_no` before acknowledging it.
    pub fn video_acked(
        &mut self,
        region: u64,
        frame_no: u64,
        decode: Duration,
        now: Instant,
    ) -> Vec<Acked> {
        let acked = match self.video.get_mut(&region) {
            Some(q) => pop_acked(q, frame_no, now),
            None => Vec::new(),
        };
        let t = self.micros(now);
        for (i, a) in acked.iter().enumerate() {
            // The ack names the last picture; earlier ones' acks were lost or skipped.
            let decode_us = if i + 1 == acked.len() {
                micros_of(decode)
            } else {
                0
            };
            self.rate
                .on_ack(t, a.bytes, micros_of(a.rtt), AckOf::Picture { decode_us });
        }
        acked
    }

    /// The transport's path estimates: RTT (may change the bitrate and window),
    /// congestion window and packets lost so far (a lossy path widens the window).
    pub fn path(&mut self, rtt: Duration, cwnd: u64, lost_packets: u64, now: Instant) {
        self.cwnd = cwnd;
        let t = self.micros(now);
        self.rate.on_lost(t, lost_packets);
        let video_bps: u64 = self
            .video_sent
            .iter()
            .filter(|(sent, _)| sent + 1_000_000 >= t)
            .map(|(_, b)| b)
            .sum();
        self.rate.on_rtt(t, micros_of(rtt), video_bps);
    }

    /// Queues a keyframe for `region`; false when one was granted too recently.
    pub fn request_keyframe(&mut self, region: u64, now: Instant) -> bool {
        let recent = |t: &Instant| now.saturating_duration_since(*t) < KEYFRAME_INTERVAL;
        if self.keyframes_granted.get(&region).is_some_and(recent) {
            return false;
        }
        if self.keyframes_granted.len() >= MAX_KEYFRAME_REGIONS {
            self.keyframes_granted.retain(|_, t| recent(t));
            if self.keyframes_granted.len() >= MAX_KEYFRAME_REGIONS {
                return false;
            }
        }
        self.keyframes_granted.insert(region, now);
        if !self.keyframe_requests.contains(&region) {
            self.keyframe_requests.push(region);
        }
        true
    }

    pub fn take_keyframe_requests(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.keyframe_requests)
    }
}

/// Microseconds, saturated (a `Duration` holds more than `u64` of them).
fn micros_of(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn pop_acked(queue: &mut VecDeque<Sent>, id: u64, now: Instant) -> Vec<Acked> {
    let mut acked = Vec::new();
    while let Some(s) = queue.front().copied().filter(|s| s.id <= id) {
        queue.pop_front();
        acked.push(Acked {
            rtt: now.saturating_duration_since(s.at),
            bytes: s.bytes,
        });
    }
    acked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_slow_to_drain_widen_the_video_window_only() {
        let start = Instant::now();
        let mut flow = Flow::new(crate::video::rate::test_config(), start);
        let at = |ms| start + Duration::from_millis(ms);
        flow.path(Duration::from_millis(40), u64::MAX, 0, at(0));
        assert_eq!((flow.window(), flow.video_window()), (3, 4));
        // Small frames come back after a round trip; pictures take 90 ms each.
        for i in 0..10u64 {
            flow.frame_sent(i, 500, at(i * 33));
            flow.frame_acked(i, at(i * 33 + 45));
            flow.video_sent(7, i, 20_000, at(i * 33));
            flow.video_acked(7, i, Duration::ZERO, at(i * 33 + 90));
        }
        assert_eq!(flow.window(), 3, "frames: 45 ms, two frames plus one");
        assert_eq!(
            flow.video_window(),
            5,
            "pictures: 90 ms and a frame interval of queue, four frames plus one"
        );
        assert!(flow.has_video_room(7));
    }
}
