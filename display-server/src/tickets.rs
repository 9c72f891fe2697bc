//! Ticket checks at handshake: the broker's signature, lifetime, desktop, and a replay
//! guard that accepts each ticket nonce once.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use oriel_protocol::ticket::{verify_ticket, TicketClaims, TicketError};

use crate::desktop::lock;

/// Whether and how clients must prove the broker sent them.
pub struct TicketGate {
    required: bool,
    key: RwLock<Option<ed25519_dalek::VerifyingKey>>,
    /// Nonce → expiry of tickets already used. Only validly signed tickets get here,
    /// and each lives at most a minute, so the map stays small.
    used: Mutex<HashMap<[u8; 16], u64>>,
}

impl TicketGate {
    /// `required = false` is the standalone mode (no broker): any client is accepted.
    pub fn new(required: bool) -> Self {
        Self {
            required,
            key: RwLock::new(None),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// The broker's public key, learned when this server registered.
    pub fn set_key(&self, key: ed25519_dalek::VerifyingKey) {
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// Accepts `ticket` for `desktop` once; `Ok(None)` in standalone mode.
    pub fn admit(
        &self,
        ticket: &[u8],
        desktop: &str,
        now_unix: u64,
    ) -> Result<Option<TicketClaims>, TicketError> {
        if !self.required {
            return Ok(None);
        }
        let key = (*self.key.read().unwrap_or_else(|e| e.into_inner()))
            .ok_or(TicketError::BadSignature)?;
        let claims = verify_ticket(ticket, &key, desktop, now_unix)?;
        let mut used = lock(&self.used);
        used.retain(|_, expires| *expires + oriel_protocol::ticket::CLOCK_SKEW_S >= now_unix);
        if used.insert(claims.nonce, claims.expires_unix).is_some() {
            return Err(TicketError::Replayed);
        }
        Ok(Some(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use oriel_protocol::ticket::sign_ticket;

    #[test]
    fn each_ticket_is_admitted_once() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let gate = TicketGate::new(true);
        let claims = TicketClaims {
            user: "u".into(),
            desktop: "d".into(),
            issued_unix: 100,
            expires_unix: 130,
            nonce: [1; 16],
            generation: 0,
        };
        let t = sign_ticket(&claims, &key);
        assert_eq!(
            gate.admit(&t, "d", 101),
            Err(TicketError::BadSignature),
            "no key yet"
        );
        gate.set_key(key.verifying_key());
        assert_eq!(gate.admit(&t, "d", 101), Ok(Some(claims)));
        assert_eq!(gate.admit(&t, "d", 102), Err(TicketError::Replayed));
        assert!(TicketGate::new(false).admit(&[], "d", 0).unwrap().is_none());
    }
}
