//! Login rate limiting per user name and per client address: after too many failures
//! in a window, further attempts are refused until the window passes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(300);
const MAX_FAILURES_PER_USER: u32 = 10;
const MAX_FAILURES_PER_ADDR: u32 = 50;
/// Bound on tracked keys, so a flood of made-up names cannot grow memory without end.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub struct LoginLimiter {
    users: Mutex<HashMap<String, (Instant, u32)>>,
    addrs: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginLimiter {
    /// True when this user or address may try to log in now.
    pub fn allowed(&self, user: &str, addr: IpAddr) -> bool {
        under(&self.users, &user.to_string(), MAX_FAILURES_PER_USER)
            && under(&self.addrs, &addr, MAX_FAILURES_PER_ADDR)
    }

    pub fn failed(&self, user: &str, addr: IpAddr) {
        bump(&self.users, user.to_string());
        bump(&self.addrs, addr);
    }

    pub fn succeeded(&self, user: &str) {
        crate::lock(&self.users).remove(user);
    }
}

fn under<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, (Instant, u32)>>,
    key: &K,
    max: u32,
) -> bool {
    match crate::lock(map).get(key) {
        Some((start, n)) => start.elapsed() > WINDOW || *n < max,
        None => true,
    }
}

fn bump<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, (Instant, u32)>>, key: K) {
    let mut m = crate::lock(map);
    if m.len() >= MAX_KEYS {
        m.retain(|_, (start, _)| start.elapsed() <= WINDOW);
    }
    let entry = m.entry(key).or_insert((Instant::now(), 0));
    if entry.0.elapsed() > WINDOW {
        *entry = (Instant::now(), 0);
    }
    entry.1 += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_repeated_failures() {
        let l = LoginLimiter::default();
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_USER {
            assert!(l.allowed("bob", addr));
            l.failed("bob", addr);
        }
        assert!(!l.allowed("bob", addr));
        assert!(l.allowed("alice", addr));
        l.succeeded("bob");
        assert!(l.allowed("bob", addr));
    }
}
