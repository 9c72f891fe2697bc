//! `oriel demo`: a complete deployment on this machine. It starts the broker (SQLite in a
//! temporary directory), or several brokers sharing a private PostgreSQL server, and a
//! display server that joins them with the join token; creates a demo user and pool
//! through the admin API; then logs in and connects like any user would: HTTPS to a
//! broker, a ticket, pinned QUIC to the display server. With several brokers, the one
//! running the reconcile loop is killed halfway through the session, to show another
//! taking over while the session goes on.

// Command-line output of the binary this module serves.
#![allow(clippy::print_stdout)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel::launcher;
use oriel::local::{self, BrokerProcess};
use oriel_protocol::api::{LoginRequest, LoginResponse};
use oriel_transport::api_client::ApiClient;
use oriel_transport::Fingerprint;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

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
    /// Brokers to run. More than one is an active/active cluster on one database (needs
    /// --store postgres); its reconcile leader is killed halfway through the session.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    brokers: u32,
    /// The brokers' store: sqlite (a file) or postgres (a private PostgreSQL server the
    /// demo starts with Debian's postgresql binaries).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    store: String,
}

/// The processes the demo started, stopped again whatever happened.
#[derive(Default)]
struct Deployment {
    postgres: Option<Child>,
    brokers: Vec<BrokerProcess>,
    server: Option<Child>,
}

impl Deployment {
    /// Stops everything in reverse order: the display server before the brokers it
    /// reports to, the database last.
    async fn stop(&mut self) {
        if let Some(server) = self.server.as_mut() {
            local::stop(server).await;
        }
        for broker in self.brokers.iter_mut().rev() {
            broker.stop().await;
        }
        if let Some(postgres) = self.postgres.as_mut() {
            local::stop(postgres).await;
        }
    }
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.brokers > 1 && args.store != "postgres" {
        bail!(
            "--brokers {} needs --store postgres: the brokers of a cluster share one PostgreSQL database",
            args.brokers
        );
    }
    let dir = std::env::temp_dir().join(format!("oriel-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut deployment = Deployment::default();
    let result = deploy_and_connect(&args, &dir, &mut deployment).await;
    deployment.stop().await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("the brokers' logs are kept in {}", dir.display());
    }
    result
}

/// Numbered progress lines.
struct Steps {
    done: usize,
    total: usize,
}

impl Steps {
    fn say(&mut self, what: &str) {
        self.done += 1;
        eprintln!("[{}/{}] {what} ...", self.done, self.total);
    }
}

async fn deploy_and_connect(
    args: &DemoArgs,
    dir: &Path,
    deployment: &mut Deployment,
) -> anyhow::Result<()> {
    let broker_bin = local::sibling_binary("oriel-broker")?;
    let server_bin = local::sibling_binary("oriel-display-server")?;
    let postgres = args.store == "postgres";
    let mut steps = Steps {
        done: 0,
        total: 5 + usize::from(postgres),
    };

    // The database (none: each broker's own SQLite file), and what every broker is
    // started with besides its own data directory.
    let mut database: Vec<OsString> = Vec::new();
    let mut shared: Vec<OsString> = Vec::new();
    if postgres {
        steps.say("starting a private PostgreSQL server");
        let (child, mut lines) = local::spawn(Command::new(&broker_bin).arg("temp-postgres"))?;
        deployment.postgres = Some(child);
        let url = local::banner(&mut lines, "oriel-broker: PostgreSQL database at ").await?;
        local::drain(lines);
        eprintln!("      {url}");
        database.extend(["--database".into(), url.into()]);
        shared.clone_from(&database);
        if args.brokers > 1 {
            let key = dir.join("cluster.key");
            let made = Command::new(&broker_bin)
                .arg("cluster-key")
                .arg(&key)
                .stdout(Stdio::null())
                .status()
                .await?;
            if !made.success() {
                bail!("oriel-broker cluster-key failed");
            }
            shared.extend(["--cluster-key".into(), key.into()]);
        }
    }

    steps.say("creating the broker's administrator");
    let first_dir = dir.join("broker0");
    let admin_password = random_password()?;
    init_admin(&broker_bin, &first_dir, &database, &admin_password).await?;

    steps.say(&if args.brokers > 1 {
        format!("starting {} brokers on one database", args.brokers)
    } else {
        "starting the broker".to_string()
    });
    deployment.brokers = BrokerProcess::start_all(&broker_bin, dir, args.brokers, &shared).await?;
    for (i, broker) in deployment.brokers.iter().enumerate() {
        eprintln!("      broker{i}: API {}", broker.url);
    }
    let first = &deployment.brokers[0];
    let fingerprint = first.fingerprint;
    eprintln!("      certificate {fingerprint}");
    let join_token = first.join_token()?;

    steps.say(if args.brokers > 1 {
        "starting a display server and joining it to the brokers"
    } else {
        "starting a display server and joining it to the broker"
    });
    let mut server = Command::new(&server_bin);
    server
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .args(["--name", "demo-host"])
        .args(["--broker-fingerprint", &fingerprint.to_string()])
        .args(["--join-token", &join_token])
        .arg("--data-dir")
        .arg(dir.join("display-server"));
    for broker in &deployment.brokers {
        server.args(["--broker", &broker.host_addr.to_string()]);
    }
    let (child, lines) = local::spawn(&mut server)?;
    local::drain(lines);
    deployment.server = Some(child);

    steps.say(&format!(
        "creating the demo user and a floating pool of '{}' desktops",
        args.workload
    ));
    let user_password = format!("demo-{admin_password}");
    create_demo_pool(
        &first.url,
        fingerprint,
        &admin_password,
        &user_password,
        args,
    )
    .await?;
    eprintln!(
        "      in a browser while the demo runs: {}/ (user demo, password {user_password})",
        first.url
    );

    // The user signs in at the last broker (the first of a cluster gets the admin's calls)
    // and keeps the others to fail over to.
    let urls: Vec<String> = deployment
        .brokers
        .iter()
        .rev()
        .map(|b| b.url.clone())
        .collect();
    steps.say(&format!(
        "logging in as 'demo' at {} and connecting to pool 'demo'",
        urls[0]
    ));
    let user = launcher::login_to_any(&urls, Some(fingerprint), "demo", &user_password).await?;
    let (opts, reply) =
        launcher::connect_options_waiting(&user, "demo", Duration::from_secs(60), |waited| {
            eprintln!(
                "      waiting for the broker to start a desktop ({}s) ...",
                waited.as_secs()
            );
        })
        .await?;
    eprintln!("      desktop {} on {}", reply.desktop, reply.address);
    eprintln!(
        "      connected for {} ...",
        humantime::format_duration(args.duration)
    );
    let session = crate::run_session(
        &opts,
        Some(args.duration),
        Some(&args.screenshot),
        None,
        None,
    );
    let (outcome, failover) = if deployment.brokers.len() > 1 {
        let failover = kill_the_leader(&mut deployment.brokers, fingerprint, args.duration / 2);
        let (outcome, failover) = tokio::join!(session, failover);
        (outcome?, Some(failover?))
    } else {
        (session.await?, None)
    };
    println!("{}", outcome.stats.summary());
    if let Some(failover) = failover {
        println!("{failover}");
    }
    launcher::logoff(&user, "demo").await?;
    Ok(())
}

/// `oriel-broker init` of the administrator on the first broker's data directory.
async fn init_admin(
    broker_bin: &Path,
    dir: &Path,
    database: &[OsString],
    password: &str,
) -> anyhow::Result<()> {
    let mut init = Command::new(broker_bin)
        .args(["init", "--admin", "admin", "--data-dir"])
        .arg(dir)
        .args(database)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start oriel-broker init")?;
    if let Some(mut stdin) = init.stdin.take() {
        stdin.write_all(format!("{password}\n").as_bytes()).await?;
    }
    if !init.wait().await?.success() {
        bail!("oriel-broker init failed");
    }
    Ok(())
}

/// Through the admin API: the user `demo` and a floating pool `demo` it may use.
async fn create_demo_pool(
    url: &str,
    fingerprint: Fingerprint,
    admin_password: &str,
    user_password: &str,
    args: &DemoArgs,
) -> anyhow::Result<()> {
    let api = ApiClient::new(url, Some(fingerprint))?;
    let login: LoginResponse = api
        .post(
            "/login",
            &LoginRequest {
                user: "admin".into(),
                password: admin_password.into(),
            },
        )
        .await?;
    let admin = api.with_token(login.token);
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
    Ok(())
}

/// After `after`, kills the broker that runs the reconcile loop (SIGKILL, no goodbye)
/// and waits for another to lead; says what happened.
async fn kill_the_leader(
    brokers: &mut [BrokerProcess],
    fingerprint: Fingerprint,
    after: Duration,
) -> anyhow::Result<String> {
    tokio::time::sleep(after).await;
    let Some(old) = leader(brokers, fingerprint).await else {
        return Ok("failover: no broker led the reconcile loop, none was killed".into());
    };
    eprintln!("      killing broker{old}, the reconcile leader, with SIGKILL ...");
    let killed = Instant::now();
    brokers[old].kill().await;
    while killed.elapsed() < Duration::from_secs(30) {
        if let Some(next) = leader(brokers, fingerprint).await {
            let took = killed.elapsed().as_secs_f64();
            eprintln!("      broker{next} leads after {took:.1} s; the session goes on");
            return Ok(format!(
                "failover: broker{old} killed, broker{next} led the reconcile loop {took:.1} s later"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no broker took the reconcile loop over within 30 s of broker{old}'s death")
}

/// The running broker whose `/metrics` says it holds the reconcile lease.
async fn leader(brokers: &[BrokerProcess], fingerprint: Fingerprint) -> Option<usize> {
    for (i, broker) in brokers.iter().enumerate() {
        if broker.child.is_none() {
            continue;
        }
        let Ok(api) = ApiClient::new(&broker.url, Some(fingerprint)) else {
            continue;
        };
        if let Ok(text) = api.metrics().await {
            if text.lines().any(|l| l == "oriel_broker_reconcile_leader 1") {
                return Some(i);
            }
        }
    }
    None
}

/// 32 hex digits from the OS random source.
fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(oriel_protocol::api::to_hex(&bytes))
}
