//! `oriel demo`: a complete single-machine deployment. It starts the broker (SQLite in a
//! temporary directory) and a display server registered to it with the join token,
//! creates a demo user and pool through the admin API, then logs in and connects like
//! any user would: HTTPS to the broker, a ticket, pinned QUIC to the display server.

// Command-line output of the binary this module serves.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use oriel::launcher;
use oriel_protocol::api::{LoginRequest, LoginResponse};
use oriel_transport::api_client::{ApiCallError, ApiClient};
use oriel_transport::Fingerprint;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Synthetic workload on the demo desktops: idle, typing, scroll, drag, video, mixed.
    #[arg(long, default_value = "mixed")]
    workload: String,
    /// How long the client stays connected.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Where to save the client's final screen.
    #[arg(long, default_value = "oriel-demo.png")]
    screenshot: PathBuf,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("oriel-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Every process started is stopped again, whatever happened.
    let mut children = Vec::new();
    let result = deploy_and_connect(&args, &dir, &mut children).await;
    // Stop in reverse order: the display server before the broker it reports to.
    for child in children.iter_mut().rev() {
        stop(child).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn deploy_and_connect(
    args: &DemoArgs,
    dir: &Path,
    children: &mut Vec<Child>,
) -> anyhow::Result<()> {
    let broker_bin = sibling_binary("oriel-broker")?;
    let server_bin = sibling_binary("oriel-display-server")?;
    let broker_dir = dir.join("broker");
    let admin_password = random_password()?;

    eprintln!("[1/5] creating the broker's administrator ...");
    let mut init = Command::new(&broker_bin)
        .args(["init", "--admin", "admin", "--data-dir"])
        .arg(&broker_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start oriel-broker init")?;
    if let Some(mut stdin) = init.stdin.take() {
        stdin
            .write_all(format!("{admin_password}\n").as_bytes())
            .await?;
    }
    if !init.wait().await?.success() {
        bail!("oriel-broker init failed");
    }

    eprintln!("[2/5] starting the broker ...");
    let mut broker = spawn_quiet(
        Command::new(&broker_bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--host-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&broker_dir),
    )?;
    let mut lines = stdout_lines(&mut broker)?;
    children.push(broker);
    let api_url = banner(&mut lines, "oriel-broker: API on ").await?;
    let host_link = banner(&mut lines, "oriel-broker: host link on ").await?;
    let fingerprint: Fingerprint = banner(
        &mut lines,
        "oriel-broker: certificate SHA-256 fingerprint: ",
    )
    .await?
    .parse()
    .map_err(anyhow::Error::msg)?;
    let join_token = std::fs::read_to_string(broker_dir.join("join-token"))?;
    eprintln!("      broker API {api_url}, certificate {fingerprint}");

    eprintln!("[3/5] starting a display server and joining it to the broker ...");
    let server = spawn_quiet(
        Command::new(&server_bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
                "--name",
                "demo-host",
            ])
            .args([
                "--broker",
                &host_link,
                "--broker-fingerprint",
                &fingerprint.to_string(),
            ])
            .args(["--join-token", join_token.trim()])
            .arg("--data-dir")
            .arg(dir.join("display-server")),
    )?;
    children.push(server);

    eprintln!(
        "[4/5] creating the demo user and a floating pool of '{}' desktops ...",
        args.workload
    );
    let api = ApiClient::new(&api_url, Some(fingerprint))?;
    let login: LoginResponse = api
        .post(
            "/login",
            &LoginRequest {
                user: "admin".into(),
                password: admin_password.clone(),
            },
        )
        .await?;
    let admin = api.clone().with_token(login.token);
    let user_password = format!("demo-{admin_password}");
    let _: serde_json::Value = admin
        .post(
            "/admin/users",
            &json!({"name": "demo", "password": user_password}),
        )
        .await?;
    let _: serde_json::Value = admin
        .post(
            "/admin/pools",
            &json!({"name": "demo", "assignment": "floating", "min_ready": 1, "max_size": 2,
                    "source_kind": "synthetic", "source_params": {"workload": args.workload}}),
        )
        .await?;
    admin
        .post_no_reply(
            "/admin/entitlements",
            &json!({"pool": "demo", "user": "demo"}),
        )
        .await?;

    eprintln!("[5/5] logging in as 'demo' and connecting to pool 'demo' ...");
    let user = launcher::login(&api_url, Some(fingerprint), "demo", &user_password).await?;
    let mut waited = Duration::ZERO;
    let opts = loop {
        match launcher::connect_options(&user, "demo").await {
            Ok((opts, reply)) => {
                eprintln!("      desktop {} on {}", reply.desktop, reply.address);
                break opts;
            }
            Err(e) if is_pool_exhausted(&e) && waited < Duration::from_secs(60) => {
                eprintln!(
                    "      waiting for the broker to start a desktop ({}s) ...",
                    waited.as_secs()
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                waited += Duration::from_secs(1);
            }
            Err(e) => return Err(e),
        }
    };
    eprintln!(
        "      connected for {} ...",
        humantime::format_duration(args.duration)
    );
    let outcome = crate::run_session(
        &opts,
        Some(args.duration),
        Some(&args.screenshot),
        None,
        None,
    )
    .await?;
    println!("{}", outcome.stats.summary());
    launcher::logoff(&user, "demo").await?;
    Ok(())
}

/// 32 hex digits from the OS random source.
fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(oriel_protocol::api::to_hex(&bytes))
}

fn is_pool_exhausted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ApiCallError>(),
            Some(ApiCallError::Status { status: 409, .. })
        )
    })
}

fn spawn_quiet(cmd: &mut Command) -> anyhow::Result<Child> {
    cmd.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
    )
    .stdout(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .context("cannot start a demo process")
}

fn stdout_lines(child: &mut Child) -> anyhow::Result<Lines<BufReader<ChildStdout>>> {
    Ok(BufReader::new(child.stdout.take().context("stdout not captured")?).lines())
}

/// The value of the first output line with `prefix`.
async fn banner(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> anyhow::Result<String> {
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(v) = line.strip_prefix(prefix) {
                return Ok(v.trim().to_string());
            }
        }
        bail!("the process exited before printing '{prefix}' (see its log above)")
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .with_context(|| format!("no '{prefix}' within 60 s"))?
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

/// Asks a child to stop (SIGTERM), then kills it if it lingers.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on the PID of a child we spawned and still own.
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
