// A program: its output is what it prints.
#![allow(clippy::print_stdout)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oriel_broker::config::FileConfig;
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

#[derive(Debug, clap::Args, Clone, Default)]
struct Common {
    /// TOML file with any of these options (flags win over the file); see
    /// broker/oriel-broker.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Keys, certificate, join token and the SQLite database live here
    /// [default: $XDG_DATA_HOME/oriel/broker or ~/.local/share/oriel/broker].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite://… or postgres://…) [default: SQLite file in the data dir].
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

#[derive(Debug, clap::Args, Clone, Default)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// HTTPS API address [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Host-link address (QUIC) display servers dial [default: 127.0.0.1:4434].
    #[arg(long, value_name = "ADDR")]
    host_listen: Option<SocketAddr>,
    /// Serve the API over plain HTTP (loopback addresses only); --insecure-http=false
    /// turns off what the config file turned on.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    insecure_http: Option<bool>,
    /// After a start, how long hosts have to link again before missed heartbeats
    /// count against them (their desktops are replaced when they do) [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    restart_grace: Option<std::time::Duration>,
    /// Cluster key file (see `oriel-broker cluster-key`): brokers sharing one PostgreSQL
    /// database and this file share their ticket key, certificate and join token.
    #[arg(long, value_name = "FILE")]
    cluster_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
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
    /// Write a new random cluster key to FILE (owner-only) for `serve --cluster-key`;
    /// copy the same file to every broker of the cluster.
    ClusterKey {
        /// Where to write it (an existing file is left alone).
        file: PathBuf,
    },
    /// Run a private PostgreSQL server (Debian's `postgresql` binaries, in a temporary
    /// directory, on a free loopback port) to try several brokers on one machine; prints
    /// the URL of a new database `oriel` on it. Stopped and removed on Ctrl-C or SIGTERM.
    TempPostgres,
}

impl Common {
    /// These flags over the `--config` file.
    fn settings(&self) -> anyhow::Result<FileConfig> {
        let file = FileConfig::read_optional(self.config.as_deref())?;
        let flags = FileConfig {
            data_dir: self.data_dir.clone(),
            database: self.database.clone(),
            ..FileConfig::default()
        };
        Ok(flags.or(file))
    }
}

impl ServeArgs {
    /// The broker's configuration: flags, else the `--config` file, else the defaults.
    fn resolve(&self) -> anyhow::Result<BrokerConfig> {
        let flags = FileConfig {
            listen: self.listen,
            host_listen: self.host_listen,
            insecure_http: self.insecure_http,
            restart_grace: self.restart_grace,
            cluster_key: self.cluster_key.clone(),
            ..FileConfig::default()
        };
        Ok(flags.or(self.common.settings()?).resolve())
    }
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
        Command::Serve(args) => serve(args.resolve()?).await,
        Command::Init { common, admin } => init(common, &admin).await,
        Command::Admin(args) => admin_cli::run(args).await,
        Command::ClusterKey { file } => {
            oriel_broker::cluster_key::ClusterKey::create(&file)?;
            println!("cluster key written to {}", file.display());
            Ok(())
        }
        Command::TempPostgres => temp_postgres().await,
    }
}

async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let dir = config.data_dir.clone();
    let broker = Broker::start(config).await?;
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

async fn temp_postgres() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let server = oriel_broker::temp_postgres::TempPostgres::start()
        .context("cannot start a private PostgreSQL server")?;
    let url = server.create_database("oriel").await?;
    banner(format!("oriel-broker: PostgreSQL database at {url}"));
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    // Dropping it stops the server and removes its directory.
    drop(server);
    Ok(())
}

async fn init(common: Common, admin: &str) -> anyhow::Result<()> {
    let settings = common.settings()?;
    let dir = settings.data_dir();
    let url = oriel_broker::server::database_url(&dir, settings.database.as_deref())?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("oriel-broker").chain(args.iter().copied()))
    }

    fn serve_args(args: &[&str]) -> ServeArgs {
        match parse(args).unwrap().command {
            Command::Serve(serve) => serve,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(
            &path,
            "data-dir = \"/srv/oriel\"\nlisten = \"127.0.0.1:1000\"\n\
             host-listen = \"127.0.0.1:2000\"\ninsecure-http = true\nrestart-grace = \"5m\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let config = serve_args(&["serve", "--config", file]).resolve().unwrap();
        assert_eq!(config.api_listen.port(), 1000);
        assert_eq!(config.host_listen.port(), 2000);
        assert!(config.insecure_http);
        assert_eq!(config.restart_grace, std::time::Duration::from_secs(300));
        assert_eq!(config.data_dir, PathBuf::from("/srv/oriel"));
        let config = serve_args(&[
            "serve",
            "--config",
            file,
            "--listen",
            "127.0.0.1:3000",
            "--insecure-http=false",
            "--restart-grace",
            "10s",
            "--data-dir",
            "/tmp/elsewhere",
            "--database",
            "postgres://db/oriel",
        ])
        .resolve()
        .unwrap();
        assert_eq!(config.api_listen.port(), 3000);
        assert_eq!(
            config.host_listen.port(),
            2000,
            "the file's where no flag is"
        );
        assert!(!config.insecure_http);
        assert_eq!(config.restart_grace, std::time::Duration::from_secs(10));
        assert_eq!(config.data_dir, PathBuf::from("/tmp/elsewhere"));
        assert_eq!(config.database.as_deref(), Some("postgres://db/oriel"));
    }

    #[test]
    fn serve_without_a_file_uses_the_defaults() {
        let config = serve_args(&["serve"]).resolve().unwrap();
        assert_eq!(config.api_listen, oriel_broker::config::DEFAULT_LISTEN);
        assert_eq!(
            config.host_listen,
            oriel_broker::config::DEFAULT_HOST_LISTEN
        );
        assert!(!config.insecure_http);
        assert_eq!(config.restart_grace, oriel_broker::reconcile::RESTART_GRACE);
        assert!(
            serve_args(&["serve", "--insecure-http"])
                .resolve()
                .unwrap()
                .insecure_http
        );
        // The bare flag does not swallow what follows it.
        let serve = serve_args(&["serve", "--insecure-http", "--listen", "127.0.0.1:1"]);
        assert_eq!(serve.insecure_http, Some(true));
    }

    #[test]
    fn a_bad_config_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlissten = \"x\"\n").unwrap();
        let err = serve_args(&["serve", "--config", path.to_str().unwrap()])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert!(err.contains("line 2") && err.contains("lissten"), "{err}");
        // init reads the same file.
        let init = parse(&[
            "init",
            "--admin",
            "root",
            "--config",
            path.to_str().unwrap(),
        ]);
        let Command::Init { common, .. } = init.unwrap().command else {
            panic!("not init")
        };
        let err = common.settings().unwrap_err().to_string();
        assert!(err.contains("lissten"), "{err}");
    }
}
