use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use oriel_display_server::config::Args;
use oriel_display_server::source::synthetic::SyntheticSource;
use oriel_display_server::{metrics_http, Desktop, DisplayServer};
use oriel_transport::Identity;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Args::parse().resolve()?;

    let identity = Identity::load_or_create(&config.data_dir, &["localhost".into()])
        .with_context(|| format!("TLS identity in {}", config.data_dir.display()))?;
    let mut desktops = Vec::new();
    for (name, synthetic) in config.desktops {
        let workload = synthetic.workload;
        let source =
            SyntheticSource::new(synthetic).with_context(|| format!("desktop '{name}'"))?;
        tracing::info!(desktop = name, %workload, "synthetic desktop ready");
        desktops.push(Desktop::new(name, Box::new(source)));
    }
    let server = DisplayServer::start(config.server, &identity, desktops)?;
    let server = Arc::new(server);

    // These two lines are what `oriel demo` and scripts read; keep their format.
    println!(
        "oriel-display-server: listening on {}",
        server.local_addr()?
    );
    println!(
        "oriel-display-server: certificate SHA-256 fingerprint: {}",
        server.fingerprint()
    );

    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = metrics_http::bind(addr).await?;
            println!(
                "oriel-display-server: metrics on http://{}/metrics",
                listener.local_addr()?
            );
            let s = server.clone();
            let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || s.metrics());
            Some(tokio::spawn(async move {
                if let Err(e) = metrics_http::serve(listener, render).await {
                    tracing::error!("{e:#}");
                }
            }))
        }
        None => None,
    };

    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(m) = metrics {
        m.abort();
    }
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
