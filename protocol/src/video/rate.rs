//! Adapting to the path: RTT and delivery rate from frame acks and the transport's own
//! RTT estimate drive the video bitrate and how many frames may be in flight.
//!
//! Delay-based, like WebRTC's GCC in spirit: when the transport's RTT rises above the
//! path's minimum, a queue is building at the bottleneck, so the bitrate drops to what
//! was actually delivered; while no queue builds, it probes upwards a few percent at a
//! time. Frames in flight cover the propagation delay, not the queue.

#[derive(Debug, Clone, Copy)]
pub struct RateConfig {
    pub min_bitrate: u32,
    pub max_bitrate: u32,
    pub start_bitrate: u32,
    /// The source's frame interval.
    pub frame_interval_us: u64,
    pub min_window: usize,
    pub max_window: usize,
}

/// How often the bitrate may change.
const ADJUST_EVERY_US: u64 = 200_000;
/// The minimum RTT is forgotten after this long (the path may have changed).
const MIN_RTT_WINDOW_US: u64 = 10_000_000;
/// Delivery rate is measured over this much time.
const RATE_WINDOW_US: u64 = 1_000_000;
/// A path that lost a packet this recently is lossy: its frames wait for a resend.
const LOSS_MEMORY_US: u64 = 2_000_000;

#[derive(Debug)]
pub struct RateController {
    config: RateConfig,
    bitrate: u32,
    /// Windowed minimum: (time, rtt) with rtt increasing from front to back, so the
    /// front is the minimum of the last `MIN_RTT_WINDOW_US`.
    min_rtt: std::collections::VecDeque<(u64, u64)>,
    srtt_us: Option<u64>,
    last_adjust_us: u64,
    /// (time, bytes) of recent acks, oldest first.
    acked: std::collections::VecDeque<(u64, u64)>,
    /// Packets the transport has declared lost so far, and when that count last grew.
    lost_packets: u64,
    last_loss_us: Option<u64>,
    lossy: bool,
}

impl RateController {
    pub fn new(config: RateConfig) -> Self {
        Self {
            bitrate: config
                .start_bitrate
                .clamp(config.min_bitrate, config.max_bitrate),
            config,
            min_rtt: std::collections::VecDeque::new(),
            srtt_us: None,
            last_adjust_us: 0,
            acked: std::collections::VecDeque::new(),
            lost_packets: 0,
            last_loss_us: None,
            lossy: false,
        }
    }

    /// Target video bitrate, bits per second.
    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// Smoothed transport RTT, if measured.
    pub fn rtt_us(&self) -> Option<u64> {
        self.srtt_us
    }

    /// Lowest RTT seen over the last 10 s: the path without a queue.
    pub fn min_rtt_us(&self) -> Option<u64> {
        self.min_rtt.front().map(|(_, rtt)| *rtt)
    }

    /// Queueing delay: how far the RTT is above the path's minimum.
    pub fn queue_delay_us(&self) -> u64 {
        match (self.srtt_us, self.min_rtt_us()) {
            (Some(s), Some(m)) => s.saturating_sub(m),
            _ => 0,
        }
    }

    /// Frames that may be unacknowledged: enough to keep sending through one
    /// propagation delay (two on a lossy path, where a lost packet's frame waits a
    /// round trip for its resend), never enough to build a queue.
    pub fn window(&self) -> usize {
        let rtts = if self.lossy { 2 } else { 1 };
        let min_rtt = self.min_rtt_us().unwrap_or(0).saturating_mul(rtts);
        let frames = min_rtt.div_ceil(self.config.frame_interval_us.max(1));
        let frames = usize::try_from(frames).unwrap_or(usize::MAX);
        frames
            .saturating_add(1)
            .clamp(self.config.min_window, self.config.max_window)
    }

    /// Bytes per second acknowledged over the last second.
    pub fn delivery_rate(&self, now_us: u64) -> u64 {
        let start = now_us.saturating_sub(RATE_WINDOW_US);
        let bytes: u64 = self
            .acked
            .iter()
            .filter(|(t, _)| *t >= start)
            .map(|(_, b)| b)
            .sum();
        bytes * 1_000_000 / RATE_WINDOW_US
    }

    /// A frame of `bytes` was acknowledged.
    pub fn on_ack(&mut self, now_us: u64, bytes: u64) {
        self.acked.push_back((now_us, bytes));
        let start = now_us.saturating_sub(RATE_WINDOW_US);
        while self.acked.front().is_some_and(|(t, _)| *t < start) {
            self.acked.pop_front();
        }
    }

    /// The transport's count of packets declared lost so far.
    pub fn on_lost(&mut self, now_us: u64, lost_packets: u64) {
        if lost_packets > self.lost_packets {
            self.lost_packets = lost_packets;
            self.last_loss_us = Some(now_us);
        }
        self.lossy = self
            .last_loss_us
            .is_some_and(|t| now_us.saturating_sub(t) < LOSS_MEMORY_US);
    }

    /// A transport RTT sample (e.g. quinn's path RTT); adjusts the bitrate at most
    /// every 200 ms. `video_bytes_per_s` is what video actually sent recently.
    pub fn on_rtt(&mut self, now_us: u64, rtt_us: u64, video_bytes_per_s: u64) {
        let rtt_us = rtt_us.max(1);
        self.srtt_us = Some(match self.srtt_us {
            Some(s) => (7 * s + rtt_us) / 8,
            None => rtt_us,
        });
        while self.min_rtt.back().is_some_and(|(_, r)| *r >= rtt_us) {
            self.min_rtt.pop_back();
        }
        self.min_rtt.push_back((now_us, rtt_us));
        let start = now_us.saturating_sub(MIN_RTT_WINDOW_US);
        while self.min_rtt.len() > 1 && self.min_rtt.front().is_some_and(|(t, _)| *t < start) {
            self.min_rtt.pop_front();
        }
        if now_us.saturating_sub(self.last_adjust_us) < ADJUST_EVERY_US {
            return;
        }
        self.last_adjust_us = now_us;
        let min_rtt = self.min_rtt_us().unwrap_or(0);
        // A picture sent at the path's own rate takes up to a frame interval to drain,
        // so only a queue longer than that (and than a quarter of the path's RTT, and
        // 20 ms of scheduling noise) means we send too much.
        let limit = (min_rtt / 4).max(self.config.frame_interval_us).max(20_000);
        let queue = self.queue_delay_us();
        let sent_bps = u32::try_from(video_bytes_per_s.saturating_mul(8)).unwrap_or(u32::MAX);
        let delivered_bps =
            u32::try_from(self.delivery_rate(now_us).saturating_mul(8)).unwrap_or(u32::MAX);
        let next = if queue > limit && sent_bps < self.bitrate / 4 {
            // Video is not what fills the queue (a large lossless update is draining;
            // nothing tells how fast the path is until it has): hold.
            self.bitrate
        } else if queue > limit {
            // Back off below what got through — all of it, not only video: the path is
            // full, so that is its rate — and below where we were; never below the floor.
            scaled(delivered_bps.min(self.bitrate), 0.85)
        } else if queue < limit / 2 {
            scaled(self.bitrate, 1.08)
        } else {
            self.bitrate
        };
        self.bitrate = next.clamp(self.config.min_bitrate, self.config.max_bitrate);
    }
}

/// `bps * factor`, rounded toward zero and saturated at `u32::MAX`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; the product of a bitrate and a positive factor is non-negative"
)]
fn scaled(bps: u32, factor: f64) -> u32 {
    (f64::from(bps) * factor) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> RateController {
        RateController::new(RateConfig {
            min_bitrate: 200_000,
            max_bitrate: 8_000_000,
            start_bitrate: 4_000_000,
            frame_interval_us: 33_333,
            min_window: 2,
            max_window: 8,
        })
    }

    #[test]
    fn backs_off_when_a_queue_builds_and_probes_up_when_it_drains() {
        let mut c = controller();
        let mut t = 0;
        // 40 ms path, no queue: probe up to the maximum.
        for _ in 0..100 {
            t += 100_000;
            c.on_rtt(t, 40_000, 1_000_000);
        }
        assert_eq!(c.bitrate(), 8_000_000);
        assert_eq!(c.window(), 3, "40 ms at 30 fps: two frames plus one");
        // The RTT climbs to 140 ms while only 2 Mbit/s of video gets through.
        for _ in 0..20 {
            t += 100_000;
            c.on_rtt(t, 140_000, 250_000);
        }
        assert!(c.bitrate() <= 1_700_000, "{}", c.bitrate());
        assert!(c.bitrate() >= 200_000);
        assert_eq!(c.window(), 3, "the queue does not widen the window");
    }

    #[test]
    fn a_queue_that_video_did_not_fill_leaves_the_bitrate_alone() {
        let mut c = controller();
        let mut t = 0;
        for _ in 0..10 {
            t += 100_000;
            c.on_rtt(t, 40_000, 500_000);
        }
        let before = c.bitrate();
        // A large lossless update queues behind a slow link; video sends nothing.
        for _ in 0..20 {
            t += 100_000;
            c.on_rtt(t, 140_000, 0);
        }
        assert_eq!(c.bitrate(), before);
        // Video sends again into the queue: back off to what got through, counting
        // the lossless frames acknowledged meanwhile.
        for _ in 0..10 {
            t += 100_000;
            c.on_ack(t, 62_500);
        }
        t += 100_000;
        c.on_rtt(t, 140_000, u64::from(before / 8));
        assert_eq!(c.bitrate(), 4_250_000, "0.85 of the 5 Mbit/s delivered");
    }

    #[test]
    fn a_lossy_path_gets_a_second_round_trip_of_frames() {
        let mut c = controller();
        c.on_rtt(100_000, 40_000, 1_000_000);
        c.on_lost(100_000, 0);
        assert_eq!(c.window(), 3);
        c.on_lost(200_000, 2);
        assert_eq!(c.window(), 4, "80 ms at 30 fps: three frames plus one");
        c.on_lost(1_000_000, 2);
        assert_eq!(c.window(), 4, "the loss is recent");
        c.on_lost(2_300_000, 2);
        assert_eq!(c.window(), 3, "no loss for two seconds");
    }

    #[test]
    fn delivery_rate_counts_the_last_second() {
        let mut c = controller();
        c.on_ack(0, 1_000_000);
        c.on_ack(500_000, 500_000);
        assert_eq!(c.delivery_rate(900_000), 1_500_000);
        c.on_ack(1_200_000, 100);
        assert_eq!(c.delivery_rate(1_200_000), 500_100);
    }
}
