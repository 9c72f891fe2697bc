//! Browsers: WebTransport (HTTP/3) sessions on an endpoint of their own, served by the
//! same session code as native clients. The endpoint is separate because the main one
//! asks every client for a certificate (display servers moving desktops prove who they
//! are so), which a browser's QUIC stack must not be asked; and a page pins a
//! short-lived ECDSA certificate that rotates, where native clients pin the long-lived
//! one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use oriel_transport::web_identity::WebCertificates;
use oriel_transport::Fingerprint;
use tokio::sync::watch;

use crate::shared::Shared;

/// The URL path a page opens its session at.
pub const WEB_PATH: &str = "/oriel";
/// How long a browser has from its first packet to its CONNECT request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificates are checked for rotation.
const ROTATION_CHECK: Duration = Duration::from_secs(600);

/// The browsers' endpoint and the certificates it presents.
pub(crate) struct WebFront {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) certs: Arc<WebCertificates>,
    /// The fingerprints after each rotation, for the broker.
    pub(crate) fingerprints: watch::Receiver<Vec<Fingerprint>>,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WebFront {
    pub(crate) fn start(listen: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<Self> {
        let names = vec!["localhost".to_string()];
        let certs = WebCertificates::new(&names)?;
        let endpoint = quinn::Endpoint::server(certs.quic_server_config()?, listen)
            .map_err(|e| anyhow::anyhow!("cannot listen for browsers on {listen}: {e}"))?;
        let (tx, fingerprints) = watch::channel(certs.fingerprints());
        let tasks = vec![
            tokio::spawn(accept_loop(endpoint.clone(), shared)),
            tokio::spawn(rotate(certs.clone(), names, tx)),
        ];
        Ok(Self {
            endpoint,
            certs,
            fingerprints,
            tasks,
        })
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match tokio::time::timeout(REQUEST_TIMEOUT, accept(incoming)).await {
                Ok(Ok(Some(session))) => crate::session::serve(session, shared).await,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::info!(%remote, "browser handshake failed: {e:#}"),
                Err(_) => tracing::info!(%remote, "browser sent no WebTransport request in time"),
            }
        });
    }
}

/// The QUIC and HTTP/3 handshakes of one browser; `None` when its request was refused.
async fn accept(incoming: quinn::Incoming) -> anyhow::Result<Option<web_transport_quinn::Session>> {
    let conn = incoming.await?;
    let request = web_transport_quinn::Request::accept(conn).await?;
    if request.url.path() != WEB_PATH {
        tracing::info!(path = %request.url.path(), "WebTransport request for an unknown path");
        request
            .reject(web_transport_quinn::http::StatusCode::NOT_FOUND)
            .await?;
        return Ok(None);
    }
    Ok(Some(request.ok().await?))
}

async fn rotate(
    certs: Arc<WebCertificates>,
    names: Vec<String>,
    tx: watch::Sender<Vec<Fingerprint>>,
) {
    let mut tick = tokio::time::interval(ROTATION_CHECK);
    loop {
        tick.tick().await;
        match certs.rotate_if_due(&names, SystemTime::now()) {
            Ok(true) => {
                tracing::info!("rotated the browsers' certificate");
                let _ = tx.send(certs.fingerprints());
            }
            Ok(false) => {}
            Err(e) => tracing::error!("cannot make the browsers' next certificate: {e}"),
        }
    }
}
