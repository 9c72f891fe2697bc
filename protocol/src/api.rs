//! JSON bodies of the broker's HTTPS API (`/api/v1`), shared by broker and client.
//! With the `openapi` feature they describe themselves for the broker's OpenAPI document.

use serde::{Deserialize, Serialize};

/// What names of users, groups and pools look like: ASCII letters and digits, then also
/// `.`, `_`, `@`, `+` and `-`, 64 characters at most. The broker compares them
/// case-insensitively and refuses look-alikes of an existing name.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$";
/// The longest name.
pub const MAX_NAME: usize = 64;

/// Whether `name` matches [`NAME_PATTERN`].
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Any text: a name that does not exist is a wrong name or password.
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub user: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 1024))]
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// Bearer token for the `Authorization` header.
    pub token: String,
    pub expires_unix: u64,
    pub user: String,
    pub role: String,
}

/// A pool the user is entitled to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// A pool's name (any text: a pool that does not exist is not found).
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub pool: String,
}

/// Everything a client needs to reach its desktop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectResponse {
    pub desktop: String,
    /// Display server QUIC address, host:port.
    pub address: String,
    /// SHA-256 of the display server certificate, hex.
    pub fingerprint: String,
    /// Signed single-use ticket, hex; goes into `Hello.ticket`.
    pub ticket: String,
    pub expires_unix: u64,
    /// Where a browser reaches the same desktop, if its host takes browsers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebContact>,
}

/// How a browser reaches a desktop: WebTransport to `https://{address}/oriel`, trusting
/// only a certificate with one of these SHA-256 hashes (`serverCertificateHashes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebContact {
    /// host:port (UDP).
    pub address: String,
    /// SHA-256 (hex) of the certificates the host may show, the presented one first.
    pub fingerprints: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LogoffRequest {
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub pool: String,
}

/// Body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub error: String,
}

/// Lower-case hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Bytes of a hex string (at most 64 KiB of digits); `None` when it is not hex.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() > 1 << 16 {
        return None;
    }
    hex::decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "alice",
            "Bob",
            "j.doe@example.org",
            "team-3_west",
            "a",
            "x+y",
        ] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(MAX_NAME + 1);
        for bad in [
            "",
            " alice",
            "alice ",
            "a b",
            ".hidden",
            "-x",
            "Zoë",
            "ali\u{200b}ce",
            "a/b",
            &long,
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

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
