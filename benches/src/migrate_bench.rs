//! `oriel-bench migrate`: live migration of a tiny-guest VM between two endpoints over
//! loopback QUIC, as two display servers do it (`vm_transfer`), back and forth: total
//! time, bytes sent, rounds and downtime (the source's pause → the destination's
//! start), p50/p99, for each guest size, idle and writing its memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use oriel::percentile;
use oriel_display_server::vm_transfer::{receive_vm, send_vm, MIGRATION_ALPN};
use oriel_transport::tls::{pinned_client_config, Identity};
use oriel_vmm::{Boot, Convergence, Vm, VmConfig};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// Guest RAM sizes, MiB.
    #[arg(long, value_delimiter = ',', default_value = "256,2048")]
    memory_mib: Vec<u64>,
    /// Rates at which the guest writes its memory, MiB/s (0: idle).
    #[arg(long, value_delimiter = ',', default_value = "0,64")]
    dirty_mib_per_s: Vec<u32>,
    /// Migrations per case.
    #[arg(long, default_value_t = 10)]
    migrations: u32,
    /// Downtime budget, ms.
    #[arg(long, default_value_t = 50)]
    downtime_ms: u64,
    /// Framebuffer size of the VM.
    #[arg(long, default_value = "1024x768")]
    size: String,
    /// Moves of a desktop between two display servers with a viewer watching, for the
    /// display gap (0: skip).
    #[arg(long, default_value_t = 10)]
    display_moves: u32,
}

/// Two QUIC endpoints on loopback: the destination listens, the source connects.
struct Link {
    destination: quinn::Endpoint,
    source: quinn::Endpoint,
    addr: SocketAddr,
}

impl Link {
    fn new() -> anyhow::Result<Self> {
        let identity = Identity::generate(&["localhost".into()])?;
        let server = identity.quic_server_config(MIGRATION_ALPN)?;
        let destination = quinn::Endpoint::server(server, "127.0.0.1:0".parse()?)?;
        let addr = destination.local_addr()?;
        let mut source = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        source.set_default_client_config(pinned_client_config(
            identity.fingerprint(),
            MIGRATION_ALPN,
        )?);
        Ok(Self {
            destination,
            source,
            addr,
        })
    }

    /// Moves `vm` to a new VM; returns it with the source's figures.
    async fn migrate(&self, vm: Vm, policy: Convergence) -> anyhow::Result<(Vm, Sample)> {
        let config = vm.config().clone();
        let started = Instant::now();
        let accepting = async {
            let incoming = self.destination.accept().await.context("no connection")?;
            let connection = incoming.await?;
            let stream = connection.accept_bi().await?;
            let mut vm = None;
            receive_vm(stream, config.clone(), |v| {
                vm = Some(v);
                Ok(())
            })
            .await?;
            let moved = vm.context("no VM")?;
            anyhow::Ok((moved, connection))
        };
        let sending = async {
            let connection = self.source.connect(self.addr, "localhost")?.await?;
            let stream = connection.open_bi().await?;
            let outgoing = vm.migrate_out()?;
            let sent = send_vm(stream, &config, outgoing, policy).await?;
            anyhow::Ok((sent, connection))
        };
        let (received, sent) = tokio::join!(accepting, sending);
        let (moved, connection) = received?;
        let (sent, _) = sent?;
        connection.close(0u32.into(), b"done");
        let sample = Sample {
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            downtime_ms: sent.downtime.as_secs_f64() * 1e3,
            mib: sent.report.stats.bytes as f64 / 1048576.0,
            rounds: sent.report.stats.rounds,
            throttle: sent.report.stats.throttle,
            final_pages: sent.report.stats.final_pages,
            dirty_mib_per_s: sent.report.dirty_bytes_per_s / 1048576.0,
        };
        drop(vm);
        Ok((moved, sample))
    }
}

struct Sample {
    total_ms: f64,
    downtime_ms: f64,
    mib: f64,
    rounds: u32,
    throttle: u8,
    final_pages: u64,
    /// The rate the guest wrote at, measured from the dirty log in the last round.
    dirty_mib_per_s: f64,
}

pub(crate) fn run(args: MigrateArgs) -> anyhow::Result<Vec<String>> {
    oriel_vmm::kvm_usable().map_err(anyhow::Error::msg)?;
    let size = oriel_display_server::config::parse_size(&args.size)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let policy = Convergence {
        downtime: Duration::from_millis(args.downtime_ms),
        ..Convergence::default()
    };
    let mut lines = Vec::new();
    let cases: Vec<(u64, u32)> = args
        .memory_mib
        .iter()
        .flat_map(|&m| args.dirty_mib_per_s.iter().map(move |&d| (m, d)))
        .collect();
    for (n, &(memory_mib, dirty)) in cases.iter().enumerate() {
        eprintln!(
            "[{}/{}] {memory_mib} MiB guest writing {dirty} MiB/s: {} migrations",
            n + 1,
            cases.len(),
            args.migrations
        );
        let boot = if dirty > 0 {
            Boot::TinyDirtying { mib_per_s: dirty }
        } else {
            Boot::Tiny
        };
        let config = VmConfig {
            memory_mib,
            boot,
            ..VmConfig::tiny(size.width, size.height)
        };
        let mut vm = Vm::start(config)?;
        vm.wait_ready(Duration::from_secs(60))?;
        // Let the writing settle into its rate.
        std::thread::sleep(Duration::from_millis(500));
        let link = runtime.block_on(async { Link::new() })?;
        let mut samples = Vec::new();
        let mut resident = 0;
        for i in 0..args.migrations {
            resident = resident.max(vm.resident_bytes());
            let (moved, sample) = runtime
                .block_on(link.migrate(vm, policy))
                .with_context(|| format!("migration {}", i + 1))?;
            eprintln!(
                "  {}: {:.1} ms, downtime {:.1} ms, {:.1} MiB, {} rounds",
                i + 1,
                sample.total_ms,
                sample.downtime_ms,
                sample.mib,
                sample.rounds
            );
            samples.push(sample);
            vm = moved;
        }
        let of = |f: fn(&Sample) -> f64| -> Vec<f64> { samples.iter().map(f).collect() };
        let total = of(|s| s.total_ms);
        let downtime = of(|s| s.downtime_ms);
        let mib = of(|s| s.mib);
        let dirty_rate = of(|s| s.dirty_mib_per_s);
        let rounds: Vec<u32> = samples.iter().map(|s| s.rounds).collect();
        lines.push(
            json!({
                "workload": "migrate",
                "memory_mib": memory_mib,
                "dirty_mib_per_s": dirty,
                "migrations": samples.len(),
                "screen": format!("{}x{}", size.width, size.height),
                "downtime_budget_ms": args.downtime_ms,
                "total_ms_p50": quantile(&total, 0.5),
                "total_ms_p99": quantile(&total, 0.99),
                "downtime_ms_p50": quantile(&downtime, 0.5),
                "downtime_ms_p99": quantile(&downtime, 0.99),
                "mib_sent_p50": quantile(&mib, 0.5),
                "mib_sent_max": quantile(&mib, 1.0),
                "guest_resident_mib": resident as f64 / 1048576.0,
                "rounds_p50": percentile(&rounds, 0.5),
                "rounds_max": percentile(&rounds, 1.0),
                "final_pages_max": samples.iter().map(|s| s.final_pages).max(),
                "throttle_max_percent": samples.iter().map(|s| s.throttle).max(),
                "measured_dirty_mib_per_s_p50": quantile(&dirty_rate, 0.5),
            })
            .to_string(),
        );
        drop(vm);
    }
    if args.display_moves > 0 {
        eprintln!(
            "[display] a viewer watching a desktop moved {} times",
            args.display_moves
        );
        lines.push(runtime.block_on(crate::migrate_display::run(
            args.display_moves,
            (size.width, size.height),
        ))?);
    }
    Ok(lines)
}

/// The value at quantile `q` of `samples` (nearest rank); 0 when empty.
pub(crate) fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q * sorted.len() as f64;
    // The first value whose rank (from 1) reaches q of the samples.
    sorted
        .iter()
        .zip(1u32..)
        .find(|(_, r)| f64::from(*r) >= rank)
        .or(sorted.iter().zip(1u32..).last())
        .map_or(0.0, |(v, _)| *v)
}
