//! `oriel-bench --source x11 --workload echo`: keystroke → echo as the user sees it. The
//! desktop is an Xvfb with a full-screen xterm running `cat`; the viewer is the real
//! `oriel` client in a window on a second Xvfb. Each key is pressed on the viewer's X
//! server (XTEST) and the clock stops when that server's screen changes (DAMAGE): the
//! viewer took the key, sent it, the desktop drew the echo, the display server captured
//! and sent it, the viewer decoded and presented it. The same keys typed straight into
//! the desktop's X server give the floor: the xterm's own echo.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel::percentile;
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::xserver::XServer;
use oriel_netem::LinkSpec;
use oriel_protocol::Size;
use serde_json::json;
use x11rb::connection::Connection;
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use crate::rig::{json_line, Rig};
use crate::x11_bench::{process_cpu_s, Launched};

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

pub(crate) struct EchoRun {
    pub size: Size,
    pub keys: usize,
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
            "the echo workload runs the real viewer, {}; build it first \
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

pub(crate) fn run(r: &EchoRun) -> anyhow::Result<String> {
    if r.keys == 0 {
        bail!("the echo workload needs at least one key");
    }
    let client = client_binary()?;
    let desk_x = XServer::start_bare(r.size)?;
    let view_x = XServer::start_bare(r.size)?;
    let (cols, rows) = (r.size.width / 6 - 4, r.size.height / 13 - 4);
    let _term = Launched::start(
        &format!("exec xterm -geometry {cols}x{rows}+0+0 -e cat"),
        desk_x.display(),
    )?;
    let desk = Watcher::connect(desk_x.display())?;
    let view = Watcher::connect(view_x.display())?;
    let center = (
        i16::try_from(r.size.width / 2).unwrap_or(i16::MAX),
        i16::try_from(r.size.height / 2).unwrap_or(i16::MAX),
    );
    desk.next_damage(Instant::now() + Duration::from_secs(20))?
        .context("the xterm never appeared")?;
    desk.settle(Instant::now() + Duration::from_secs(20))?;

    // The floor: the same keys straight into the desktop's X server.
    desk.point_at(center.0, center.1)?;
    let (local, local_missed) = desk.echo_times(r.keys.min(50))?;

    let source = X11Source::connect(Some(desk_x.display()), r.fps)?;
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
    view.settle(Instant::now() + Duration::from_secs(30))?;
    view.point_at(center.0, center.1)?;
    view.focus_top_window()?;
    view.settle(Instant::now() + Duration::from_secs(10))?;

    let cpu_before = (
        process_cpu_s(desk_x.pid()),
        process_cpu_s(view_x.pid()),
        process_cpu_s(viewer.0.id()),
    );
    let started = Instant::now();
    let (remote, remote_missed) = view.echo_times(r.keys)?;
    let typing_s = started.elapsed().as_secs_f64();
    let cpu = (
        process_cpu_s(desk_x.pid()) - cpu_before.0,
        process_cpu_s(view_x.pid()) - cpu_before.1,
        process_cpu_s(viewer.0.id()) - cpu_before.2,
    );
    drop(viewer);
    let done = rig.finish();

    let ms = |samples: &[u32], p: f64| f64::from(percentile(samples, p)) / 1000.0;
    let figures = json!({
        "link": r.link.map_or("loopback".to_string(), |l| l.to_string()),
        "keys": r.keys,
        "echo_ms_p50": ms(&remote, 0.5),
        "echo_ms_p90": ms(&remote, 0.9),
        "echo_ms_p99": ms(&remote, 0.99),
        "echo_missed": remote_missed,
        "local_echo_ms_p50": ms(&local, 0.5),
        "local_echo_ms_p90": ms(&local, 0.9),
        "local_echo_missed": local_missed,
        "typing_s": typing_s,
        // The display server's CPU over its whole run (set-up and typing).
        "server_cpu_s": done.server_cpu_s,
        "desktop_xserver_cpu_s": cpu.0,
        "viewer_xserver_cpu_s": cpu.1,
        "client_cpu_s": cpu.2,
        "frames_sent": done.stats.frames_sent.load(std::sync::atomic::Ordering::Relaxed),
    });
    let serde_json::Value::Object(figures) = figures else {
        unreachable!("json! of an object literal")
    };
    Ok(json_line(
        figures,
        json!({
            "source": "x11",
            "workload": "echo",
            "width": r.size.width,
            "height": r.size.height,
        }),
    ))
}
