//! Login rate limiting, counted before any password is hashed.
//!
//! - Per (user name, address): a few free attempts, then each further one has to wait
//!   twice as long as the one before (1 s, 2 s, 4 s … up to 15 min). A success clears
//!   it. Someone guessing from elsewhere never locks the owner out of their account.
//! - Per address, over all names: at most [`MAX_PER_ADDR`] unsuccessful attempts in
//!   [`ADDR_WINDOW`], so one address cannot spray names.
//!
//! An attempt counts as failed from the moment it starts until it succeeds, so a burst
//! of simultaneous logins meets the limits before any of them is hashed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts per (name, address) before back-off starts.
const FREE_ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Unsuccessful attempts one address may make in [`ADDR_WINDOW`].
pub const MAX_PER_ADDR: u32 = 50;
pub const ADDR_WINDOW: Duration = Duration::from_secs(300);
/// Bound on tracked keys, so a flood of made-up names cannot grow memory without end.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Pair {
    failures: u32,
    last: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

#[derive(Default)]
pub struct LoginLimiter {
    pairs: Mutex<HashMap<(String, IpAddr), Pair>>,
    addrs: Mutex<HashMap<IpAddr, Window>>,
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

/// A login attempt, counted as failed until [`Attempt::succeeded`] or
/// [`Attempt::not_checked`].
#[must_use]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    key: String,
    addr: IpAddr,
}

impl LoginLimiter {
    /// Starts an attempt for the name with key `key` (see `store::names::key`) from
    /// `addr`, or says how long to wait.
    pub fn begin(&self, key: &str, addr: IpAddr) -> Result<Attempt<'_>, Throttled> {
        self.begin_at(key, addr, Instant::now())
    }

    fn begin_at(&self, key: &str, addr: IpAddr, now: Instant) -> Result<Attempt<'_>, Throttled> {
        // Lock order: pairs, then addrs (everywhere).
        let mut pairs = crate::lock(&self.pairs);
        let mut addrs = crate::lock(&self.addrs);
        let pair_key = (key.to_string(), addr);
        if let Some(p) = pairs.get(&pair_key) {
            let wait = backoff(p.failures);
            let ready = p.last + wait;
            if now < ready {
                return Err(Throttled {
                    retry_after: ready - now,
                });
            }
        }
        if let Some(w) = addrs.get(&addr) {
            let end = w.start + ADDR_WINDOW;
            if now < end && w.failures >= MAX_PER_ADDR {
                return Err(Throttled {
                    retry_after: end - now,
                });
            }
        }
        if pairs.len() >= MAX_KEYS {
            pairs.retain(|_, p| now.duration_since(p.last) < MAX_WAIT);
        }
        if addrs.len() >= MAX_KEYS {
            addrs.retain(|_, w| now.duration_since(w.start) < ADDR_WINDOW);
        }
        let p = pairs.entry(pair_key).or_insert(Pair {
            failures: 0,
            last: now,
        });
        p.failures = p.failures.saturating_add(1);
        p.last = now;
        let w = addrs.entry(addr).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= ADDR_WINDOW {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        Ok(Attempt {
            limiter: self,
            key: key.to_string(),
            addr,
        })
    }

    /// Takes back what `begin` counted: the attempt succeeded (`clear`: forget the
    /// name's earlier failures from this address) or was never checked.
    fn undo(&self, key: &str, addr: IpAddr, clear: bool) {
        let mut pairs = crate::lock(&self.pairs);
        let mut addrs = crate::lock(&self.addrs);
        let pair_key = (key.to_string(), addr);
        if clear {
            pairs.remove(&pair_key);
        } else if let Some(p) = pairs.get_mut(&pair_key) {
            p.failures = p.failures.saturating_sub(1);
        }
        if let Some(w) = addrs.get_mut(&addr) {
            w.failures = w.failures.saturating_sub(1);
        }
    }
}

impl Attempt<'_> {
    /// The password was right.
    pub fn succeeded(self) {
        self.limiter.undo(&self.key, self.addr, true);
    }

    /// The password could not be checked (the broker was busy): it does not count.
    pub fn not_checked(self) {
        self.limiter.undo(&self.key, self.addr, false);
    }
}

/// How long after the last attempt the next may start, after `failures` of them.
fn backoff(failures: u32) -> Duration {
    if failures < FREE_ATTEMPTS {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_ATTEMPTS).min(20);
    FIRST_WAIT.saturating_mul(1 << doublings).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_back_off_per_name_and_address() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_ATTEMPTS {
            let _ = l.begin_at("bob", ip("10.0.0.1"), t0).unwrap();
        }
        let refused = l.begin_at("bob", ip("10.0.0.1"), t0).err().unwrap();
        assert_eq!(refused.retry_after, FIRST_WAIT);
        // The owner, from elsewhere, is not locked out.
        l.begin_at("bob", ip("10.0.0.2"), t0).unwrap().succeeded();
        // Waiting long enough allows one more try, then twice as long.
        let t1 = t0 + FIRST_WAIT;
        let _ = l.begin_at("bob", ip("10.0.0.1"), t1).unwrap();
        let refused = l.begin_at("bob", ip("10.0.0.1"), t1).err().unwrap();
        assert_eq!(refused.retry_after, 2 * FIRST_WAIT);
        // A success clears the pair.
        l.begin_at("bob", ip("10.0.0.1"), t1 + 2 * FIRST_WAIT)
            .unwrap()
            .succeeded();
        let _ = l
            .begin_at("bob", ip("10.0.0.1"), t1 + 2 * FIRST_WAIT)
            .unwrap();
    }

    #[test]
    fn a_burst_is_counted_before_it_is_checked() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        // Simultaneous attempts that have not finished yet already count.
        let held: Vec<_> = (0..FREE_ATTEMPTS)
            .map(|_| l.begin_at("alice", ip("10.0.0.9"), t0).unwrap())
            .collect();
        assert!(l.begin_at("alice", ip("10.0.0.9"), t0).is_err());
        for a in held {
            a.not_checked();
        }
        assert!(l.begin_at("alice", ip("10.0.0.9"), t0).is_ok());
    }

    #[test]
    fn one_address_cannot_spray_names() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for n in 0..MAX_PER_ADDR {
            let _ = l.begin_at(&format!("user{n}"), ip("10.0.0.3"), t0).unwrap();
        }
        let refused = l.begin_at("someone", ip("10.0.0.3"), t0).err().unwrap();
        assert_eq!(refused.retry_after, ADDR_WINDOW);
        assert!(l.begin_at("someone", ip("10.0.0.4"), t0).is_ok());
        assert!(l
            .begin_at("someone", ip("10.0.0.3"), t0 + ADDR_WINDOW)
            .is_ok());
    }
}
