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
/// How long the shortest ack time of a frame is remembered (frames grow and shrink).
const FRAME_ACK_WINDOW_US: u64 = 2_000_000;

/// What an ack was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOf {
    Frame,
    /// A picture, which the client took `decode_us` to decode before acknowledging it
    /// (as it says; at most the whole ack time counts).
    Picture {
        decode_us: u64,
    },
}

#[derive(Debug)]
pub struct RateController {
    config: RateConfig,
    bitrate: u32,
    /// The transport's lowest RTT lately: the path without a queue.
    min_rtt: WindowedMin,
    /// The shortest send → ack time of a frame lately.
    frame_acks: WindowedMin,
    /// The shortest send → ack time of a picture over 10 s: the path, a picture's
    /// drain through it and its decode, without a queue.
    picture_acks: WindowedMin,
    /// The same without the client's decode time, over 10 s and over the last
    /// adjustment period (what pictures take now): a queue shows as the difference.
    picture_transits: WindowedMin,
    recent_picture_transits: WindowedMin,
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
            min_rtt: WindowedMin::new(MIN_RTT_WINDOW_US),
            frame_acks: WindowedMin::new(FRAME_ACK_WINDOW_US),
            picture_acks: WindowedMin::new(MIN_RTT_WINDOW_US),
            picture_transits: WindowedMin::new(MIN_RTT_WINDOW_US),
            recent_picture_transits: WindowedMin::new(ADJUST_EVERY_US),
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
        self.min_rtt.get()
    }

    /// Queueing delay: how far the RTT is above the path's minimum.
    pub fn queue_delay_us(&self) -> u64 {
        match (self.srtt_us, self.min_rtt_us()) {
            (Some(s), Some(m)) => s.saturating_sub(m),
            _ => 0,
        }
    }

    /// Frames that may be unacknowledged: enough to keep sending until a frame's ack
    /// comes back when nothing queues — a round trip, or the shortest recent send → ack
    /// time of a frame when longer, as it is when a frame takes a while to drain
    /// through a slow link or to decode — and a round trip more on a lossy path, where
    /// a lost packet's frame waits for its resend; never enough to build a queue.
    pub fn window(&self) -> usize {
        self.window_covering(self.ack_cycle_us(self.frame_acks.get()))
    }

    /// Pictures of a video region that may be unacknowledged: as [`Self::window`] on
    /// pictures' ack times, and the queue this controller lets video build before it
    /// backs off, which pictures sent near the path's rate do see.
    pub fn video_window(&self) -> usize {
        let cycle = self.ack_cycle_us(self.picture_acks.get());
        self.window_covering(cycle.saturating_add(self.queue_limit_us()))
    }

    /// How much longer pictures take to be acknowledged now than at best, the
    /// client's decode left out: a queue they wait in, in the network or in the sender
    /// behind the congestion window (where the transport's RTT does not show it).
    pub fn picture_queue_us(&self) -> u64 {
        match (
            self.recent_picture_transits.get(),
            self.picture_transits.get(),
        ) {
            (Some(now), Some(best)) => now.saturating_sub(best),
            _ => 0,
        }
    }

    fn ack_cycle_us(&self, ack_time_us: Option<u64>) -> u64 {
        let path = self.min_rtt_us().unwrap_or(0);
        let cycle = ack_time_us.unwrap_or(0).max(path);
        if self.lossy {
            cycle.saturating_add(path)
        } else {
            cycle
        }
    }

    /// One frame more than fit in `cycle_us`, within the configured bounds.
    fn window_covering(&self, cycle_us: u64) -> usize {
        let frames = cycle_us.div_ceil(self.config.frame_interval_us.max(1));
        let frames = usize::try_from(frames).unwrap_or(usize::MAX);
        frames
            .saturating_add(1)
            .clamp(self.config.min_window, self.config.max_window)
    }

    /// The queueing delay tolerated before the bitrate backs off: a picture sent at
    /// the path's own rate takes up to a frame interval to drain, so only a queue
    /// longer than that (and than a quarter of the path's RTT, and 20 ms of
    /// scheduling noise) means video sends too much.
    fn queue_limit_us(&self) -> u64 {
        (self.min_rtt_us().unwrap_or(0) / 4)
            .max(self.config.frame_interval_us)
            .max(20_000)
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

    /// A frame or picture of `bytes`, sent `ack_time_us` ago, was acknowledged.
    pub fn on_ack(&mut self, now_us: u64, bytes: u64, ack_time_us: u64, of: AckOf) {
        match of {
            AckOf::Frame => self.frame_acks.push(now_us, ack_time_us),
            AckOf::Picture { decode_us } => {
                self.picture_acks.push(now_us, ack_time_us);
                // A client slow to decode (a busy CPU, a big picture) is no queue:
                // a lower bitrate would blur the picture and barely speed it up.
                let transit = ack_time_us.saturating_sub(decode_us);
                self.picture_transits.push(now_us, transit);
                self.recent_picture_transits.push(now_us, transit);
            }
        }
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
        self.min_rtt.push(now_us, rtt_us);
        if now_us.saturating_sub(self.last_adjust_us) < ADJUST_EVERY_US {
            return;
        }
        self.last_adjust_us = now_us;
        let limit = self.queue_limit_us();
        let queue = self.queue_delay_us();
        let sent_bps = u32::try_from(video_bytes_per_s.saturating_mul(8)).unwrap_or(u32::MAX);
        let delivered_bps =
            u32::try_from(self.delivery_rate(now_us).saturating_mul(8)).unwrap_or(u32::MAX);
        let picture_queue = self.picture_queue_us();
        // Video queues when its own pictures take longer than they did at best, or
        // when the RTT shows a queue while video sends a fair share of its bitrate.
        let video_queues = picture_queue > limit || (queue > limit && sent_bps >= self.bitrate / 4);
        let next = if video_queues {
            // Back off below what got through — all of it, not only video: the path is
            // full, so that is its rate — and below where we were; never below the floor.
            scaled(delivered_bps.min(self.bitrate), 0.85)
        } else if queue > limit {
            // Video is not what fills the queue (a large lossless update is draining;
            // nothing tells how fast the path is until it has): hold.
            self.bitrate
        } else if queue < limit / 2 && picture_queue < limit / 2 {
            scaled(self.bitrate, 1.08)
        } else {
            self.bitrate
        };
        self.bitrate = next.clamp(self.config.min_bitrate, self.config.max_bitrate);
    }
}

/// The lowest of the values seen over a sliding time window.
#[derive(Debug)]
struct WindowedMin {
    window_us: u64,
    /// (time, value), values increasing from front to back: the front is the minimum.
    samples: std::collections::VecDeque<(u64, u64)>,
}

impl WindowedMin {
    fn new(window_us: u64) -> Self {
        Self {
            window_us,
            samples: std::collections::VecDeque::new(),
        }
    }

    fn get(&self) -> Option<u64> {
        self.samples.front().map(|(_, v)| *v)
    }

    /// Adds a sample; the newest sample is kept even when the window has passed.
    fn push(&mut self, now_us: u64, value: u64) {
        while self.samples.back().is_some_and(|(_, v)| *v >= value) {
            self.samples.pop_back();
        }
        self.samples.push_back((now_us, value));
        let start = now_us.saturating_sub(self.window_us);
        while self.samples.len() > 1 && self.samples.front().is_some_and(|(t, _)| *t < start) {
            self.samples.pop_front();
        }
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

/// 30 fps, 0.2–8 Mbit/s starting at 4, windows of 2–8: what unit tests adapt.
#[cfg(test)]
pub(crate) fn test_config() -> RateConfig {
    RateConfig {
        min_bitrate: 200_000,
        max_bitrate: 8_000_000,
        start_bitrate: 4_000_000,
        frame_interval_us: 33_333,
        min_window: 2,
        max_window: 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture the client decoded at once.
    const PICTURE: AckOf = AckOf::Picture { decode_us: 0 };

    fn controller() -> RateController {
        RateController::new(test_config())
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
            c.on_ack(t, 62_500, 40_000, AckOf::Frame);
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
    fn the_window_covers_how_long_an_ack_takes_and_pictures_also_the_tolerated_queue() {
        let mut c = controller();
        c.on_rtt(100_000, 40_000, 1_000_000);
        c.on_ack(100_000, 500, 20_000, AckOf::Frame);
        assert_eq!(c.window(), 3, "an ack never beats the round trip");
        c.on_ack(110_000, 20_000, 75_000, PICTURE);
        assert_eq!(
            c.video_window(),
            5,
            "a picture that drains 35 ms through a slow link: three frames, a frame \
             interval of queue before video backs off, plus one"
        );
        assert_eq!(c.window(), 3, "frames keep their own ack time");
        c.on_ack(120_000, 500, 75_000, AckOf::Frame);
        assert_eq!(
            c.window(),
            3,
            "the shortest ack time of the last 2 s counts"
        );
        c.on_ack(2_200_000, 500, 75_000, AckOf::Frame);
        assert_eq!(c.window(), 4, "three frames plus one");
        let mut fast = controller();
        fast.on_rtt(100_000, 200, 1_000_000);
        fast.on_ack(100_000, 500, 3_000, AckOf::Frame);
        fast.on_ack(100_000, 9_000, 3_000, PICTURE);
        assert_eq!(fast.window(), 2, "loopback: one frame plus one");
        assert_eq!(fast.video_window(), 3);
        c.on_ack(12_000_000, 20_000, 1_000_000, PICTURE);
        assert_eq!(c.video_window(), 8, "never over the maximum");
    }

    /// A path whose RTT stays at its minimum while pictures take ever longer: they
    /// wait in the sender, behind the congestion window.
    #[test]
    fn pictures_that_queue_where_the_rtt_does_not_show_it_lower_the_bitrate() {
        let mut c = controller();
        let mut t = 0;
        for _ in 0..10 {
            t += 100_000;
            c.on_ack(t, 20_000, 80_000, PICTURE);
            c.on_rtt(t, 40_000, 500_000);
        }
        let before = c.bitrate();
        assert!(before > 4_000_000, "probed up: {before}");
        // 2 Mbit/s get through; pictures take 300 ms.
        for _ in 0..10 {
            t += 100_000;
            c.on_ack(t, 25_000, 300_000, PICTURE);
            c.on_rtt(t, 40_000, 250_000);
        }
        assert!(c.bitrate() <= 1_700_000, "{}", c.bitrate());
        assert!(c.picture_queue_us() > 200_000);
    }

    /// A client that takes 70 ms to decode each picture (a busy machine, a full-screen
    /// picture) acknowledges late, but nothing queues: the bitrate keeps probing. The
    /// same ack times with no decode to explain them are a queue.
    #[test]
    fn a_slow_decoder_is_not_a_queue() {
        // A second of pictures acked `ack_us` after sending, on a flat 2 ms path.
        let second = |c: &mut RateController, t0: u64, ack_us: u64, decode_us: u64| {
            for i in 1..=10 {
                let t = t0 + i * 100_000;
                c.on_ack(t, 20_000, ack_us, AckOf::Picture { decode_us });
                c.on_rtt(t, 2_000, 500_000);
            }
        };
        let (mut slow, mut queued) = (controller(), controller());
        second(&mut slow, 0, 5_000, 3_000);
        second(&mut queued, 0, 5_000, 3_000);
        let before = slow.bitrate();
        second(&mut slow, 1_000_000, 75_000, 70_000);
        second(&mut queued, 1_000_000, 75_000, 0);
        assert_eq!(slow.picture_queue_us(), 3_000);
        assert!(slow.bitrate() > before, "still probing: {}", slow.bitrate());
        assert!(
            queued.bitrate() < before,
            "backed off: {}",
            queued.bitrate()
        );
    }

    #[test]
    fn a_picture_held_up_by_one_lost_packet_moves_nothing() {
        let mut c = controller();
        let mut t = 0;
        for _ in 0..10 {
            t += 33_000;
            c.on_ack(t, 20_000, 80_000, PICTURE);
        }
        c.on_rtt(t, 40_000, 500_000);
        let before = c.bitrate();
        // One picture waits a round trip more for a resend; those around it do not.
        for ack_time in [180_000, 150_000, 80_000, 82_000, 79_000] {
            t += 33_000;
            c.on_ack(t, 20_000, ack_time, PICTURE);
        }
        assert_eq!(
            c.picture_queue_us(),
            0,
            "the shortest recent picture counts"
        );
        t += 200_000;
        c.on_rtt(t, 40_000, 500_000);
        assert!(c.bitrate() > before, "still probing: {}", c.bitrate());
    }

    #[test]
    fn a_windowed_minimum_forgets_old_lows() {
        let mut m = WindowedMin::new(1_000);
        assert_eq!(m.get(), None);
        m.push(0, 50);
        m.push(100, 70);
        assert_eq!(m.get(), Some(50));
        m.push(900, 60);
        assert_eq!(m.get(), Some(50));
        m.push(1_050, 80);
        assert_eq!(m.get(), Some(60), "50 is older than the window");
        m.push(5_000, 90);
        assert_eq!(m.get(), Some(90), "the newest stays when all else is old");
    }

    #[test]
    fn delivery_rate_counts_the_last_second() {
        let mut c = controller();
        c.on_ack(0, 1_000_000, 0, AckOf::Frame);
        c.on_ack(500_000, 500_000, 0, AckOf::Frame);
        assert_eq!(c.delivery_rate(900_000), 1_500_000);
        c.on_ack(1_200_000, 100, 0, AckOf::Frame);
        assert_eq!(c.delivery_rate(1_200_000), 500_100);
    }
}
