//! Audit writes whose cause anyone can trigger without credentials (failed logins, hosts
//! with a wrong join token, tickets clients present) are bounded: every field is clipped,
//! and each source (an address, counted by /64 for IPv6; a host) gets a token bucket,
//! inside one bucket for all sources together. Events beyond either are counted, not
//! written, and the next written event of that source says how many.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use oriel_protocol::text;
use prometheus_client::metrics::counter::Counter;

use crate::store::{Result, Store};

/// Written events per second per source, sustained.
const RATE: f64 = 1.0;
/// Events a source may write at once.
const BURST: f64 = 20.0;
/// Sources tracked at most; idle ones (full buckets) are forgotten first.
const MAX_SOURCES: usize = 10_000;
/// All sources together: written events per second, and at once.
const GLOBAL_RATE: f64 = 50.0;
const GLOBAL_BURST: f64 = 500.0;

struct Bucket {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

pub struct AuditLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    global: Mutex<Bucket>,
    suppressed_total: Counter,
}

impl Default for AuditLimiter {
    fn default() -> Self {
        Self {
            buckets: Mutex::default(),
            global: Mutex::new(Bucket {
                tokens: GLOBAL_BURST,
                at: Instant::now(),
                suppressed: 0,
            }),
            suppressed_total: Counter::default(),
        }
    }
}

impl AuditLimiter {
    /// Appends an event caused by `source` unless that source is over its rate.
    pub async fn record(
        &self,
        store: &Store,
        source: &str,
        actor: &str,
        event: &str,
        detail: &str,
    ) -> Result<()> {
        let Some(suppressed) = self.take(source) else {
            return Ok(());
        };
        let mut detail = text::clip(detail, 2 * text::MAX_LOGGED).into_owned();
        if suppressed > 0 {
            detail.push_str(&format!(
                " (and {suppressed} more from this source, not written)"
            ));
        }
        store.audit(&text::for_log(actor), event, &detail).await
    }

    /// Events not written since the broker started.
    pub fn suppressed(&self) -> u64 {
        self.suppressed_total.get()
    }

    /// The counter behind [`AuditLimiter::suppressed`], for the metrics registry.
    pub fn suppressed_counter(&self) -> Counter {
        self.suppressed_total.clone()
    }

    /// A token for `source`: `Some(events suppressed before it)`, or `None` when over.
    fn take(&self, source: &str) -> Option<u64> {
        let now = Instant::now();
        let mut buckets = crate::lock(&self.buckets);
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(source) {
            buckets.retain(|_, b| refill(b, now) < BURST);
            if buckets.len() >= MAX_SOURCES {
                // Every source is busy: an unknown one shares the fate of the flood.
                self.suppressed_total.inc();
                return None;
            }
        }
        let bucket = buckets
            .entry(text::for_log(source).into_owned())
            .or_insert(Bucket {
                tokens: BURST,
                at: now,
                suppressed: 0,
            });
        refill(bucket, now);
        let mut global = crate::lock(&self.global);
        refill_at(&mut global, now, GLOBAL_RATE, GLOBAL_BURST);
        if bucket.tokens < 1.0 || global.tokens < 1.0 {
            bucket.suppressed += 1;
            self.suppressed_total.inc();
            return None;
        }
        bucket.tokens -= 1.0;
        global.tokens -= 1.0;
        Some(std::mem::take(&mut bucket.suppressed))
    }
}

fn refill(bucket: &mut Bucket, now: Instant) -> f64 {
    refill_at(bucket, now, RATE, BURST)
}

fn refill_at(bucket: &mut Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.at = now;
    bucket.tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_source_is_cut_off_and_others_are_not() {
        let l = AuditLimiter::default();
        #[expect(clippy::cast_possible_truncation, reason = "BURST is 20.0")]
        let burst = BURST as usize;
        for _ in 0..burst {
            assert_eq!(l.take("10.0.0.1"), Some(0));
        }
        assert_eq!(l.take("10.0.0.1"), None);
        assert_eq!(l.take("10.0.0.1"), None);
        assert_eq!(l.suppressed(), 2);
        assert_eq!(l.take("10.0.0.2"), Some(0));
        // After a while the source may write again, and says what was left out.
        crate::lock(&l.buckets).get_mut("10.0.0.1").unwrap().at -=
            std::time::Duration::from_secs(2);
        assert_eq!(l.take("10.0.0.1"), Some(2));
    }

    #[test]
    fn many_sources_together_are_bounded_too() {
        let l = AuditLimiter::default();
        let written = (0..2000)
            .filter(|n| l.take(&format!("10.0.{}.{}", n / 250, n % 250)).is_some())
            .count();
        #[expect(clippy::cast_possible_truncation, reason = "GLOBAL_BURST is 500.0")]
        let global_burst = GLOBAL_BURST as usize;
        assert!(written <= global_burst + 5, "{written}");
    }
}
