//! An X server of the display server's own on a free display number — Xvfb, or Xorg with
//! the dummy driver when the screen must change size (RandR) — plus the desktop's session
//! command (a window manager, a terminal, ...) running on it. Both are killed, by PID,
//! when the desktop goes.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oriel_protocol::Size;

use super::x11_error::X11Error;

/// How long Xvfb may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which X server runs the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XServerKind {
    /// Xvfb: light, but its screen keeps the size it started with.
    #[default]
    Xvfb,
    /// Xorg with the dummy video driver: RandR can resize its screen up to 4096x4096.
    XorgDummy,
}

impl std::str::FromStr for XServerKind {
    type Err = X11Error;
    fn from_str(s: &str) -> Result<Self, X11Error> {
        match s {
            "xvfb" => Ok(Self::Xvfb),
            "xorg" | "xorg-dummy" => Ok(Self::XorgDummy),
            other => Err(X11Error::Spawn(format!(
                "unknown X server '{other}' (xvfb or xorg)"
            ))),
        }
    }
}

/// What to run for one x11 desktop.
#[derive(Debug, Clone, Default)]
pub struct XSessionConfig {
    pub kind: XServerKind,
    pub size: Size,
    /// Run through `sh -c`; `None`: a window manager or xterm, whichever is installed.
    pub command: Option<String>,
    /// XKB layout of the desktop's keyboard (e.g. "de", "fr", "us"); clients send
    /// physical keys, so this decides what they type. `None`: the X server's default.
    pub layout: Option<String>,
    /// Give the session a sound server of its own (its sound reaches the viewers).
    pub audio: bool,
    /// Its default source is the viewer's microphone (with `audio`).
    pub microphone: bool,
}

/// Largest screen an Xorg dummy server can be resized to.
const XORG_MAX_EDGE: u32 = 4096;

pub struct XServer {
    process: Child,
    session: Option<Child>,
    display: String,
    /// Xorg's configuration and log, or Xvfb's framebuffer file: removed with the server.
    private_dir: Option<std::path::PathBuf>,
    /// Xvfb's screen memory as a file (`-fbdir`), for captures without requests.
    framebuffer_file: Option<std::path::PathBuf>,
    /// The session's sound server (dropped after the session).
    sound: Option<crate::audio::SoundServer>,
}

impl XServer {
    /// Starts Xvfb at `size` (depth 24) on a display number it picks, and then `command` through `sh -c` with
    /// `DISPLAY` set. Without a command, the first of `x-window-manager` and `xterm`
    /// that is installed runs; with neither, the screen stays bare.
    pub fn start(size: Size, command: Option<&str>) -> Result<XServer, X11Error> {
        Self::start_session(&XSessionConfig {
            size,
            command: command.map(str::to_owned),
            ..Default::default()
        })
    }

    /// Starts the X server `config` names, sets its keyboard layout, then the session.
    pub fn start_session(config: &XSessionConfig) -> Result<XServer, X11Error> {
        let mut server = match config.kind {
            XServerKind::Xvfb => Self::start_bare(config.size)?,
            XServerKind::XorgDummy => Self::start_xorg_dummy(config.size)?,
        };
        if let Some(layout) = &config.layout {
            set_layout(&server.display, layout)?;
        }
        if config.audio {
            match private_dir("pulse").and_then(|dir| {
                crate::audio::SoundServer::start(dir, config.microphone)
                    .map_err(|e| X11Error::Spawn(format!("{e:#}")))
            }) {
                Ok(sound) => server.sound = Some(sound),
                Err(e) => tracing::warn!(display = server.display, "the desktop has no sound: {e}"),
            }
        }
        let command = config.command.clone().or_else(default_session);
        if let Some(command) = command {
            let mut session = Command::new("sh");
            if let Some(sound) = &server.sound {
                session.env("PULSE_SERVER", sound.access().address);
            }
            let child = session
                .args(["-c", &command])
                .env("DISPLAY", &server.display)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| X11Error::Spawn(format!("session command '{command}': {e}")))?;
            server.session = Some(child);
        }
        tracing::info!(display = server.display, "X server started");
        Ok(server)
    }

    /// Starts Xvfb alone: an empty screen, kept in a file in a private directory
    /// (on tmpfs where there is one) that the X11 source maps to capture from.
    pub fn start_bare(size: Size) -> Result<XServer, X11Error> {
        let screen = format!("{}x{}x24", size.width, size.height);
        let dir = private_dir("xvfb")?;
        let fbdir = dir.display().to_string();
        let args = ["-screen", "0", &screen, "-fbdir", &fbdir];
        match Self::launch("Xvfb", &args, Some(dir.clone())) {
            Ok(mut server) => {
                server.framebuffer_file = Some(dir.join("Xvfb_screen0"));
                Ok(server)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(X11Error::Spawn(format!("{e} (install the xvfb package)")))
            }
        }
    }

    /// Starts Xorg with the dummy driver alone: an empty screen of `size` that RandR
    /// clients (xrandr, or the desktop itself) can resize.
    pub fn start_xorg_dummy(size: Size) -> Result<XServer, X11Error> {
        if size.width > XORG_MAX_EDGE || size.height > XORG_MAX_EDGE {
            return Err(X11Error::TooLarge {
                width: size.width,
                height: size.height,
            });
        }
        let dir = private_dir("xorg")?;
        let empty = dir.join("conf.d");
        std::fs::create_dir_all(&empty)
            .map_err(|e| X11Error::Spawn(format!("{}: {e}", empty.display())))?;
        let config = dir.join("xorg.conf");
        std::fs::write(&config, xorg_dummy_config(size))
            .map_err(|e| X11Error::Spawn(format!("{}: {e}", config.display())))?;
        let (config, empty, log) = (
            config.display().to_string(),
            empty.display().to_string(),
            dir.join("Xorg.log").display().to_string(),
        );
        let args = [
            "-config",
            &config,
            "-configdir",
            &empty,
            "-logfile",
            &log,
            "-novtswitch",
            "-sharevts",
        ];
        match Self::launch("Xorg", &args, Some(dir.clone())) {
            Ok(server) => Ok(server),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(X11Error::Spawn(format!(
                    "{e} (install xserver-xorg-core and xserver-xorg-video-dummy)"
                )))
            }
        }
    }

    /// Runs an X server `program` with `args` on a display number it picks itself.
    fn launch(
        program: &str,
        args: &[&str],
        private_dir: Option<std::path::PathBuf>,
    ) -> Result<XServer, X11Error> {
        // The server picks a free display number itself and writes it to this pipe.
        let (read_fd, write_fd) = pipe()?;
        let spawned = Command::new(program)
            // Without -noreset, the server resets itself whenever its last client
            // disconnects, and drops whoever connects meanwhile (our own start-up probe
            // included).
            .args([
                "-noreset",
                "-nolisten",
                "tcp",
                "-displayfd",
                &write_fd.to_string(),
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        // SAFETY: the write end is ours; the child has its own copy now.
        unsafe { libc::close(write_fd) };
        let process = spawned.map_err(|e| {
            // SAFETY: the read end is ours and not used after this.
            unsafe { libc::close(read_fd) };
            X11Error::Spawn(format!("cannot run {program}: {e}"))
        })?;
        let mut server = XServer {
            process,
            session: None,
            display: String::new(),
            private_dir,
            framebuffer_file: None,
            sound: None,
        };
        // SAFETY: `read_fd` is an open pipe end that the File now owns.
        let mut reader = unsafe { std::fs::File::from_raw_fd(read_fd) };
        // One line with the number; EOF first means Xvfb failed (the pipe closes when it
        // exits).
        // A server that hangs before it says its number must not hold this thread (and
        // the host's commands after it) forever: wait for each byte with a deadline.
        let deadline = Instant::now() + START_TIMEOUT;
        let mut number = String::new();
        let mut byte = [0u8; 1];
        while number.len() < 16
            && readable_before(&reader, deadline)
            && matches!(reader.read(&mut byte), Ok(1))
            && byte[0] != b'\n'
        {
            number.push(byte[0] as char);
        }
        let number = number.trim();
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(X11Error::Spawn(format!(
                "{program} did not start (it exited, or said no display number within {START_TIMEOUT:?})"
            )));
        }
        server.display = format!(":{number}");
        while x11rb::connect(Some(&server.display)).is_err() {
            if Instant::now() > deadline {
                return Err(X11Error::Spawn(format!(
                    "{program} {} did not accept connections within {START_TIMEOUT:?}",
                    server.display
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The session's sound server, if it has one.
    pub fn sound_access(&self) -> Option<crate::audio::SoundAccess> {
        self.sound.as_ref().map(|s| s.access())
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// The X server process.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Xvfb's screen memory as a file (xwd format), when this is an Xvfb.
    pub fn framebuffer_file(&self) -> Option<&std::path::Path> {
        self.framebuffer_file.as_deref()
    }
}

/// A new directory only this user can enter, for one X server's files: under
/// `$XDG_RUNTIME_DIR` or `/dev/shm` (memory: Xvfb syncs its framebuffer file often),
/// else the temporary directory.
fn private_dir(kind: &str) -> Result<std::path::PathBuf, X11Error> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| d.is_dir())
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|d| d.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("oriel-{kind}-{}-{n}", std::process::id()));
    oriel_transport::files::create_private_dir(&dir)
        .map_err(|e| X11Error::Spawn(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// Whether `file` has something to read (or is closed) before `deadline`.
fn readable_before(file: &std::fs::File, deadline: Instant) -> bool {
    use std::os::fd::AsRawFd;
    let left = deadline.saturating_duration_since(Instant::now());
    let mut fd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for the duration of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, millis) };
    ready > 0
}

/// An Xorg configuration for the dummy driver: a screen that starts at `size` and that
/// RandR may resize up to [`XORG_MAX_EDGE`] square, with no input devices of its own.
fn xorg_dummy_config(size: Size) -> String {
    let (w, h) = (size.width, size.height);
    let t = super::x11_randr::mode_timings(size);
    let clock = f64::from(t.clock_hz) / 1e6;
    let mode = format!("oriel-{w}x{h}");
    format!(
        r#"Section "ServerFlags"
  Option "AutoAddDevices" "false"
  Option "AutoEnableDevices" "false"
  Option "DontVTSwitch" "true"
EndSection
Section "Device"
  Identifier "dummy"
  Driver "dummy"
  VideoRam {video_ram}
EndSection
Section "Monitor"
  Identifier "monitor"
  HorizSync 1.0 - 2000.0
  VertRefresh 1.0 - 200.0
  Modeline "{mode}" {clock:.3} {w} {hs} {he} {htotal} {h} {vs} {ve} {vtotal}
EndSection
Section "Screen"
  Identifier "screen"
  Device "dummy"
  Monitor "monitor"
  DefaultDepth 24
  SubSection "Display"
    Depth 24
    Modes "{mode}"
    Virtual {max} {max}
  EndSubSection
EndSection
"#,
        video_ram = XORG_MAX_EDGE * XORG_MAX_EDGE * 4 / 1024 + 1024,
        hs = t.hsync_start,
        he = t.hsync_end,
        htotal = t.htotal,
        vs = t.vsync_start,
        ve = t.vsync_end,
        vtotal = t.vtotal,
        max = XORG_MAX_EDGE,
    )
}

/// Sets the XKB layout of `display`'s keyboard with setxkbmap.
fn set_layout(display: &str, layout: &str) -> Result<(), X11Error> {
    let valid = !layout.is_empty()
        && layout.len() <= 64
        && layout
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-,()".contains(&b));
    if !valid {
        return Err(X11Error::Spawn(format!(
            "'{layout}' is not a keyboard layout name"
        )));
    }
    let status = Command::new("setxkbmap")
        .args(["-display", display, "-layout", layout])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| X11Error::Spawn(format!("cannot run setxkbmap (x11-xkb-utils): {e}")))?;
    if !status.success() {
        return Err(X11Error::Spawn(format!(
            "setxkbmap refused keyboard layout '{layout}'"
        )));
    }
    Ok(())
}

/// The session to run when the pool names none.
fn default_session() -> Option<String> {
    ["x-window-manager", "xterm"]
        .into_iter()
        .find(|program| {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            })
        })
        .map(str::to_owned)
}

/// A pipe whose read end closes on exec (only Xvfb gets the write end).
fn pipe() -> Result<(i32, i32), X11Error> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two descriptors into the array we own.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(X11Error::Spawn(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: fds[0] is open; FD_CLOEXEC only affects exec.
    unsafe { libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((fds[0], fds[1]))
}

/// Asks a child to stop (SIGTERM, so Xvfb removes its lock and socket), then kills it
/// if it has not stopped within a second.
fn stop(child: &mut Child) {
    // SAFETY: signalling our own child by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for XServer {
    fn drop(&mut self) {
        if let Some(session) = &mut self.session {
            stop(session);
        }
        stop(&mut self.process);
        if let Some(dir) = &self.private_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
