//! Connect tickets: short-lived, single-use, signed by the broker (Ed25519).
//!
//! Layout: bincode of [`TicketClaims`], then the 64-byte signature over those bytes.
//! The display server verifies signature, lifetime and desktop with the broker's public
//! key; refusing a nonce it has seen before (replay) is the server's job, since only
//! it knows which tickets were used. So is refusing a ticket of an earlier assignment
//! generation: the broker bumps a desktop's generation at every log-off and
//! reassignment and tells its host, which then refuses tickets issued before.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Longest lifetime a ticket may have.
pub const MAX_TICKET_LIFETIME_S: u64 = 60;
/// Clock difference tolerated between broker and display server.
pub const CLOCK_SKEW_S: u64 = 5;
const SIGNATURE_LEN: usize = 64;
const MAX_TICKET_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// Broker's user id.
    pub user: String,
    /// Desktop name on the display server.
    pub desktop: String,
    pub issued_unix: u64,
    pub expires_unix: u64,
    /// Random; a display server accepts each nonce once.
    pub nonce: [u8; 16],
    /// The desktop's assignment generation when the ticket was issued: a ticket of an
    /// older generation than the host knows (a log-off or reassignment since) is dead.
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("no ticket presented")]
    Missing,
    #[error("ticket is malformed")]
    Malformed,
    #[error("ticket signature is not valid")]
    BadSignature,
    #[error("ticket expired")]
    Expired,
    #[error("ticket is not valid yet")]
    NotYetValid,
    #[error("ticket lifetime exceeds {MAX_TICKET_LIFETIME_S} s")]
    TooLong,
    #[error("ticket is for desktop '{0}', not this one")]
    WrongDesktop(String),
    #[error("ticket was already used")]
    Replayed,
    #[error("ticket was revoked: the desktop was logged off or reassigned since it was issued")]
    Revoked,
}

/// Signs `claims`; the result goes into `Hello.ticket`.
pub fn sign_ticket(claims: &TicketClaims, key: &SigningKey) -> Vec<u8> {
    let mut bytes = bincode::serde::encode_to_vec(claims, bincode::config::standard())
        .expect("ticket claims always encode");
    let signature = key.sign(&bytes);
    bytes.extend_from_slice(&signature.to_bytes());
    bytes
}

/// Checks signature and lifetime at `now_unix` and that the ticket names `desktop`.
pub fn verify_ticket(
    ticket: &[u8],
    key: &VerifyingKey,
    desktop: &str,
    now_unix: u64,
) -> Result<TicketClaims, TicketError> {
    let body = open_signed(ticket, key, b"", MAX_TICKET_LEN)?;
    let claims: TicketClaims =
        crate::wire::decode_body(body).map_err(|_| TicketError::Malformed)?;
    check_lifetime(claims.issued_unix, claims.expires_unix, now_unix)?;
    if claims.desktop != desktop {
        return Err(TicketError::WrongDesktop(claims.desktop));
    }
    Ok(claims)
}

/// The claims' bytes of a signed ticket (at most `max_len` bytes long) whose signature
/// by `key` over `domain` and those bytes holds.
pub(crate) fn open_signed<'a>(
    ticket: &'a [u8],
    key: &VerifyingKey,
    domain: &[u8],
    max_len: usize,
) -> Result<&'a [u8], TicketError> {
    if ticket.is_empty() {
        return Err(TicketError::Missing);
    }
    if ticket.len() <= SIGNATURE_LEN || ticket.len() > max_len {
        return Err(TicketError::Malformed);
    }
    let (body, sig) = ticket.split_at(ticket.len() - SIGNATURE_LEN);
    let sig: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| TicketError::Malformed)?;
    key.verify(&[domain, body].concat(), &Signature::from_bytes(&sig))
        .map_err(|_| TicketError::BadSignature)?;
    Ok(body)
}

/// A ticket issued at `issued` to expire at `expires` is good at `now` (all Unix s).
pub(crate) fn check_lifetime(issued: u64, expires: u64, now: u64) -> Result<(), TicketError> {
    if expires < issued || expires - issued > MAX_TICKET_LIFETIME_S {
        return Err(TicketError::TooLong);
    }
    if now > expires + CLOCK_SKEW_S {
        return Err(TicketError::Expired);
    }
    if now + CLOCK_SKEW_S < issued {
        return Err(TicketError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn claims() -> TicketClaims {
        TicketClaims {
            user: "alice".into(),
            desktop: "pool-1".into(),
            issued_unix: 1000,
            expires_unix: 1030,
            nonce: [9; 16],
            generation: 3,
        }
    }

    #[test]
    fn valid_ticket_verifies() {
        let t = sign_ticket(&claims(), &key(1));
        assert_eq!(
            verify_ticket(&t, &key(1).verifying_key(), "pool-1", 1010),
            Ok(claims())
        );
    }

    #[test]
    fn forged_expired_wrong_desktop_and_garbage_are_refused() {
        let t = sign_ticket(&claims(), &key(1));
        let vk = key(1).verifying_key();
        assert_eq!(
            verify_ticket(&t, &key(2).verifying_key(), "pool-1", 1010),
            Err(TicketError::BadSignature)
        );
        assert_eq!(
            verify_ticket(&t, &vk, "pool-1", 1036),
            Err(TicketError::Expired)
        );
        assert_eq!(
            verify_ticket(&t, &vk, "pool-2", 1010),
            Err(TicketError::WrongDesktop("pool-1".into()))
        );
        let mut tampered = t.clone();
        tampered[2] ^= 1;
        assert_eq!(
            verify_ticket(&tampered, &vk, "pool-1", 1010),
            Err(TicketError::BadSignature)
        );
        assert_eq!(
            verify_ticket(&[], &vk, "pool-1", 1010),
            Err(TicketError::Missing)
        );
        assert_eq!(
            verify_ticket(&[1; 10], &vk, "pool-1", 1010),
            Err(TicketError::Malformed)
        );
    }

    #[test]
    fn lifetime_is_capped() {
        let mut c = claims();
        c.expires_unix = c.issued_unix + MAX_TICKET_LIFETIME_S + 1;
        let t = sign_ticket(&c, &key(1));
        assert_eq!(
            verify_ticket(&t, &key(1).verifying_key(), "pool-1", 1010),
            Err(TicketError::TooLong)
        );
    }
}
