//! `oriel-bench broker`: a logon storm against one broker on SQLite, or several on one
//! PostgreSQL server. Simulated hosts over real host links fill a floating pool; then
//! every user makes a first connect (a new TLS connection, a login checked against the
//! real password hash, a connect that assigns a desktop), and then users reconnect to
//! the desktops they hold (a new TLS connection each) for a while. Each phase is timed
//! on its own and errors are counted as errors.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel::percentile;
use oriel_broker::password::hash_password;
use oriel_broker::store::{Assignment, NewPool, Role};
use oriel_broker::{Broker, BrokerConfig};
use oriel_protocol::api::{ConnectRequest, ConnectResponse, LoginRequest, LoginResponse};
use oriel_transport::api_client::ApiClient;
use serde_json::json;

use crate::host_sim::spawn_hosts;
use crate::hosts_bench::{create_pool, ready, round, wait_until};

#[derive(Debug, clap::Args)]
pub(crate) struct BrokerArgs {
    /// Desktops in the pool (kept ready by the simulated hosts).
    #[arg(long, default_value_t = 10_000)]
    desktops: u32,
    /// Users: each makes one first connect.
    #[arg(long, default_value_t = 1_000)]
    users: u32,
    /// How long users then reconnect to their desktops.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: u32,
    /// Brokers, clients spread over them (more than one needs --store postgres).
    #[arg(long, default_value_t = 1)]
    brokers: u32,
    /// sqlite (a file) or postgres (a private server started for the run).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    store: String,
    /// Simulated display servers that start the desktops.
    #[arg(long, default_value_t = 10)]
    hosts: u32,
    /// Then a login flood: this many simultaneous logins of unknown names, each from an
    /// address of its own (so no per-address limit stops them: the worst case for
    /// password hashing), measuring the process's memory.
    #[arg(long, default_value_t = 128)]
    flood: u32,
}

const PASSWORD: &str = "bench-password-123";

pub(crate) fn run(args: BrokerArgs) -> anyhow::Result<String> {
    on_two_threads(storm(args))
}

/// Runs a broker benchmark on a runtime of two threads (the machine's cores).
pub(crate) fn on_two_threads(
    bench: impl std::future::Future<Output = anyhow::Result<String>>,
) -> anyhow::Result<String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench)
}

/// A broker in this process on loopback (HTTPS) with its state in SQLite, its data in
/// a fresh directory under the system's temporary one (returned, to remove after).
pub(crate) async fn in_process_broker(
    tag: &str,
    restart_grace: Duration,
) -> anyhow::Result<(Broker, std::path::PathBuf)> {
    let (mut brokers, dir) = in_process_brokers(tag, 1, restart_grace, None).await?;
    let broker = brokers.pop().context("no broker started")?;
    Ok((broker, dir))
}

/// `n` brokers in this process on loopback (HTTPS), their data directories in a fresh
/// one under the system's temporary one (returned, to remove after); their state in
/// `database` (a URL; `None`: SQLite). More than one share it and a cluster key.
pub(crate) async fn in_process_brokers(
    tag: &str,
    n: u32,
    restart_grace: Duration,
    database: Option<String>,
) -> anyhow::Result<(Vec<Broker>, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("oriel-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cluster_key = (n > 1).then(|| dir.join("cluster.key"));
    if let Some(key) = &cluster_key {
        oriel_broker::cluster_key::ClusterKey::create(key)?;
    }
    let mut brokers = Vec::new();
    for i in 0..n {
        brokers.push(
            Broker::start(BrokerConfig {
                data_dir: dir.join(format!("broker{i}")),
                api_listen: "127.0.0.1:0".parse()?,
                host_listen: "127.0.0.1:0".parse()?,
                database: database.clone(),
                insecure_http: false,
                restart_grace,
                cluster_key: cluster_key.clone(),
            })
            .await?,
        );
    }
    Ok((brokers, dir))
}

/// The floating pool `bench` of synthetic desktops, up to `size` of them.
pub(crate) async fn bench_pool(
    store: &oriel_broker::store::Store,
    size: u32,
) -> anyhow::Result<oriel_broker::store::Pool> {
    store
        .create_pool(&NewPool {
            name: "bench".into(),
            source_kind: "synthetic".into(),
            source_params: "{}".into(),
            assignment: Assignment::Floating,
            min_ready: 0,
            max_size: i64::from(size),
            idle_timeout_s: 3600,
            disconnect_timeout_s: 3600,
        })
        .await?;
    store.pool_by_name("bench").await?.context("pool")
}

async fn storm(args: BrokerArgs) -> anyhow::Result<String> {
    if args.brokers == 0 || args.users == 0 || args.concurrency == 0 || args.hosts == 0 {
        bail!("--brokers, --users, --concurrency and --hosts must be positive");
    }
    if args.brokers > 1 && args.store != "postgres" {
        bail!("several brokers share one PostgreSQL database: add --store postgres");
    }
    let (postgres, database) = crate::hosts_bench::database_for(&args.store).await?;
    let grace = oriel_broker::reconcile::RESTART_GRACE;
    let (brokers, dir) = in_process_brokers("broker", args.brokers, grace, database).await?;
    let first = &brokers[0];
    let store = first.store.clone();

    eprintln!(
        "oriel-bench: {} broker(s) on {}; {} users; {} simulated hosts filling {} desktops ...",
        args.brokers, args.store, args.users, args.hosts, args.desktops
    );
    let hash = hash_password(PASSWORD)?;
    store.create_group("everyone").await?;
    for i in 0..args.users {
        let name = format!("user{i}");
        store.create_user(&name, &hash, Role::User).await?;
        store.add_group_member("everyone", &name).await?;
    }
    let host_addrs: Vec<_> = brokers.iter().map(|b| b.host_addr).collect();
    let capacity = args.desktops.div_ceil(args.hosts) + 1;
    let (endpoint, sims, _) = spawn_hosts(
        &host_addrs,
        first.fingerprint,
        &first.join_token,
        args.hosts,
        capacity,
    )?;
    create_pool(&store, "bench", args.desktops).await?;
    store.entitle_group("bench", "everyone").await?;
    let want = i64::from(args.desktops);
    if !wait_until(Duration::from_secs(600), || async {
        ready(&store).await >= want
    })
    .await
    {
        bail!(
            "only {} of {want} desktops became ready",
            ready(&store).await
        );
    }

    let urls: Arc<Vec<String>> = Arc::new(brokers.iter().map(Broker::url).collect());
    let pin = first.fingerprint;
    eprintln!(
        "oriel-bench: first connects, {} clients ...",
        args.concurrency
    );
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (urls, next, errors) = (urls.clone(), next.clone(), errors.clone());
            let users = u64::from(args.users);
            tokio::spawn(async move {
                let mut timed = Vec::new();
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= users {
                        return timed;
                    }
                    let url = &urls[usize::try_from(i).unwrap_or(0) % urls.len()];
                    match first_connect(url, pin, &format!("user{i}")).await {
                        Ok(done) => timed.push(done),
                        Err(e) => {
                            eprintln!("oriel-bench: first connect: {e:#}");
                            errors.fetch_add(1, Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let mut first_login_us = Vec::new();
    let mut first_connect_us = Vec::new();
    let mut first_total_us = Vec::new();
    let mut tokens = Vec::new();
    for w in workers {
        for (token, login, connect) in w.await? {
            tokens.push(token);
            first_login_us.push(login);
            first_connect_us.push(connect);
            first_total_us.push(login.saturating_add(connect));
        }
    }
    let first_s = started.elapsed().as_secs_f64();
    let first_errors = errors.swap(0, Relaxed);
    let tokens = Arc::new(tokens);

    eprintln!(
        "oriel-bench: reconnects to held desktops for {} s ...",
        args.seconds
    );
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (urls, next, errors, tokens) =
                (urls.clone(), next.clone(), errors.clone(), tokens.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline && !tokens.is_empty() {
                    let i = usize::try_from(next.fetch_add(1, Relaxed)).unwrap_or(0);
                    let url = &urls[i % urls.len()];
                    let token = &tokens[i % tokens.len()];
                    let t = Instant::now();
                    match connect(url, pin, token).await {
                        Ok(()) => lat.push(micros(t.elapsed())),
                        Err(_) => {
                            errors.fetch_add(1, Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut reconnect_us = Vec::new();
    for w in workers {
        reconnect_us.extend(w.await?);
    }
    let reconnect_s = started.elapsed().as_secs_f64();
    let reconnect_errors = errors.load(Relaxed);

    let flood = login_flood(first, args.flood).await?;
    let assigned = store
        .list_desktops(None)
        .await?
        .iter()
        .filter(|d| d.assigned_user_id.is_some())
        .count();
    for sim in &sims {
        sim.abort();
    }
    endpoint.close(0u32.into(), b"done");
    for b in &brokers {
        b.shutdown().await;
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(postgres);
    let ms = |us: &[u32], p: f64| round(f64::from(percentile(us, p)) / 1000.0);
    Ok(json!({
        "workload": "broker",
        "store": args.store,
        "brokers": args.brokers,
        "desktops": args.desktops,
        "users": args.users,
        "concurrency": args.concurrency,
        "first_connects": first_total_us.len(),
        "first_connects_per_s": round(first_total_us.len() as f64 / first_s),
        "first_connect_ms_p50": ms(&first_total_us, 0.5),
        "first_connect_ms_p99": ms(&first_total_us, 0.99),
        "first_login_ms_p50": ms(&first_login_us, 0.5),
        "first_assign_ms_p50": ms(&first_connect_us, 0.5),
        "first_assign_ms_p99": ms(&first_connect_us, 0.99),
        "first_errors": first_errors,
        "reconnects": reconnect_us.len(),
        "reconnects_per_s": round(reconnect_us.len() as f64 / reconnect_s),
        "reconnect_ms_p50": ms(&reconnect_us, 0.5),
        "reconnect_ms_p99": ms(&reconnect_us, 0.99),
        "reconnect_errors": reconnect_errors,
        "desktops_assigned": assigned,
        "flood_logins": args.flood,
        "flood_answered_401": flood.unauthorized,
        "flood_answered_503": flood.busy,
        "flood_seconds": flood.seconds,
        "flood_rss_mb_before": flood.rss_before,
        "flood_rss_mb_peak": flood.rss_peak,
        "flood_rss_mb_after": flood.rss_after,
    })
    .to_string())
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// A user's first connect from a new client: log in (the password checked against its
/// argon2 hash), then connect (a desktop assigned, a ticket signed). Returns the token
/// and the two times, µs.
async fn first_connect(
    url: &str,
    pin: oriel_transport::Fingerprint,
    user: &str,
) -> anyhow::Result<(String, u32, u32)> {
    let api = ApiClient::new(url, Some(pin))?;
    let t = Instant::now();
    let login: LoginResponse = api
        .post(
            "/login",
            &LoginRequest {
                user: user.into(),
                password: PASSWORD.into(),
            },
        )
        .await?;
    let login_us = micros(t.elapsed());
    let t = Instant::now();
    assign(&api.with_token(login.token.clone())).await?;
    Ok((login.token, login_us, micros(t.elapsed())))
}

/// A connect from a new client (a TLS connection of its own) with a user's token.
async fn connect(url: &str, pin: oriel_transport::Fingerprint, token: &str) -> anyhow::Result<()> {
    assign(&ApiClient::new(url, Some(pin))?.with_token(token)).await
}

/// Connects to the pool `bench` (a desktop assigned or found again, a ticket signed).
async fn assign(api: &ApiClient) -> anyhow::Result<()> {
    let _: ConnectResponse = api
        .post(
            "/connect",
            &ConnectRequest {
                pool: "bench".into(),
            },
        )
        .await?;
    Ok(())
}

struct Flood {
    unauthorized: usize,
    busy: usize,
    seconds: f64,
    rss_before: f64,
    rss_peak: f64,
    rss_after: f64,
}

/// This process's resident memory, MiB.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn login_flood(broker: &Broker, n: u32) -> anyhow::Result<Flood> {
    eprintln!("oriel-bench: login flood, {n} simultaneous logins from {n} addresses ...");
    let rss_before = rss_mb();
    let peak = Arc::new(AtomicU64::new(rss_before.to_bits()));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = rss_mb();
                if now > f64::from_bits(peak.load(Relaxed)) {
                    peak.store(now.to_bits(), Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let tls = oriel_transport::tls::pinned_tls_client_config(broker.fingerprint, &[b"http/1.1"])?;
    let url = format!("{}/api/v1/login", broker.url());
    let started = Instant::now();
    let logins = (0..n).map(|i| {
        // 250 sources per /24; beyond 64,000 logins the last /24 is reused.
        let octet = |v| u8::try_from(v).unwrap_or(u8::MAX);
        let from = std::net::Ipv4Addr::new(127, 1, octet(i / 250), octet(i % 250 + 1));
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .local_address(std::net::IpAddr::V4(from))
            .build();
        let url = url.clone();
        async move {
            let body = json!({"user": format!("nobody{i}"), "password": "guess-guess"});
            client?
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(logins)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampler.abort();
    Ok(Flood {
        unauthorized: statuses.iter().filter(|s| **s == 401).count(),
        busy: statuses.iter().filter(|s| **s == 503).count(),
        seconds,
        rss_before,
        rss_peak: f64::from_bits(peak.load(Relaxed)),
        rss_after: rss_mb(),
    })
}
