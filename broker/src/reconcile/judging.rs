//! When the reconcile leader may judge hosts by their heartbeats: only on heartbeats
//! the brokers could have recorded. Not during a grace after this broker begins to lead
//! (hosts link again after a restart), and not until [`HOST_TIMEOUT`] after the
//! database was out of reach or stalled, for whatever reason the leader noticed: a call
//! that failed, one that took over [`STORE_STALL`], or a gap that long between answers
//! (heartbeat writers share that database, so they could not write either). A read of
//! heartbeats that spans such a moment is thrown away. Pure: the caller passes the clock.

use std::time::{Duration, Instant};

use super::{HOST_TIMEOUT, TICK};

/// A database answer this late (or this long without one, beyond the lease's tick) is
/// taken as a time when heartbeats could not be written. Far below what would make a
/// live host look silent (a [`HOST_TIMEOUT`] less its beat interval and the writers'
/// flush), so even a stall just under it cannot do that.
pub const STORE_STALL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Judging {
    /// No host is judged before this.
    not_before: Instant,
    /// Changes with every hold, so a read can tell one happened while it ran.
    generation: u64,
    /// When the database last answered a call of the leader's.
    last_answer: Option<Instant>,
}

/// What a read of heartbeats holds on to: valid while no hold came in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement(u64);

impl Judging {
    /// Judging starts `grace` after `now` (the broker's start).
    pub fn new(now: Instant, grace: Duration) -> Self {
        Self {
            not_before: now + grace,
            generation: 0,
            last_answer: None,
        }
    }

    /// Hosts are not judged for `grace` from `now`; a longer hold already running stays.
    pub fn hold(&mut self, now: Instant, grace: Duration) {
        self.not_before = self.not_before.max(now + grace);
        self.generation += 1;
    }

    /// The database answered at `now` a call made at `asked`: a stall holds judging.
    pub fn answered(&mut self, asked: Instant, now: Instant) {
        let slow = now.saturating_duration_since(asked) > STORE_STALL;
        let silent_before = self
            .last_answer
            .is_some_and(|last| now.saturating_duration_since(last) > STORE_STALL + TICK);
        if slow || silent_before {
            self.hold(now, HOST_TIMEOUT);
        }
        self.last_answer = Some(now);
    }

    /// A call to the database failed at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.hold(now, HOST_TIMEOUT);
    }

    /// Whether hosts may be judged at `now`, and if so what the read must still match.
    pub fn may_judge(&self, now: Instant) -> Option<Judgement> {
        (now >= self.not_before).then_some(Judgement(self.generation))
    }

    /// No hold came since `judgement` was given.
    pub fn still(&self, judgement: Judgement) -> bool {
        judgement.0 == self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A leader whose lease calls answered every tick until `t0 + at`.
    fn steady(t0: Instant, grace: Duration, until: Duration) -> Judging {
        let mut j = Judging::new(t0, grace);
        let mut t = Duration::ZERO;
        while t <= until {
            j.answered(t0 + t, t0 + t + MS(5));
            t += TICK;
        }
        j
    }

    #[test]
    fn hosts_are_judged_only_after_the_grace() {
        let t0 = Instant::now();
        let j = steady(t0, S(30), S(40));
        assert!(j.may_judge(t0 + S(29)).is_none());
        assert!(j.may_judge(t0 + S(30)).is_some());
    }

    #[test]
    fn a_slow_answer_holds_judging_for_a_host_timeout() {
        let t0 = Instant::now();
        let mut j = steady(t0, S(0), S(20));
        let judgement = j.may_judge(t0 + S(20)).expect("judging");
        // A read of heartbeats starts; the database then stalls for 5 s.
        j.answered(t0 + S(21), t0 + S(26));
        assert!(!j.still(judgement), "the read spanned the stall");
        assert!(j.may_judge(t0 + S(26) + HOST_TIMEOUT - MS(1)).is_none());
        assert!(j.may_judge(t0 + S(26) + HOST_TIMEOUT).is_some());
    }

    #[test]
    fn a_gap_between_answers_holds_judging() {
        let t0 = Instant::now();
        let mut j = steady(t0, S(0), S(20));
        // No lease call answered for 6 s, then one answers at once.
        j.answered(t0 + S(26), t0 + S(26) + MS(3));
        assert!(j.may_judge(t0 + S(30)).is_none());
        assert!(j.may_judge(t0 + S(27) + HOST_TIMEOUT).is_some());
    }

    #[test]
    fn answers_every_tick_do_not_hold_and_a_short_hiccup_is_tolerated() {
        let t0 = Instant::now();
        let mut j = steady(t0, S(0), S(20));
        let judgement = j.may_judge(t0 + S(20) + MS(100)).expect("judging");
        // One answer takes 1.5 s: under the stall limit.
        j.answered(t0 + S(21), t0 + S(22) + MS(500));
        assert!(j.still(judgement));
        assert!(j.may_judge(t0 + S(23)).is_some());
    }

    #[test]
    fn a_failure_holds_judging_and_no_hold_shortens_a_longer_one() {
        let t0 = Instant::now();
        let mut j = Judging::new(t0, S(30));
        j.failed(t0 + S(1));
        assert!(j.may_judge(t0 + S(29)).is_none(), "the restart grace stays");
        assert!(j.may_judge(t0 + S(30)).is_some());
        j.failed(t0 + S(40));
        assert!(j.may_judge(t0 + S(40) + HOST_TIMEOUT - MS(1)).is_none());
        assert!(j.may_judge(t0 + S(40) + HOST_TIMEOUT).is_some());
    }
}
