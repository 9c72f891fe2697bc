//! The local administrator: whoever can read the broker's data directory (its owner,
//! root) administers the broker without a password, as with a database's local socket.
//! At every start the broker writes a fresh bearer token, with its API address and
//! certificate fingerprint, to `local-admin.json` (mode 0600); `oriel-broker admin`
//! without `--user` reads it. No password check or login rate limit applies, so no one
//! can lock the operator out from the network, and whoever can read the file could
//! read the database and keys anyway.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::password::{new_token, token_hash};

/// The file's name in the data directory.
pub const FILE: &str = "local-admin.json";

/// Who the audit log names for actions of the local administrator.
pub const ACTOR: &str = "(local admin)";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalAdmin {
    /// The API's base URL, e.g. `https://127.0.0.1:8443`.
    pub url: String,
    /// SHA-256 of the broker's certificate.
    pub fingerprint: String,
    pub token: String,
}

/// A new token for this run of the broker; [`write`] it once the API listens.
pub fn new_local_token() -> (String, String) {
    let token = new_token();
    let hash = token_hash(&token);
    (token, hash)
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Writes the file (owner-only).
pub fn write(data_dir: &Path, admin: &LocalAdmin) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(admin).map_err(std::io::Error::other)?;
    oriel_transport::files::write_private(&path(data_dir), text.as_bytes())
}

/// Reads the file of a running broker.
pub fn read(data_dir: &Path) -> anyhow::Result<LocalAdmin> {
    let file = path(data_dir);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {} ({e}): run this on the broker's machine as the user it runs as, \
             with --data-dir if the broker uses another, or log in with --user NAME",
            file.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}
