//! The launcher side of the client: log in to a broker, list pools, get a desktop and
//! its ticket. The login (broker URL, certificate pin, bearer token) is kept in the
//! user's config directory, readable by the user only.

use std::path::PathBuf;

use anyhow::Context;
use oriel_protocol::api::*;
use oriel_transport::api_client::ApiClient;
use oriel_transport::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::ConnectOptions;

/// A saved login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub broker: String,
    pub fingerprint: Option<String>,
    pub user: String,
    pub token: String,
    pub expires_unix: u64,
}

impl Login {
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let pin = self
            .fingerprint
            .as_deref()
            .map(str::parse::<Fingerprint>)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok(ApiClient::new(&self.broker, pin)?.with_token(self.token.clone()))
    }
}

/// Logs in and returns the login (not yet saved).
pub async fn login(
    broker: &str,
    fingerprint: Option<Fingerprint>,
    user: &str,
    password: &str,
) -> anyhow::Result<Login> {
    let api = ApiClient::new(broker, fingerprint)?;
    let reply: LoginResponse = api
        .post(
            "/login",
            &LoginRequest {
                user: user.into(),
                password: password.into(),
            },
        )
        .await
        .context("login failed")?;
    Ok(Login {
        broker: api.base().to_string(),
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
    Ok(login.client()?.get("/pools").await?)
}

/// Asks the broker for a desktop of `pool`; returns how to connect to it.
pub async fn connect_options(
    login: &Login,
    pool: &str,
) -> anyhow::Result<(ConnectOptions, ConnectResponse)> {
    let reply: ConnectResponse = login
        .client()?
        .post("/connect", &ConnectRequest { pool: pool.into() })
        .await
        .with_context(|| format!("cannot get a desktop of pool '{pool}'"))?;
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
        .client()?
        .post_no_reply("/logoff", &LogoffRequest { pool: pool.into() })
        .await?;
    Ok(())
}
