//! `oriel-bench --source x11 --workload echo|video-window`: what the user of the real
//! viewer sees.
//!
//! `echo`: keystroke → echo as the user sees it. The
//! desktop is an Xvfb with a full-screen xterm running `cat`; the viewer is the real
//! `oriel` client in a window on a second Xvfb. Each key is pressed on the viewer's X
//! server (XTEST) and the clock stops when that server's screen changes (DAMAGE): the
//! viewer took the key, sent it, the desktop drew the echo, the display server captured
//! and sent it, the viewer decoded and presented it. The same keys typed straight into
//! the desktop's X server give the floor: the xterm's own echo.

use std::hash::{Hash, Hasher};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel::percentile;
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::xserver::XServer;
use oriel_netem::LinkSpec;
use oriel_protocol::{Rect, Size};
use serde_json::json;
use x11rb::connection::Connection;
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use crate::frame_numbers::{self, FrameScores};
use crate::rig::{merged_line, Finished, Rig};
use crate::x11_bench::{numbered_clip, player_command, process_cpu_s, Launched, Player};

/// Keys typed before the measured ones: the first key warms every path up.
const WARM_UP: usize = 5;
/// How long a key may take to show before it counts as missed.
const KEY_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after each echo, so trailing drawing never counts for the next key.
const BETWEEN_KEYS: Duration = Duration::from_millis(120);
/// How long a screen must stay unchanged to count as settled.
const QUIET: Duration = Duration::from_millis(700);

/// X keycodes (evdev) of the letters q..p, a..l and z..m.
const LETTER_KEYCODES: [u8; 26] = [
    24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 38, 39, 40, 41, 42, 43, 44, 45, 46, 52, 53, 54, 55, 56,
    57, 58,
];

pub(crate) struct ViewerRun<'a> {
    /// `echo` or `video-window`.
    pub workload: &'a str,
    pub size: Size,
    /// The video-window clip's size (at the screen's top left).
    pub clip: Size,
    /// The clip encoded for cheap decoding.
    pub fast_decode: bool,
    pub player: Player,
    pub keys: usize,
    pub seconds: u64,
    pub fps: u32,
    pub frame_window: usize,
    pub link: Option<LinkSpec>,
    pub max_video_kbit: u32,
}

/// An X connection that types with XTEST and reports its screen's damage.
struct Watcher {
    conn: RustConnection,
    root: xproto::Window,
}

impl Watcher {
    fn connect(display: &str) -> anyhow::Result<Self> {
        let (conn, screen) = x11rb::connect(Some(display))
            .with_context(|| format!("cannot connect to X display {display}"))?;
        let root = conn.setup().roots[screen].root;
        conn.damage_query_version(1, 1)?.reply()?;
        let damage = conn.generate_id()?;
        conn.damage_create(damage, root, damage::ReportLevel::NON_EMPTY)?;
        conn.flush()?;
        Ok(Self { conn, root })
    }

    /// Moves the pointer to (`x`, `y`): without a window manager, the window under
    /// the pointer has the keyboard.
    fn point_at(&self, x: i16, y: i16) -> anyhow::Result<()> {
        self.conn
            .xtest_fake_input(xproto::MOTION_NOTIFY_EVENT, 0, 0, self.root, x, y, 0)?;
        self.conn.flush()?;
        Ok(())
    }

    /// Gives the keyboard to the topmost window on the screen, as a window manager
    /// would (none runs here).
    fn focus_top_window(&self) -> anyhow::Result<()> {
        let tree = self.conn.query_tree(self.root)?.reply()?;
        for &window in tree.children.iter().rev() {
            let attributes = self.conn.get_window_attributes(window)?.reply()?;
            if attributes.map_state == xproto::MapState::VIEWABLE
                && attributes.class == xproto::WindowClass::INPUT_OUTPUT
            {
                self.conn.set_input_focus(
                    xproto::InputFocus::PARENT,
                    window,
                    x11rb::CURRENT_TIME,
                )?;
                self.conn.get_input_focus()?.reply()?;
                return Ok(());
            }
        }
        bail!("no window to give the keyboard to")
    }

    /// Presses and releases `keycode`.
    fn type_key(&self, keycode: u8) -> anyhow::Result<()> {
        for kind in [xproto::KEY_PRESS_EVENT, xproto::KEY_RELEASE_EVENT] {
            self.conn
                .xtest_fake_input(kind, keycode, 0, self.root, 0, 0, 0)?;
        }
        self.conn.flush()?;
        Ok(())
    }

    /// The screen's bytes in `rect` now (32-bit pixels, little-endian).
    fn image(&self, rect: &Rect) -> anyhow::Result<Vec<u8>> {
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let image = self
            .conn
            .get_image(
                xproto::ImageFormat::Z_PIXMAP,
                self.root,
                i16::try_from(rect.x).unwrap_or(i16::MAX),
                i16::try_from(rect.y).unwrap_or(i16::MAX),
                clamp(rect.width),
                clamp(rect.height),
                !0,
            )?
            .reply()?;
        Ok(image.data)
    }

    /// A hash of the pixels of `band` now.
    fn band_hash(&self, band: &Rect) -> anyhow::Result<u64> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.image(band)?.hash(&mut hasher);
        Ok(hasher.finish())
    }

    /// The pixels of `rect` now, as 0x00RRGGBB.
    fn pixels(&self, rect: &Rect) -> anyhow::Result<Vec<u32>> {
        let bytes = self.image(rect)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
            .collect())
    }

    /// The number of the clip frame on the screen, and its pixels when it is one not
    /// seen last time (`last`).
    fn numbered_frame(
        &self,
        clip: &Rect,
        last: &mut Option<u32>,
    ) -> anyhow::Result<Option<(u32, Vec<u32>)>> {
        let strip = self.pixels(&frame_numbers::STRIP)?;
        let number = frame_numbers::read_number(&strip, frame_numbers::STRIP.width as usize);
        if number.is_none() || number == *last {
            return Ok(None);
        }
        // The frame may have moved on since: its number is read from the copy itself.
        let pixels = self.pixels(clip)?;
        let Some(number) = frame_numbers::read_number(&pixels, clip.width as usize) else {
            return Ok(None);
        };
        *last = Some(number);
        Ok(Some((number, pixels)))
    }

    /// Whether damage was pending (and clears it, so the next change reports again).
    fn take_damage(&self) -> anyhow::Result<bool> {
        let mut damaged = false;
        while let Some(event) = self.conn.poll_for_event()? {
            if let Event::DamageNotify(e) = event {
                damaged = true;
                self.conn
                    .damage_subtract(e.damage, x11rb::NONE, x11rb::NONE)?;
            }
        }
        self.conn.flush()?;
        Ok(damaged)
    }

    /// When the screen next changes, or `None` by `deadline`.
    fn next_damage(&self, deadline: Instant) -> anyhow::Result<Option<Instant>> {
        loop {
            if self.take_damage()? {
                return Ok(Some(Instant::now()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut fd = libc::pollfd {
                fd: self.conn.stream().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let timeout = i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX);
            // SAFETY: one pollfd we own, for the duration of the call.
            unsafe { libc::poll(&mut fd, 1, timeout) };
        }
    }

    /// Waits until the screen has not changed for `QUIET` (by `deadline`).
    fn settle(&self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            match self.next_damage(Instant::now() + QUIET)? {
                None => return Ok(()),
                Some(t) if t > deadline => bail!("the X screen never settled"),
                Some(_) => {}
            }
        }
    }

    /// Types `count` letters (after the warm-up) and returns each one's key → damage
    /// time, in microseconds, and how many never showed.
    fn echo_times(&self, count: usize) -> anyhow::Result<(Vec<u32>, usize)> {
        let mut times = Vec::with_capacity(count);
        let mut missed = 0;
        for i in 0..WARM_UP + count {
            std::thread::sleep(BETWEEN_KEYS);
            self.take_damage()?;
            let keycode = LETTER_KEYCODES[i % LETTER_KEYCODES.len()];
            let pressed = Instant::now();
            self.type_key(keycode)?;
            let shown = self.next_damage(pressed + KEY_TIMEOUT)?;
            if i < WARM_UP {
                continue;
            }
            match shown {
                Some(t) => times.push(u32::try_from((t - pressed).as_micros()).unwrap_or(u32::MAX)),
                None => missed += 1,
            }
        }
        Ok((times, missed))
    }
}

/// The `oriel` client binary beside this one.
fn client_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let client = exe.with_file_name("oriel");
    if !client.exists() {
        bail!(
            "the echo and video-window workloads run the real viewer, {}; build it first \
             (cargo build --release -p oriel)",
            client.display()
        );
    }
    Ok(client)
}

/// The viewer process, killed with the run.
struct Viewer(Child);

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The viewer side of a run: the display server on the desktop's X server, and the
/// real viewer in a window on an X server of its own.
struct Attached {
    rig: Rig,
    view_x: XServer,
    view: Watcher,
    viewer: Viewer,
}

impl Attached {
    /// Serves `desk_x` and shows it in the viewer, which gets the keyboard.
    fn start(r: &ViewerRun, desk_x: &XServer) -> anyhow::Result<Self> {
        let client = client_binary()?;
        let view_x = XServer::start_bare(r.size)?;
        let view = Watcher::connect(view_x.display())?;
        let source = X11Source::connect_to(desk_x, r.fps)?;
        let rig = Rig::start(Box::new(source), r.frame_window, r.max_video_kbit, r.link)?;
        let viewer = Command::new(&client)
            .args(["connect", &rig.opts.addr.to_string(), "--no-resize"])
            .arg("--fingerprint")
            .arg(rig.server.fingerprint().to_string())
            .env("DISPLAY", view_x.display())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", client.display()))?;
        let viewer = Viewer(viewer);
        view.next_damage(Instant::now() + Duration::from_secs(30))?
            .context("the viewer never showed the desktop")?;
        let (x, y) = center(r.size);
        view.point_at(x, y)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = view.focus_top_window() {
            if Instant::now() > deadline {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            rig,
            view_x,
            view,
            viewer,
        })
    }

    /// CPU seconds so far of the desktop's X server, the viewer's and the viewer.
    fn cpu(&self, desk_x: &XServer) -> [f64; 3] {
        [
            process_cpu_s(desk_x.pid()),
            process_cpu_s(self.view_x.pid()),
            process_cpu_s(self.viewer.0.id()),
        ]
    }
}

fn center(size: Size) -> (i16, i16) {
    (
        i16::try_from(size.width / 2).unwrap_or(i16::MAX),
        i16::try_from(size.height / 2).unwrap_or(i16::MAX),
    )
}

/// The figures every viewer workload reports besides its own.
fn common_figures(r: &ViewerRun, cpu: [f64; 3], done: &Finished) -> serde_json::Value {
    json!({
        "source": "x11",
        "workload": r.workload,
        "width": r.size.width,
        "height": r.size.height,
        "link": r.link.map_or("loopback".to_string(), |l| l.to_string()),
        // The display server's CPU over its whole run (set-up included).
        "server_cpu_s": done.server_cpu_s,
        "desktop_xserver_cpu_s": cpu[0],
        "viewer_xserver_cpu_s": cpu[1],
        "client_cpu_s": cpu[2],
        "frames_sent": done.stats.frames_sent.load(Relaxed),
        "display_bytes": done.stats.display_bytes.load(Relaxed),
        "video_bytes": done.stats.video_bytes.load(Relaxed),
    })
}

pub(crate) fn run(r: &ViewerRun) -> anyhow::Result<String> {
    match r.workload {
        "echo" => echo(r),
        "video-window" => video(r),
        other => bail!("no viewer workload '{other}' (have echo, video-window)"),
    }
}

fn echo(r: &ViewerRun) -> anyhow::Result<String> {
    if r.keys == 0 {
        bail!("the echo workload needs at least one key");
    }
    let desk_x = XServer::start_bare(r.size)?;
    let (cols, rows) = (r.size.width / 6 - 4, r.size.height / 13 - 4);
    let _term = Launched::start(
        &format!("exec xterm -geometry {cols}x{rows}+0+0 -e cat"),
        desk_x.display(),
    )?;
    let desk = Watcher::connect(desk_x.display())?;
    desk.next_damage(Instant::now() + Duration::from_secs(20))?
        .context("the xterm never appeared")?;
    desk.settle(Instant::now() + Duration::from_secs(20))?;

    // The floor: the same keys straight into the desktop's X server.
    let (x, y) = center(r.size);
    desk.point_at(x, y)?;
    let (local, local_missed) = desk.echo_times(r.keys.min(50))?;

    let attached = Attached::start(r, &desk_x)?;
    attached
        .view
        .settle(Instant::now() + Duration::from_secs(30))?;
    let before = attached.cpu(&desk_x);
    let started = Instant::now();
    let (remote, remote_missed) = attached.view.echo_times(r.keys)?;
    let typing_s = started.elapsed().as_secs_f64();
    let after = attached.cpu(&desk_x);
    drop(attached.viewer);
    let done = attached.rig.finish();

    let ms = |samples: &[u32], p: f64| f64::from(percentile(samples, p)) / 1000.0;
    let figures = json!({
        "keys": r.keys,
        "echo_ms_p50": ms(&remote, 0.5),
        "echo_ms_p90": ms(&remote, 0.9),
        "echo_ms_p99": ms(&remote, 0.99),
        "echo_missed": remote_missed,
        "local_echo_ms_p50": ms(&local, 0.5),
        "local_echo_ms_p90": ms(&local, 0.9),
        "local_echo_missed": local_missed,
        "typing_s": typing_s,
    });
    Ok(merged_line([
        figures,
        common_figures(r, cpu_spent(before, after), &done),
    ]))
}

/// How often both screens are sampled for a new picture: well within a frame.
const SAMPLE_EVERY: Duration = Duration::from_millis(3);

fn video(r: &ViewerRun) -> anyhow::Result<String> {
    let desk_x = XServer::start_bare(r.size)?;
    let clip = numbered_clip(r.clip, r.fast_decode)?;
    let _player = Launched::start(&player_command(r.player, &clip), desk_x.display())?;
    let desk = Watcher::connect(desk_x.display())?;
    desk.next_damage(Instant::now() + Duration::from_secs(20))?
        .context("the player never appeared")?;
    let attached = Attached::start(r, &desk_x)?;
    // The first screen and the video's detection are behind us.
    std::thread::sleep(Duration::from_secs(3));

    // A band across the picture (at the screen's top left): every frame of the clip
    // changes it.
    let band = Rect::new(0, r.clip.height / 2, r.clip.width, 8);
    let stats = attached.rig.server.stats();
    let sent = || stats.display_bytes.load(Relaxed) + stats.video_bytes.load(Relaxed);
    let sent_before = sent();
    let desktop = attached.rig.desktop();
    let counts = || {
        [
            desktop.frames_produced(),
            stats.video_frames.load(Relaxed),
            stats.video_skipped.load(Relaxed),
        ]
    };
    let counts_before = counts();
    let before = attached.cpu(&desk_x);
    let (mut screen, mut shown) = (Changes::default(), Changes::default());
    let clip_rect = Rect::new(0, 0, r.clip.width, r.clip.height);
    let mut scores = FrameScores::default();
    let (mut last_on_desk, mut last_shown) = (None, None);
    let started = Instant::now();
    let until = started + Duration::from_secs(r.seconds);
    while Instant::now() < until {
        screen.sample(desk.band_hash(&band)?);
        shown.sample(attached.view.band_hash(&band)?);
        if let Some((n, pixels)) = desk.numbered_frame(&clip_rect, &mut last_on_desk)? {
            scores.on_desktop(n, pixels);
        }
        let view = &attached.view;
        if let Some((n, pixels)) = view.numbered_frame(&clip_rect, &mut last_shown)? {
            scores.shown(n, &pixels);
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = attached.cpu(&desk_x);
    let sent_after = sent();
    let [captures, pictures, skipped] = {
        let after = counts();
        [0, 1, 2].map(|i| (after[i] - counts_before[i]) as f64 / seconds)
    };
    drop(desktop);
    drop(attached.viewer);
    let done = attached.rig.finish();
    let screen_fps = f64::from(screen.changes) / seconds;
    let shown_fps = f64::from(shown.changes) / seconds;
    let video_encode = done.stats.video_encode_samples();
    let encode_ms = |p| f64::from(percentile(&video_encode, p)) / 1000.0;
    let figures = json!({
        "seconds": seconds,
        "clip_fast_decode": r.fast_decode,
        "screen_fps": screen_fps,
        "viewer_fps": shown_fps,
        "viewer_shown_ratio": if screen_fps > 0.0 { shown_fps / screen_fps } else { 0.0 },
        // What the server did meanwhile, per second: polls that found damage, video
        // pictures encoded, pictures the encoder made nothing of.
        "captures_per_s": captures,
        "pictures_per_s": pictures,
        "pictures_skipped_per_s": skipped,
        // Wall time per picture, so a busy machine shows.
        "video_encode_ms_p50": encode_ms(0.5),
        "video_encode_ms_p90": encode_ms(0.9),
        // Both streams, lossless and video, while sampled.
        "mbit_per_s": (sent_after - sent_before) as f64 * 8.0 / 1e6 / seconds,
    });
    Ok(merged_line([
        figures,
        scores.figures(),
        common_figures(r, cpu_spent(before, after), &done),
    ]))
}

/// Counts how often a sampled band of the screen changed.
#[derive(Default)]
struct Changes {
    last: Option<u64>,
    changes: u32,
}

impl Changes {
    fn sample(&mut self, hash: u64) {
        if self.last.is_some_and(|h| h != hash) {
            self.changes += 1;
        }
        self.last = Some(hash);
    }
}

fn cpu_spent(before: [f64; 3], after: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| after[i] - before[i])
}
