//! Migration tickets: the broker's word (Ed25519, the connect tickets' key) that
//! desktop `desktop` may move to host `to_host`. The source display server presents it
//! on the host-to-host connection; the destination checks signature, lifetime and
//! that it is the host named, accepts each nonce once, and builds the desktop from the
//! spec and generation in it.
//!
//! Layout as for connect tickets (bincode of [`MigrationClaims`], then the signature),
//! but the signature covers [`DOMAIN`] and the claims, so neither kind of ticket passes
//! for the other.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::desktop_spec::DesktopSpec;
use crate::ticket::{check_lifetime, open_signed, TicketError};

const DOMAIN: &[u8] = b"oriel migration ticket\0";
/// A migration ticket carries the desktop's spec, so it may be larger than a connect
/// ticket.
pub const MAX_MIGRATION_TICKET_LEN: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationClaims {
    /// The desktop's name on both hosts.
    pub desktop: String,
    /// What the desktop is (the destination checks its VM against it).
    pub spec: DesktopSpec,
    /// The desktop's assignment generation: its tickets stay valid on the destination.
    pub generation: u64,
    /// The destination host's id.
    pub to_host: String,
    /// SHA-256 of the source host's certificate: the destination takes the VM only
    /// over a connection that proves it holds that certificate's key.
    pub from_fingerprint: [u8; 32],
    pub issued_unix: u64,
    pub expires_unix: u64,
    /// Random; a destination accepts each nonce once.
    pub nonce: [u8; 16],
}

pub fn sign_migration_ticket(claims: &MigrationClaims, key: &SigningKey) -> Vec<u8> {
    let mut bytes = bincode::serde::encode_to_vec(claims, bincode::config::standard())
        .expect("migration claims always encode");
    let signature = key.sign(&[DOMAIN, &bytes].concat());
    bytes.extend_from_slice(&signature.to_bytes());
    bytes
}

/// Checks signature, lifetime at `now_unix` and that the ticket is for host `host`.
pub fn verify_migration_ticket(
    ticket: &[u8],
    key: &VerifyingKey,
    host: &str,
    now_unix: u64,
) -> Result<MigrationClaims, TicketError> {
    let body = open_signed(ticket, key, DOMAIN, MAX_MIGRATION_TICKET_LEN)?;
    let claims: MigrationClaims =
        crate::wire::decode_body(body).map_err(|_| TicketError::Malformed)?;
    check_lifetime(claims.issued_unix, claims.expires_unix, now_unix)?;
    if claims.to_host != host {
        return Err(TicketError::WrongDesktop(format!(
            "{} on host {}",
            claims.desktop, claims.to_host
        )));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::{sign_ticket, verify_ticket, TicketClaims};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn claims() -> MigrationClaims {
        MigrationClaims {
            desktop: "pool-1".into(),
            spec: DesktopSpec::parse("kvm", r#"{"image": "tiny"}"#).unwrap(),
            generation: 2,
            to_host: "host-b".into(),
            from_fingerprint: [9; 32],
            issued_unix: 1000,
            expires_unix: 1030,
            nonce: [5; 16],
        }
    }

    #[test]
    fn a_migration_ticket_verifies_only_for_its_host_and_time() {
        let t = sign_migration_ticket(&claims(), &key(1));
        let pk = key(1).verifying_key();
        assert_eq!(
            verify_migration_ticket(&t, &pk, "host-b", 1010),
            Ok(claims())
        );
        assert!(verify_migration_ticket(&t, &pk, "host-a", 1010).is_err());
        assert_eq!(
            verify_migration_ticket(&t, &pk, "host-b", 2000),
            Err(TicketError::Expired)
        );
        assert_eq!(
            verify_migration_ticket(&t, &key(2).verifying_key(), "host-b", 1010),
            Err(TicketError::BadSignature)
        );
        let mut forged = t.clone();
        forged[3] ^= 1;
        assert!(verify_migration_ticket(&forged, &pk, "host-b", 1010).is_err());
    }

    #[test]
    fn connect_and_migration_tickets_do_not_pass_for_each_other() {
        let connect = TicketClaims {
            user: "alice".into(),
            desktop: "pool-1".into(),
            issued_unix: 1000,
            expires_unix: 1030,
            nonce: [9; 16],
            generation: 3,
        };
        let pk = key(1).verifying_key();
        let c = sign_ticket(&connect, &key(1));
        assert!(verify_migration_ticket(&c, &pk, "host-b", 1010).is_err());
        let m = sign_migration_ticket(&claims(), &key(1));
        assert!(verify_ticket(&m, &pk, "pool-1", 1010).is_err());
    }
}
