//! The broker's TOML configuration file (`--config FILE`): the settings of
//! `oriel-broker serve`, the data directory and database `init` and `admin` share, and
//! how `admin` reaches a broker. The keys are the flags' names without the dashes in
//! front (`host-listen = "0.0.0.0:4434"`); `broker/oriel-broker.example.toml` documents
//! every one. Flags win over the file, the file over the built-in defaults; a key the
//! broker does not know is an error, so a typo is not silently ignored.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::BrokerConfig;

/// HTTPS API address unless the flags or the file say otherwise.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8443));
/// Host-link (QUIC) address unless the flags or the file say otherwise.
pub const DEFAULT_HOST_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4434));
/// Broker URL of `oriel-broker admin` when neither it nor a local broker says one.
pub const DEFAULT_ADMIN_URL: &str = "https://127.0.0.1:8443";

/// A config file that cannot be used; the message names the file, and for a bad file
/// the line, column and key (toml's own report, with the offending line quoted).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid config file {}: {error}", path.display())]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
}

/// The broker's settings as a config file (or the command line) gives them; `None` is
/// "not said here". [`FileConfig::or`] lays the flags over the file and
/// [`FileConfig::resolve`] fills in the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Keys, certificate, join token, local-admin token and the SQLite database
    /// [default: `$XDG_DATA_HOME/oriel/broker`].
    pub data_dir: Option<PathBuf>,
    /// Database URL, `sqlite://…` or `postgres://…` [default: `broker.db` in the data
    /// directory].
    pub database: Option<String>,
    /// HTTPS API address [default: 127.0.0.1:8443].
    pub listen: Option<SocketAddr>,
    /// Host-link (QUIC) address display servers dial [default: 127.0.0.1:4434].
    pub host_listen: Option<SocketAddr>,
    /// Serve the API over plain HTTP, loopback addresses only [default: false].
    pub insecure_http: Option<bool>,
    /// After a start, how long hosts have to link again before missed heartbeats count
    /// against them, as `30s`, `2m`, `1h 30m` [default: 30s].
    #[serde(default, deserialize_with = "duration")]
    pub restart_grace: Option<Duration>,
    /// File with the cluster key (64 hex digits, made by `oriel-broker cluster-key`):
    /// brokers on one PostgreSQL database given the same file share their ticket key,
    /// certificate and join token [default: none, the broker's own].
    pub cluster_key: Option<PathBuf>,
    /// `oriel-broker admin`'s settings (the `[admin]` table).
    #[serde(default)]
    pub admin: AdminFileConfig,
}

/// The `[admin]` table: how `oriel-broker admin` reaches a broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminFileConfig {
    /// Broker URL [default: the local broker's, else https://127.0.0.1:8443].
    pub broker: Option<String>,
    /// SHA-256 fingerprint of the broker's certificate [default: the local broker's].
    pub fingerprint: Option<String>,
    /// Administrator to log in as [default: the local administrator].
    pub user: Option<String>,
}

/// A `humantime` duration such as `"30s"`; a bad one is reported at its key.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("'{text}' is not a duration like 30s: {e}")))
}

impl FileConfig {
    /// Reads and checks a config file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let config = Self::parse(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            error: Box::new(error),
        })?;
        tracing::debug!(file = %path.display(), "config file read");
        Ok(config)
    }

    /// The file `--config` names, or nothing when there is none.
    pub fn read_optional(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        path.map_or_else(|| Ok(FileConfig::default()), Self::read)
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// These settings, and where they say nothing, `fallback`'s (flags over the file).
    pub fn or(self, fallback: FileConfig) -> FileConfig {
        FileConfig {
            data_dir: self.data_dir.or(fallback.data_dir),
            database: self.database.or(fallback.database),
            listen: self.listen.or(fallback.listen),
            host_listen: self.host_listen.or(fallback.host_listen),
            insecure_http: self.insecure_http.or(fallback.insecure_http),
            restart_grace: self.restart_grace.or(fallback.restart_grace),
            cluster_key: self.cluster_key.or(fallback.cluster_key),
            admin: AdminFileConfig {
                broker: self.admin.broker.or(fallback.admin.broker),
                fingerprint: self.admin.fingerprint.or(fallback.admin.fingerprint),
                user: self.admin.user.or(fallback.admin.user),
            },
        }
    }

    /// The data directory, or the default one.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| oriel_transport::files::data_dir("broker"))
    }

    /// What [`crate::Broker::start`] needs, with the defaults where nothing was said.
    pub fn resolve(self) -> BrokerConfig {
        BrokerConfig {
            data_dir: self.data_dir(),
            api_listen: self.listen.unwrap_or(DEFAULT_LISTEN),
            host_listen: self.host_listen.unwrap_or(DEFAULT_HOST_LISTEN),
            database: self.database,
            insecure_http: self.insecure_http.unwrap_or(false),
            restart_grace: self
                .restart_grace
                .unwrap_or(crate::reconcile::RESTART_GRACE),
            cluster_key: self.cluster_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_file_is_parsed() {
        let (_dir, path) = write(
            "broker.toml",
            r#"
data-dir = "/srv/oriel"
database = "postgres://oriel@db/oriel"
listen = "0.0.0.0:443"
host-listen = "[::]:4434"
insecure-http = false
restart-grace = "2m 30s"

[admin]
broker = "https://broker.example:443"
fingerprint = "ab"
user = "root"
"#,
        );
        let file = FileConfig::read(&path).unwrap();
        assert_eq!(file.data_dir, Some(PathBuf::from("/srv/oriel")));
        assert_eq!(file.database.as_deref(), Some("postgres://oriel@db/oriel"));
        assert_eq!(file.listen, Some("0.0.0.0:443".parse().unwrap()));
        assert_eq!(file.host_listen, Some("[::]:4434".parse().unwrap()));
        assert_eq!(file.insecure_http, Some(false));
        assert_eq!(file.restart_grace, Some(Duration::from_secs(150)));
        assert_eq!(file.admin.user.as_deref(), Some("root"));
        let config = file.resolve();
        assert_eq!(config.api_listen.port(), 443);
        assert_eq!(config.data_dir, PathBuf::from("/srv/oriel"));
    }

    #[test]
    fn the_example_file_is_valid_and_says_the_defaults() {
        let example = FileConfig::parse(include_str!("../oriel-broker.example.toml")).unwrap();
        let config = example.clone().resolve();
        let defaults = FileConfig {
            data_dir: example.data_dir.clone(),
            ..FileConfig::default()
        }
        .resolve();
        assert_eq!(config.api_listen, defaults.api_listen);
        assert_eq!(config.host_listen, defaults.host_listen);
        assert_eq!(config.insecure_http, defaults.insecure_http);
        assert_eq!(config.restart_grace, defaults.restart_grace);
    }

    #[test]
    fn an_unknown_key_is_refused_with_file_line_and_key() {
        let (_dir, path) = write(
            "typo.toml",
            "listen = \"127.0.0.1:1\"\nlisten-host = \"x\"\n",
        );
        let err = FileConfig::read(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        let text = err.to_string();
        assert!(text.contains("typo.toml"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("unknown field `listen-host`"), "{text}");
        assert!(
            text.contains("host-listen"),
            "names the keys it knows: {text}"
        );
        let (_dir, path) = write("admin.toml", "[admin]\npassword = \"x\"\n");
        let text = FileConfig::read(&path).unwrap_err().to_string();
        assert!(text.contains("unknown field `password`"), "{text}");
    }

    #[test]
    fn bad_values_are_reported_at_their_key() {
        let (_dir, path) = write("bad.toml", "\nrestart-grace = \"soon\"\n");
        let text = FileConfig::read(&path).unwrap_err().to_string();
        assert!(text.contains("line 2") && text.contains("soon"), "{text}");
        let text = FileConfig::parse("listen = \"localhost\"")
            .unwrap_err()
            .to_string();
        assert!(text.contains("line 1") && text.contains("listen"), "{text}");
        let text = FileConfig::parse("listen = ").unwrap_err().to_string();
        assert!(text.contains("line 1"), "{text}");
        let missing = Path::new("/nonexistent/oriel-broker.toml");
        let text = FileConfig::read(missing).unwrap_err().to_string();
        assert!(text.contains("/nonexistent/oriel-broker.toml"), "{text}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = FileConfig::parse(
            "listen = \"127.0.0.1:1000\"\nhost-listen = \"127.0.0.1:2000\"\n\
             insecure-http = true\n[admin]\nuser = \"root\"\n",
        )
        .unwrap();
        let flags = FileConfig {
            listen: Some("127.0.0.1:3000".parse().unwrap()),
            insecure_http: Some(false),
            admin: AdminFileConfig {
                user: Some("alice".into()),
                ..AdminFileConfig::default()
            },
            ..FileConfig::default()
        };
        let merged = flags.or(file);
        assert_eq!(merged.admin.user.as_deref(), Some("alice"));
        let config = merged.resolve();
        assert_eq!(config.api_listen.port(), 3000);
        assert_eq!(
            config.host_listen.port(),
            2000,
            "the file's where flags say nothing"
        );
        assert!(!config.insecure_http);
    }

    #[test]
    fn defaults_when_nothing_is_said() {
        let empty = FileConfig::parse("").unwrap();
        assert_eq!(empty, FileConfig::default());
        assert_eq!(
            FileConfig::read_optional(None).unwrap(),
            FileConfig::default()
        );
        let config = empty.resolve();
        assert_eq!(config.api_listen, DEFAULT_LISTEN);
        assert_eq!(config.host_listen, DEFAULT_HOST_LISTEN);
        assert_eq!(config.database, None);
        assert!(!config.insecure_http);
        assert_eq!(config.restart_grace, crate::reconcile::RESTART_GRACE);
        assert_eq!(config.data_dir, oriel_transport::files::data_dir("broker"));
    }
}
