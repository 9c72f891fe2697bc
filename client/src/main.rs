use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oriel::screenshot::save_png;
use oriel::{ConnectOptions, Session, StopWhen};
use oriel_transport::Fingerprint;

mod demo;

/// Oriel thin client: connect to a desktop and view it.
#[derive(Debug, Parser)]
#[command(name = "oriel", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to a display server.
    Connect(ConnectArgs),
    /// Run a complete deployment on this machine (a display server with a synthetic
    /// desktop, and this client connected to it) and print what the client saw.
    Demo(demo::DemoArgs),
}

#[derive(Debug, clap::Args)]
struct ConnectArgs {
    /// Display server address, HOST:PORT.
    addr: String,
    /// SHA-256 fingerprint of the server certificate (printed by oriel-display-server).
    #[arg(long)]
    fingerprint: Fingerprint,
    /// Desktop to show.
    #[arg(long, default_value = "default")]
    desktop: String,
    /// Run without a window (the only mode in this version).
    #[arg(long)]
    headless: bool,
    /// Save the final screen as PNG.
    #[arg(long, value_name = "FILE")]
    screenshot: Option<PathBuf>,
    /// Disconnect after this long, e.g. 10s or 2m [default: until the server closes].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print the statistics as one JSON line.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Connect(args) => connect(args).await,
        Command::Demo(args) => demo::run(args).await,
    }
}

async fn connect(args: ConnectArgs) -> anyhow::Result<()> {
    if !args.headless {
        anyhow::bail!(
            "this build has no viewer window yet; pass --headless to connect without one"
        );
    }
    let addr = resolve(&args.addr).await?;
    let mut opts = ConnectOptions::new(addr, args.fingerprint);
    opts.desktop = args.desktop;
    let outcome = run_session(&opts, args.duration, args.screenshot.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome.stats.summary())?);
    } else {
        println!("{}", outcome.stats.summary());
    }
    Ok(())
}

/// Connects, runs headless, saves the screenshot; shared by `connect` and `demo`.
pub(crate) async fn run_session(
    opts: &ConnectOptions,
    duration: Option<Duration>,
    screenshot: Option<&std::path::Path>,
) -> anyhow::Result<oriel::Outcome> {
    let session = Session::connect(opts).await?;
    let w = session.welcome();
    eprintln!(
        "connected to desktop '{}' ({}x{}), session {}",
        opts.desktop, w.desktop_size.width, w.desktop_size.height, w.session_id
    );
    // Ctrl-C ends the session cleanly, so the statistics and screenshot still come out.
    let interrupt = Arc::new(tokio::sync::Notify::new());
    let notify = interrupt.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            notify.notify_one();
        }
    });
    let stop = StopWhen {
        duration,
        source_seq: None,
        interrupt: Some(interrupt),
    };
    let outcome = session.run(stop, None).await?;
    if let Some(path) = screenshot {
        save_png(&outcome.framebuffer, path)?;
        eprintln!("screenshot saved to {}", path.display());
    }
    Ok(outcome)
}

async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve '{addr}' (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("'{addr}' resolves to no address"))
}
