//! An X server of the display server's own: Xvfb on a free display number, plus the
//! desktop's session command (a window manager, a terminal, ...) running on it. Both are
//! killed, by PID, when the desktop goes.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oriel_protocol::Size;

use super::x11::X11Error;

/// How long Xvfb may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct XServer {
    xvfb: Child,
    session: Option<Child>,
    display: String,
}

impl XServer {
    /// Starts Xvfb at `size` (depth 24) on a display number it picks, and then `command` through `sh -c` with
    /// `DISPLAY` set. Without a command, the first of `x-window-manager` and `xterm`
    /// that is installed runs; with neither, the screen stays bare.
    pub fn start(size: Size, command: Option<&str>) -> Result<XServer, X11Error> {
        let mut server = Self::start_bare(size)?;
        let command = command.map(str::to_owned).or_else(default_session);
        if let Some(command) = command {
            let child = Command::new("sh")
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

    /// Starts Xvfb alone: an empty screen.
    pub fn start_bare(size: Size) -> Result<XServer, X11Error> {
        // Xvfb picks a free display number itself and writes it to this pipe.
        let (read_fd, write_fd) = pipe()?;
        let spawned = Command::new("Xvfb")
            .args([
                // Without it, Xvfb resets itself whenever its last client disconnects,
                // and drops whoever connects meanwhile (our own start-up probe included).
                "-noreset",
                "-displayfd",
                &write_fd.to_string(),
                "-screen",
                "0",
                &format!("{}x{}x24", size.width, size.height),
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        // SAFETY: the write end is ours; the child has its own copy now.
        unsafe { libc::close(write_fd) };
        let xvfb = spawned.map_err(|e| {
            // SAFETY: the read end is ours and not used after this.
            unsafe { libc::close(read_fd) };
            X11Error::Spawn(format!("cannot run Xvfb (install the xvfb package): {e}"))
        })?;
        let mut server = XServer {
            xvfb,
            session: None,
            display: String::new(),
        };
        // SAFETY: `read_fd` is an open pipe end that the File now owns.
        let mut reader = unsafe { std::fs::File::from_raw_fd(read_fd) };
        // One line with the number; EOF first means Xvfb failed (the pipe closes when it
        // exits).
        let mut number = String::new();
        let mut byte = [0u8; 1];
        while number.len() < 16 && matches!(reader.read(&mut byte), Ok(1)) && byte[0] != b'\n' {
            number.push(byte[0] as char);
        }
        let number = number.trim();
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(X11Error::Spawn("Xvfb exited at start".into()));
        }
        server.display = format!(":{number}");
        let deadline = Instant::now() + START_TIMEOUT;
        while x11rb::connect(Some(&server.display)).is_err() {
            if Instant::now() > deadline {
                return Err(X11Error::Spawn(format!(
                    "Xvfb {} did not accept connections within {START_TIMEOUT:?}",
                    server.display
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// The Xvfb process.
    pub fn pid(&self) -> u32 {
        self.xvfb.id()
    }
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
        stop(&mut self.xvfb);
    }
}
