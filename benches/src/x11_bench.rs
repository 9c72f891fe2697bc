//! `oriel-bench --source x11`: the same display figures for real X programs. An Xvfb
//! (or the display given with `--display`) runs a scripted workload made of Debian
//! programs (xterm, xdotool, ffmpeg's ffplay) or the `--launch` command; the display
//! server captures it with the x11 source and a headless client follows over loopback
//! QUIC. When the time is up the workload is stopped, the screen left to settle, and the
//! client's framebuffer compared with the X server's.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel::{Session, Shown, StopWhen};
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::xserver::XServer;
use oriel_display_server::source::FrameSource;
use oriel_netem::LinkSpec;
use oriel_protocol::Size;
use serde_json::json;

use crate::rig::{display_figures, json_line, Rig, Seen};

/// The scripted X workloads, in the order `all` runs them.
pub(crate) const WORKLOADS: [&str; 5] = ["idle", "text", "scroll", "drag", "video"];

/// How long the screen must not change before the run counts as settled.
const QUIET: Duration = Duration::from_millis(2500);

pub(crate) struct X11Run<'a> {
    pub workload: &'a str,
    pub size: Size,
    pub seconds: u64,
    pub fps: u32,
    /// Attach here instead of starting an Xvfb.
    pub display: Option<&'a str>,
    /// Run this instead of the scripted workload (empty: nothing).
    pub launch: Option<&'a str>,
    pub frame_window: usize,
    pub link: Option<LinkSpec>,
    pub max_video_kbit: u32,
}

/// The shell command for a scripted workload on a `size` screen.
pub(crate) fn script(workload: &str, size: Size) -> anyhow::Result<String> {
    // xterm's default font is 6x13 pixels: fill most of the screen.
    let cols = (size.width / 6).saturating_sub(4).clamp(20, 300);
    let rows = (size.height / 13).saturating_sub(4).clamp(5, 120);
    let term = format!("xterm -geometry {cols}x{rows}+0+0");
    Ok(match workload {
        "idle" => format!("exec {term} -e sh -c 'echo Oriel idle desktop; exec sleep 1000000'"),
        // Word by word at a fast typist's pace.
        "text" | "typing" => format!(
            "exec {term} -e sh -c 'while :; do for w in The quick brown fox jumps over \
             the lazy dog while a remote desktop keeps up with every key; do \
             printf \"%s \" \"$w\"; sleep 0.15; done; echo; done'"
        ),
        // A log scrolling past at about 60 lines a second, as in the SPICE
        // comparison (the sleep plus the fork of `sleep` itself, on this kind of machine).
        "scroll" => format!(
            "exec {term} -e sh -c 'i=0; while :; do i=$((i+1)); echo \"$i: Lorem ipsum \
             dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
             incididunt ut labore et dolore magna aliqua\"; sleep 0.0145; done'"
        ),
        // A terminal window dragged to and fro by its position, 30 moves a second.
        "drag" => {
            let span = size.width.saturating_sub(500).max(40);
            format!(
                "xterm -geometry 80x24+0+0 -e top & \
                 w=$(xdotool search --sync --class xterm | head -n1); \
                 while :; do for x in $(seq 0 12 {span}) $(seq {span} -12 0); do \
                 xdotool windowmove \"$w\" \"$x\" $((x / 4)); sleep 0.033; done; done"
            )
        }
        "video" => player_command(Player::Ffplay, &video_clip(size)?),
        other => bail!(
            "no scripted x11 workload '{other}' (have {}); or give --launch CMD",
            WORKLOADS.join(", ")
        ),
    })
}

/// A 30 fps test clip at 2/3 of the screen, generated once with ffmpeg and kept under
/// `target/oriel-bench/`: a Mandelbrot zoom, where every pixel changes every frame with
/// smooth gradients and fine detail, like camera footage.
pub(crate) fn video_clip(size: Size) -> anyhow::Result<PathBuf> {
    let Size {
        width: w,
        height: h,
    } = clip_size(size);
    generate_clip(
        &format!("mandelbrot-{w}x{h}.mkv"),
        &format!("mandelbrot=size={w}x{h}:rate=30"),
        &["-c:v", "mpeg4", "-q:v", "3"],
    )
}

/// Plays `clip` in a loop, borderless at the screen's top left, without sound, with
/// `player`: ffplay (SDL) or mpv (its X11 output, as the SPICE comparison did).
pub(crate) fn player_command(player: Player, clip: &Path) -> String {
    let clip = clip.display();
    match player {
        Player::Ffplay => {
            format!("exec ffplay -loglevel error -an -noborder -left 0 -top 0 -loop 0 '{clip}'")
        }
        Player::Mpv => format!(
            "exec mpv --really-quiet --no-config --no-audio --vo=x11 --hwdec=no --no-border \
             --geometry=+0+0 --no-osc --loop-file=inf '{clip}'"
        ),
    }
}

/// The player of the video-window workload (the scripted `video` workload plays with
/// ffplay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Player {
    Ffplay,
    Mpv,
}

/// The clip's size on a `size` screen: two thirds of it each way.
pub(crate) fn clip_size(size: Size) -> Size {
    Size {
        width: (size.width * 2 / 3) & !1,
        height: (size.height * 2 / 3) & !1,
    }
}

/// The clip `video-window` plays at `size`: the same zoom with film grain (hard for
/// any codec) as an H.264 file, and its frame number drawn at its top left (see
/// `frame_numbers`); with `fast_decode`, without the H.264 tools that cost a decoder
/// most (CABAC, deblocking).
pub(crate) fn numbered_clip(size: Size, fast_decode: bool) -> anyhow::Result<PathBuf> {
    let (w, h) = (size.width, size.height);
    let (tag, tune): (&str, &[&str]) = if fast_decode {
        ("-fastdecode", &["-tune", "fastdecode"])
    } else {
        ("", &[])
    };
    let codec = [
        &["-c:v", "libx264", "-preset", "veryfast", "-crf", "20"],
        tune,
    ]
    .concat();
    generate_clip(
        &format!("mandelbrot-grain-numbered-{w}x{h}{tag}.mkv"),
        &format!(
            "mandelbrot=size={w}x{h}:rate=30,format=yuv420p,noise=alls=12:allf=t,{}",
            crate::frame_numbers::strip_filters()
        ),
        &codec,
    )
}

/// `name` in `target/oriel-bench/`, made once by ffmpeg from the lavfi `filters` with
/// `codec` (20 s).
fn generate_clip(name: &str, filters: &str, codec: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/oriel-bench");
    std::fs::create_dir_all(&dir)?;
    let clip = dir.join(name);
    if clip.exists() {
        return Ok(clip);
    }
    eprintln!("oriel-bench: generating the test clip {name} with ffmpeg ...");
    let partial = dir.join(format!("{name}.partial.mkv"));
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", filters])
        .args(["-t", "20"])
        .args(codec)
        .arg(&partial)
        .status()
        .context("cannot run ffmpeg (apt-get install ffmpeg; scripts/install-deps --bench)")?;
    if !status.success() {
        bail!("ffmpeg failed to generate the test clip ({status})");
    }
    std::fs::rename(&partial, &clip)?;
    Ok(clip)
}

/// A workload's processes, stopped as a group.
pub(crate) struct Launched(Child);

impl Launched {
    pub(crate) fn start(command: &str, display: &str) -> anyhow::Result<Self> {
        let child = Command::new("sh")
            .args(["-c", command])
            .env("DISPLAY", display)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run '{command}'"))?;
        Ok(Self(child))
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let group = self.0.id() as i32;
        // SAFETY: signalling the process group this value started.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: as above; whatever ignored SIGTERM goes now.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// CPU seconds a process has used (user + system), from /proc.
pub(crate) fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

pub(crate) fn run(r: &X11Run) -> anyhow::Result<String> {
    let own_server = match r.display {
        Some(_) => None,
        None => Some(XServer::start_bare(r.size)?),
    };
    let display = r
        .display
        .or(own_server.as_ref().map(|s| s.display()))
        .context("no X display")?
        .to_owned();
    let command = match r.launch {
        Some(c) => c.to_owned(),
        None => script(r.workload, r.size)?,
    };
    let source = match &own_server {
        Some(server) => X11Source::connect_to(server, r.fps)?,
        None => X11Source::connect(Some(&display), r.fps)?,
    };
    let size = source.size();
    let capture = source.capture_method();

    let rig = Rig::start(Box::new(source), r.frame_window, r.max_video_kbit, r.link)?;
    let desktop = rig.desktop();
    let xserver_cpu_before = own_server.as_ref().map_or(0.0, |s| process_cpu_s(s.pid()));
    let interrupt = Arc::new(tokio::sync::Notify::new());
    let session = rig.client_rt.block_on(Session::connect(&rig.opts))?;
    let stop = StopWhen {
        interrupt: Some(interrupt.clone()),
        duration: Some(Duration::from_secs(r.seconds * 4 + 120)),
        ..Default::default()
    };
    let client = rig.client_rt.spawn(async move {
        let (mut pictures, mut frames) = (0u64, 0usize);
        // Display frames shown from the first to the last video picture.
        let mut during_video = (None::<usize>, 0usize);
        let observe = |shown: Shown, _: &oriel_protocol::Framebuffer| match shown {
            Shown::Frame { .. } => frames += 1,
            Shown::Picture { .. } => {
                pictures += 1;
                during_video.0.get_or_insert(frames);
                during_video.1 = frames;
            }
        };
        let outcome = session.run_observed(stop, None, observe).await;
        outcome.map(|o| (o, pictures, during_video))
    });

    // The workload runs for the given time, then stops; the screen settles.
    let launched = if command.trim().is_empty() {
        None
    } else {
        Some(Launched::start(&command, &display)?)
    };
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(r.seconds));
    let active = started.elapsed();
    drop(launched);
    let mut last = (desktop.source().sequence(), Instant::now());
    let settle_deadline = Instant::now() + Duration::from_secs(60);
    while last.1.elapsed() < QUIET {
        if Instant::now() > settle_deadline {
            bail!("the X screen never stopped changing after the workload ended");
        }
        std::thread::sleep(Duration::from_millis(50));
        let seq = desktop.source().sequence();
        if seq != last.0 {
            last = (seq, Instant::now());
        }
    }
    interrupt.notify_one();
    let (outcome, pictures, during_video) = rig.client_rt.block_on(client)??;
    let truth = desktop.source().pixels().clone();
    drop(desktop);
    let xserver_cpu_s = own_server
        .as_ref()
        .map_or(0.0, |s| process_cpu_s(s.pid()) - xserver_cpu_before);

    let done = rig.finish();
    let figures = display_figures(
        &done,
        &Seen {
            outcome: &outcome,
            truth: &truth,
            pictures,
            during_video,
            link: r.link,
        },
    );
    let line = json_line(
        figures,
        json!({
            "source": "x11",
            "workload": r.workload,
            "launch": command,
            "capture": capture,
            "width": size.width,
            "height": size.height,
            "seconds": active.as_secs_f64(),
            "xserver_cpu_s": xserver_cpu_s,
        }),
    );
    Ok(line)
}
