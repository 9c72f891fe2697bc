//! Tickets from the network: arbitrary bytes in `Hello.ticket` are refused with an error
//! (never a panic), and a ticket that verifies names the desktop asked for within its
//! lifetime. The seeds are real tickets signed with the key below.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use oriel_protocol::ticket::{verify_ticket, MAX_TICKET_LIFETIME_S};

/// The key the seed tickets are signed with (fuzz/seeds, made by the seeds test).
const SEED_KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&SEED_KEY).verifying_key();
    let now = 1_800_000_000;
    if let Ok(claims) = verify_ticket(data, &key, "desk-1", now) {
        assert_eq!(claims.desktop, "desk-1");
        assert!(claims.expires_unix - claims.issued_unix <= MAX_TICKET_LIFETIME_S);
    }
});
