//! `oriel demo`: a whole deployment on one machine. It starts the display server binary
//! that sits next to this one, reads its address and certificate fingerprint from its
//! output, and connects to it like any client would (pinned QUIC on loopback).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use oriel::ConnectOptions;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Synthetic workload on the demo desktop: idle, typing, scroll, drag, video, mixed.
    #[arg(long, default_value = "mixed")]
    workload: String,
    /// How long the client stays connected.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Where to save the client's final screen.
    #[arg(long, default_value = "oriel-demo.png")]
    screenshot: PathBuf,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let server_bin = sibling_binary("oriel-display-server")?;
    let data_dir = std::env::temp_dir().join(format!("oriel-demo-{}", std::process::id()));
    eprintln!("starting {} ...", server_bin.display());
    let mut child = Command::new(&server_bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--desktop",
        ])
        .arg(format!("default={}", args.workload))
        .arg("--data-dir")
        .arg(&data_dir)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", server_bin.display()))?;

    let result = async {
        let (addr, fingerprint) = read_banner(&mut child).await?;
        eprintln!("display server on {addr}, certificate {fingerprint}");
        eprintln!(
            "client connecting for {} ...",
            humantime::format_duration(args.duration)
        );
        let opts = ConnectOptions::new(addr, fingerprint);
        let outcome =
            crate::run_session(&opts, Some(args.duration), Some(&args.screenshot)).await?;
        println!("{}", outcome.stats.summary());
        anyhow::Ok(())
    }
    .await;

    stop(&mut child).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

/// A binary built into the same directory as this one.
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate the oriel executable")?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found next to {}; build the whole workspace first: cargo build --release --workspace",
            name,
            me.display()
        );
    }
    Ok(path)
}

/// Reads the server's "listening on" and "fingerprint" lines.
async fn read_banner(
    child: &mut Child,
) -> anyhow::Result<(std::net::SocketAddr, oriel_transport::Fingerprint)> {
    let stdout = child.stdout.take().context("server stdout not captured")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(a) = line.strip_prefix("oriel-display-server: listening on ") {
                addr = Some(a.trim().parse()?);
            }
            if let Some(f) =
                line.strip_prefix("oriel-display-server: certificate SHA-256 fingerprint: ")
            {
                let fp = f.parse().map_err(anyhow::Error::msg)?;
                return Ok((addr.context("fingerprint before address")?, fp));
            }
        }
        bail!("the display server exited before it was ready (see its log above)")
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .context("the display server did not start within 60 s")?
}

/// Asks the server to stop (SIGTERM), then kills it if it lingers.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on the PID of the child we spawned and still own.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}
