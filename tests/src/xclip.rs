//! The X clipboard from the outside, as a user's programs use it: xclip copying into
//! and pasting from an X server's CLIPBOARD.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Copies `data` as `target` into `display`'s CLIPBOARD with xclip (which stays, in
/// the background, to serve it until another application copies).
pub fn copy(display: &str, target: &str, data: &[u8]) {
    let mut child = Command::new("xclip")
        .args(["-selection", "clipboard", "-t", target, "-i"])
        .env("DISPLAY", display)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xclip runs (scripts/install-deps installs it)");
    child.stdin.take().unwrap().write_all(data).unwrap();
    // xclip forks a server for the selection and the parent exits.
    assert!(child.wait().unwrap().success());
}

/// Pastes `display`'s CLIPBOARD as `target`: `Err` with xclip's message if it fails.
pub fn paste(display: &str, target: &str) -> Result<Vec<u8>, String> {
    let out = Command::new("xclip")
        .args(["-selection", "clipboard", "-t", target, "-o"])
        .env("DISPLAY", display)
        .output()
        .expect("xclip runs");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Pastes until `want` arrives (the offer crosses first), or gives the last result.
pub fn paste_until(display: &str, target: &str, want: &[u8]) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = paste(display, target);
        if got.as_deref() == Ok(want) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A test picture of `width` x `height` as PNG: opaque, every pixel different nearby.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(width, height, |x, y| {
        let [r, g, b] = [x * 7, y * 3, x ^ y].map(|v| v.to_le_bytes()[0]);
        image::Rgba([r, g, b, 255])
    });
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}
