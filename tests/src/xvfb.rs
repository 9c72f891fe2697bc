//! A private Xvfb per test: started on a free display number, killed (by PID) on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    /// Starts `Xvfb :N -screen 0 WxHx24` on a display number nobody uses and waits until
    /// it accepts connections.
    pub fn start(width: u32, height: u32) -> Xvfb {
        let base = 100 + std::process::id() % 400;
        let number = (base..base + 200)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .expect("a free X display number");
        let display = format!(":{number}");
        let child = Command::new("Xvfb")
            .args([
                display.as_str(),
                "-screen",
                "0",
                &format!("{width}x{height}x24"),
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb runs (scripts/install-deps installs the xvfb package)");
        let xvfb = Xvfb { child, display };
        let deadline = Instant::now() + Duration::from_secs(30);
        while x11rb::connect(Some(&xvfb.display)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Xvfb {} did not start",
                xvfb.display
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        xvfb
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
