//! The certificates a display server shows browsers. A page cannot pin a self-signed
//! certificate the way the native client does, but WebTransport's
//! `serverCertificateHashes` can: only for an ECDSA certificate valid for at most 14
//! days, so these are short-lived and rotate. The server keeps the one it presents and
//! the one that follows; the broker hands pages both hashes, so a page that got them
//! just before a rotation still connects.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{Fingerprint, TransportError};

/// The ALPN of HTTP/3, which WebTransport runs on.
pub const WEB_ALPN: &[u8] = b"h3";

/// How long a certificate is valid, from an hour before it was made (clocks differ a
/// little): browsers refuse more than 14 days in all.
pub const LIFETIME: Duration = Duration::from_secs(13 * 24 * 3600);
/// How old a certificate gets before the next one takes over: a page handed both hashes
/// connects for at least `LIFETIME - 2 * ROTATE_AFTER` after the handing.
pub const ROTATE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);
const BACKDATE: Duration = Duration::from_secs(3600);

struct Made {
    key: Arc<CertifiedKey>,
    fingerprint: Fingerprint,
    made: SystemTime,
}

/// The presented certificate and its successor.
pub struct WebCertificates {
    pair: RwLock<(Made, Made)>,
}

impl std::fmt::Debug for WebCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebCertificates({:?})", self.fingerprints())
    }
}

impl WebCertificates {
    /// Two fresh certificates, made now.
    pub fn new(names: &[String]) -> Result<Arc<Self>, TransportError> {
        let now = SystemTime::now();
        Ok(Arc::new(Self {
            pair: RwLock::new((make(names, now)?, make(names, now)?)),
        }))
    }

    /// The SHA-256 of the presented certificate and of the next one, in that order.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        let pair = self.pair.read().unwrap_or_else(|e| e.into_inner());
        vec![pair.0.fingerprint, pair.1.fingerprint]
    }

    /// Rotates when the presented certificate is `ROTATE_AFTER` old: the next one takes
    /// over and a new one follows. True when it rotated.
    pub fn rotate_if_due(&self, names: &[String], now: SystemTime) -> Result<bool, TransportError> {
        let due = {
            let pair = self.pair.read().unwrap_or_else(|e| e.into_inner());
            now.duration_since(pair.0.made).unwrap_or_default() >= ROTATE_AFTER
        };
        if !due {
            return Ok(false);
        }
        let fresh = make(names, now)?;
        let mut pair = self.pair.write().unwrap_or_else(|e| e.into_inner());
        let next = std::mem::replace(&mut pair.1, fresh);
        pair.0 = next;
        Ok(true)
    }

    /// A quinn server configuration for WebTransport (HTTP/3) presenting these.
    pub fn quic_server_config(self: &Arc<Self>) -> Result<quinn::ServerConfig, TransportError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Presented(self.clone())));
        tls.alpn_protocols = vec![WEB_ALPN.to_vec()];
        tls.max_early_data_size = u32::MAX;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(Arc::new(crate::transport_config()));
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes an ECDSA P-256 certificate valid from an hour before `now` for `LIFETIME`.
fn make(names: &[String], now: SystemTime) -> Result<Made, TransportError> {
    let bad = |e: rcgen::Error| TransportError::Certificate(e.to_string());
    let mut names = names.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(bad)?;
    let mut params = rcgen::CertificateParams::new(names).map_err(bad)?;
    let from = now.checked_sub(BACKDATE).unwrap_or(now);
    params.not_before = time::OffsetDateTime::from(from);
    params.not_after = time::OffsetDateTime::from(from + LIFETIME);
    let cert = params.self_signed(&key_pair).map_err(bad)?;
    let der: CertificateDer<'static> = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(TransportError::Tls)?;
    Ok(Made {
        fingerprint: Fingerprint::of(&der),
        key: Arc::new(CertifiedKey::new(vec![der], signing)),
        made: now,
    })
}

/// Presents the current certificate to every browser.
#[derive(Debug)]
struct Presented(Arc<WebCertificates>);

impl ResolvesServerCert for Presented {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let pair = self.0.pair.read().unwrap_or_else(|e| e.into_inner());
        Some(pair.0.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_next_certificate_takes_over_when_due() {
        let names = vec!["localhost".to_string()];
        let certs = WebCertificates::new(&names).unwrap();
        let [now, next] = certs.fingerprints()[..] else {
            panic!("two fingerprints")
        };
        assert_ne!(now, next);
        let made = certs.pair.read().unwrap().0.made;
        assert!(!certs
            .rotate_if_due(&names, made + ROTATE_AFTER / 2)
            .unwrap());
        assert_eq!(certs.fingerprints(), vec![now, next]);
        assert!(certs.rotate_if_due(&names, made + ROTATE_AFTER).unwrap());
        let after = certs.fingerprints();
        assert_eq!(after[0], next, "the announced next certificate takes over");
        assert_ne!(after[1], next);
    }
}
