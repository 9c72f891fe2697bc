//! `oriel-bench broker`: a logon storm against the broker. Users log in and connect to a
//! floating pool over HTTPS (pinned) with the state in a SQLite file on disk; each
//! connect assigns a desktop (or finds the user's own again) and signs a ticket.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use oriel::percentile;
use oriel_broker::password::{hash_password, new_token, token_hash};
use oriel_broker::store::{now_ms, Assignment, DesktopState, NewPool, Role};
use oriel_broker::{Broker, BrokerConfig};
use oriel_protocol::api::{ConnectRequest, ConnectResponse, LoginRequest, LoginResponse};
use oriel_transport::api_client::ApiClient;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub(crate) struct BrokerArgs {
    /// Desktops in the pool.
    #[arg(long, default_value_t = 10_000)]
    desktops: u32,
    /// Users connecting.
    #[arg(long, default_value_t = 1_000)]
    users: u32,
    /// How long the connect storm lasts.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: u32,
    /// Logins measured (argon2 makes each cost real CPU, as it should).
    #[arg(long, default_value_t = 50)]
    logins: u32,
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

/// A broker in this process on loopback (HTTPS), its data in a fresh directory under
/// the system's temporary one (returned, to remove after).
pub(crate) async fn in_process_broker(
    tag: &str,
    restart_grace: Duration,
) -> anyhow::Result<(Broker, std::path::PathBuf)> {
    in_process_broker_on(tag, restart_grace, None).await
}

/// [`in_process_broker`] with its state in `database` (a URL; `None`: SQLite in the
/// data directory).
pub(crate) async fn in_process_broker_on(
    tag: &str,
    restart_grace: Duration,
    database: Option<String>,
) -> anyhow::Result<(Broker, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("oriel-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::start(BrokerConfig {
        data_dir: dir.clone(),
        api_listen: "127.0.0.1:0".parse()?,
        host_listen: "127.0.0.1:0".parse()?,
        database,
        insecure_http: false,
        restart_grace,
        cluster_key: None,
    })
    .await?;
    Ok((broker, dir))
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
    let (broker, dir) = in_process_broker("broker", oriel_broker::reconcile::RESTART_GRACE).await?;
    let store = broker.store.clone();

    eprintln!(
        "oriel-bench: creating {} users and {} desktops ...",
        args.users, args.desktops
    );
    let hash = hash_password(PASSWORD)?;
    let host = store
        .register_host(
            "bench-host",
            "127.0.0.1:9",
            &"0".repeat(64),
            i64::from(args.desktops),
            &token_hash(&new_token()),
        )
        .await?;
    let pool = bench_pool(&store, args.desktops).await?;
    for i in 0..args.desktops {
        store
            .create_desktop(
                &pool.id,
                Some(&host.id),
                &format!("bench-{i}"),
                DesktopState::Ready,
            )
            .await?;
    }
    store.create_group("everyone").await?;
    store.entitle_group("bench", "everyone").await?;
    let mut tokens = Vec::new();
    for i in 0..args.users {
        let name = format!("user{i}");
        let user = store.create_user(&name, &hash, Role::User).await?;
        store.add_group_member("everyone", &name).await?;
        // Tokens made directly for all but the measured logins.
        let token = new_token();
        store
            .insert_api_token(&token_hash(&token), &user.id, now_ms() + 3_600_000)
            .await?;
        tokens.push(token);
    }
    // The bench host is not a real display server: keep its heartbeat fresh.
    let heartbeat = {
        let (store, id) = (store.clone(), host.id.clone());
        tokio::spawn(async move {
            loop {
                let _ = store
                    .record_heartbeat(&id, now_ms(), 1_000_000, &Default::default())
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let api = ApiClient::new(&broker.url(), Some(broker.fingerprint))?;
    let mut login_us = Vec::new();
    for i in 0..args.logins.min(args.users) {
        let t = Instant::now();
        let _: LoginResponse = api
            .post(
                "/login",
                &LoginRequest {
                    user: format!("user{i}"),
                    password: PASSWORD.into(),
                },
            )
            .await?;
        login_us.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }

    eprintln!(
        "oriel-bench: connect storm, {} clients for {} s ...",
        args.concurrency, args.seconds
    );
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let next_user = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let tokens = Arc::new(tokens);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (api, next_user, errors, tokens) = (
                api.clone(),
                next_user.clone(),
                errors.clone(),
                tokens.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    // Below tokens.len(), so it converts back.
                    let i = usize::try_from(next_user.fetch_add(1, Relaxed) % tokens.len() as u64)
                        .unwrap_or(0);
                    let client = api.clone().with_token(tokens[i].clone());
                    let t = Instant::now();
                    let r: Result<ConnectResponse, _> = client
                        .post(
                            "/connect",
                            &ConnectRequest {
                                pool: "bench".into(),
                            },
                        )
                        .await;
                    match r {
                        Ok(_) => {
                            lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX))
                        }
                        Err(_) => {
                            errors.fetch_add(1, Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut connect_us = Vec::new();
    for w in workers {
        connect_us.extend(w.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    heartbeat.abort();
    let flood = login_flood(&broker, args.flood).await?;
    let assigned = store
        .list_desktops(Some(&pool.id))
        .await?
        .iter()
        .filter(|d| d.assigned_user_id.is_some())
        .count();
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |us: u32| f64::from(us) / 1000.0;
    Ok(json!({
        "workload": "broker",
        "desktops": args.desktops,
        "users": args.users,
        "concurrency": args.concurrency,
        "seconds": elapsed,
        "connects": connect_us.len(),
        "connects_per_s": connect_us.len() as f64 / elapsed,
        "connect_ms_p50": ms(percentile(&connect_us, 0.5)),
        "connect_ms_p99": ms(percentile(&connect_us, 0.99)),
        "login_ms_p50": ms(percentile(&login_us, 0.5)),
        "errors": errors.load(Relaxed),
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
