//! The clipboard, both ways, between real X servers with `xclip` copying and pasting:
//! the X11 bridge on its own, then a desktop of the display server and a viewer window
//! on another X server, through the session's clipboard channel.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use oriel_clipboard::{BridgeConfig, X11Clipboard};
use oriel_display_server::clipboard::ClipboardSetting;
use oriel_display_server::desktop::Desktop;
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::FrameSource;
use oriel_display_server::{DisplayServer, ServerConfig};
use oriel_e2e::workspace_binary;
use oriel_e2e::xclip::{copy, paste, paste_until, png};
use oriel_e2e::xvfb::Xvfb;
use oriel_protocol::ClipboardPolicy;
use oriel_transport::tls::Identity;

/// Two bridges wired to each other, as the channel would.
fn bridge_pair(a: &str, b: &str, max_bytes: u32) -> (Arc<X11Clipboard>, Arc<X11Clipboard>) {
    let config = BridgeConfig {
        primary: false,
        max_bytes,
    };
    let (to_b, from_a) = std::sync::mpsc::channel();
    let (to_a, from_b) = std::sync::mpsc::channel();
    let ba = Arc::new(X11Clipboard::start(Some(a), config, move |m| drop(to_b.send(m))).unwrap());
    let bb = Arc::new(X11Clipboard::start(Some(b), config, move |m| drop(to_a.send(m))).unwrap());
    for (rx, dest) in [(from_a, bb.clone()), (from_b, ba.clone())] {
        let dest = Arc::downgrade(&dest);
        std::thread::spawn(move || {
            while let Ok(m) = rx.recv() {
                match dest.upgrade() {
                    Some(d) => d.deliver(m),
                    None => return,
                }
            }
        });
    }
    (ba, bb)
}

#[test]
fn two_bridges_carry_text_and_png_both_ways_lazily_and_refuse_what_is_too_large() {
    let (xa, xb) = (Xvfb::start(320, 240), Xvfb::start(320, 240));
    let (_a, _b) = bridge_pair(&xa.display, &xb.display, 1024 * 1024);

    let text = "héllo, wörld — 你好\nsecond line".as_bytes();
    copy(&xa.display, "UTF8_STRING", text);
    assert_eq!(paste_until(&xb.display, "UTF8_STRING", text).unwrap(), text);
    // Pasted again: served from the bridge's copy, the same bytes.
    assert_eq!(paste(&xb.display, "UTF8_STRING").unwrap(), text);

    let image = png(200, 150);
    copy(&xb.display, "image/png", &image);
    assert_eq!(
        paste_until(&xa.display, "image/png", &image).unwrap(),
        image
    );
    // The image's offer replaced the text's: no text to paste now.
    assert!(paste(&xa.display, "UTF8_STRING").is_err());

    // Larger than the cap: refused, and the
    // clipboard keeps working afterwards.
    let big = vec![b'x'; 3 * 1024 * 1024];
    copy(&xa.display, "UTF8_STRING", &big);
    std::thread::sleep(Duration::from_millis(500));
    let refused = paste(&xb.display, "UTF8_STRING");
    assert!(
        refused.is_err(),
        "a paste over the cap got {:?} bytes",
        refused.map(|v| v.len())
    );
    let small = b"after the refusal";
    copy(&xa.display, "UTF8_STRING", small);
    assert_eq!(
        paste_until(&xb.display, "UTF8_STRING", small).unwrap(),
        small
    );
}

/// A display server whose one desktop, "x", is the X server `x` with `policy`.
fn serve(x: &Xvfb, policy: ClipboardPolicy) -> DisplayServer {
    let source = X11Source::connect_to(&x.server, 30)
        .expect("attach to Xvfb")
        .with_clipboard(ClipboardSetting {
            policy,
            primary: false,
        });
    let identity = Identity::generate(&["localhost".into()]).expect("identity");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let desktop = Desktop::new("x", Box::new(source) as Box<dyn FrameSource>);
    DisplayServer::start(config, &identity, vec![desktop]).expect("server starts")
}

/// The viewer in a window on `screen`, its log in `log`; killed when dropped.
struct Viewer(std::process::Child);

impl Viewer {
    fn start(server: &DisplayServer, screen: &Xvfb, log: &std::path::Path) -> Viewer {
        let child = Command::new(workspace_binary("oriel"))
            .args(["connect", &server.local_addr().unwrap().to_string()])
            .args([
                "--fingerprint",
                &server.fingerprint().to_string(),
                "--desktop",
                "x",
            ])
            .args(["--duration", "180s"])
            .env("DISPLAY", &screen.display)
            .env("RUST_LOG", "warn,winit=error")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("oriel runs");
        Viewer(child)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metric(server: &DisplayServer, line_start: &str) -> f64 {
    let text = server.metrics();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_start} in:\n{text}"))
}

#[test]
fn the_viewer_and_the_desktop_share_the_clipboard_both_ways_within_the_cap() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let (desk, local) = (Xvfb::start(640, 480), Xvfb::start(800, 600));
    let policy = ClipboardPolicy::parse(None, Some(8 * 1024 * 1024)).unwrap();
    let server = serve(&desk, policy);
    let log = oriel_e2e::temp_dir("clipboard").join("viewer.log");
    let _viewer = Viewer::start(&server, &local, &log);

    // Desktop → viewer: text.
    let text = "copied in the desktop: ünïcode ✓".as_bytes();
    copy(&desk.display, "UTF8_STRING", text);
    assert_eq!(
        paste_until(&local.display, "UTF8_STRING", text).unwrap(),
        text
    );

    // Viewer → desktop: a PNG, and 5 MiB of text (more than one X request carries).
    let image = png(320, 200);
    copy(&local.display, "image/png", &image);
    assert_eq!(
        paste_until(&desk.display, "image/png", &image).unwrap(),
        image
    );
    let large: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    copy(&local.display, "UTF8_STRING", &large);
    assert_eq!(
        paste_until(&desk.display, "UTF8_STRING", &large).unwrap(),
        large
    );

    // Over the 8 MiB cap: the paste fails, the viewer says why, and the clipboard
    // still works afterwards.
    let too_large = vec![b'z'; 9 * 1024 * 1024];
    copy(&desk.display, "UTF8_STRING", &too_large);
    std::thread::sleep(Duration::from_secs(1));
    let refused = paste(&local.display, "UTF8_STRING");
    assert!(
        refused.is_err(),
        "a paste over the cap got {:?} bytes",
        refused.map(|v| v.len())
    );
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("more than the 8 MiB"),
        "the viewer does not say why the paste failed:\n{said}"
    );
    let after = b"after the refusal";
    copy(&desk.display, "UTF8_STRING", after);
    assert_eq!(
        paste_until(&local.display, "UTF8_STRING", after).unwrap(),
        after
    );

    // Counted on /metrics, by direction and format.
    let ok = |dir: &str, format: &str| {
        metric(
            &server,
            &format!(
                "oriel_clipboard_transfers_total{{direction=\"{dir}\",format=\"{format}\",outcome=\"ok\"}}"
            ),
        )
    };
    assert!(ok("to_client", "text") >= 2.0);
    assert!(ok("to_desktop", "png") >= 1.0);
    assert!(ok("to_desktop", "text") >= 1.0);
    assert!(
        metric(
            &server,
            "oriel_clipboard_bytes_total{direction=\"to_desktop\"}"
        ) >= large.len() as f64
    );
}

#[test]
fn a_to_desktop_policy_keeps_the_desktops_clipboard_in_the_desktop() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let (desk, local) = (Xvfb::start(640, 480), Xvfb::start(800, 600));
    let server = serve(
        &desk,
        ClipboardPolicy::parse(Some("to-desktop"), None).unwrap(),
    );
    let log = oriel_e2e::temp_dir("clipboard-policy").join("viewer.log");
    let _viewer = Viewer::start(&server, &local, &log);

    // The viewer's clipboard reaches the desktop.
    let mine = b"typed on my laptop";
    copy(&local.display, "UTF8_STRING", mine);
    assert_eq!(
        paste_until(&desk.display, "UTF8_STRING", mine).unwrap(),
        mine
    );

    // The desktop's does not reach the viewer: its clipboard keeps what it had.
    copy(&local.display, "UTF8_STRING", b"local");
    assert_eq!(
        paste_until(&desk.display, "UTF8_STRING", b"local").unwrap(),
        b"local"
    );
    copy(&desk.display, "UTF8_STRING", b"secret from the desktop");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(paste(&local.display, "UTF8_STRING").unwrap(), b"local");
}
