//! `oriel-bench density`: how many desktops one host serves at once. For each count N,
//! one display server serves N X desktops (Xvfbs it started): one playing the video
//! clip, one scrolling a log, the rest typing at a fast typist's pace, each followed by
//! a headless client of its own over loopback QUIC. One JSON line per N: CPU and memory
//! per desktop, and the frame rate and latency (capture → decoded) of every session.

use std::time::{Duration, Instant};

use anyhow::Context;
use oriel::{percentile, Session, StopWhen};
use oriel_display_server::config::parse_size;
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::xserver::XServer;
use oriel_display_server::Desktop;
use serde_json::json;

use crate::rig::Rig;
use crate::x11_bench::{process_cpu_s, script, Launched};

/// How long the programs run before the clients connect (their windows are up).
const WARM_UP: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub(crate) struct DensityArgs {
    /// Desktop counts to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,20")]
    desktops: Vec<usize>,
    /// Desktops (of each count) playing the video clip.
    #[arg(long, default_value_t = 1)]
    video: usize,
    /// Desktops scrolling a log; the rest type.
    #[arg(long, default_value_t = 1)]
    scroll: usize,
    /// Seconds the workloads run per count.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Screen size of every desktop.
    #[arg(long, default_value = "1280x800")]
    size: String,
}

/// What desktop `i` runs.
fn workload(i: usize, args: &DensityArgs) -> &'static str {
    if i < args.video {
        "video"
    } else if i < args.video + args.scroll {
        "scroll"
    } else {
        "text"
    }
}

pub(crate) fn run(args: &DensityArgs) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        args.seconds > 0 && args.desktops.iter().all(|&n| n > 0),
        "--seconds and every --desktops count must be positive"
    );
    args.desktops
        .iter()
        .map(|&n| {
            eprintln!(
                "oriel-bench: density, {n} desktops for {} s ...",
                args.seconds
            );
            run_count(n, args)
        })
        .collect()
}

fn run_count(n: usize, args: &DensityArgs) -> anyhow::Result<String> {
    let size = parse_size(&args.size)?;
    let xservers = (0..n)
        .map(|_| XServer::start_bare(size))
        .collect::<Result<Vec<_>, _>>()?;
    let desktops = xservers
        .iter()
        .enumerate()
        .map(|(i, x)| {
            Ok(Desktop::new(
                format!("d{i}"),
                Box::new(X11Source::connect_to(x, 30)?),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rig = Rig::start_desktops(desktops, 4, 16_000, None)?;
    // Made before the clock starts (the video script may have a clip to generate).
    let scripts = (0..n)
        .map(|i| script(workload(i, args), size))
        .collect::<anyhow::Result<Vec<_>>>()?;

    // The programs start first (twenty xterms starting at once is a burst no user
    // types through), then every client connects and the clock runs for `seconds`.
    let launched = xservers
        .iter()
        .zip(&scripts)
        .map(|(x, command)| Launched::start(command, x.display()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::thread::sleep(WARM_UP);
    // Each session reads from the moment it connects: frames the server sent while
    // the next clients connected do not wait unread and count as latency.
    let stop = StopWhen {
        duration: Some(Duration::from_secs(args.seconds)),
        ..Default::default()
    };
    let runs = (0..n)
        .map(|i| {
            let mut opts = rig.opts.clone();
            opts.desktop = format!("d{i}");
            let session = rig.client_rt.block_on(Session::connect(&opts))?;
            Ok(rig.client_rt.spawn(session.run(stop.clone(), None)))
        })
        .collect::<Result<Vec<_>, oriel::ClientError>>()
        .context("a client could not connect")?;
    let x_cpu_before: f64 = xservers.iter().map(|x| process_cpu_s(x.pid())).sum();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    let mut failed = 0;
    for run in runs {
        match rig.client_rt.block_on(run)? {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                eprintln!("oriel-bench: a session failed: {e}");
                failed += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let x_cpu: f64 = xservers.iter().map(|x| process_cpu_s(x.pid())).sum::<f64>() - x_cpu_before;
    let x_rss_kib: u64 = xservers.iter().map(|x| rss_kib(x.pid())).sum();
    let bench_rss_kib = rss_kib(std::process::id());
    drop(launched);
    let done = rig.finish();

    // Display frames and video pictures the client decoded, per second.
    let fps: Vec<f64> = outcomes
        .iter()
        .map(|o| {
            (o.stats.frames + o.stats.video_frames) as f64 / o.stats.elapsed.as_secs_f64().max(1e-9)
        })
        .collect();
    // Each session's p99, in µs, leaving out its first frame (the whole screen, sent as
    // it connects); then their worst and their median.
    let p99s: Vec<u32> = outcomes
        .iter()
        .map(|o| percentile(o.stats.latency_us.get(1..).unwrap_or_default(), 0.99))
        .collect();
    let per = |v: f64| v / n as f64;
    let typing = n.saturating_sub(args.video + args.scroll);
    Ok(json!({
        "workload": "density",
        "desktops": n,
        "video": args.video.min(n),
        "scroll": args.scroll.min(n.saturating_sub(args.video)),
        "typing": typing,
        "width": size.width,
        "height": size.height,
        "seconds": seconds,
        // The display server's CPU over the whole run (connects and first screens too).
        "server_cpu_s": done.server_cpu_s,
        "server_core_pct_per_desktop": per(done.server_cpu_s) / seconds * 100.0,
        "xserver_core_pct_per_desktop": per(x_cpu) / seconds * 100.0,
        "xserver_rss_mib_per_desktop": per(x_rss_kib as f64) / 1024.0,
        // This process: the display server and every headless client together.
        "bench_rss_mib": bench_rss_kib as f64 / 1024.0,
        "sessions_failed": failed,
        "session_frames_per_s_min": fps.iter().copied().fold(f64::INFINITY, f64::min),
        "session_frames_per_s_max": fps.iter().copied().fold(0.0, f64::max),
        "latency_ms_p99_worst_session": f64::from(p99s.iter().copied().max().unwrap_or(0)) / 1000.0,
        "latency_ms_p99_median_session": f64::from(percentile(&p99s, 0.5)) / 1000.0,
    })
    .to_string())
}

/// Resident memory of process `pid`, KiB (0 when it cannot be read).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
