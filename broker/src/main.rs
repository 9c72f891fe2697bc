// A program: its output is what it prints.
#![allow(clippy::print_stdout)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oriel_broker::password::hash_password;
use oriel_broker::store::{Role, Store};
use oriel_broker::{Broker, BrokerConfig};

mod admin_cli;

/// Oriel broker: users, pools, desktops, hosts, sessions and connect tickets.
#[derive(Debug, Parser)]
#[command(name = "oriel-broker", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args, Clone)]
struct Common {
    /// Keys, certificate, join token and the SQLite database live here
    /// [default: $XDG_DATA_HOME/oriel/broker or ~/.local/share/oriel/broker].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite://… or postgres://…) [default: SQLite file in the data dir].
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        #[command(flatten)]
        common: Common,
        /// HTTPS API address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Host-link address (QUIC) display servers dial.
        #[arg(long, default_value = "127.0.0.1:4434")]
        host_listen: SocketAddr,
        /// Serve the API over plain HTTP (loopback addresses only).
        #[arg(long)]
        insecure_http: bool,
        /// After a start, how long hosts have to link again before missed heartbeats
        /// count against them (their desktops are replaced when they do).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        restart_grace: std::time::Duration,
    },
    /// Create the first administrator (password read from the first line of stdin).
    Init {
        #[command(flatten)]
        common: Common,
        /// Name of the administrator.
        #[arg(long)]
        admin: String,
    },
    /// Administer a running broker through its API.
    Admin(admin_cli::AdminArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            common,
            listen,
            host_listen,
            insecure_http,
            restart_grace,
        } => serve(common, listen, host_listen, insecure_http, restart_grace).await,
        Command::Init { common, admin } => init(common, &admin).await,
        Command::Admin(args) => admin_cli::run(args).await,
    }
}

fn data_dir(common: &Common) -> PathBuf {
    common
        .data_dir
        .clone()
        .unwrap_or_else(|| oriel_transport::files::data_dir("broker"))
}

async fn serve(
    common: Common,
    listen: SocketAddr,
    host_listen: SocketAddr,
    insecure_http: bool,
    restart_grace: std::time::Duration,
) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let dir = data_dir(&common);
    let broker = Broker::start(BrokerConfig {
        data_dir: dir.clone(),
        api_listen: listen,
        host_listen,
        database: common.database,
        insecure_http,
        restart_grace,
    })
    .await?;
    // Scripts (and `oriel demo`) read these lines; keep their format.
    banner(format!("oriel-broker: API on {}", broker.url()));
    banner(format!("oriel-broker: host link on {}", broker.host_addr));
    banner(format!(
        "oriel-broker: certificate SHA-256 fingerprint: {}",
        broker.fingerprint
    ));
    banner(format!(
        "oriel-broker: join token in {}",
        dir.join("join-token").display()
    ));
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down");
    broker.shutdown().await;
    Ok(())
}

async fn init(common: Common, admin: &str) -> anyhow::Result<()> {
    let dir = data_dir(&common);
    let url = oriel_broker::server::database_url(&dir, common.database.as_deref())?;
    let store = Store::open(&url).await?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("password for {admin} (one line on stdin):");
    }
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        anyhow::bail!("the password needs at least 8 characters");
    }
    let hash = hash_password(password)?;
    store
        .create_user(admin, &hash, Role::Admin)
        .await
        .with_context(|| format!("cannot create administrator '{admin}'"))?;
    store
        .audit(admin, "admin_change", "initial administrator created")
        .await?;
    store.close().await;
    println!("administrator '{admin}' created in {}", dir.display());
    Ok(())
}

/// Prints a start-up line for people and scripts. A closed stdout (the reader went away)
/// must not bring the server down, so write errors are ignored.
fn banner(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
