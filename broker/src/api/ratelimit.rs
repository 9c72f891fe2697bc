//! Login rate limiting, judged before any password is hashed.
//!
//! - Per (user name, client): a few free attempts, then each further one has to wait
//!   twice as long as the one before (1 s, 2 s, 4 s … up to 15 min). A success clears
//!   it. Someone guessing from elsewhere never locks the owner out of their account.
//! - Per client, over all names: at most [`MAX_PER_ADDR`] unsuccessful attempts in
//!   [`ADDR_WINDOW`], so one address cannot spray names.
//!
//! Failures are counted in the store ([`subjects`]), so every broker on one database
//! judges by the same counts ([`LoginFailures`]) and a broker restart forgets nothing.
//! Attempts still in flight are counted in process on top: an attempt counts as failed
//! from the moment it starts until it ends, so a burst of simultaneous logins meets the
//! limits before any of them is hashed. An attempt registers before it reads the store
//! and counts those in flight at that moment: one that ends meanwhile has written its
//! failure first, so it is in the store or in flight, never in neither. Memory holds
//! only attempts in flight.
//!
//! A client is an IPv4 address or an IPv6 /64 (what one client holds).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::store::{LoginFailures, LoginSubjects};

/// Attempts per (name, client) before back-off starts.
const FREE_ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Unsuccessful attempts one client may make in [`ADDR_WINDOW`].
pub const MAX_PER_ADDR: u32 = 50;
pub const ADDR_WINDOW: Duration = Duration::from_secs(300);

/// Attempts in flight, by subject (entries go when their count drops to zero).
#[derive(Default)]
pub struct LoginLimiter {
    in_flight: Mutex<HashMap<String, u32>>,
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

/// What an attempt for the name with key `key` (see `store::names::key`) from `addr`
/// counts against. The pair is a SHA-256, so the store keeps no name someone merely tried.
pub fn subjects(key: &str, addr: IpAddr) -> LoginSubjects {
    let client = client_of(addr).to_string();
    let mut pair = Sha256::new();
    pair.update(key.as_bytes());
    pair.update([0]);
    pair.update(client.as_bytes());
    LoginSubjects {
        pair: format!("pair:{}", hex::encode(pair.finalize())),
        client: format!("client:{client}"),
    }
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

/// A login attempt in flight; it stops counting as such when dropped (by then a
/// failure has been counted in the store).
#[must_use]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    subjects: LoginSubjects,
}

/// An attempt registered in flight and not yet judged, with the attempts that were in
/// flight against the same subjects when it registered.
#[must_use]
pub struct Pending<'a> {
    attempt: Attempt<'a>,
    others_pair: u32,
    others_client: u32,
}

impl<'a> Pending<'a> {
    /// Lets the attempt start at `now_ms`, given what the store counted for its subjects
    /// (read after it registered), or says how long to wait (and ends it).
    pub fn judge(self, counted: &LoginFailures, now_ms: i64) -> Result<Attempt<'a>, Throttled> {
        let all = with_in_flight(counted, self.others_pair, self.others_client, now_ms);
        judge(&all, now_ms)?;
        Ok(self.attempt)
    }
}

impl LoginLimiter {
    /// Registers an attempt against `subjects` in flight; read the store's counts after
    /// this and judge it with them.
    pub fn register(&self, subjects: &LoginSubjects) -> Pending<'_> {
        let mut in_flight = crate::lock(&self.in_flight);
        let others_pair = in_flight.get(&subjects.pair).copied().unwrap_or(0);
        let others_client = in_flight.get(&subjects.client).copied().unwrap_or(0);
        for subject in [&subjects.pair, &subjects.client] {
            *in_flight.entry(subject.clone()).or_default() += 1;
        }
        Pending {
            attempt: Attempt {
                limiter: self,
                subjects: subjects.clone(),
            },
            others_pair,
            others_client,
        }
    }

    /// [`Self::register`] and [`Pending::judge`] at once, for counts read before.
    #[cfg(test)]
    fn begin(
        &self,
        subjects: &LoginSubjects,
        counted: &LoginFailures,
        now_ms: i64,
    ) -> Result<Attempt<'_>, Throttled> {
        self.register(subjects).judge(counted, now_ms)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        crate::lock(&self.in_flight).len()
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut in_flight = crate::lock(&self.limiter.in_flight);
        for subject in [&self.subjects.pair, &self.subjects.client] {
            if let Some(n) = in_flight.get_mut(subject) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    in_flight.remove(subject);
                }
            }
        }
    }
}

/// The store's counts plus attempts in flight, each of which is a failure happening now.
fn with_in_flight(counted: &LoginFailures, pair: u32, client: u32, now_ms: i64) -> LoginFailures {
    let mut all = *counted;
    if pair > 0 {
        all.pair = all.pair.saturating_add(pair);
        all.pair_last_ms = now_ms;
    }
    if client > 0 {
        if now_ms >= window_end(all.client_since_ms) {
            all.client = 0;
            all.client_since_ms = now_ms;
        }
        all.client = all.client.saturating_add(client);
    }
    all
}

/// [`ADDR_WINDOW`] in milliseconds, as the store counts a client's window.
pub fn addr_window_ms() -> i64 {
    millis(ADDR_WINDOW)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn window_end(since_ms: i64) -> i64 {
    since_ms.saturating_add(addr_window_ms())
}

/// Whether failures counted so far let one more attempt start at `now_ms`.
fn judge(counted: &LoginFailures, now_ms: i64) -> Result<(), Throttled> {
    let wait = |until_ms: i64| Throttled {
        retry_after: Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0)),
    };
    let ready = counted
        .pair_last_ms
        .saturating_add(millis(backoff(counted.pair)));
    if now_ms < ready {
        return Err(wait(ready));
    }
    let end = window_end(counted.client_since_ms);
    if now_ms < end && counted.client >= MAX_PER_ADDR {
        return Err(wait(end));
    }
    Ok(())
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

    const T0: i64 = 1_000_000;

    #[test]
    fn failures_back_off_per_name_and_client() {
        let l = LoginLimiter::default();
        let bob = subjects("bob", ip("10.0.0.1"));
        let five = LoginFailures {
            pair: FREE_ATTEMPTS,
            pair_last_ms: T0,
            client: FREE_ATTEMPTS,
            client_since_ms: T0,
        };
        let refused = l.begin(&bob, &five, T0).err().unwrap();
        assert_eq!(refused.retry_after, FIRST_WAIT);
        // Waiting long enough allows one more try; after it, twice as long.
        drop(l.begin(&bob, &five, T0 + 1000).unwrap());
        let six = LoginFailures {
            pair: 6,
            pair_last_ms: T0 + 1000,
            ..five
        };
        assert_eq!(
            l.begin(&bob, &six, T0 + 1000).err().unwrap().retry_after,
            2 * FIRST_WAIT
        );
        // The owner, from elsewhere, is not locked out.
        let from_home = subjects("bob", ip("10.0.0.2"));
        assert_ne!(from_home.pair, bob.pair);
        drop(l.begin(&from_home, &LoginFailures::default(), T0).unwrap());
        // Back-off is capped.
        let many = LoginFailures { pair: 1000, ..five };
        assert_eq!(
            l.begin(&bob, &many, T0).err().unwrap().retry_after,
            MAX_WAIT
        );
    }

    #[test]
    fn a_burst_is_counted_before_it_is_checked_and_memory_holds_only_it() {
        let l = LoginLimiter::default();
        let alice = subjects("alice", ip("10.0.0.9"));
        let none = LoginFailures::default();
        // Simultaneous attempts that have not finished yet already count.
        let held: Vec<_> = (0..FREE_ATTEMPTS)
            .map(|_| l.begin(&alice, &none, T0).unwrap())
            .collect();
        assert_eq!(
            l.begin(&alice, &none, T0).err().unwrap().retry_after,
            FIRST_WAIT
        );
        assert_eq!(l.tracked(), 2);
        drop(held);
        assert_eq!(l.tracked(), 0);
        drop(l.begin(&alice, &none, T0).unwrap());
    }

    #[test]
    fn one_client_cannot_spray_names() {
        let l = LoginLimiter::default();
        let sprayed = LoginFailures {
            client: MAX_PER_ADDR,
            client_since_ms: T0,
            ..LoginFailures::default()
        };
        let someone = subjects("someone", ip("10.0.0.3"));
        let refused = l.begin(&someone, &sprayed, T0).err().unwrap();
        assert_eq!(refused.retry_after, ADDR_WINDOW);
        let later = T0 + millis(ADDR_WINDOW);
        drop(l.begin(&someone, &sprayed, later).unwrap());
        // In-flight attempts fill a window too, and an old one starts again.
        let almost = LoginFailures {
            client: MAX_PER_ADDR - 1,
            ..sprayed
        };
        let held = l.begin(&someone, &almost, T0).unwrap();
        let other = subjects("other", ip("10.0.0.3"));
        assert!(l.begin(&other, &almost, T0).is_err());
        assert!(l.begin(&other, &almost, later).is_ok());
        drop(held);
    }

    /// B's failure, the client's last allowed, lands in the store after A read it, and
    /// B ends before A is judged: A still counts B, which was in flight when A registered.
    #[test]
    fn an_attempt_ending_while_another_reads_the_store_still_counts() {
        let l = LoginLimiter::default();
        let counted = LoginFailures {
            client: MAX_PER_ADDR - 1,
            client_since_ms: T0,
            ..LoginFailures::default()
        };
        let b = l
            .begin(&subjects("b", ip("10.0.0.4")), &counted, T0)
            .unwrap();
        let a = l.register(&subjects("a", ip("10.0.0.4")));
        drop(b);
        assert!(a.judge(&counted, T0).is_err());
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn subjects_name_no_one_and_ipv6_counts_by_64() {
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(client_of(ip("10.1.2.3")), ip("10.1.2.3"));
        let s = subjects("bob", ip("2001:db8::7"));
        assert!(!s.pair.contains("bob") && s.pair.len() == "pair:".len() + 64);
        assert_eq!(s.client, "client:2001:db8::");
        assert_ne!(s.pair, subjects("bob", ip("10.0.0.1")).pair);
    }
}
