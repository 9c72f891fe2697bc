//! Ticket checks at handshake: the broker's signature, lifetime, desktop, and a replay
//! guard that accepts each ticket nonce once.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use oriel_protocol::migration_ticket::{verify_migration_ticket, MigrationClaims};
use oriel_protocol::ticket::{verify_ticket, TicketClaims, TicketError};

use crate::desktop::lock;

/// Whether and how clients must prove the broker sent them.
pub struct TicketGate {
    required: bool,
    key: RwLock<Option<ed25519_dalek::VerifyingKey>>,
    /// This host's id at the broker: migration tickets name it.
    host_id: RwLock<Option<String>>,
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
            host_id: RwLock::new(None),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// The broker's public key, learned when this server registered.
    pub fn set_key(&self, key: ed25519_dalek::VerifyingKey) {
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    /// This host's id, learned when this server registered.
    pub fn set_host_id(&self, id: &str) {
        *self.host_id.write().unwrap_or_else(|e| e.into_inner()) = Some(id.to_string());
    }

    /// Accepts a migration ticket for this host once. Only a host registered with a
    /// broker takes migrations.
    pub fn admit_migration(
        &self,
        ticket: &[u8],
        now_unix: u64,
    ) -> Result<MigrationClaims, TicketError> {
        let key = (*self.key.read().unwrap_or_else(|e| e.into_inner()))
            .ok_or(TicketError::BadSignature)?;
        let host = self
            .host_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(TicketError::BadSignature)?;
        let claims = verify_migration_ticket(ticket, &key, &host, now_unix)?;
        self.use_nonce(claims.nonce, claims.expires_unix, now_unix)?;
        Ok(claims)
    }

    fn use_nonce(&self, nonce: [u8; 16], expires: u64, now_unix: u64) -> Result<(), TicketError> {
        let mut used = lock(&self.used);
        used.retain(|_, expires| *expires + oriel_protocol::ticket::CLOCK_SKEW_S >= now_unix);
        if used.insert(nonce, expires).is_some() {
            return Err(TicketError::Replayed);
        }
        Ok(())
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
        self.use_nonce(claims.nonce, claims.expires_unix, now_unix)?;
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

    #[test]
    fn each_migration_ticket_is_admitted_once_and_only_by_its_host() {
        use oriel_protocol::desktop_spec::DesktopSpec;
        use oriel_protocol::migration_ticket::{sign_migration_ticket, MigrationClaims};
        let key = SigningKey::from_bytes(&[4; 32]);
        let claims = MigrationClaims {
            desktop: "d".into(),
            spec: DesktopSpec::parse("kvm", r#"{"image":"tiny"}"#).unwrap(),
            generation: 1,
            to_host: "host-b".into(),
            from_fingerprint: [3; 32],
            issued_unix: 100,
            expires_unix: 120,
            nonce: [2; 16],
        };
        let t = sign_migration_ticket(&claims, &key);
        let gate = TicketGate::new(true);
        gate.set_key(key.verifying_key());
        assert!(gate.admit_migration(&t, 101).is_err(), "no host id yet");
        gate.set_host_id("host-a");
        assert!(gate.admit_migration(&t, 101).is_err(), "another host's");
        gate.set_host_id("host-b");
        assert_eq!(gate.admit_migration(&t, 101), Ok(claims));
        assert_eq!(gate.admit_migration(&t, 102), Err(TicketError::Replayed));
        // A migration ticket is no connect ticket.
        assert!(gate.admit(&t, "d", 103).is_err());
    }
}
