//! TLS 1.3 for QUIC on the ring provider: a self-signed server identity kept in the data
//! directory, and a client verifier that pins the server certificate's SHA-256.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::TransportError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(cert_der: &[u8]) -> Self {
        Self(Sha256::digest(cert_der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;

    /// Accepts 64 hex digits, optionally with a `sha256:` prefix and `:` separators.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out)
            .map_err(|_| format!("'{s}' is not a SHA-256 fingerprint (expected 64 hex digits)"))?;
        Ok(Self(out))
    }
}

/// A server certificate and its private key.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads `cert.der`/`key.der` from `dir`, or creates a self-signed pair there on first
    /// start (the key readable by the owner only, in a directory only its owner enters).
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Self, TransportError> {
        let cert_path = dir.join("cert.der");
        let key_path = dir.join("key.der");
        crate::files::create_private_dir(dir)?;
        if cert_path.exists() && key_path.exists() {
            let cert = std::fs::read(&cert_path)?;
            let key = std::fs::read(&key_path)?;
            return Ok(Self {
                cert: CertificateDer::from(cert),
                key: PrivatePkcs8KeyDer::from(key),
            });
        }
        let identity = Self::generate(names)?;
        crate::files::write_private(&key_path, identity.key.secret_pkcs8_der())?;
        std::fs::write(&cert_path, identity.cert.as_ref())?;
        tracing::info!(path = %cert_path.display(), "created a self-signed certificate");
        Ok(identity)
    }

    /// An identity from its certificate and PKCS#8 private key (DER), as
    /// [`Identity::key_der`] gives them.
    pub fn from_der(cert: Vec<u8>, key: Vec<u8>) -> Self {
        Self {
            cert: CertificateDer::from(cert),
            key: PrivatePkcs8KeyDer::from(key),
        }
    }

    /// The private key (PKCS#8 DER), to be kept as secret as the key file.
    pub fn key_der(&self) -> &[u8] {
        self.key.secret_pkcs8_der()
    }

    /// A fresh self-signed identity kept in memory only.
    pub fn generate(names: &[String]) -> Result<Self, TransportError> {
        let mut names = names.to_vec();
        if names.is_empty() {
            names.push("localhost".into());
        }
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        Ok(Self {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()),
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// A TLS 1.3 server configuration with this identity and the given ALPN protocols.
    pub fn tls_server_config(
        &self,
        alpn: &[&[u8]],
    ) -> Result<rustls::ServerConfig, TransportError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        tls.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Ok(tls)
    }

    /// A quinn server configuration speaking TLS 1.3 with the given ALPN.
    pub fn quic_server_config(&self, alpn: &[u8]) -> Result<quinn::ServerConfig, TransportError> {
        self.quic_server_config_for(&[alpn])
    }

    /// A server configuration that speaks each of `alpns` (the connection says which).
    pub fn quic_server_config_for(
        &self,
        alpns: &[&[u8]],
    ) -> Result<quinn::ServerConfig, TransportError> {
        let tls = self.tls_server_config(alpns)?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(Arc::new(crate::transport_config()));
        Ok(config)
    }
}

impl Identity {
    /// Like [`Identity::quic_server_config_for`], also asking clients for a certificate
    /// without requiring one: a client that presents one proves it holds its key, and
    /// the application pins it ([`peer_fingerprint`]); clients without one are served
    /// as before. Display servers that move desktops to each other pin both ways so.
    pub fn quic_server_config_asking_peers(
        &self,
        alpns: &[&[u8]],
    ) -> Result<quinn::ServerConfig, TransportError> {
        let provider = provider();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(AnyClientCert(Signatures(provider))))
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(Arc::new(crate::transport_config()));
        Ok(config)
    }
}

/// The SHA-256 of the certificate a QUIC peer presented, if it presented one.
pub fn peer_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|cert| Fingerprint::of(cert))
}

/// A TLS 1.3 client configuration that accepts exactly one server certificate.
pub fn pinned_tls_client_config(
    pin: Fingerprint,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TransportError> {
    pinned_tls_client_config_as(pin, alpn, None)
}

/// [`pinned_tls_client_config`], presenting `identity`'s certificate when the server
/// asks for one.
fn pinned_tls_client_config_as(
    pin: Fingerprint,
    alpn: &[&[u8]],
    identity: Option<&Identity>,
) -> Result<rustls::ClientConfig, TransportError> {
    let provider = provider();
    let pinned = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
            pin,
            signatures: Signatures(provider),
        }));
    let mut tls = match identity {
        Some(identity) => pinned.with_client_auth_cert(
            vec![identity.cert.clone()],
            PrivateKeyDer::Pkcs8(identity.key.clone_key()),
        )?,
        None => pinned.with_no_client_auth(),
    };
    tls.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(tls)
}

/// A quinn client configuration that accepts exactly one server certificate.
pub fn pinned_client_config(
    pin: Fingerprint,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TransportError> {
    pinned_client_config_as(pin, alpn, None)
}

/// [`pinned_client_config`] for a client that also proves it is `identity` (a display
/// server moving a desktop to another, which pins it in return).
pub fn pinned_client_config_as(
    pin: Fingerprint,
    alpn: &[u8],
    identity: Option<&Identity>,
) -> Result<quinn::ClientConfig, TransportError> {
    let tls = pinned_tls_client_config_as(pin, &[alpn], identity)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Certificate(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(crate::transport_config()));
    Ok(config)
}

/// Trusts the one certificate whose SHA-256 matches the pin (the broker hands the pin
/// out with each ticket), and still checks the handshake signatures made with its key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Fingerprint,
    signatures: Signatures,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of(end_entity);
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint {got} does not match the pinned {}",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// Takes whatever certificate a client presents, once the client has proven it holds
/// its key; the application decides whether it is the one it pins.
#[derive(Debug)]
struct AnyClientCert(Signatures);

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// The provider's checks of handshake signatures, which prove a peer holds the key of
/// the certificate it sent.
#[derive(Debug)]
struct Signatures(Arc<CryptoProvider>);

impl Signatures {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_parses_common_forms() {
        let fp = Fingerprint([0xab; 32]);
        let plain = fp.to_string();
        assert_eq!(plain.parse::<Fingerprint>().unwrap(), fp);
        let colons: Vec<String> = fp.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            format!("sha256:{}", colons.join(":"))
                .parse::<Fingerprint>()
                .unwrap(),
            fp
        );
        assert!("abc".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn identity_persists_in_data_dir() {
        let dir = std::env::temp_dir().join(format!("oriel-tls-{}", std::process::id()));
        let a = Identity::load_or_create(&dir, &[]).unwrap();
        let b = Identity::load_or_create(&dir, &[]).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
