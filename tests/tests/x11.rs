//! A real X server (Xvfb) as a desktop: the client sees exactly what the X server holds,
//! and keys and clicks sent through the protocol arrive as X events.

use std::time::{Duration, Instant};

use oriel::{EndReason, Session, StopWhen};
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::FrameSource;
use oriel_display_server::{Desktop, DisplayServer, ServerConfig};
use oriel_e2e::xvfb::Xvfb;
use oriel_e2e::*;
use oriel_protocol::{Framebuffer, InputEvent, PointerButton, Size};
use oriel_transport::Identity;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::*;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

const SIZE: Size = Size::new(640, 480);

fn start_x11_server(display: &str) -> DisplayServer {
    let identity = Identity::generate(&["localhost".into()]).expect("identity");
    let source = X11Source::connect(Some(display), 30).expect("attach to Xvfb");
    assert_eq!(source.size(), SIZE);
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let desktop = Desktop::new("x", Box::new(source) as Box<dyn FrameSource>);
    DisplayServer::start(config, &identity, vec![desktop]).expect("server starts")
}

/// The X screen as the X server holds it.
fn capture(conn: &RustConnection, root: Window) -> Framebuffer {
    let image = conn
        .get_image(
            ImageFormat::Z_PIXMAP,
            root,
            0,
            0,
            SIZE.width as u16,
            SIZE.height as u16,
            !0,
        )
        .unwrap()
        .reply()
        .unwrap();
    let pixels = image
        .data
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
        .collect();
    Framebuffer::from_pixels(SIZE, pixels).unwrap()
}

/// Maps a window at (`x`, `y`) and paints coloured bars into it.
fn paint_window(conn: &RustConnection, root: Window, x: i16, y: i16) -> Window {
    let window = conn.generate_id().unwrap();
    conn.create_window(
        x11rb::COPY_DEPTH_FROM_PARENT,
        window,
        root,
        x,
        y,
        300,
        200,
        0,
        WindowClass::INPUT_OUTPUT,
        x11rb::COPY_FROM_PARENT,
        &CreateWindowAux::new()
            .background_pixel(0x00_20_40_60)
            .override_redirect(1)
            .event_mask(EventMask::KEY_PRESS | EventMask::BUTTON_PRESS | EventMask::EXPOSURE),
    )
    .unwrap();
    conn.map_window(window).unwrap();
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, window, &CreateGCAux::new()).unwrap();
    for (i, colour) in [
        0x00_ff_40_40u32,
        0x00_40_ff_40,
        0x00_40_40_ff,
        0x00_ff_ff_ff,
    ]
    .iter()
    .enumerate()
    {
        conn.change_gc(gc, &ChangeGCAux::new().foreground(*colour))
            .unwrap();
        let bar = Rectangle {
            x: 10 + 70 * i as i16,
            y: 20,
            width: 50,
            height: 150,
        };
        conn.poly_fill_rectangle(window, gc, &[bar]).unwrap();
    }
    conn.get_input_focus().unwrap().reply().unwrap(); // a round trip: all drawn
    window
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
    let xvfb = Xvfb::start(SIZE.width, SIZE.height);
    let (conn, screen) = x11rb::connect(Some(&xvfb.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let server = start_x11_server(&xvfb.display);
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
    assert_eq!(diff_pixels(&outcome.framebuffer, &truth), 0);
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
    let server = start_x11_server(&xvfb.display);

    let session = Session::connect(&connect_options(&server, "x"))
        .await
        .expect("connect");
    let input = session.input();
    let run = tokio::spawn(session.run(
        StopWhen {
            duration: Some(Duration::from_secs(60)),
            ..Default::default()
        },
        None,
    ));
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

    let (mut clicked, mut typed) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while clicked.is_none() || typed.is_none() {
        assert!(
            Instant::now() < deadline,
            "events missing: click {clicked:?}, key {typed:?}"
        );
        match conn.poll_for_event().unwrap() {
            Some(Event::ButtonPress(e)) => clicked = Some((e.detail, e.event_x, e.event_y)),
            Some(Event::KeyPress(e)) => typed = Some(e.detail),
            Some(_) => {}
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    // The window is at (100, 50): the desktop's (123, 77) is (23, 27) inside it.
    assert_eq!(clicked, Some((1, 23, 27)));
    assert_eq!(
        typed,
        Some((KEY_A + 8) as u8),
        "evdev KEY_A is X keycode 38"
    );
    run.abort();
    server.shutdown().await;
}

/// The X display serving a broker desktop on `host`.
fn display_of(host: &DisplayServer, desktop: &str) -> String {
    let desktop = host.desktop(desktop).expect("desktop on the host");
    let source = desktop.source();
    source
        .as_any()
        .downcast_ref::<X11Source>()
        .expect("an x11 desktop")
        .display()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x11_pool_gives_each_user_an_x_session_and_replaces_floating_ones() {
    use oriel::launcher;
    use oriel_broker::store::{Assignment, DesktopState};
    use oriel_e2e::broker::{wait_for, Harness};

    let mut h = Harness::start("x11-pool").await;
    h.pool_of(
        "x11",
        "xp",
        Assignment::Floating,
        2,
        3,
        r#"{"width":640,"height":480}"#,
    )
    .await;
    let host = h.add_host("host-x", 4);
    wait_for("2 x11 spares", || async {
        h.count("xp", DesktopState::Ready).await == 2
    })
    .await;

    let alice = h.user("alice", "xp").await;
    let bob = h.user("bob", "xp").await;
    let (alice_opts, alice_desk) = launcher::connect_options(&alice, "xp").await.unwrap();
    let (_, bob_desk) = launcher::connect_options(&bob, "xp").await.unwrap();
    assert_ne!(alice_desk.desktop, bob_desk.desktop);
    let alice_display = display_of(&host, &alice_desk.desktop);
    assert_ne!(
        alice_display,
        display_of(&host, &bob_desk.desktop),
        "two X servers"
    );

    // Alice sees her X screen exactly.
    let (conn, screen) = x11rb::connect(Some(&alice_display)).unwrap();
    let root = conn.setup().roots[screen].root;
    paint_window(&conn, root, 60, 60);
    let truth = capture(&conn, root);
    let desktop = host.desktop(&alice_desk.desktop).unwrap();
    wait_for("the source catches up", || {
        let same = server_screen(&desktop) == truth;
        async move { same }
    })
    .await;
    let seq = desktop.source().sequence();
    drop(desktop); // holding it would keep the old X server alive past the reset
    let session = Session::connect(&alice_opts).await.unwrap();
    let stop = StopWhen {
        duration: Some(Duration::from_secs(60)),
        settled_seq: Some(seq),
        ..Default::default()
    };
    let outcome = session.run(stop, None).await.unwrap();
    assert_eq!(diff_pixels(&outcome.framebuffer, &truth), 0);

    // Floating: on logoff the X session is replaced by a fresh one.
    launcher::logoff(&alice, "xp").await.unwrap();
    wait_for("alice's X session replaced", || {
        let fresh = host
            .desktop(&alice_desk.desktop)
            .is_some_and(|d| server_screen(&d) != truth);
        async move { fresh }
    })
    .await;
    let old_alive = conn
        .get_input_focus()
        .ok()
        .and_then(|c| c.reply().ok())
        .is_some();
    assert!(!old_alive, "the old X server is gone");
    drop(conn);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_x_server_fails_its_desktop_and_the_pool_replaces_it() {
    use oriel::{launcher, ClientError};
    use oriel_broker::store::{Assignment, DesktopState};
    use oriel_e2e::broker::{wait_for, Harness};

    let mut h = Harness::start("x11-death").await;
    h.pool_of(
        "x11",
        "xd",
        Assignment::Dedicated,
        1,
        2,
        r#"{"width":320,"height":240,"command":"true"}"#,
    )
    .await;
    let host = h.add_host("host-x", 4);
    wait_for("an x11 spare", || async {
        h.count("xd", DesktopState::Ready).await == 1
    })
    .await;
    let alice = h.user("alice", "xd").await;
    let (opts, first) = launcher::connect_options(&alice, "xd").await.unwrap();
    let session = Session::connect(&opts).await.unwrap();
    let run = tokio::spawn(session.run(
        StopWhen {
            duration: Some(Duration::from_secs(120)),
            ..Default::default()
        },
        None,
    ));
    let xvfb_pid = {
        let desktop = host.desktop(&first.desktop).unwrap();
        let source = desktop.source();
        let x11 = source.as_any().downcast_ref::<X11Source>().unwrap();
        x11.server_pid().expect("the server started this Xvfb")
    };
    // The X server crashes.
    // SAFETY: signalling a process this test's display server started, by its PID.
    unsafe { libc::kill(xvfb_pid as i32, libc::SIGKILL) };

    let ended = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the session ends")
        .unwrap();
    match ended {
        Err(ClientError::DesktopGone(message)) => assert!(
            message.contains("desktop failed") && message.contains("X display"),
            "unclear message: {message}"
        ),
        Err(other) => panic!("expected the desktop to be reported gone, got {other:?}"),
        Ok(outcome) => panic!("the session went on until {:?}", outcome.end),
    }
    // The broker learns it failed and gives alice (dedicated) a new desktop.
    wait_for("a replacement for alice", || async {
        launcher::connect_options(&alice, "xd")
            .await
            .is_ok_and(|(_, d)| d.desktop != first.desktop)
    })
    .await;
    let (opts, second) = launcher::connect_options(&alice, "xd").await.unwrap();
    let failed = h.store().list_desktops(None).await.unwrap();
    let old = failed.iter().find(|d| d.name == first.desktop).unwrap();
    assert!(
        matches!(old.state, DesktopState::Failed | DesktopState::Deleting),
        "{:?}",
        old.state
    );
    let audit = h.store().list_audit(50).await.unwrap();
    assert!(
        audit.iter().any(|a| a.event == "desktop_failed"),
        "the failure is in the audit log"
    );
    let session = Session::connect(&opts).await.unwrap();
    let stop = StopWhen {
        duration: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    let outcome = session
        .run(stop, None)
        .await
        .expect("the new desktop works");
    assert_eq!(outcome.framebuffer.size(), Size::new(320, 240));
    assert!(host.desktop(&second.desktop).is_some());
    h.shutdown().await;
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
    let server = start_x11_server(&xvfb.display);
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
