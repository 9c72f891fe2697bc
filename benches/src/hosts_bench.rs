//! `oriel-bench hosts`: the brokers' host bookkeeping at estate scale. `oriel-broker`
//! processes (one on SQLite, or several on a private PostgreSQL server) link simulated
//! display servers that run in this process, each over a real host link (QUIC,
//! registration with the join token, a heartbeat every 2 s reporting each of its
//! desktops, commands answered at once, as a host whose desktops start instantly would),
//! and fill pools whose spares add up to the desktops asked for.
//!
//! Figures: time until every host is linked and every desktop ready; over a steady
//! stretch the reconcile pass time (mean, p50, p99 from the leader's histogram),
//! heartbeats written per second and the CPU of the brokers and of the simulators; with
//! several brokers, failover: the leader killed with SIGKILL → another holds the lease,
//! runs its first pass, and every host is linked to a survivor.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel_broker::store::{Assignment, DesktopState, NewPool, Store};
use oriel_broker::temp_postgres::TempPostgres;
use serde_json::{json, Value};

use crate::broker_procs::BrokerProcesses;
use crate::host_sim::{spawn_hosts, HEARTBEAT};
use crate::scrape::{delta, histogram_delta, histogram_quantile, Samples};

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
    /// The brokers' store: sqlite (a file) or postgres (a private server for the run).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    store: String,
    /// Broker processes; more than one (a cluster, needs --store postgres) also measures
    /// failover when the reconcile leader is killed.
    #[arg(long, default_value_t = 1)]
    brokers: u32,
}

/// Desktops per pool: the loop starts at most 32 new ones per pool per pass.
const POOL_SIZE: u32 = 100;

/// The reconcile pass histogram the brokers export.
const PASS_SECONDS: &str = "oriel_broker_reconcile_pass_seconds";

pub(crate) fn run(args: HostsArgs) -> anyhow::Result<String> {
    crate::broker_bench::on_two_threads(estate(args))
}

async fn estate(args: HostsArgs) -> anyhow::Result<String> {
    if args.hosts == 0 || args.desktops == 0 {
        bail!("--hosts and --desktops must be positive");
    }
    let mut procs = BrokerProcesses::start("hosts", args.brokers, &args.store).await?;
    let result = measure(&args, &mut procs).await;
    procs.stop().await;
    result
}

async fn measure(args: &HostsArgs, procs: &mut BrokerProcesses) -> anyhow::Result<String> {
    let hosts = usize::try_from(args.hosts)?;
    eprintln!(
        "oriel-bench: linking {} simulated hosts to {} broker(s) ...",
        args.hosts, args.brokers
    );
    let started = Instant::now();
    let capacity = args.desktops.div_ceil(args.hosts) + 1;
    let (endpoint, sims, commands) = spawn_hosts(
        &procs.host_addrs(),
        procs.fingerprint(),
        &procs.brokers[0].join_token()?,
        args.hosts,
        capacity,
    )?;
    let linked = wait_until(Duration::from_secs(300), || async {
        procs.linked_hosts().await >= hosts
    })
    .await;
    let link_s = started.elapsed().as_secs_f64();
    if !linked {
        bail!("only {} hosts linked", procs.linked_hosts().await);
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
        create_pool(&procs.store, &format!("pool-{n:04}"), size).await?;
        left -= size;
        n += 1;
    }
    let want = i64::from(args.desktops);
    let filled = wait_until(Duration::from_secs(900), || async {
        ready(&procs.store).await >= want
    })
    .await;
    let fill_s = started.elapsed().as_secs_f64();
    let ready_now = ready(&procs.store).await;
    if !filled {
        eprintln!("oriel-bench: only {ready_now} of {want} desktops ready");
    }

    eprintln!("oriel-bench: steady state for {} s ...", args.seconds);
    let leader = procs.leader().await.context("no broker leads")?;
    let before = procs.scrape_all().await;
    let brokers_cpu = procs.cpu_s();
    let sims_cpu = crate::x11_bench::process_cpu_s(std::process::id());
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let secs = t.elapsed().as_secs_f64();
    let brokers_cpu = procs.cpu_s() - brokers_cpu;
    let sims_cpu = crate::x11_bench::process_cpu_s(std::process::id()) - sims_cpu;
    let after = procs.scrape_all().await;
    let passes = delta(
        &before[leader],
        &after[leader],
        &format!("{PASS_SECONDS}_count"),
    );
    let pass_s = delta(
        &before[leader],
        &after[leader],
        &format!("{PASS_SECONDS}_sum"),
    );
    let buckets = histogram_delta(&before[leader], &after[leader], PASS_SECONDS);
    let pass_ms = |q: f64| round(1000.0 * histogram_quantile(&buckets, q));
    let heartbeats: f64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| delta(b, a, "oriel_broker_heartbeats_total"))
        .sum();

    let mut figures = json!({
        "workload": "hosts",
        "store": args.store,
        "brokers": args.brokers,
        "hosts": args.hosts,
        "desktops": args.desktops,
        "desktops_ready": ready_now,
        "link_all_hosts_s": round(link_s),
        "fill_all_desktops_s": round(fill_s),
        "desktops_started_per_s": round(ready_now as f64 / fill_s),
        "host_commands": commands.load(Relaxed),
        "reconcile_passes": passes,
        "reconcile_pass_ms_mean": round(if passes > 0.0 { 1000.0 * pass_s / passes } else { f64::NAN }),
        "reconcile_pass_ms_p50": pass_ms(0.5),
        "reconcile_pass_ms_p99": pass_ms(0.99),
        "heartbeats_written_per_s": round(heartbeats / secs),
        "heartbeats_expected_per_s": round(f64::from(args.hosts) / HEARTBEAT.as_secs_f64()),
        "brokers_cpu_cores": round(brokers_cpu / secs),
        "simulators_cpu_cores": round(sims_cpu / secs),
    });
    if args.brokers > 1 {
        let commands_before = commands.load(Relaxed);
        let mut failover = failover(procs, leader, hosts, want).await?;
        failover["host_commands_during_failover"] = json!(commands.load(Relaxed) - commands_before);
        if let (Value::Object(all), Value::Object(more)) = (&mut figures, failover) {
            all.extend(more);
        }
    }
    for sim in &sims {
        sim.abort();
    }
    endpoint.close(0u32.into(), b"done");
    Ok(figures.to_string())
}

/// Kills the `leader` with SIGKILL and times what follows: another broker holds the
/// lease, that broker finishes its first reconcile pass, every one of `hosts` is linked
/// to a survivor; then counts the desktops ready (all `want` should still be).
async fn failover(
    procs: &mut BrokerProcesses,
    old: usize,
    hosts: usize,
    want: i64,
) -> anyhow::Result<Value> {
    eprintln!("oriel-bench: killing the reconcile leader (broker{old}) with SIGKILL ...");
    let passes_before: Vec<f64> = procs.scrape_all().await.iter().map(passes).collect();
    let killed = Instant::now();
    procs.brokers[old].kill().await;
    let (mut lease_s, mut first_pass_s, mut relinked_s) = (None, None, None);
    while killed.elapsed() < Duration::from_secs(120)
        && (first_pass_s.is_none() || relinked_s.is_none())
    {
        let now = killed.elapsed().as_secs_f64();
        if let Some(new) = procs.leader().await.filter(|&l| l != old) {
            lease_s.get_or_insert(now);
            if first_pass_s.is_none() && passes(&procs.scrape(new).await) > passes_before[new] {
                first_pass_s = Some(killed.elapsed().as_secs_f64());
            }
        }
        if relinked_s.is_none() && procs.linked_hosts().await >= hosts {
            relinked_s = Some(killed.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until(Duration::from_secs(30), || async {
        ready(&procs.store).await >= want
    })
    .await;
    let seconds = |s: Option<f64>| s.map_or(Value::Null, |s| json!(round(s)));
    Ok(json!({
        "failover_new_leader_s": seconds(lease_s),
        "failover_first_reconcile_s": seconds(first_pass_s),
        "failover_hosts_relinked_s": seconds(relinked_s),
        "desktops_ready_after_failover": ready(&procs.store).await,
    }))
}

fn passes(samples: &Samples) -> f64 {
    samples
        .get(&format!("{PASS_SECONDS}_count"))
        .copied()
        .unwrap_or(0.0)
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
