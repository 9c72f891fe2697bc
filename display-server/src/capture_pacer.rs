//! When a desktop's capture loop polls its source: no I/O, no clock, so every rule can be
//! tested with made-up instants.
//!
//! A busy screen is captured at most once per frame interval on average: that bounds the
//! work a scrolling terminal or a video costs. Damage a source signals is taken when it
//! comes, not at a tick of our own: a player's frames arrive with jitter, and a rate
//! limit that allows a little burst (half an interval early) catches each of them where
//! a fixed tick beats against them. And the user's clock starts at the key, not at the
//! next tick, so input buys a few captures out of turn: the damage a key or a click
//! causes (the echo, a menu opening) is taken as soon as it is drawn.

use std::time::{Duration, Instant};

/// How long after a key or a button captures may come out of turn: the time a program
/// takes to draw its answer to input.
pub(crate) const INPUT_WINDOW: Duration = Duration::from_millis(60);

/// Captures out of turn that found damage, per key or button: an echo and what follows
/// it (a cursor drawn after the character, a completion), not a video playing beside it.
pub(crate) const INPUT_CREDITS: u8 = 3;

/// The shortest gap between two captures, even after input.
pub(crate) const MIN_GAP: Duration = Duration::from_millis(2);

/// A source that signals its damage is still polled this often when quiet: for what it
/// has no event for (X reports no pointer motion to us) and for events that arrived while
/// it was answering the previous poll.
pub(crate) const IDLE_POLL: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub(crate) struct CapturePacer {
    interval: Duration,
    /// The source tells when damage is waiting (X's DAMAGE events on its socket).
    /// Sources that cannot tell are polled at every interval, and out of turn at every
    /// chance while input allows it.
    event_driven: bool,
    last_poll: Instant,
    /// The rate limit's clock (GCRA): a poll is due no earlier than half an interval
    /// before it, and each poll moves it an interval on.
    theoretical: Instant,
    /// Damage is waiting, as the source signalled.
    signalled: bool,
    credits: u8,
    input_until: Option<Instant>,
}

impl CapturePacer {
    pub(crate) fn new(interval: Duration, event_driven: bool, now: Instant) -> Self {
        let interval = interval.max(MIN_GAP);
        Self {
            interval,
            event_driven,
            // The first poll is due at once.
            last_poll: now.checked_sub(interval).unwrap_or(now),
            theoretical: now,
            // The first poll takes the whole screen.
            signalled: true,
            credits: 0,
            input_until: None,
        }
    }

    /// The source signalled damage waiting to be captured.
    pub(crate) fn signal(&mut self) {
        self.signalled = true;
    }

    /// A key or a button reached the desktop.
    pub(crate) fn input(&mut self, now: Instant) {
        self.credits = INPUT_CREDITS;
        self.input_until = Some(now + INPUT_WINDOW);
    }

    fn input_open(&self, now: Instant) -> bool {
        self.credits > 0 && self.input_until.is_some_and(|until| now < until)
    }

    /// When a poll is next allowed by the rate limit alone.
    fn regular(&self) -> Instant {
        if self.event_driven {
            self.theoretical
                .checked_sub(self.interval / 2)
                .unwrap_or(self.theoretical)
        } else {
            self.last_poll + self.interval
        }
    }

    /// When the next poll is due, as of `now`: signalled damage as soon as the rate
    /// limit allows, or `MIN_GAP` after the last poll while input allows captures out
    /// of turn. A source that cannot signal is polled at every interval.
    pub(crate) fn next_poll(&self, now: Instant) -> Instant {
        let regular = self.regular();
        if self.input_open(now) && (self.signalled || !self.event_driven) {
            return (self.last_poll + MIN_GAP).max(now).min(regular.max(now));
        }
        match (self.event_driven, self.signalled) {
            (false, _) => regular,
            (true, true) => regular.max(now),
            (true, false) => self.last_poll + self.interval.max(IDLE_POLL),
        }
    }

    /// A poll ran at `now`; `damaged`: it found damage.
    pub(crate) fn polled(&mut self, now: Instant, damaged: bool) {
        if now < self.regular() && damaged {
            self.credits = self.credits.saturating_sub(1);
        }
        if self.input_until.is_some_and(|until| now >= until) {
            self.input_until = None;
            self.credits = 0;
        }
        // Polls out of turn count against the rate too, but never postpone the next
        // regular one by more than two intervals.
        self.theoretical = (self.theoretical.max(now) + self.interval).min(now + self.interval * 2);
        self.last_poll = now;
        self.signalled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(33);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A pacer that polled at `t0` and found damage.
    fn after_poll(event_driven: bool) -> (CapturePacer, Instant) {
        let t0 = Instant::now();
        let mut p = CapturePacer::new(INTERVAL, event_driven, t0);
        assert_eq!(p.next_poll(t0), t0, "the first poll is due at once");
        p.polled(t0, true);
        (p, t0)
    }

    #[test]
    fn a_source_that_cannot_signal_is_polled_at_the_frame_interval() {
        let (mut p, t0) = after_poll(false);
        assert_eq!(p.next_poll(t0 + ms(1)), t0 + INTERVAL);
        p.polled(t0 + INTERVAL, false);
        assert_eq!(p.next_poll(t0 + INTERVAL), t0 + INTERVAL * 2);
    }

    #[test]
    fn a_quiet_source_that_signals_is_polled_seldom() {
        let (mut p, t0) = after_poll(true);
        assert_eq!(p.next_poll(t0 + ms(1)), t0 + IDLE_POLL);
        p.polled(t0 + IDLE_POLL, false);
        assert_eq!(p.next_poll(t0 + IDLE_POLL), t0 + IDLE_POLL * 2);
    }

    #[test]
    fn signalled_damage_is_taken_when_it_comes_within_the_rate() {
        let (mut p, t0) = after_poll(true);
        p.signal();
        // Half an interval early at most.
        assert_eq!(p.next_poll(t0 + ms(5)), t0 + INTERVAL / 2);
        assert_eq!(p.next_poll(t0 + ms(20)), t0 + ms(20));
        // After a quiet spell: at once.
        p.polled(t0 + INTERVAL, false);
        let later = t0 + INTERVAL + ms(100);
        p.signal();
        assert_eq!(p.next_poll(later), later);
    }

    #[test]
    fn a_jittery_player_at_the_capture_rate_loses_no_frame() {
        let (mut p, t0) = after_poll(true);
        // Frames 33 ms apart on average, each 0-10 ms late (ffplay refreshes every 10 ms).
        let lateness = [0, 9, 1, 10, 0, 7, 3, 10, 0, 0, 9, 2];
        let mut captured = 0;
        for (i, late) in (1u32..).zip(lateness) {
            let shown = t0 + INTERVAL * i + ms(late);
            p.signal();
            let at = p.next_poll(shown);
            let next_frame = t0 + INTERVAL * (i + 1);
            if at < next_frame {
                captured += 1;
            }
            p.polled(at, true);
        }
        assert_eq!(captured, lateness.len());
    }

    #[test]
    fn a_busy_screen_is_polled_at_the_frame_rate_on_average() {
        let (mut p, t0) = after_poll(true);
        let mut now = t0;
        let mut polls = 0u32;
        while now < t0 + ms(1000) {
            p.signal();
            now = p.next_poll(now);
            p.polled(now, true);
            polls += 1;
        }
        let per_second = ms(1000).as_micros() / INTERVAL.as_micros();
        assert!(u128::from(polls) <= per_second + 2, "{polls} polls");
    }

    #[test]
    fn damage_after_a_key_is_captured_at_once() {
        let (mut p, t0) = after_poll(true);
        let key = t0 + ms(5);
        p.input(key);
        // Nothing signalled yet: a source that signals is not polled for nothing.
        assert_eq!(p.next_poll(key), t0 + IDLE_POLL);
        p.signal();
        let drawn = key + ms(1);
        assert_eq!(p.next_poll(drawn), drawn);
        p.polled(drawn, true);
        // The cursor drawn after the character: again at once, but MIN_GAP apart.
        p.signal();
        assert_eq!(p.next_poll(drawn), drawn + MIN_GAP);
    }

    #[test]
    fn input_buys_a_bounded_number_of_early_captures() {
        let (mut p, t0) = after_poll(true);
        let key = t0 + ms(3);
        p.input(key);
        let mut now = key;
        let mut quick = 0;
        // A video keeps damaging the screen right after the key.
        for _ in 0..10 {
            p.signal();
            let at = p.next_poll(now);
            if at - now <= MIN_GAP {
                quick += 1;
            }
            now = at;
            p.polled(now, true);
        }
        assert_eq!(quick, usize::from(INPUT_CREDITS));
    }

    #[test]
    fn early_polls_that_find_nothing_cost_no_credit_but_end_with_the_window() {
        let (mut p, t0) = after_poll(false);
        let key = t0 + ms(3);
        p.input(key);
        let mut now = key;
        let mut polls = 0;
        while now < key + INPUT_WINDOW {
            let at = p.next_poll(now);
            assert!(at >= now);
            if at >= p.last_poll + INTERVAL {
                break;
            }
            now = at;
            p.polled(now, false);
            polls += 1;
        }
        assert!(
            polls > 5,
            "a source that cannot signal is polled often after a key"
        );
        assert!(now <= key + INPUT_WINDOW);
        p.polled(key + INPUT_WINDOW, false);
        let after = key + INPUT_WINDOW;
        assert_eq!(p.next_poll(after), after + INTERVAL);
    }
}
