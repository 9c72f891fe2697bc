// A program: its output is what it prints.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use oriel_display_server::agent::{self, AgentConfig};
use oriel_display_server::config::{Args, Command};
use oriel_display_server::image_build;
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
    let mut args = Args::parse();
    if let Some(command) = args.command.take() {
        return run_command(command);
    }
    let config = args.resolve()?;
    // Registered before start-up work, so a stop request during start-up is not lost.
    let mut stop = StopSignals::new()?;

    let identity = Identity::load_or_create(&config.data_dir, &["localhost".into()])
        .with_context(|| format!("TLS identity in {}", config.data_dir.display()))?;
    let mut desktops = Vec::new();
    for (name, desktop) in config.desktops {
        let source = desktop
            .open(&config.server.images_dir)
            .with_context(|| format!("desktop '{name}'"))?;
        tracing::info!(desktop = name, ?desktop, "desktop ready");
        desktops.push(Desktop::new(name, source));
    }
    let server = DisplayServer::start(config.server, &identity, desktops)?;
    let server = Arc::new(server);

    // These two lines are what `oriel demo` and scripts read; keep their format.
    banner(format!(
        "oriel-display-server: listening on {}",
        server.local_addr()?
    ));
    banner(format!(
        "oriel-display-server: certificate SHA-256 fingerprint: {}",
        server.fingerprint()
    ));

    let agent = config.broker.map(|link| {
        let listen = server
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let agent_config = AgentConfig {
            brokers: link.addresses,
            broker_fingerprint: link.fingerprint,
            join_token: link.join_token,
            name: link.name.unwrap_or_else(|| listen.clone()),
            web_address: server
                .web_local_addr()
                .map(|web| web_address(link.advertise.as_deref(), web)),
            display_address: link.advertise.unwrap_or(listen),
            capacity: link.capacity,
            data_dir: config.data_dir.clone(),
        };
        tokio::spawn(agent::run(server.clone(), agent_config))
    });

    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = metrics_http::bind(addr).await?;
            banner(format!(
                "oriel-display-server: metrics on http://{}/metrics",
                listener.local_addr()?
            ));
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
    // After the lines above, which scripts read in this order.
    if let Some(web) = server.web_local_addr() {
        banner(format!(
            "oriel-display-server: browsers (WebTransport) on {web}"
        ));
    }

    stop.recv().await;
    tracing::info!("shutting down");
    for task in [metrics, agent].into_iter().flatten() {
        task.abort();
    }
    server.shutdown().await;
    Ok(())
}

/// Where browsers dial: the advertised host (when there is one) at the browsers' port.
fn web_address(advertise: Option<&str>, web: std::net::SocketAddr) -> String {
    let host = advertise
        .and_then(|a| a.rsplit_once(':'))
        .map(|(host, _)| host);
    match host {
        Some(host) => format!("{host}:{}", web.port()),
        None => web.to_string(),
    }
}

fn run_command(command: Command) -> anyhow::Result<()> {
    use oriel_display_server::config::{default_images_dir, ImageCommand};
    match command {
        Command::Image(ImageCommand::Build {
            name,
            images,
            kernel,
            busybox,
            append,
            memory_mib,
        }) => {
            let options = image_build::BuildOptions {
                images: images.unwrap_or_else(default_images_dir),
                name,
                kernel,
                busybox,
                append,
                memory_mib,
            };
            let dir = image_build::build(&options)?;
            println!("image '{}' built in {}", options.name, dir.display());
            println!(
                "use it: --desktop NAME=kvm:{0}, or a kvm pool with {{\"image\":\"{0}\"}}",
                options.name
            );
        }
        Command::Image(ImageCommand::List { images }) => {
            let dir = images.unwrap_or_else(default_images_dir);
            println!("tiny\t(built in: the test guest)");
            for name in oriel_vmm::image::Image::list(&dir) {
                println!("{name}\t{}", dir.join(&name).display());
            }
        }
    }
    Ok(())
}

/// SIGINT and SIGTERM.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

/// Prints a start-up line for people and scripts. A closed stdout (the reader went away)
/// must not bring the server down, so write errors are ignored.
fn banner(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
