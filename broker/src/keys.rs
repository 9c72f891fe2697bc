//! The broker's secrets in its data directory: the Ed25519 key that signs connect
//! tickets, the TLS identity for HTTPS and the host link, and the join token hosts
//! present the first time. All are made on first start and kept (owner-only files).
//! Brokers of a cluster share one set through the database, sealed with the cluster
//! key: the first broker's become everyone's.

use std::path::Path;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use ed25519_dalek::SigningKey;

use anyhow::Context;

use crate::cluster_key::ClusterKey;
use crate::password::new_token;
use crate::store::Store;

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

/// The sealed secret that holds a cluster's keys.
const SHARED_KEYS: &str = "broker-keys";

#[derive(serde::Serialize, serde::Deserialize)]
struct SharedKeys {
    ticket_seed: String,
    cert: String,
    key: String,
    join_token: String,
}

impl BrokerKeys {
    /// The cluster's keys from `store` (sealed with `key`); this broker's own become
    /// them if the cluster has none yet. The data directory's join-token file is
    /// rewritten to the cluster's, since hosts are told to read it there.
    pub async fn shared(
        self,
        store: &Store,
        key: &ClusterKey,
        dir: &Path,
    ) -> anyhow::Result<BrokerKeys> {
        let mine = SharedKeys {
            ticket_seed: hex::encode(self.ticket_key.to_bytes()),
            cert: hex::encode(self.identity.cert.as_ref()),
            key: hex::encode(self.identity.key_der()),
            join_token: self.join_token.clone(),
        };
        let sealed = key.seal(SHARED_KEYS, &serde_json::to_vec(&mine)?)?;
        let stored = store.offer_cluster_secret(SHARED_KEYS, &sealed).await?;
        let theirs: SharedKeys = serde_json::from_slice(&key.open(SHARED_KEYS, &stored)?)
            .context("the cluster's keys in the database are corrupt")?;
        let seed: [u8; 32] = hex::decode(&theirs.ticket_seed)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("the cluster's ticket key is corrupt"))?;
        let keys = BrokerKeys {
            ticket_key: SigningKey::from_bytes(&seed),
            identity: oriel_transport::Identity::from_der(
                hex::decode(&theirs.cert)?,
                hex::decode(&theirs.key)?,
            ),
            join_token: theirs.join_token,
        };
        if keys.join_token != self.join_token {
            oriel_transport::files::write_private(
                &dir.join("join-token"),
                keys.join_token.as_bytes(),
            )?;
        }
        Ok(keys)
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

/// This broker's name among the brokers of a cluster: made once per data directory
/// (`broker-id`), so that a broker restarted on its directory is itself again (and
/// takes its own reconcile lease back at once).
pub fn broker_id(dir: &Path) -> anyhow::Result<String> {
    let id = load_or_create_secret(&dir.join("broker-id"), || {
        let mut bytes = [0u8; 4];
        OsRng.fill_bytes(&mut bytes);
        format!("broker-{}", hex::encode(bytes)).into_bytes()
    })?;
    let id = String::from_utf8(id)?.trim().to_string();
    if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_control()) {
        anyhow::bail!("{} is corrupt", dir.join("broker-id").display());
    }
    Ok(id)
}

/// A random 16-byte ticket nonce.
pub fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    OsRng.fill_bytes(&mut n);
    n
}
