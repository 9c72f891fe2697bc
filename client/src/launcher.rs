//! The launcher side of the client: log in to a broker, list pools, get a desktop and
//! its ticket. The login (broker URL, certificate pin, bearer token) is kept in the
//! user's config directory, readable by the user only. A login to a cluster of brokers
//! keeps the other brokers' URLs too: a call that cannot reach one broker goes to the
//! next (they share the database, so the token is good at each).

use std::path::PathBuf;

use anyhow::Context;
use oriel_protocol::api::*;
use oriel_transport::api_client::{ApiCallError, ApiClient};
use oriel_transport::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::ConnectOptions;

/// A saved login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub broker: String,
    /// The other brokers of the cluster, tried in turn when `broker` cannot be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    pub fingerprint: Option<String>,
    pub user: String,
    pub token: String,
    pub expires_unix: u64,
}

impl Login {
    /// A client of the login's first broker.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        Ok(self.clients()?.remove(0))
    }

    /// Clients of each of the login's brokers, the first one first.
    fn clients(&self) -> anyhow::Result<Vec<ApiClient>> {
        let pin = self
            .fingerprint
            .as_deref()
            .map(str::parse::<Fingerprint>)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        std::iter::once(&self.broker)
            .chain(&self.fallbacks)
            .map(|url| Ok(ApiClient::new(url, pin)?.with_token(self.token.clone())))
            .collect()
    }

    /// Makes `call` on the login's brokers in turn until one answers (an HTTP error is
    /// an answer; only a broker that cannot be reached passes the call on).
    pub async fn call<R, F, Fut>(&self, call: F) -> anyhow::Result<Result<R, ApiCallError>>
    where
        F: FnMut(ApiClient) -> Fut,
        Fut: std::future::Future<Output = Result<R, ApiCallError>>,
    {
        Ok(first_answer(self.clients()?, call).await)
    }
}

/// `call` on each client in turn until one answers; the last failure if none does.
async fn first_answer<R, F, Fut>(clients: Vec<ApiClient>, mut call: F) -> Result<R, ApiCallError>
where
    F: FnMut(ApiClient) -> Fut,
    Fut: std::future::Future<Output = Result<R, ApiCallError>>,
{
    let mut last = ApiCallError::Config("no broker to call".into());
    for api in clients {
        let base = api.base().to_string();
        match call(api).await {
            Err(ApiCallError::Http(e)) => {
                tracing::warn!("broker {base} cannot be reached ({e}); trying the next");
                last = ApiCallError::Http(e);
            }
            answer => return answer,
        }
    }
    Err(last)
}

/// Logs in and returns the login (not yet saved).
pub async fn login(
    broker: &str,
    fingerprint: Option<Fingerprint>,
    user: &str,
    password: &str,
) -> anyhow::Result<Login> {
    login_to_any(&[broker.to_string()], fingerprint, user, password).await
}

/// Logs in at the first of `brokers` (a cluster's) that answers; the login keeps the
/// others to fail over to.
pub async fn login_to_any(
    brokers: &[String],
    fingerprint: Option<Fingerprint>,
    user: &str,
    password: &str,
) -> anyhow::Result<Login> {
    let clients = brokers
        .iter()
        .map(|url| ApiClient::new(url, fingerprint))
        .collect::<Result<Vec<_>, _>>()?;
    let bases: Vec<String> = clients.iter().map(|c| c.base().to_string()).collect();
    let answered = std::sync::Mutex::new(None);
    let reply: LoginResponse = first_answer(clients, |api| {
        *answered.lock().unwrap_or_else(|e| e.into_inner()) = Some(api.base().to_string());
        let request = LoginRequest {
            user: user.into(),
            password: password.into(),
        };
        async move { api.post("/login", &request).await }
    })
    .await
    .context("login failed")?;
    let broker = answered
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_default();
    Ok(Login {
        fallbacks: bases.into_iter().filter(|b| *b != broker).collect(),
        broker,
        fingerprint: fingerprint.map(|f| f.to_string()),
        user: reply.user,
        token: reply.token,
        expires_unix: reply.expires_unix,
    })
}

pub fn login_path() -> PathBuf {
    oriel_transport::files::config_dir().join("login.json")
}

pub fn save(login: &Login) -> anyhow::Result<PathBuf> {
    let path = login_path();
    oriel_transport::files::write_private(&path, serde_json::to_string_pretty(login)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

pub fn load() -> anyhow::Result<Login> {
    let path = login_path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "not logged in (no {}); run `oriel login` first",
            path.display()
        )
    })?;
    let login: Login = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged; run `oriel login` again", path.display()))?;
    let now = oriel_transport::unix_micros() / 1_000_000;
    if login.expires_unix <= now {
        anyhow::bail!(
            "your login to {} expired; run `oriel login` again",
            login.broker
        );
    }
    Ok(login)
}

pub async fn pools(login: &Login) -> anyhow::Result<Vec<PoolView>> {
    Ok(login
        .call(|api| async move { api.get("/pools").await })
        .await??)
}

/// Asks the broker for a desktop of `pool`; returns how to connect to it.
pub async fn connect_options(
    login: &Login,
    pool: &str,
) -> anyhow::Result<(ConnectOptions, ConnectResponse)> {
    connect_options_waiting(login, pool, std::time::Duration::ZERO, |_| {}).await
}

/// Like [`connect_options`], but while the pool has no free desktop (the broker is
/// still starting one) asks again every second for up to `wait`, calling `progress`
/// with the time waited so far.
pub async fn connect_options_waiting(
    login: &Login,
    pool: &str,
    wait: std::time::Duration,
    mut progress: impl FnMut(std::time::Duration),
) -> anyhow::Result<(ConnectOptions, ConnectResponse)> {
    let started = std::time::Instant::now();
    let reply: ConnectResponse = loop {
        let asked = login
            .call(|api| async move {
                api.post("/connect", &ConnectRequest { pool: pool.into() })
                    .await
            })
            .await?;
        match asked {
            Err(ApiCallError::Status { status: 409, .. }) if started.elapsed() < wait => {
                progress(started.elapsed());
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => {
                break other.with_context(|| format!("cannot get a desktop of pool '{pool}'"))?
            }
        }
    };
    let addr = tokio::net::lookup_host(&reply.address)
        .await
        .with_context(|| format!("cannot resolve the display server {}", reply.address))?
        .next()
        .context("display server address resolves to nothing")?;
    let fingerprint: Fingerprint = reply.fingerprint.parse().map_err(anyhow::Error::msg)?;
    let mut opts = ConnectOptions::new(addr, fingerprint);
    opts.desktop = reply.desktop.clone();
    opts.ticket = from_hex(&reply.ticket).context("the broker sent a malformed ticket")?;
    Ok((opts, reply))
}

pub async fn logoff(login: &Login, pool: &str) -> anyhow::Result<()> {
    login
        .call(|api| async move {
            api.post_no_reply("/logoff", &LogoffRequest { pool: pool.into() })
                .await
        })
        .await??;
    Ok(())
}

/// A desktop link, `oriel://HOST:PORT/POOL`: the pool POOL of the broker at
/// `https://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub broker: String,
    pub pool: String,
}

impl std::str::FromStr for Link {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Link> {
        let rest = s
            .strip_prefix("oriel://")
            .with_context(|| format!("'{s}' is not an oriel:// link"))?;
        let (host, pool) = rest
            .trim_end_matches('/')
            .split_once('/')
            .with_context(|| format!("'{s}' names no pool (oriel://BROKER/POOL)"))?;
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        let valid_pool = !pool.is_empty()
            && pool.len() <= 128
            && pool
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_host || !valid_pool {
            anyhow::bail!("'{s}' is not a valid oriel://BROKER/POOL link");
        }
        Ok(Link {
            broker: format!("https://{host}"),
            pool: pool.to_string(),
        })
    }
}

/// The saved login, checked to be for `link`'s broker.
pub fn load_for(link: &Link) -> anyhow::Result<Login> {
    let login = load()?;
    if login.broker.trim_end_matches('/') != link.broker {
        anyhow::bail!(
            "you are logged in to {}, not {}; run `oriel login --broker {}` first",
            login.broker,
            link.broker,
            link.broker
        );
    }
    Ok(login)
}

/// The `.desktop` entry that lets a desktop environment open `oriel://` links with
/// `exe`.
pub fn desktop_entry(exe: &std::path::Path) -> String {
    format!(
        "[Desktop Entry]\nType=Application\nName=Oriel\nComment=Remote desktops from an Oriel broker\n\
         Exec=\"{}\" %u\nTerminal=false\nCategories=Network;RemoteAccess;\n\
         MimeType=x-scheme-handler/oriel;\n",
        exe.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_a_broker_and_a_pool() {
        let link: Link = "oriel://broker.example:8443/office".parse().unwrap();
        assert_eq!(link.broker, "https://broker.example:8443");
        assert_eq!(link.pool, "office");
        let link: Link = "oriel://[::1]:8443/lab-2/".parse().unwrap();
        assert_eq!(
            (link.broker.as_str(), link.pool.as_str()),
            ("https://[::1]:8443", "lab-2")
        );
        for bad in [
            "https://b/p",
            "oriel://b",
            "oriel:///p",
            "oriel://b/p/q",
            "oriel://b/p?x=1",
            "oriel://b c/p",
        ] {
            assert!(bad.parse::<Link>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_desktop_entry_handles_oriel_links() {
        let entry = desktop_entry(std::path::Path::new("/usr/bin/oriel"));
        assert!(entry.contains("Exec=\"/usr/bin/oriel\" %u"));
        assert!(entry.contains("MimeType=x-scheme-handler/oriel;"));
    }
}
