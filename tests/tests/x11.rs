//! A real X server (Xvfb) as a desktop: the client sees exactly what the X server holds,
//! and keys and clicks sent through the protocol arrive as X events.

use std::time::{Duration, Instant};

use oriel::{EndReason, Session, StopWhen};
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::FrameSource;
use oriel_display_server::{Desktop, DisplayServer, ServerConfig};
use oriel_e2e::xvfb::{capture, paint_window, Xvfb};
use oriel_e2e::*;
use oriel_protocol::{Framebuffer, InputEvent, PointerButton, Size};
use oriel_transport::Identity;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::*;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

const SIZE: Size = Size::new(640, 480);

/// The ways the X11 source reads pixels, as it names them.
const CAPTURE_METHODS: [&str; 3] = ["Xvfb framebuffer file", "MIT-SHM", "GetImage"];

/// A display server on `x`, capturing the cheapest way it can.
fn start_x11_server(x: &Xvfb) -> DisplayServer {
    let source = X11Source::connect_to(&x.server, 30).expect("attach to the X server");
    serve(source)
}

/// A display server on the Xvfb `x`, capturing with `method` (one of [`CAPTURE_METHODS`]).
fn start_x11_server_with(x: &Xvfb, method: &str) -> DisplayServer {
    let mut source = match method {
        "Xvfb framebuffer file" => X11Source::connect_to(&x.server, 30),
        _ => X11Source::connect(Some(&x.display), 30),
    }
    .expect("attach to Xvfb");
    if method == "GetImage" {
        source.use_get_image();
    }
    assert_eq!(source.capture_method(), method, "a local Xvfb");
    serve(source)
}

fn serve(source: X11Source) -> DisplayServer {
    let identity = Identity::generate(&["localhost".into()]).expect("identity");
    assert_eq!(source.size(), SIZE);
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let desktop = Desktop::new("x", Box::new(source) as Box<dyn FrameSource>);
    DisplayServer::start(config, &identity, vec![desktop]).expect("server starts")
}

/// Waits until the server's copy of the screen equals what the X server holds.
fn wait_until_captured(server: &DisplayServer, conn: &RustConnection, root: Window) -> Framebuffer {
    let desktop = server.desktop("x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let truth = capture(conn, root);
        if server_screen(&desktop) == truth {
            return truth;
        }
        assert!(
            Instant::now() < deadline,
            "the source never caught up with the X server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sees_exactly_what_the_x_server_holds() {
    for method in CAPTURE_METHODS {
        client_sees_exactly_what_the_x_server_holds(method).await;
    }
}

async fn client_sees_exactly_what_the_x_server_holds(method: &str) {
    let xvfb = Xvfb::start(SIZE.width, SIZE.height);
    let (conn, screen) = x11rb::connect(Some(&xvfb.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let server = start_x11_server_with(&xvfb, method);
    paint_window(&conn, root, 40, 30);
    paint_window(&conn, root, 250, 200);
    let truth = wait_until_captured(&server, &conn, root);
    let seq = server.desktop("x").unwrap().source().sequence();

    let session = Session::connect(&connect_options(&server, "x"))
        .await
        .expect("connect");
    let stop = StopWhen {
        duration: Some(Duration::from_secs(60)),
        settled_seq: Some(seq),
        ..Default::default()
    };
    let outcome = session.run(stop, None).await.expect("session runs");
    assert_eq!(outcome.end, EndReason::Settled);
    assert_eq!(
        capture(&conn, root),
        truth,
        "the X screen changed meanwhile"
    );
    assert_eq!(diff_pixels(&outcome.framebuffer, &truth), 0, "{method}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_clicks_arrive_as_x_events() {
    let xvfb = Xvfb::start(SIZE.width, SIZE.height);
    let (conn, screen) = x11rb::connect(Some(&xvfb.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let window = paint_window(&conn, root, 100, 50);
    conn.set_input_focus(InputFocus::POINTER_ROOT, window, x11rb::CURRENT_TIME)
        .unwrap();
    conn.flush().unwrap();
    let server = start_x11_server(&xvfb);

    let (input, _, run) = background_session(&server, "x").await;
    const KEY_A: u16 = 30;
    for event in [
        InputEvent::PointerMove { x: 123, y: 77 },
        InputEvent::PointerButton {
            button: PointerButton::Left,
            down: true,
        },
        InputEvent::PointerButton {
            button: PointerButton::Left,
            down: false,
        },
        InputEvent::Key {
            code: KEY_A,
            down: true,
        },
        InputEvent::Key {
            code: KEY_A,
            down: false,
        },
    ] {
        input.send(event).await.expect("input sent");
    }
    // Ctrl+Alt+Del is a key combination like any other.
    const KEY_LEFTCTRL: u16 = 29;
    const KEY_LEFTALT: u16 = 56;
    const KEY_DELETE: u16 = 111;
    for (code, down) in [
        (KEY_LEFTCTRL, true),
        (KEY_LEFTALT, true),
        (KEY_DELETE, true),
        (KEY_DELETE, false),
        (KEY_LEFTALT, false),
        (KEY_LEFTCTRL, false),
    ] {
        input.send(InputEvent::Key { code, down }).await.unwrap();
    }

    let mut clicked = None;
    let mut pressed: Vec<(u8, KeyButMask)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while clicked.is_none() || pressed.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "events missing: click {clicked:?}, keys {pressed:?}"
        );
        match conn.poll_for_event().unwrap() {
            Some(Event::ButtonPress(e)) => clicked = Some((e.detail, e.event_x, e.event_y)),
            Some(Event::KeyPress(e)) => pressed.push((e.detail, e.state)),
            Some(_) => {}
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    // The window is at (100, 50): the desktop's (123, 77) is (23, 27) inside it.
    assert_eq!(clicked, Some((1, 23, 27)));
    let keysym = |keycode: u8| {
        let map = conn
            .get_keyboard_mapping(keycode, 1)
            .unwrap()
            .reply()
            .unwrap();
        map.keysyms.first().copied()
    };
    let keysyms: Vec<Option<u32>> = pressed.iter().map(|(k, _)| keysym(*k)).collect();
    const XK_A: u32 = 0x61;
    const XK_CONTROL_L: u32 = 0xffe3;
    const XK_ALT_L: u32 = 0xffe9;
    const XK_DELETE: u32 = 0xffff;
    assert_eq!(
        keysyms,
        [XK_A, XK_CONTROL_L, XK_ALT_L, XK_DELETE].map(Some),
        "keys arrive as the X keymap's a, Control_L, Alt_L, Delete"
    );
    let delete_state = pressed[3].1;
    assert!(
        delete_state.contains(KeyButMask::CONTROL) && delete_state.contains(KeyButMask::MOD1),
        "Delete pressed with Ctrl and Alt held: {delete_state:?}"
    );
    run.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_typed_through_the_client_reaches_an_xterm() {
    let dir = temp_dir("x11-xterm");
    let (ready, out) = (dir.join("ready"), dir.join("typed"));
    // The xterm's shell says when it is up, then writes the line it reads to a file.
    let command = format!(
        "exec xterm -geometry 60x8+0+0 -e sh -c 'touch {}; read -r line; printf %s \"$line\" > {}'",
        ready.display(),
        out.display()
    );
    let source = X11Source::spawn(SIZE, 30, Some(&command)).expect("Xvfb with an xterm");
    let desktop = Desktop::new("x", Box::new(source) as Box<dyn FrameSource>);
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let identity = Identity::generate(&["localhost".into()]).unwrap();
    let server = DisplayServer::start(config, &identity, vec![desktop]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the xterm never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (input, _, run) = background_session(&server, "x").await;
    // Without a window manager, focus follows the pointer: into the xterm.
    input
        .send(InputEvent::PointerMove { x: 40, y: 40 })
        .await
        .unwrap();
    // "Hi Oriel-5" and Enter, by evdev code, Shift held for the capitals.
    for e in us_keys("Hi Oriel-5\n") {
        input.send(e).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let typed = loop {
        if let Ok(text) = std::fs::read_to_string(&out) {
            break text;
        }
        assert!(Instant::now() < deadline, "the xterm never got the line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(typed, "Hi Oriel-5");
    run.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_client_follows_randr_screen_resizes() {
    use std::sync::Arc;

    let xorg = Xvfb::start_resizable(SIZE.width, SIZE.height);
    let (conn, screen) = x11rb::connect(Some(&xorg.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    paint_window(&conn, root, 40, 30);
    let server = start_x11_server(&xorg);
    let desktop = server.desktop("x").unwrap();

    let interrupt = Arc::new(tokio::sync::Notify::new());
    let session = Session::connect(&connect_options(&server, "x"))
        .await
        .expect("connect");
    let stop = StopWhen {
        interrupt: Some(interrupt.clone()),
        duration: Some(Duration::from_secs(120)),
        ..Default::default()
    };
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::unbounded_channel();
    let run = tokio::spawn(session.run_observed(stop, None, move |shown, fb| {
        if let oriel::Shown::Frame { source_seq, .. } = shown {
            let _ = frames_tx.send((source_seq, fb.clone()));
        }
    }));

    for (width, height) in [(1024u32, 768u32), (800, 600)] {
        let mode = format!("{width}x{height}");
        let status = std::process::Command::new("xrandr")
            .args(["--output", "DUMMY0", "--mode", &mode])
            .env("DISPLAY", &xorg.display)
            .status()
            .expect("xrandr runs (x11-xserver-utils)");
        assert!(status.success(), "xrandr --mode {mode}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while desktop.size() != Size::new(width, height) {
            assert!(Instant::now() < deadline, "the desktop never became {mode}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Something beyond the old edges, then the screen as the X server holds it.
        let (right, bottom) = (
            i16::try_from(width).unwrap(),
            i16::try_from(height).unwrap(),
        );
        paint_window(&conn, root, right - 310, bottom - 210);
        let truth = {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let truth = capture(&conn, root);
                if server_screen(&desktop) == truth {
                    break truth;
                }
                assert!(Instant::now() < deadline, "the source never caught up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let seq = desktop.source().sequence();
        let shown = loop {
            let (source_seq, fb) = tokio::time::timeout(Duration::from_secs(60), frames_rx.recv())
                .await
                .expect("the client keeps getting frames")
                .expect("the session runs");
            if source_seq >= seq {
                break fb;
            }
        };
        assert_eq!(shown.size(), Size::new(width, height));
        assert_eq!(diff_pixels(&shown, &truth), 0, "{mode}");
    }
    interrupt.notify_one();
    let outcome = run.await.unwrap().expect("the session ends cleanly");
    assert_eq!(outcome.framebuffer.size(), Size::new(800, 600));
    drop(desktop);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_shape_comes_from_the_x_server() {
    use x11rb::protocol::xfixes::ConnectionExt as _;

    let xvfb = Xvfb::start(SIZE.width, SIZE.height);
    let (conn, screen) = x11rb::connect(Some(&xvfb.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    // The hand cursor of the standard cursor font, on the root window.
    let font = conn.generate_id().unwrap();
    conn.open_font(font, b"cursor").unwrap();
    let hand = conn.generate_id().unwrap();
    const XC_HAND2: u16 = 60;
    conn.create_glyph_cursor(
        hand,
        font,
        font,
        XC_HAND2,
        XC_HAND2 + 1,
        0,
        0,
        0,
        0xffff,
        0xffff,
        0xffff,
    )
    .unwrap();
    conn.change_window_attributes(root, &ChangeWindowAttributesAux::new().cursor(hand))
        .unwrap();
    conn.xfixes_query_version(4, 0).unwrap().reply().unwrap();
    let server = start_x11_server(&xvfb);
    let expected = conn.xfixes_get_cursor_image().unwrap().reply().unwrap();

    let desktop = server.desktop("x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while desktop.source().cursor().map(|c| c.serial) != Some(u64::from(expected.cursor_serial)) {
        assert!(
            Instant::now() < deadline,
            "the source never saw the hand cursor"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(desktop);

    let session = Session::connect(&connect_options(&server, "x"))
        .await
        .expect("connect");
    let stop = StopWhen {
        duration: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    let outcome = session.run(stop, None).await.expect("session runs");
    let Some(oriel_protocol::CursorMsg::Shape {
        width,
        height,
        hot_x,
        hot_y,
        pixels,
    }) = outcome.cursor_shape
    else {
        panic!("no cursor shape reached the client");
    };
    assert_eq!((width, height), (expected.width, expected.height));
    assert_eq!((hot_x, hot_y), (expected.xhot, expected.yhot));
    assert_eq!(
        pixels, expected.cursor_image,
        "the X server's hand, not the default arrow"
    );
    server.shutdown().await;
}

#[test]
fn an_x11_desktop_gets_the_keyboard_layout_its_pool_names() {
    use oriel_display_server::source::SourceConfig;
    use oriel_protocol::desktop_spec::DesktopSpec;

    // What a host does with a pool's parameters.
    let open = |params: &str| {
        let spec = DesktopSpec::parse("x11", params)?;
        SourceConfig::from_spec(&spec)?.open(std::path::Path::new("/nonexistent"))
    };
    let source = open(r#"{"width":320,"height":240,"command":"true","layout":"de"}"#)
        .expect("an x11 desktop with a German keyboard");
    let x11 = source.as_any().downcast_ref::<X11Source>().unwrap();
    let (conn, _) = x11rb::connect(Some(x11.display())).unwrap();
    // The physical key right of T (evdev KEY_Y) is Z on a German keyboard.
    const KEY_Y: u8 = 21;
    let map = conn
        .get_keyboard_mapping(KEY_Y + 8, 1)
        .unwrap()
        .reply()
        .unwrap();
    assert_eq!(map.keysyms.first(), Some(&0x7a), "keysym z");
    drop(conn);

    for bad in [
        r#"{"layout":"de; rm -rf /","command":"true"}"#,
        r#"{"layout":"no-such-layout","command":"true"}"#,
        r#"{"server":"xfree86"}"#,
    ] {
        assert!(open(bad).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_can_ask_an_x_desktop_for_its_window_size() {
    let xorg = Xvfb::start_resizable(SIZE.width, SIZE.height);
    let server = start_x11_server(&xorg);
    let desktop = server.desktop("x").unwrap();
    let (_, controller, run) = background_session(&server, "x").await;
    let wanted = Size::new(1000, 700);
    assert!(controller.request_resize(wanted.width, wanted.height));
    let deadline = Instant::now() + Duration::from_secs(30);
    while desktop.size() != wanted {
        assert!(
            Instant::now() < deadline,
            "the X screen did not take 1000x700"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (conn, n) = x11rb::connect(Some(&xorg.display)).unwrap();
    let root = conn.setup().roots[n].root;
    let geometry = conn.get_geometry(root).unwrap().reply().unwrap();
    assert_eq!((geometry.width, geometry.height), (1000, 700));
    drop(desktop);
    run.abort();
    server.shutdown().await;

    // Xvfb's screen cannot change size: the request is declined, the session goes on.
    let xvfb = Xvfb::start(SIZE.width, SIZE.height);
    let mut source = X11Source::connect(Some(&xvfb.display), 30).unwrap();
    let declined = source.request_resize(wanted).unwrap_err();
    assert!(declined.contains("cannot resize"), "{declined}");
}
