//! Congestion control that tells a full queue from random loss.
//!
//! Cubic (quinn's default) cuts its window to 0.7 on every loss. On a path that drops
//! a steady 1 % of packets for reasons other than congestion — Wi-Fi, a lossy radio
//! link, a policer's occasional drop — that bounds a 40 ms path to about 3 Mbit/s
//! whatever its capacity, and a remote desktop's pictures queue behind the window.
//! Like TCP Veno, a loss counts as congestion only when the path shows it: the RTT sits
//! above its minimum (a queue has built) or the share of bytes lost is too high to be
//! noise (a policer dropping what exceeds its rate). Other losses are repaired by the
//! transport and leave the window alone; the sessions' own delay-based rate control
//! keeps the queue short either way.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics, Cubic, CubicConfig};
use quinn_proto::RttEstimator;

/// Queueing delay (smoothed RTT over the minimum) that marks a loss as congestion: half
/// the path's RTT — a sender's own bursts raise it briefly; a drop-tail queue that
/// overflows has held far more — and at least this much (scheduling noise).
const QUEUE_FLOOR: Duration = Duration::from_millis(5);
/// Share of bytes lost, in parts per thousand, above which losses are congestion however
/// short the queue (a policer drops without queueing).
const LOSS_LIMIT_PERMILLE: u64 = 30;
/// Loss is counted over this long (the last whole period and the current one).
const LOSS_PERIOD: Duration = Duration::from_secs(1);

/// Builds [`LossTolerant`] controllers (Cubic inside).
#[derive(Debug, Default, Clone)]
pub struct LossTolerantConfig {
    cubic: Arc<CubicConfig>,
}

impl ControllerFactory for LossTolerantConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(LossTolerant {
            cubic: Cubic::new(self.cubic.clone(), now, current_mtu),
            rtt: None,
            loss: LossShare::new(now),
        })
    }
}

/// Cubic, told only about the losses that mean congestion.
#[derive(Debug, Clone)]
pub struct LossTolerant {
    cubic: Cubic,
    /// (smoothed RTT, minimum RTT) at the last ack.
    rtt: Option<(Duration, Duration)>,
    loss: LossShare,
}

impl LossTolerant {
    /// True when a loss now means the path is congested.
    fn congested(&self) -> bool {
        let queued = self
            .rtt
            .is_some_and(|(rtt, min)| rtt.saturating_sub(min) > (min / 2).max(QUEUE_FLOOR));
        queued || self.loss.permille() > LOSS_LIMIT_PERMILLE
    }
}

impl Controller for LossTolerant {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.loss.add(now, bytes, 0);
        self.cubic.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.rtt = Some((rtt.get(), rtt.min()));
        self.cubic.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.cubic
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.loss.add(now, 0, lost_bytes);
        // ECN marks come with no lost bytes: they always mean a queue.
        if is_persistent_congestion || lost_bytes == 0 || self.congested() {
            self.cubic
                .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
        }
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.cubic.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.cubic.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.cubic.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.cubic.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Bytes sent and lost over the current and the previous `LOSS_PERIOD`.
#[derive(Debug, Clone)]
struct LossShare {
    period_start: Instant,
    /// (sent, lost) in the current period, then in the previous one.
    current: (u64, u64),
    previous: (u64, u64),
}

impl LossShare {
    fn new(now: Instant) -> Self {
        Self {
            period_start: now,
            current: (0, 0),
            previous: (0, 0),
        }
    }

    fn add(&mut self, now: Instant, sent: u64, lost: u64) {
        let elapsed = now.saturating_duration_since(self.period_start);
        if elapsed >= LOSS_PERIOD {
            // A whole idle period in between forgets the old one too.
            self.previous = if elapsed >= 2 * LOSS_PERIOD {
                (0, 0)
            } else {
                self.current
            };
            self.current = (0, 0);
            self.period_start = now;
        }
        self.current.0 = self.current.0.saturating_add(sent);
        self.current.1 = self.current.1.saturating_add(lost);
    }

    fn permille(&self) -> u64 {
        let sent = self.current.0.saturating_add(self.previous.0);
        let lost = self.current.1.saturating_add(self.previous.1);
        lost.saturating_mul(1000).checked_div(sent).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: u64 = 1200;

    /// A controller that has seen a path of `min` RTT now at `rtt`.
    fn controller(now: Instant, rtt: Duration, min: Duration) -> LossTolerant {
        let mut c = LossTolerant {
            cubic: Cubic::new(Arc::new(CubicConfig::default()), now, 1200),
            rtt: None,
            loss: LossShare::new(now),
        };
        c.rtt = Some((rtt, min));
        c
    }

    /// Sends `packets`, then reports `lost` of them lost.
    fn send_and_lose(c: &mut LossTolerant, now: Instant, packets: u64, lost: u64) {
        for pn in 0..packets {
            c.on_sent(now, PACKET, pn);
        }
        c.on_congestion_event(now, now, false, lost * PACKET);
    }

    #[test]
    fn a_loss_without_a_queue_leaves_the_window_alone() {
        let now = Instant::now();
        let path = Duration::from_millis(40);
        let mut c = controller(now, path + Duration::from_millis(15), path);
        let before = c.window();
        send_and_lose(&mut c, now, 100, 1);
        assert_eq!(
            c.window(),
            before,
            "1 % loss on a path with no queue is not congestion"
        );
    }

    #[test]
    fn a_loss_behind_a_queue_shrinks_the_window() {
        let now = Instant::now();
        let path = Duration::from_millis(40);
        let mut c = controller(now, path + Duration::from_millis(30), path);
        let before = c.window();
        send_and_lose(&mut c, now, 100, 1);
        assert!(c.window() < before, "{} !< {before}", c.window());
    }

    #[test]
    fn heavy_loss_without_a_queue_still_shrinks_the_window() {
        // A policer drops what exceeds its rate without queueing anything.
        let now = Instant::now();
        let path = Duration::from_millis(40);
        let mut c = controller(now, path, path);
        let before = c.window();
        send_and_lose(&mut c, now, 100, 5);
        assert!(c.window() < before, "{} !< {before}", c.window());
    }

    #[test]
    fn ecn_marks_and_persistent_congestion_always_count() {
        let now = Instant::now();
        let path = Duration::from_millis(40);
        let mut c = controller(now, path, path);
        let before = c.window();
        c.on_congestion_event(now, now, false, 0);
        assert!(c.window() < before, "an ECN-CE mark");
        let mut c = controller(now, path, path);
        c.on_congestion_event(now, now, true, PACKET);
        assert!(c.window() < before, "persistent congestion");
    }

    #[test]
    fn the_loss_share_forgets_old_periods() {
        let start = Instant::now();
        let mut share = LossShare::new(start);
        share.add(start, 1000, 100);
        assert_eq!(share.permille(), 100);
        share.add(start + LOSS_PERIOD, 1000, 0);
        assert_eq!(share.permille(), 50, "the previous period still counts");
        share.add(start + 2 * LOSS_PERIOD, 1000, 0);
        assert_eq!(share.permille(), 0);
        share.add(start + 5 * LOSS_PERIOD, 10, 0);
        assert_eq!(share.permille(), 0, "a gap forgets everything");
    }
}
