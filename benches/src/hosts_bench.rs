//! `oriel-bench hosts`: the broker's host bookkeeping at estate scale. Simulated display
//! servers run in this process, each over a real host link (QUIC, registration with the
//! join token, a heartbeat every 2 s reporting each of its desktops, commands answered
//! at once, as a host whose desktops start instantly would). A broker on SQLite or on a
//! private PostgreSQL server fills pools whose spares add up to the desktops asked for.
//!
//! Figures: time until every host is linked and every desktop ready, then over a steady
//! stretch the reconcile pass time, heartbeats written per second, and the CPU of the
//! process (broker and simulators together).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel_broker::store::{Assignment, DesktopState, NewPool, Store};
use oriel_broker::temp_postgres::TempPostgres;
use oriel_broker::Broker;
use serde_json::json;

use crate::host_sim::{spawn_hosts, HEARTBEAT};

#[derive(Debug, clap::Args)]
pub(crate) struct HostsArgs {
    /// Simulated display servers.
    #[arg(long, default_value_t = 1_000)]
    hosts: u32,
    /// Desktops to keep ready over all of them (pools of 100).
    #[arg(long, default_value_t = 10_000)]
    desktops: u32,
    /// The steady stretch measured once every desktop is ready, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The broker's store: sqlite (a file) or postgres (a private server for the run).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    store: String,
}

/// Desktops per pool: the loop starts at most 32 new ones per pool per pass.
const POOL_SIZE: u32 = 100;

pub(crate) fn run(args: HostsArgs) -> anyhow::Result<String> {
    crate::broker_bench::on_two_threads(estate(args))
}

async fn estate(args: HostsArgs) -> anyhow::Result<String> {
    if args.hosts == 0 || args.desktops == 0 {
        bail!("--hosts and --desktops must be positive");
    }
    let (postgres, database) = crate::hosts_bench::database_for(&args.store).await?;
    let grace = oriel_broker::reconcile::RESTART_GRACE;
    let (mut brokers, dir) =
        crate::broker_bench::in_process_brokers("hosts", 1, grace, database).await?;
    let broker = brokers.pop().context("no broker started")?;

    eprintln!("oriel-bench: linking {} simulated hosts ...", args.hosts);
    let started = Instant::now();
    let capacity = args.desktops.div_ceil(args.hosts) + 1;
    let (endpoint, sims, commands) = spawn_hosts(
        &[broker.host_addr],
        broker.fingerprint,
        &broker.join_token,
        args.hosts,
        capacity,
    )?;
    let linked = wait_until(Duration::from_secs(300), || async {
        broker.host_registrations() >= u64::from(args.hosts)
    })
    .await;
    let link_s = started.elapsed().as_secs_f64();
    if !linked {
        bail!("only {} hosts linked", broker.host_registrations());
    }

    eprintln!(
        "oriel-bench: filling pools to {} ready desktops ...",
        args.desktops
    );
    let started = Instant::now();
    let mut left = args.desktops;
    let mut n = 0;
    while left > 0 {
        let size = left.min(POOL_SIZE);
        create_pool(&broker.store, &format!("pool-{n:04}"), size).await?;
        left -= size;
        n += 1;
    }
    let want = i64::from(args.desktops);
    let filled = wait_until(Duration::from_secs(900), || async {
        ready(&broker.store).await >= want
    })
    .await;
    let fill_s = started.elapsed().as_secs_f64();
    let ready_now = ready(&broker.store).await;
    if !filled {
        eprintln!("oriel-bench: only {ready_now} of {want} desktops ready");
    }

    eprintln!("oriel-bench: steady state for {} s ...", args.seconds);
    let metrics = MetricsScraper::new(&broker)?;
    let before = metrics.scrape().await?;
    let cpu_before = crate::x11_bench::process_cpu_s(std::process::id());
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let secs = t.elapsed().as_secs_f64();
    let cpu = crate::x11_bench::process_cpu_s(std::process::id()) - cpu_before;
    let after = metrics.scrape().await?;
    let delta = |name: &str| after.get(name).unwrap_or(&0.0) - before.get(name).unwrap_or(&0.0);
    let passes = delta("oriel_broker_reconcile_passes_total");
    let pass_ms = if passes > 0.0 {
        1000.0 * delta("oriel_broker_reconcile_seconds_total") / passes
    } else {
        f64::NAN
    };

    for sim in &sims {
        sim.abort();
    }
    endpoint.close(0u32.into(), b"done");
    broker.shutdown().await;
    broker.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(postgres);
    Ok(json!({
        "workload": "hosts",
        "store": args.store,
        "hosts": args.hosts,
        "desktops": args.desktops,
        "desktops_ready": ready_now,
        "link_all_hosts_s": round(link_s),
        "fill_all_desktops_s": round(fill_s),
        "desktops_started_per_s": round(ready_now as f64 / fill_s),
        "host_commands": commands.load(Relaxed),
        "reconcile_passes": passes,
        "reconcile_pass_ms_mean": round(pass_ms),
        "heartbeats_written_per_s": round(delta("oriel_broker_heartbeats_total") / secs),
        "heartbeats_expected_per_s": round(f64::from(args.hosts) / HEARTBEAT.as_secs_f64()),
        "process_cpu_cores": round(cpu / secs),
    })
    .to_string())
}

/// For `--store postgres`, a private PostgreSQL server (kept until the run ends) and
/// the URL of a new database on it; for `sqlite`, neither (the broker's own file).
pub(crate) async fn database_for(
    store: &str,
) -> anyhow::Result<(Option<TempPostgres>, Option<String>)> {
    if store != "postgres" {
        return Ok((None, None));
    }
    let postgres = TempPostgres::start().context("a private PostgreSQL server")?;
    let database = postgres.create_database("oriel").await?;
    Ok((Some(postgres), Some(database)))
}

pub(crate) fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) async fn ready(store: &Store) -> i64 {
    store.desktop_counts_by_pool().await.map_or(0, |counts| {
        counts
            .iter()
            .filter(|(_, state, _)| *state == DesktopState::Ready)
            .map(|(_, _, n)| n)
            .sum()
    })
}

pub(crate) async fn wait_until<F, Fut>(limit: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// A floating pool of synthetic desktops kept at `size`, all ready.
pub(crate) async fn create_pool(store: &Store, name: &str, size: u32) -> anyhow::Result<()> {
    store
        .create_pool(&NewPool {
            name: name.into(),
            source_kind: "synthetic".into(),
            source_params: "{}".into(),
            assignment: Assignment::Floating,
            min_ready: i64::from(size),
            max_size: i64::from(size),
            idle_timeout_s: 3600,
            disconnect_timeout_s: 3600,
        })
        .await?;
    Ok(())
}

/// Reads the broker's /metrics over its pinned HTTPS, as Prometheus would.
pub(crate) struct MetricsScraper {
    http: reqwest::Client,
    url: String,
}

impl MetricsScraper {
    pub(crate) fn new(broker: &Broker) -> anyhow::Result<MetricsScraper> {
        let tls =
            oriel_transport::tls::pinned_tls_client_config(broker.fingerprint, &[b"http/1.1"])?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()?;
        Ok(MetricsScraper {
            http,
            url: format!("{}/metrics", broker.url()),
        })
    }

    /// Every sample without labels, by name.
    pub(crate) async fn scrape(&self) -> anyhow::Result<HashMap<String, f64>> {
        let text = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains('{'))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect())
    }
}
