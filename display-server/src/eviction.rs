//! Who may watch a desktop, and when a session must end: the desktop is stopped or reset
//! (every session), a log-off or reassignment (sessions of earlier assignment
//! generations), or a new connection took the desktop over (older sessions).
//!
//! Pure bookkeeping, checked and changed atomically per desktop (see
//! [`crate::desktop::Desktop::admit`]), so a ticket's admission and the end of the
//! sessions it supersedes happen in one step.

/// What has ended sessions on a desktop so far; each session compares it with what it
/// was admitted with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Bumped to end every session (stop, reset, destroy, failure).
    pub all: u64,
    /// The assignment generation: sessions admitted for an earlier one end, and tickets
    /// issued for an earlier one are refused.
    pub generation: u64,
    /// Ticketed sessions with a smaller id end: one desktop is watched by one
    /// connection of its user, and the newest takes over.
    pub newest: u64,
}

/// What a session was admitted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub session: u64,
    pub generation: u64,
    all: u64,
    /// Whether a newer connection takes this one over (broker sessions); standalone
    /// viewers share their desktop.
    exclusive: bool,
}

/// Why a session was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Stopped,
    Revoked,
    TakenOver,
}

impl Eviction {
    /// What the client is told.
    pub fn reason(self) -> &'static str {
        match self {
            Eviction::Stopped => "session ended: the desktop was stopped, reset or deleted",
            Eviction::Revoked => {
                "session ended: you were logged off, or the desktop was reassigned"
            }
            Eviction::TakenOver => "session ended: another connection to this desktop took it over",
        }
    }
}

/// A ticket of an assignment generation older than the desktop's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleGeneration;

impl Evictions {
    /// Admits session `session` (ids grow with every connection). `generation` is the
    /// ticket's, or `None` for standalone viewers (no broker, no tickets), who share
    /// the desktop. A ticket of a newer generation is the broker's word that the desktop
    /// changed hands: earlier sessions end. A ticketed session also takes over the
    /// desktop from every earlier connection.
    pub fn admit(
        &mut self,
        session: u64,
        generation: Option<u64>,
    ) -> Result<Admission, StaleGeneration> {
        let Some(generation) = generation else {
            return Ok(Admission {
                session,
                generation: self.generation,
                all: self.all,
                exclusive: false,
            });
        };
        if generation < self.generation {
            return Err(StaleGeneration);
        }
        self.generation = generation;
        self.newest = self.newest.max(session);
        Ok(Admission {
            session,
            generation,
            all: self.all,
            exclusive: true,
        })
    }

    /// The broker says the desktop is now at `generation` (a log-off or reassignment).
    /// Returns whether that ended anything (the generation moved forward).
    pub fn revoke_before(&mut self, generation: u64) -> bool {
        let moved = generation > self.generation;
        self.generation = self.generation.max(generation);
        moved
    }

    /// Whether, and why, this state ends a session admitted with `a`.
    pub fn evicts(&self, a: &Admission) -> Option<Eviction> {
        if self.all > a.all {
            Some(Eviction::Stopped)
        } else if self.generation > a.generation {
            Some(Eviction::Revoked)
        } else if a.exclusive && self.newest > a.session {
            Some(Eviction::TakenOver)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_generation_ends_older_sessions_and_refuses_their_tickets() {
        let mut e = Evictions::default();
        let alice = e.admit(1, Some(4)).unwrap();
        assert_eq!(e.evicts(&alice), None);
        // Bob's ticket for the reassigned desktop.
        let bob = e.admit(2, Some(5)).unwrap();
        assert_eq!(e.evicts(&alice), Some(Eviction::Revoked));
        assert_eq!(e.evicts(&bob), None);
        // Alice's stale ticket, still inside its lifetime.
        assert_eq!(e.admit(3, Some(4)), Err(StaleGeneration));
        assert_eq!(e.evicts(&bob), None, "a refused ticket changes nothing");
    }

    #[test]
    fn a_log_off_revokes_before_anyone_else_connects() {
        let mut e = Evictions::default();
        let alice = e.admit(1, Some(7)).unwrap();
        assert!(e.revoke_before(8));
        assert_eq!(e.evicts(&alice), Some(Eviction::Revoked));
        assert_eq!(e.admit(2, Some(7)), Err(StaleGeneration));
        assert!(!e.revoke_before(3), "an old revocation does not go back");
        assert_eq!(e.generation, 8);
    }

    #[test]
    fn a_second_connection_of_the_same_assignment_takes_over() {
        let mut e = Evictions::default();
        let first = e.admit(10, Some(2)).unwrap();
        let second = e.admit(11, Some(2)).unwrap();
        assert_eq!(e.evicts(&first), Some(Eviction::TakenOver));
        assert_eq!(e.evicts(&second), None);
    }

    #[test]
    fn standalone_viewers_share_and_a_stop_ends_everyone() {
        let mut e = Evictions::default();
        let a = e.admit(1, None).unwrap();
        let b = e.admit(2, None).unwrap();
        assert_eq!((e.evicts(&a), e.evicts(&b)), (None, None));
        e.all += 1;
        assert_eq!(e.evicts(&a), Some(Eviction::Stopped));
        let c = e.admit(3, None).unwrap();
        assert_eq!(e.evicts(&c), None, "later sessions are not affected");
    }
}
