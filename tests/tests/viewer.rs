//! The viewer window, on a real X server (Xvfb): `oriel connect` without `--headless`
//! opens a window that shows the desktop's pixels exactly, sends the keys and clicks the
//! window gets (typed with xdotool, through XTEST) and shows the server's cursor shape.
//! A screenshot of the test's screen is saved under target/oriel-test-artifacts/.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oriel_display_server::cursor::default_arrow;
use oriel_display_server::source::synthetic::{SyntheticSource, Workload};
use oriel_e2e::xvfb::{capture, Xvfb};
use oriel_e2e::*;
use oriel_protocol::{CursorMsg, Framebuffer, InputEvent, PointerButton, Rect, Size};
use x11rb::connection::Connection;
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::protocol::xproto::*;
use x11rb::rust_connection::RustConnection;

const DESKTOP: Size = Size::new(640, 480);

struct Viewer(Child);

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The top-level window whose title contains `needle`, and its position on the screen.
fn find_window(conn: &RustConnection, root: Window, needle: &str) -> Option<(Window, i16, i16)> {
    let tree = conn.query_tree(root).ok()?.reply().ok()?;
    for w in tree.children {
        let name = conn
            .get_property(false, w, AtomEnum::WM_NAME, AtomEnum::ANY, 0, 256)
            .ok()?
            .reply()
            .ok()?;
        let attrs = conn.get_window_attributes(w).ok()?.reply().ok()?;
        if attrs.map_state == MapState::VIEWABLE
            && String::from_utf8_lossy(&name.value).contains(needle)
        {
            let at = conn
                .translate_coordinates(w, root, 0, 0)
                .ok()?
                .reply()
                .ok()?;
            return Some((w, at.dst_x, at.dst_y));
        }
    }
    None
}

fn xdotool(display: &str, args: &[&str]) {
    let status = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .status()
        .expect("xdotool runs (scripts/install-deps installs it)");
    assert!(status.success(), "xdotool {args:?}");
}

fn crop(fb: &Framebuffer, rect: &Rect) -> Framebuffer {
    let mut pixels = Vec::new();
    fb.read_rect(rect, &mut pixels);
    Framebuffer::from_pixels(rect.size(), pixels).unwrap()
}

/// Asks the window to close, as a window manager does (WM_DELETE_WINDOW), and waits for
/// the viewer to exit.
fn close_window(
    conn: &RustConnection,
    window: Window,
    viewer: &mut Viewer,
) -> std::process::ExitStatus {
    let atom = |name: &[u8]| conn.intern_atom(false, name).unwrap().reply().unwrap().atom;
    let (protocols, delete) = (atom(b"WM_PROTOCOLS"), atom(b"WM_DELETE_WINDOW"));
    let close = ClientMessageEvent::new(32, window, protocols, [delete, 0, 0, 0, 0]);
    conn.send_event(false, window, EventMask::NO_EVENT, close)
        .unwrap();
    conn.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = viewer.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the viewer did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_window_shows_the_desktop_and_sends_keys_and_clicks() {
    let screen = Xvfb::start(1024, 768);
    let (conn, n) = x11rb::connect(Some(&screen.display)).unwrap();
    let root = conn.setup().roots[n].root;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let config = oriel_display_server::source::synthetic::SyntheticConfig {
        size: DESKTOP,
        ..synthetic(Workload::Typing, 20)
    };
    let server = start_server(&[("default", config)], 4);
    let desktop = server.desktop("default").unwrap();

    let mut viewer = Viewer(
        Command::new(workspace_binary("oriel"))
            .args(["connect", &server.local_addr().unwrap().to_string()])
            .args(["--fingerprint", &server.fingerprint().to_string()])
            .args(["--duration", "120s"])
            .env("DISPLAY", &screen.display)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("oriel runs"),
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let (window, x, y) = loop {
        if let Some(found) = find_window(&conn, root, "Oriel") {
            break found;
        }
        assert!(
            viewer.0.try_wait().unwrap().is_none(),
            "the viewer exited without a window"
        );
        assert!(Instant::now() < deadline, "no viewer window appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    let geometry = conn.get_geometry(window).unwrap().reply().unwrap();
    assert_eq!(
        (u32::from(geometry.width), u32::from(geometry.height)),
        (DESKTOP.width, DESKTOP.height),
        "the window opens at the desktop's size"
    );

    // Once the script has ended, the window holds the desktop's pixels exactly.
    let at = Rect::new(x as u32, y as u32, DESKTOP.width, DESKTOP.height);
    let deadline = Instant::now() + Duration::from_secs(60);
    let shot = loop {
        let shot = capture(&conn, root);
        if crop(&shot, &at) == server_screen(&desktop) {
            break shot;
        }
        assert!(
            Instant::now() < deadline,
            "the window never showed the desktop: {} pixels differ",
            diff_pixels(&crop(&shot, &at), &server_screen(&desktop))
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let artifacts = workspace_binary("oriel")
        .parent()
        .unwrap()
        .join("../oriel-test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    oriel::screenshot::save_png(&shot, &artifacts.join("viewer-window.png")).unwrap();

    // The pointer over the window wears the server's cursor (the default arrow).
    let window_id = window.to_string();
    xdotool(
        &screen.display,
        &["mousemove", "--window", &window_id, "100", "50"],
    );
    conn.xfixes_query_version(4, 0).unwrap().reply().unwrap();
    let arrow = default_arrow();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let image = conn.xfixes_get_cursor_image().unwrap().reply().unwrap();
        let CursorMsg::Shape {
            width,
            height,
            ref pixels,
            ..
        } = arrow
        else {
            unreachable!()
        };
        if (image.width, image.height) == (width, height) && &image.cursor_image == pixels {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the window's cursor is not the server's arrow"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A click and a key, sent to the window by the X server, reach the desktop.
    xdotool(&screen.display, &["click", "1"]);
    // No window manager here to give the window the keyboard focus: do what one would.
    xdotool(&screen.display, &["windowfocus", "--sync", &window_id]);
    xdotool(&screen.display, &["key", "a"]);
    let expected = [
        InputEvent::PointerMove { x: 100, y: 50 },
        InputEvent::PointerButton {
            button: PointerButton::Left,
            down: true,
        },
        InputEvent::PointerButton {
            button: PointerButton::Left,
            down: false,
        },
        InputEvent::Key {
            code: 30,
            down: true,
        },
        InputEvent::Key {
            code: 30,
            down: false,
        },
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let recorded: Vec<InputEvent> = {
            let source = desktop.source();
            let synthetic = source.as_any().downcast_ref::<SyntheticSource>().unwrap();
            synthetic.recorded_input().to_vec()
        };
        // The pointer may pass other pixels on its way; where it was when the button
        // went down, and the order of the rest, must be as sent.
        let last_move = |upto: usize| {
            recorded[..upto]
                .iter()
                .rev()
                .find(|e| matches!(e, InputEvent::PointerMove { .. }))
        };
        let rest: Vec<&InputEvent> = recorded
            .iter()
            .filter(|e| !matches!(e, InputEvent::PointerMove { .. }))
            .collect();
        let press = recorded.iter().position(|e| e == &expected[1]);
        let done = rest.len() >= 4
            && rest[rest.len() - 4..].iter().copied().eq(&expected[1..])
            && press.is_some_and(|i| last_move(i) == Some(&expected[0]));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "input missing or out of order: {recorded:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Focused, the viewer holds the keyboard grab (the local desktop's shortcuts go to the
    // remote one); Ctrl+Alt+G gives it back.
    let try_grab = || {
        let status = conn
            .grab_keyboard(
                false,
                root,
                x11rb::CURRENT_TIME,
                GrabMode::ASYNC,
                GrabMode::ASYNC,
            )
            .unwrap()
            .reply()
            .unwrap()
            .status;
        if status == GrabStatus::SUCCESS {
            conn.ungrab_keyboard(x11rb::CURRENT_TIME).unwrap();
            conn.flush().unwrap();
        }
        status
    };
    assert_eq!(
        try_grab(),
        GrabStatus::ALREADY_GRABBED,
        "the viewer grabs the keyboard"
    );
    xdotool(&screen.display, &["key", "ctrl+alt+g"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_grab() != GrabStatus::SUCCESS {
        assert!(
            Instant::now() < deadline,
            "Ctrl+Alt+G did not release the keyboard"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Ctrl+Alt+O shows the statistics overlay over the top-left corner, and hides it.
    let corner = Rect::new(at.x, at.y, 120, 30);
    let desktop_corner = crop(&server_screen(&desktop), &Rect::new(0, 0, 120, 30));
    for shown in [true, false] {
        xdotool(&screen.display, &["key", "ctrl+alt+o"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while (crop(&capture(&conn, root), &corner) != desktop_corner) != shown {
            assert!(
                Instant::now() < deadline,
                "overlay shown: {shown}, not seen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if shown {
            let shot = capture(&conn, root);
            oriel::screenshot::save_png(&shot, &artifacts.join("viewer-overlay.png")).unwrap();
        }
    }
    // The keys of the combos also reach the desktop, which may redraw: wait for the
    // window to catch up, then it must hold the desktop exactly.
    let deadline = Instant::now() + Duration::from_secs(30);
    while crop(&capture(&conn, root), &at) != server_screen(&desktop) {
        assert!(
            Instant::now() < deadline,
            "the window does not hold the desktop after the overlay: {} pixels differ",
            diff_pixels(&crop(&capture(&conn, root), &at), &server_screen(&desktop))
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The window resized: the desktop follows and is shown 1:1 at its new size.
    xdotool(&screen.display, &["windowsize", &window_id, "800", "600"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while desktop.size() != Size::new(800, 600) {
        assert!(
            Instant::now() < deadline,
            "the desktop did not follow the window"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let at = Rect::new(x as u32, y as u32, 800, 600);
    let deadline = Instant::now() + Duration::from_secs(60);
    while crop(&capture(&conn, root), &at) != server_screen(&desktop) {
        assert!(
            Instant::now() < deadline,
            "the resized desktop is not shown 1:1: {} pixels differ",
            diff_pixels(&crop(&capture(&conn, root), &at), &server_screen(&desktop))
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Closing the window (as a window manager asks) ends the session cleanly, with
    // present times in its summary.
    let status = close_window(&conn, window, &mut viewer);
    let mut out = String::new();
    std::io::Read::read_to_string(viewer.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "viewer failed: {out}");
    assert!(out.contains("frames presented"), "summary: {out}");
    drop(desktop);
    runtime.block_on(server.shutdown());
}

/// The window's title as the window manager shows it (_NET_WM_NAME, UTF-8).
fn title(conn: &RustConnection, window: Window) -> String {
    let atom = |name: &[u8]| conn.intern_atom(false, name).unwrap().reply().unwrap().atom;
    let (name, utf8) = (atom(b"_NET_WM_NAME"), atom(b"UTF8_STRING"));
    let reply = conn
        .get_property(false, window, name, utf8, 0, 1024)
        .unwrap()
        .reply()
        .unwrap();
    String::from_utf8_lossy(&reply.value).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_says_reconnecting_through_an_outage_and_resumes() {
    use oriel_broker::store::{Assignment, DesktopState};
    use oriel_e2e::broker::{config_with_login, wait_for, Harness};

    let mut h = Harness::start("viewer-outage").await;
    h.pool(
        "w",
        Assignment::Floating,
        1,
        2,
        r#"{"workload":"typing","width":640,"height":480}"#,
    )
    .await;
    let (_host, relay) = h.add_host_behind_relay("host-w", 4).await;
    wait_for("a spare", || async {
        h.count("w", DesktopState::Ready).await == 1
    })
    .await;
    let alice = h.user("alice", "w").await;
    let config = config_with_login("viewer-outage-config", &alice);

    let screen = Xvfb::start(1024, 768);
    let (conn, n) = x11rb::connect(Some(&screen.display)).unwrap();
    let root = conn.setup().roots[n].root;
    let mut viewer = Viewer(
        Command::new(workspace_binary("oriel"))
            .args(["connect", "w", "--duration", "180s"])
            .env("DISPLAY", &screen.display)
            .env("XDG_CONFIG_HOME", &config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("oriel runs"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let window = loop {
        if let Some((w, _, _)) = find_window(&conn, root, "Oriel") {
            break w;
        }
        assert!(viewer.0.try_wait().unwrap().is_none(), "the viewer exited");
        assert!(Instant::now() < deadline, "no viewer window appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        title(&conn, window).contains("(w) — Oriel"),
        "{}",
        title(&conn, window)
    );

    // The path to the host goes dark: the title says so; the window stays.
    relay.set_cut(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !title(&conn, window).contains("reconnecting") {
        assert!(viewer.0.try_wait().unwrap().is_none(), "the viewer gave up");
        assert!(
            Instant::now() < deadline,
            "no reconnecting shown: {}",
            title(&conn, window)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The path is back: the same window resumes the session.
    relay.set_cut(false);
    let deadline = Instant::now() + Duration::from_secs(90);
    while title(&conn, window).contains("reconnecting") {
        assert!(viewer.0.try_wait().unwrap().is_none(), "the viewer gave up");
        assert!(
            Instant::now() < deadline,
            "never resumed: {}",
            title(&conn, window)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("alice connected again", || async {
        h.count("w", DesktopState::Connected).await == 1
    })
    .await;

    let status = close_window(&conn, window, &mut viewer);
    assert!(status.success());
    h.shutdown().await;
}
