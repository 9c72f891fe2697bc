//! The broker's secrets in its data directory: the Ed25519 key that signs connect
//! tickets, the TLS identity for HTTPS and the host link, and the join token hosts
//! present the first time. All are made on first start and kept (owner-only files).

use std::path::Path;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use ed25519_dalek::SigningKey;

use crate::password::new_token;

pub struct BrokerKeys {
    pub ticket_key: SigningKey,
    pub identity: oriel_transport::Identity,
    pub join_token: String,
}

impl BrokerKeys {
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        oriel_transport::files::create_private_dir(dir)?;
        let seed = load_or_create_secret(&dir.join("ticket-key"), || {
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            seed.to_vec()
        })?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is corrupt", dir.join("ticket-key").display()))?;
        let join_token =
            load_or_create_secret(&dir.join("join-token"), || new_token().into_bytes())?;
        Ok(Self {
            ticket_key: SigningKey::from_bytes(&seed),
            identity: oriel_transport::Identity::load_or_create(dir, &["localhost".into()])?,
            join_token: String::from_utf8(join_token)?.trim().to_string(),
        })
    }
}

fn load_or_create_secret(path: &Path, make: impl FnOnce() -> Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if let Ok(bytes) = std::fs::read(path) {
        return Ok(bytes);
    }
    let bytes = make();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(&bytes)?;
    Ok(bytes)
}

/// A random 16-byte ticket nonce.
pub fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    OsRng.fill_bytes(&mut n);
    n
}
