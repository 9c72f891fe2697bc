//! `oriel-bench`: runs a display server and a headless client over loopback QUIC on a
//! synthetic workload or real X programs (optionally through an emulated link) and prints
//! one JSON line of figures per workload.

// A program: its output is what it prints.
#![allow(clippy::print_stdout)]
#![recursion_limit = "256"]

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use oriel::{percentile, EndReason, Session, Shown, StopWhen};
use oriel_display_server::config::parse_size;
use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource, Workload};
use oriel_netem::LinkSpec;
use oriel_protocol::Framebuffer;
use serde_json::json;

mod audio_bench;
mod baseline;
mod broker_bench;
mod broker_procs;
mod browser_bench;
mod console_bench;
mod density_bench;
mod frame_numbers;
mod host_sim;
mod hosts_bench;
mod kernel_link;
mod migrate_bench;
mod migrate_display;
mod rig;
mod scrape;
mod video_quality;
mod viewer_bench;
mod vmm_bench;
mod x11_bench;

/// Oriel display benchmark: server + headless client over loopback QUIC.
#[derive(Debug, Parser)]
#[command(name = "oriel-bench", version)]
struct Args {
    /// Workload: idle, typing, scroll, drag, video, mixed, or all. With `--source x11`:
    /// idle, text, scroll, drag, video, all (those five), or through the real viewer
    /// in a window: echo (keystroke to echo) and video-window (frames shown); audio
    /// (the desktop's sound: kbit/s, latency, glitches).
    #[arg(long, default_value = "all")]
    workload: String,
    /// Where the pixels come from: synthetic (rendered in-process, replayable, scored
    /// against the truth) or x11 (real X programs on Xvfb, captured by the x11 source).
    #[arg(long, default_value = "synthetic", value_parser = ["synthetic", "x11"])]
    source: String,
    /// With `--source x11`: attach to this X display (e.g. ":5") instead of starting an
    /// Xvfb of `--size`.
    #[arg(long, value_name = "DISPLAY")]
    display: Option<String>,
    /// With `--source x11`: run this shell command on the display instead of the
    /// scripted workload ("" runs nothing: measure what is already there).
    #[arg(long, value_name = "CMD")]
    launch: Option<String>,
    /// Seconds of source activity per workload.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Keys the x11 echo workload types (after a warm-up of five).
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Desktop size.
    #[arg(long, default_value = "1920x1080")]
    size: String,
    /// The x11 video-window clip's size, e.g. 1920x1080 for full-screen video
    /// (default: two thirds of --size each way).
    #[arg(long, value_name = "WxH")]
    clip_size: Option<String>,
    /// The player of the x11 video-window workload.
    #[arg(long, value_enum, default_value = "ffplay")]
    player: x11_bench::Player,
    /// Encode the video-window clip for cheap decoding (x264 -tune fastdecode: CAVLC, no
    /// deblocking), for a machine whose player cannot decode the grainy clip in real time
    /// (a full-screen one on 2 cores).
    #[arg(long)]
    fast_decode: bool,
    /// Source frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Most frames in flight before the server waits for acks.
    #[arg(long, default_value_t = 4)]
    frame_window: usize,
    /// Emulated link between client and server, e.g. "rate=10mbit,rtt=40ms,loss=1%"
    /// (also jitter=5ms, queue=100ms); default: plain loopback.
    #[arg(long, value_name = "SPEC")]
    link: Option<LinkSpec>,
    /// Run everything in a private network namespace whose loopback the kernel limits to
    /// this rate (tc tbf, burst 32kb, latency 100ms), e.g. "10mbit". Needs root or
    /// `unshare -rn`; combines with --link.
    #[arg(long, value_name = "RATE")]
    kernel_rate: Option<String>,
    /// Highest video bitrate per session, kbit/s (the server's --max-video-kbit).
    #[arg(long, default_value_t = 16_000)]
    max_video_kbit: u32,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Broker connect throughput: logins and connects over HTTPS against SQLite on disk.
    Broker(broker_bench::BrokerArgs),
    /// Host bookkeeping at estate scale: simulated display servers over real host links
    /// (heartbeats, desktop reports, commands) against a broker on SQLite or PostgreSQL.
    Hosts(hosts_bench::HostsArgs),
    /// The admin console against a large estate: dashboard time to first byte, live
    /// update delay, connect throughput with consoles open.
    Console(console_bench::ConsoleArgs),
    /// The micro-VMM with the tiny guest: boot to first pixel, dirty-log calls, memory
    /// and idle CPU per VM, and a display server with one idle VM.
    Vmm(vmm_bench::VmmArgs),
    /// Live migration of a tiny-guest VM between two endpoints over loopback QUIC:
    /// total time, bytes, rounds and downtime, idle and writing its memory.
    Migrate(migrate_bench::MigrateArgs),
    /// The browser client (headless chromium, WebTransport) against the native client
    /// on the same synthetic desktop: frames presented per second, decode time per
    /// frame, pixel-exactness, keystroke to echo.
    Browser(browser_bench::BrowserArgs),
    /// Desktops per host: N X desktops (one video, one scrolling, the rest typing), a
    /// client each; CPU, memory, frame rate and latency per desktop as N grows.
    Density(density_bench::DensityArgs),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(rate) = &args.kernel_rate {
        kernel_link::enter(rate)?;
    }
    match args.mode {
        Some(Mode::Broker(b)) => {
            println!("{}", broker_bench::run(b)?);
            return Ok(());
        }
        Some(Mode::Hosts(h)) => {
            println!("{}", hosts_bench::run(h)?);
            return Ok(());
        }
        Some(Mode::Console(c)) => {
            println!("{}", console_bench::run(c)?);
            return Ok(());
        }
        Some(Mode::Vmm(v)) => {
            println!("{}", vmm_bench::run(v)?);
            return Ok(());
        }
        Some(Mode::Migrate(m)) => {
            for line in migrate_bench::run(m)? {
                println!("{line}");
            }
            return Ok(());
        }
        Some(Mode::Browser(b)) => {
            for line in browser_bench::run(&b)? {
                println!("{line}");
            }
            return Ok(());
        }
        Some(Mode::Density(d)) => {
            for line in density_bench::run(&d)? {
                println!("{line}");
            }
            return Ok(());
        }
        None => {}
    }
    let size = parse_size(&args.size)?;
    if args.seconds == 0 || args.fps == 0 {
        bail!("--seconds and --fps must be positive");
    }
    if args.source == "x11" {
        let clip = match &args.clip_size {
            Some(text) => parse_size(text)?,
            None => x11_bench::clip_size(size),
        };
        if clip.width > size.width || clip.height > size.height {
            bail!(
                "--clip-size {}x{} is larger than the screen",
                clip.width,
                clip.height
            );
        }
        let workloads: Vec<&str> = if args.workload == "all" {
            x11_bench::WORKLOADS.to_vec()
        } else {
            args.workload.split(',').collect()
        };
        for workload in workloads {
            if workload == "audio" {
                eprintln!("oriel-bench: x11 audio for {} s ...", args.seconds);
                println!("{}", audio_bench::run(args.seconds, args.link)?);
                continue;
            }
            if matches!(workload, "echo" | "video-window") {
                eprintln!("oriel-bench: x11 {workload} through the viewer ...");
                let line = viewer_bench::run(&viewer_bench::ViewerRun {
                    workload,
                    size,
                    clip,
                    fast_decode: args.fast_decode,
                    player: args.player,
                    keys: args.keys,
                    seconds: args.seconds,
                    fps: args.fps,
                    frame_window: args.frame_window,
                    link: args.link,
                    max_video_kbit: args.max_video_kbit,
                })?;
                println!("{line}");
                continue;
            }
            eprintln!("oriel-bench: x11 {workload} for {} s ...", args.seconds);
            let line = x11_bench::run(&x11_bench::X11Run {
                workload,
                size,
                seconds: args.seconds,
                fps: args.fps,
                display: args.display.as_deref(),
                launch: args.launch.as_deref(),
                frame_window: args.frame_window,
                link: args.link,
                max_video_kbit: args.max_video_kbit,
            })?;
            println!("{line}");
        }
        return Ok(());
    }
    if args.display.is_some() || args.launch.is_some() {
        bail!("--display and --launch need --source x11");
    }
    let workloads: Vec<Workload> = if args.workload == "all" {
        Workload::ALL.to_vec()
    } else {
        args.workload
            .split(',')
            .map(|w| w.parse())
            .collect::<Result<_, _>>()?
    };
    for workload in workloads {
        eprintln!("oriel-bench: {workload} for {} s ...", args.seconds);
        let config = SyntheticConfig {
            workload,
            size,
            fps: args.fps,
            max_ticks: Some(args.seconds * u64::from(args.fps)),
        };
        let line = run_workload(&config, args.frame_window, args.link, args.max_video_kbit)?;
        println!("{line}");
    }
    Ok(())
}

/// Pictures scored against the truth per run (each is replayed and JPEG-searched).
const PICTURE_SAMPLES: usize = 24;

fn run_workload(
    config: &SyntheticConfig,
    frame_window: usize,
    link: Option<LinkSpec>,
    max_video_kbit: u32,
) -> anyhow::Result<String> {
    let ticks = config.max_ticks.unwrap_or(0);
    let replay = baseline::replay(config)?;
    let source = SyntheticSource::new(config.clone())?;
    let rig = rig::Rig::start(Box::new(source), frame_window, max_video_kbit, link)?;
    let mut pictures: Vec<video_quality::PictureSample> = Vec::new();
    let mut picture_count = 0u64;
    let mut last_picture: Option<std::time::Instant> = None;
    // Display frames seen so far, when the first picture came, and at the last picture:
    // the frames in between were shown while a video played.
    let mut frames_seen = 0usize;
    let mut playing = (None::<usize>, 0usize);
    let sample_every = (ticks / PICTURE_SAMPLES as u64).max(1);
    let activity = Duration::from_secs_f64(ticks as f64 / f64::from(config.fps));
    let outcome = rig.client_rt.block_on(async {
        let session = Session::connect(&rig.opts).await?;
        let stop = StopWhen {
            duration: Some(activity * 4 + Duration::from_secs(60)),
            settled_seq: Some(replay.final_sequence),
            ..Default::default()
        };
        let observe = |shown: Shown, fb: &Framebuffer| {
            if let Shown::Frame { .. } = shown {
                frames_seen += 1;
            }
            if let Shown::Picture {
                rect, source_seq, ..
            } = shown
            {
                picture_count += 1;
                last_picture = Some(std::time::Instant::now());
                playing.0.get_or_insert(frames_seen);
                playing.1 = frames_seen;
                let due =
                    source_seq / sample_every > pictures.last().map_or(0, |p| p.seq / sample_every);
                if due {
                    let mut pixels = Vec::new();
                    fb.read_rect(&rect, &mut pixels);
                    pictures.push(video_quality::PictureSample {
                        seq: source_seq,
                        rect,
                        pixels,
                    });
                }
            }
        };
        anyhow::Ok(session.run_observed(stop, None, observe).await?)
    })?;
    // From the last picture to the exact final screen: the build-to-lossless delay.
    let settle_ms = last_picture.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
    if outcome.end != EndReason::Settled {
        bail!(
            "the client did not reach the final frame ({:?})",
            outcome.end
        );
    }

    let truth: Framebuffer = rig.desktop().source().pixels().clone();
    let done = rig.finish();
    let figures = rig::display_figures(
        &done,
        &rig::Seen {
            outcome: &outcome,
            truth: &truth,
            pictures: picture_count,
            during_video: playing,
            link,
        },
    );

    let stats = &done.stats;
    let zstd_full = replay.zstd_full_frame_bytes;
    let video_bytes = stats.video_bytes.load(Relaxed);
    // zstd compresses every pixel of each frame, video areas too: against it count
    // what the session sent for them as well, lossless and H.264.
    let bytes = stats.display_bytes.load(Relaxed) + video_bytes;
    let steady_bytes = bytes - rig::first_frame_bytes(stats);
    let steady_zstd = zstd_full - replay.first_frame_zstd_bytes;
    let ms = |us: u32| f64::from(us) / 1000.0;
    let score = video_quality::score(config, &pictures)?;
    let mut psnr = score.psnr_db.clone();
    psnr.sort_by(f64::total_cmp);
    let psnr_p50 = psnr.get(psnr.len() / 2).copied().unwrap_or(0.0);
    let psnr_min = psnr.first().copied().unwrap_or(0.0);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "float to int saturates; a non-negative byte count"
    )]
    let mjpeg_equiv = (score.jpeg_bytes_mean * picture_count as f64) as u64;
    let video_encode = stats.video_encode_samples();
    let ratio = |base: u64| {
        if bytes == 0 {
            0.0
        } else {
            base as f64 / bytes as f64
        }
    };
    let line = rig::json_line(
        figures,
        json!({
            "workload": config.workload.name(),
            "width": config.size.width,
            "height": config.size.height,
            "seconds": activity.as_secs_f64(),
            "steady_ratio_vs_zstd_frames": if steady_bytes == 0 { 0.0 } else { steady_zstd as f64 / steady_bytes as f64 },
            "zstd_full_frame_bytes": zstd_full,
            "ratio_vs_zstd_frames": ratio(zstd_full),
            "video_skipped": stats.video_skipped.load(Relaxed),
            "video_bitrate_kbit_last": stats.video_bitrate.load(Relaxed) / 1000,
            "video_psnr_db_p50": psnr_p50,
            "video_psnr_db_min": psnr_min,
            "video_psnr_samples": psnr.len(),
            "video_encode_ms_p99": ms(percentile(&video_encode, 0.99)),
            "video_settle_ms": settle_ms,
            "mjpeg_equiv_bytes": mjpeg_equiv,
            "ratio_vs_mjpeg": if video_bytes == 0 { 0.0 } else { mjpeg_equiv as f64 / video_bytes as f64 },
            "general_input_bytes": replay.general.input_bytes,
            "general_zstd1_stream_bytes": replay.general.zstd1_stream_bytes,
            "general_zstd1_stream_ms": replay.general.zstd1_stream_time.as_secs_f64() * 1e3,
            "general_lz4_bytes": replay.general.lz4_bytes,
            "general_lz4_ms": replay.general.lz4_time.as_secs_f64() * 1e3,
        }),
    );
    Ok(line)
}
