//! The Prometheus `/metrics` (OpenMetrics text) and `/healthz` endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{routing::get, Router};

/// Binds the metrics listener (separately, so a bad address fails at start-up).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))
}

/// Serves metrics produced by `render` until the task is aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move { ([("content-type", crate::metrics::CONTENT_TYPE)], render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app).await?;
    Ok(())
}
