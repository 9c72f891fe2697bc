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
//!
//! Memory is bounded: each map keeps its most recently used [`MAX_KEYS`] entries, names
//! are kept as a 64-bit hash, and IPv6 addresses count by /64 (what one client holds).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// Attempts per (name, address) before back-off starts.
const FREE_ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Unsuccessful attempts one address may make in [`ADDR_WINDOW`].
pub const MAX_PER_ADDR: u32 = 50;
pub const ADDR_WINDOW: Duration = Duration::from_secs(300);
/// Entries each map keeps (the least recently used go first).
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

pub struct LoginLimiter {
    pairs: Mutex<LruCache<(u64, IpAddr), Pair>>,
    addrs: Mutex<LruCache<IpAddr, Window>>,
    /// Keys the name hashes (random per process, so names cannot be chosen to collide).
    hasher: std::collections::hash_map::RandomState,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        let cap = NonZeroUsize::new(MAX_KEYS).unwrap_or(NonZeroUsize::MIN);
        Self {
            pairs: Mutex::new(LruCache::new(cap)),
            addrs: Mutex::new(LruCache::new(cap)),
            hasher: Default::default(),
        }
    }
}

/// The part of an address that counts as one client: all of IPv4, a /64 of IPv6.
pub fn client_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
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
    key: u64,
    addr: IpAddr,
}

impl LoginLimiter {
    /// Starts an attempt for the name with key `key` (see `store::names::key`) from
    /// `addr`, or says how long to wait.
    pub fn begin(&self, key: &str, addr: IpAddr) -> Result<Attempt<'_>, Throttled> {
        self.begin_at(key, addr, Instant::now())
    }

    fn begin_at(&self, key: &str, addr: IpAddr, now: Instant) -> Result<Attempt<'_>, Throttled> {
        let (key, addr) = (self.name_hash(key), client_of(addr));
        // Lock order: pairs, then addrs (everywhere).
        let mut pairs = crate::lock(&self.pairs);
        let mut addrs = crate::lock(&self.addrs);
        if let Some(p) = pairs.peek(&(key, addr)) {
            let ready = p.last + backoff(p.failures);
            if now < ready {
                return Err(Throttled {
                    retry_after: ready - now,
                });
            }
        }
        if let Some(w) = addrs.peek(&addr) {
            let end = w.start + ADDR_WINDOW;
            if now < end && w.failures >= MAX_PER_ADDR {
                return Err(Throttled {
                    retry_after: end - now,
                });
            }
        }
        let p = pairs.get_or_insert_mut((key, addr), || Pair {
            failures: 0,
            last: now,
        });
        p.failures = p.failures.saturating_add(1);
        p.last = now;
        let w = addrs.get_or_insert_mut(addr, || Window {
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
            key,
            addr,
        })
    }

    fn name_hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Takes back what `begin` counted: the attempt succeeded (`clear`: forget the
    /// name's earlier failures from this address) or was never checked.
    fn undo(&self, key: u64, addr: IpAddr, clear: bool) {
        let mut pairs = crate::lock(&self.pairs);
        let mut addrs = crate::lock(&self.addrs);
        if clear {
            pairs.pop(&(key, addr));
        } else if let Some(p) = pairs.peek_mut(&(key, addr)) {
            p.failures = p.failures.saturating_sub(1);
        }
        if let Some(w) = addrs.peek_mut(&addr) {
            w.failures = w.failures.saturating_sub(1);
        }
    }
}

impl Attempt<'_> {
    /// The password was right.
    pub fn succeeded(self) {
        self.limiter.undo(self.key, self.addr, true);
    }

    /// The password could not be checked (the broker was busy): it does not count.
    pub fn not_checked(self) {
        self.limiter.undo(self.key, self.addr, false);
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
    fn ipv6_counts_by_64_and_memory_is_bounded() {
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(client_of(ip("10.1.2.3")), ip("10.1.2.3"));
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for n in 0..u32::try_from(MAX_KEYS + 10).unwrap() {
            let from = IpAddr::V4(std::net::Ipv4Addr::from(n));
            let _ = l.begin_at("x", from, t0).unwrap();
        }
        assert_eq!(crate::lock(&l.pairs).len(), MAX_KEYS);
        assert_eq!(crate::lock(&l.addrs).len(), MAX_KEYS);
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
