//! QUIC plumbing shared by the display server and the client: TLS identities and
//! certificate pinning, transport settings, and framed message streams over quinn.
//! The protocol itself stays sans-IO in `oriel-protocol`; this crate only moves bytes.

#[cfg(feature = "api-client")]
pub mod api_client;
pub mod congestion;
pub mod files;
pub mod framed;
#[cfg(feature = "test-util")]
pub mod openmetrics_test;
pub mod pump;
pub mod tls;
pub mod web_identity;

pub use framed::{send_message, FramedRecv};
pub use tls::{Fingerprint, Identity};

/// Application error codes used when closing a QUIC connection.
pub mod close {
    use quinn::VarInt;
    /// The session ended normally.
    pub const NORMAL: VarInt = VarInt::from_u32(0);
    /// The peer sent something malformed or oversized.
    pub const PROTOCOL_ERROR: VarInt = VarInt::from_u32(1);
    /// The handshake was refused (see the `Reject` message).
    pub const REJECTED: VarInt = VarInt::from_u32(2);
    /// The server is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(3);
    /// The desktop was stopped, reset or destroyed.
    pub const DESKTOP_GONE: VarInt = VarInt::from_u32(4);
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Wire(#[from] oriel_protocol::wire::WireError),
    #[error("reading stream: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("writing stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Wall-clock microseconds since the Unix epoch: frames carry their capture time in
/// this clock so a client on the same machine can measure capture → decoded latency.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Transport settings for both ends: keep-alives so idle desktops stay connected through
/// NATs, and an idle timeout so a dead path is noticed within seconds (the client then
/// reconnects; a user looking at a frozen screen should not wait half a minute).
/// Congestion control leaves random loss to loss recovery ([`congestion`]).
pub fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(std::time::Duration::from_secs(2)));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(std::time::Duration::from_secs(10))
            .expect("10 s is a valid idle timeout"),
    ));
    t.max_concurrent_uni_streams(8u32.into());
    t.max_concurrent_bidi_streams(4u32.into());
    t.congestion_controller_factory(std::sync::Arc::new(
        congestion::LossTolerantConfig::default(),
    ));
    t
}
