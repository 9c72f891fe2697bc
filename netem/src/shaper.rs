//! The per-direction model: loss, then a drop-tail queue drained at the bandwidth cap,
//! then propagation delay plus jitter. Decides each packet's delivery time on arrival.

use std::time::Duration;

use tokio::time::Instant;

use crate::spec::LinkSpec;
use crate::RelayStats;

/// Why a packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Lost,
    QueueFull,
}

impl Dropped {
    pub(crate) fn count(self, stats: &RelayStats) {
        use std::sync::atomic::Ordering::Relaxed;
        match self {
            Dropped::Lost => stats.lost.fetch_add(1, Relaxed),
            Dropped::QueueFull => stats.queue_drops.fetch_add(1, Relaxed),
        };
    }
}

pub struct Shaper {
    spec: LinkSpec,
    /// When the emulated link finishes sending what is queued.
    link_free: Option<Instant>,
    last_delivery: Option<Instant>,
    rng: u64,
}

impl Shaper {
    pub fn new(spec: &LinkSpec, seed: u64) -> Self {
        Self {
            spec: *spec,
            link_free: None,
            last_delivery: None,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// xorshift64*: uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// When a packet of `len` bytes arriving at `now` is delivered, or why it is not.
    pub fn admit(&mut self, len: usize, now: Instant) -> Result<Instant, Dropped> {
        if self.spec.loss > 0.0 && self.uniform() < self.spec.loss {
            return Err(Dropped::Lost);
        }
        let departs = match self.spec.rate_bps {
            Some(rate) => {
                let start = self.link_free.map_or(now, |free| free.max(now));
                if start - now > self.spec.queue_limit() {
                    return Err(Dropped::QueueFull);
                }
                let serialise = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
                self.link_free = Some(start + serialise);
                start + serialise
            }
            None => now,
        };
        let jitter = self.spec.jitter.mul_f64(self.uniform());
        let mut at = departs + self.spec.rtt / 2 + jitter;
        if let Some(last) = self.last_delivery {
            at = at.max(last);
        }
        self.last_delivery = Some(at);
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_delay_queue_and_loss() {
        let spec: LinkSpec = "rate=8mbit,rtt=40ms,queue=10ms".parse().unwrap();
        let mut s = Shaper::new(&spec, 1);
        let t0 = Instant::now();
        // 1000 bytes at 8 Mbit/s take 1 ms, plus 20 ms one-way.
        let at = s.admit(1000, t0).unwrap();
        assert_eq!(at - t0, Duration::from_millis(21));
        let at2 = s.admit(1000, t0).unwrap();
        assert_eq!(at2 - t0, Duration::from_millis(22));
        // Fill the 10 ms queue: the packet that would wait longer is dropped.
        let mut dropped = 0;
        for _ in 0..20 {
            if s.admit(1000, t0) == Err(Dropped::QueueFull) {
                dropped += 1;
            }
        }
        assert!(dropped >= 8, "{dropped}");

        let lossy: LinkSpec = "loss=10%".parse().unwrap();
        let mut s = Shaper::new(&lossy, 7);
        let lost = (0..10_000)
            .filter(|_| s.admit(100, t0) == Err(Dropped::Lost))
            .count();
        assert!((800..1200).contains(&lost), "{lost}");
    }
}
