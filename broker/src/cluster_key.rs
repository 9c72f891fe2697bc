//! The cluster key: 32 random bytes every broker of a cluster is given in a file
//! (64 hex digits), which seals the secrets they share through the database. The
//! database alone never reveals them; a wrong key, or a sealed value moved to another
//! name, fails to open with a clear error.

use std::path::Path;

use anyhow::{bail, Context};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

pub struct ClusterKey(LessSafeKey);

impl ClusterKey {
    /// Reads the key from `path` (64 hex digits; surrounding white space ignored).
    pub fn read(path: &Path) -> anyhow::Result<ClusterKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the cluster key {}", path.display()))?;
        Self::from_hex(text.trim())
            .with_context(|| format!("the cluster key {} is not usable", path.display()))
    }

    fn from_hex(text: &str) -> anyhow::Result<ClusterKey> {
        let bytes = hex::decode(text).context("not hex")?;
        if bytes.len() != 32 {
            bail!("it holds {} bytes, not 32 (64 hex digits)", bytes.len());
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| anyhow::anyhow!("not a ChaCha20-Poly1305 key"))?;
        Ok(ClusterKey(LessSafeKey::new(key)))
    }

    /// Writes a new random key to `path` (owner-only; an existing file is left alone
    /// and is an error).
    pub fn create(path: &Path) -> anyhow::Result<()> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?
            .write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
        Ok(())
    }

    /// Seals `plain` as the secret called `name` (which it is bound to): hex of
    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, name: &str, plain: &[u8]) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(hex::encode(out))
    }

    /// Opens what [`ClusterKey::seal`] made of the secret `name`.
    pub fn open(&self, name: &str, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = hex::decode(sealed).with_context(|| format!("secret {name} is not hex"))?;
        if bytes.len() < NONCE_LEN {
            bail!("secret {name} is truncated");
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("secret {name} is truncated"))?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| {
                anyhow::anyhow!(
                    "secret {name} in the database does not open with this cluster key \
                     (every broker of a cluster needs the same key file)"
                )
            })?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        ClusterKey::create(&a).unwrap();
        ClusterKey::create(&b).unwrap();
        assert!(ClusterKey::create(&a).is_err(), "an existing key is kept");
        let (ka, kb) = (ClusterKey::read(&a).unwrap(), ClusterKey::read(&b).unwrap());
        let sealed = ka.seal("ticket-key", b"secret bytes").unwrap();
        assert_eq!(ka.open("ticket-key", &sealed).unwrap(), b"secret bytes");
        let wrong_key = kb.open("ticket-key", &sealed).unwrap_err().to_string();
        assert!(wrong_key.contains("same key file"), "{wrong_key}");
        assert!(ka.open("join-token", &sealed).is_err(), "bound to its name");
        assert!(ka.open("ticket-key", &sealed[..20]).is_err());
        assert!(ka.open("ticket-key", "zz").is_err());
        let mut flipped = hex::decode(&sealed).unwrap();
        flipped[20] ^= 1;
        assert!(ka.open("ticket-key", &hex::encode(flipped)).is_err());
    }

    #[test]
    fn a_bad_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "abcd\n").unwrap();
        let err = format!("{:#}", ClusterKey::read(&path).err().unwrap());
        assert!(err.contains("2 bytes, not 32"), "{err}");
        std::fs::write(&path, "not hex at all").unwrap();
        assert!(ClusterKey::read(&path).is_err());
        assert!(ClusterKey::read(&dir.path().join("missing")).is_err());
    }
}
