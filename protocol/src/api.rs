//! JSON bodies of the broker's HTTPS API (`/api/v1`), shared by broker and client.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Bearer token for the `Authorization` header.
    pub token: String,
    pub expires_unix: u64,
    pub user: String,
    pub role: String,
}

/// A pool the user is entitled to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolView {
    pub name: String,
    /// `dedicated` or `floating`.
    pub assignment: String,
    /// The user's desktop in this pool, if one is assigned.
    pub desktop: Option<String>,
    /// Ready desktops waiting for a user.
    pub ready: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    pub pool: String,
}

/// Everything a client needs to reach its desktop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectResponse {
    pub desktop: String,
    /// Display server QUIC address, host:port.
    pub address: String,
    /// SHA-256 of the display server certificate, hex.
    pub fingerprint: String,
    /// Signed single-use ticket, hex; goes into `Hello.ticket`.
    pub ticket: String,
    pub expires_unix: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoffRequest {
    pub pool: String,
}

/// Body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Lower-case hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string; `None` when it is not hex.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 1 << 16 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("é1"), None);
    }
}
