//! HTTPS client of the broker's JSON API, pinning the broker's certificate like the
//! display connection does. Plain HTTP is allowed only to loopback addresses.

use serde::{de::DeserializeOwned, Serialize};

use crate::tls::pinned_tls_client_config;
use crate::Fingerprint;

#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    #[error("cannot reach the broker: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{message} (HTTP {status})")]
    Status { status: u16, message: String },
    #[error("{0}")]
    Config(String),
}

/// How long a kept-alive connection to the broker waits in the pool for a next request:
/// shorter than the broker's own wait for one (30 s), so the client, not the broker,
/// ends it and no request goes out on a connection being closed.
pub const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// `base` is the broker URL (`https://host:port`); `pin` its certificate fingerprint,
    /// required for https.
    pub fn new(base: &str, pin: Option<Fingerprint>) -> Result<Self, ApiCallError> {
        let base = base.trim_end_matches('/').to_string();
        let builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .pool_idle_timeout(POOL_IDLE)
            .redirect(reqwest::redirect::Policy::none());
        let http = if base.starts_with("https://") {
            let pin = pin.ok_or_else(|| {
                ApiCallError::Config(
                    "an https broker URL needs the broker's certificate fingerprint".into(),
                )
            })?;
            let tls = pinned_tls_client_config(pin, &[b"http/1.1"])
                .map_err(|e| ApiCallError::Config(e.to_string()))?;
            builder.use_preconfigured_tls(tls).build()?
        } else if is_loopback_http(&base) {
            builder.build()?
        } else {
            return Err(ApiCallError::Config(format!(
                "'{base}': use https (plain http only to 127.0.0.1, [::1] or localhost)"
            )));
        };
        Ok(Self {
            http,
            base,
            token: None,
        })
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, ApiCallError> {
        let resp = self.auth(self.http.get(self.url(path))).send().await?;
        Ok(check(resp).await?.json().await?)
    }

    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ApiCallError> {
        Ok(self.send_post(path, body).await?.json().await?)
    }

    /// POST for endpoints that answer without a body (204).
    pub async fn post_no_reply<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ApiCallError> {
        self.send_post(path, body).await?;
        Ok(())
    }

    /// The server's `/metrics` (OpenMetrics text; beside the API, not under it).
    pub async fn metrics(&self) -> Result<String, ApiCallError> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?;
        Ok(check(resp).await?.text().await?)
    }

    /// DELETE, for endpoints that answer without a body (204).
    pub async fn delete(&self, path: &str) -> Result<(), ApiCallError> {
        let resp = self.auth(self.http.delete(self.url(path))).send().await?;
        check(resp).await?;
        Ok(())
    }

    /// A POST, asked again (a few times) when the broker answers 503 with a short
    /// `Retry-After`: it was busy, say checking other passwords.
    async fn send_post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<reqwest::Response, ApiCallError> {
        let mut attempts = 0;
        loop {
            let resp = self
                .auth(self.http.post(self.url(path)).json(body))
                .send()
                .await?;
            attempts += 1;
            match busy_for(&resp) {
                Some(wait) if attempts < MAX_ATTEMPTS => tokio::time::sleep(wait).await,
                _ => return check(resp).await,
            }
        }
    }
}

/// How often a request the broker was too busy for is sent at most.
const MAX_ATTEMPTS: u32 = 4;

/// How long to wait before asking again, for a 503 with a `Retry-After` of at most 10 s.
fn busy_for(resp: &reqwest::Response) -> Option<std::time::Duration> {
    if resp.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs <= 10).then(|| std::time::Duration::from_secs(secs))
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ApiCallError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or(text);
    Err(ApiCallError::Status {
        status: status.as_u16(),
        message,
    })
}

fn is_loopback_http(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(is_loopback_http("http://127.0.0.1:8080"));
        assert!(is_loopback_http("http://[::1]:8080"));
        assert!(is_loopback_http("http://localhost:1"));
        assert!(!is_loopback_http("http://10.0.0.1:8080"));
        assert!(!is_loopback_http("http://example.com"));
        assert!(ApiClient::new("http://192.0.2.1:80", None).is_err());
        assert!(ApiClient::new("https://127.0.0.1:80", None).is_err());
    }
}
