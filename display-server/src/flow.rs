//! Flow control of one session: frames and video pictures in flight, acks, keyframe
//! requests, and the rate controller they feed. Shared by the display loop (which
//! sends) and the control loop (which receives acks).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oriel_protocol::video::{RateConfig, RateController};
use tokio::sync::Notify;

use crate::desktop::lock;

/// Keyframes on request at most this often per region.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Bytes in flight always allowed, whatever the congestion window says.
const MIN_BYTE_BUDGET: u64 = 64 * 1024;

/// What one sent frame or picture is waiting for.
#[derive(Debug, Clone, Copy)]
struct Sent {
    id: u64,
    at: Instant,
    bytes: u64,
}

/// An acknowledged frame or picture: its send → ack time.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub rtt: Duration,
    pub bytes: u64,
}

pub struct Flow {
    epoch: Instant,
    frames: Mutex<VecDeque<Sent>>,
    video: Mutex<HashMap<u64, VecDeque<Sent>>>,
    /// Video bytes sent, (time µs, bytes), over the last second.
    video_sent: Mutex<VecDeque<(u64, u64)>>,
    keyframe_requests: Mutex<Vec<u64>>,
    /// When each region last got a keyframe on request: a client asking again and again
    /// gets one per `KEYFRAME_INTERVAL`, not a stream of them.
    keyframes_granted: Mutex<HashMap<u64, Instant>>,
    rate: Mutex<RateController>,
    /// The transport's congestion window: bytes the path takes without queueing more.
    cwnd: std::sync::atomic::AtomicU64,
    /// Signalled on every ack and keyframe request: room may have freed up.
    pub changed: Notify,
}

impl Flow {
    pub fn new(rate: RateConfig) -> Self {
        Self {
            epoch: Instant::now(),
            frames: Mutex::new(VecDeque::new()),
            video: Mutex::new(HashMap::new()),
            video_sent: Mutex::new(VecDeque::new()),
            keyframe_requests: Mutex::new(Vec::new()),
            keyframes_granted: Mutex::new(HashMap::new()),
            rate: Mutex::new(RateController::new(rate)),
            cwnd: std::sync::atomic::AtomicU64::new(u64::MAX),
            changed: Notify::new(),
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Frames (and pictures per region) that may be unacknowledged right now.
    pub fn window(&self) -> usize {
        lock(&self.rate).window()
    }

    pub fn bitrate(&self) -> u32 {
        lock(&self.rate).bitrate()
    }

    /// Frames sent and not yet acknowledged.
    pub fn frames_in_flight(&self) -> usize {
        lock(&self.frames).len()
    }

    /// A frame may go: fewer than the window in flight, and unless nothing is in flight,
    /// fewer bytes than the congestion window (large frames on a slow link would
    /// otherwise queue seconds of data behind which small updates wait).
    pub fn has_frame_room(&self) -> bool {
        let window = self.window();
        let frames = lock(&self.frames);
        let bytes: u64 = frames.iter().map(|s| s.bytes).sum();
        let budget = self
            .cwnd
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(MIN_BYTE_BUDGET);
        frames.is_empty() || (frames.len() < window && bytes < budget)
    }

    pub fn has_video_room(&self, region: u64) -> bool {
        let window = self.window();
        lock(&self.video).get(&region).map_or(0, VecDeque::len) < window
    }

    /// Records a sent frame; returns how many are now in flight.
    pub fn frame_sent(&self, frame_id: u64, bytes: usize) -> usize {
        let mut f = lock(&self.frames);
        f.push_back(Sent {
            id: frame_id,
            at: Instant::now(),
            bytes: bytes as u64,
        });
        f.len()
    }

    /// Records a sent picture; returns how many of its region are now in flight.
    pub fn video_sent(&self, region: u64, frame_no: u64, bytes: usize) -> usize {
        let sent = Sent {
            id: frame_no,
            at: Instant::now(),
            bytes: bytes as u64,
        };
        let in_flight = {
            let mut video = lock(&self.video);
            let queue = video.entry(region).or_default();
            queue.push_back(sent);
            queue.len()
        };
        let now = self.now_us();
        let mut v = lock(&self.video_sent);
        v.push_back((now, bytes as u64));
        while v.front().is_some_and(|(t, _)| *t + 1_000_000 < now) {
            v.pop_front();
        }
        in_flight
    }

    /// The region ended: nothing of it is waited for any more.
    pub fn region_ended(&self, region: u64) {
        lock(&self.video).remove(&region);
        lock(&self.keyframes_granted).remove(&region);
        self.changed.notify_one();
    }

    /// Acks are cumulative: acknowledging a frame acknowledges every earlier one.
    pub fn frame_acked(&self, frame_id: u64) -> Vec<Acked> {
        let acked = pop_acked(&mut lock(&self.frames), frame_id);
        self.note_acked(&acked);
        acked
    }

    pub fn video_acked(&self, region: u64, frame_no: u64) -> Vec<Acked> {
        let acked = match lock(&self.video).get_mut(&region) {
            Some(q) => pop_acked(q, frame_no),
            None => Vec::new(),
        };
        self.note_acked(&acked);
        acked
    }

    fn note_acked(&self, acked: &[Acked]) {
        let now = self.now_us();
        let mut rate = lock(&self.rate);
        for a in acked {
            rate.on_ack(now, a.bytes);
        }
        drop(rate);
        self.changed.notify_one();
    }

    /// The transport's path estimates: RTT (may change the bitrate and window) and
    /// congestion window.
    pub fn path(&self, rtt: Duration, cwnd: u64) {
        self.cwnd.store(cwnd, std::sync::atomic::Ordering::Relaxed);
        let now = self.now_us();
        let video_bps: u64 = lock(&self.video_sent)
            .iter()
            .filter(|(t, _)| *t + 1_000_000 >= now)
            .map(|(_, b)| b)
            .sum();
        lock(&self.rate).on_rtt(now, rtt.as_micros() as u64, video_bps);
    }

    /// Queues a keyframe for `region`; false when one was granted too recently.
    pub fn request_keyframe(&self, region: u64) -> bool {
        {
            let mut granted = lock(&self.keyframes_granted);
            if granted
                .get(&region)
                .is_some_and(|t| t.elapsed() < KEYFRAME_INTERVAL)
            {
                return false;
            }
            if granted.len() >= 64 {
                granted.retain(|_, t| t.elapsed() < KEYFRAME_INTERVAL);
                // Sessions have a few video regions: a client asking for many more
                // (made-up ids) is not served, and the map stays small.
                if granted.len() >= 64 {
                    return false;
                }
            }
            granted.insert(region, Instant::now());
        }
        let mut k = lock(&self.keyframe_requests);
        if !k.contains(&region) && k.len() < 64 {
            k.push(region);
        }
        drop(k);
        self.changed.notify_one();
        true
    }

    pub fn take_keyframe_requests(&self) -> Vec<u64> {
        std::mem::take(&mut *lock(&self.keyframe_requests))
    }
}

fn pop_acked(queue: &mut VecDeque<Sent>, id: u64) -> Vec<Acked> {
    let mut acked = Vec::new();
    while queue.front().is_some_and(|s| s.id <= id) {
        if let Some(s) = queue.pop_front() {
            acked.push(Acked {
                rtt: s.at.elapsed(),
                bytes: s.bytes,
            });
        }
    }
    acked
}
