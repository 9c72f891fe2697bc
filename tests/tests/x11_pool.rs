//! x11 desktops through the broker: a pool gives each user an X session of their own,
//! replaces floating ones on logoff, and replaces a desktop whose X server died.

use std::time::Duration;

use oriel::{Session, StopWhen};
use oriel_display_server::source::x11::X11Source;
use oriel_e2e::xvfb::{capture, display_of, paint_window};
use oriel_e2e::*;
use oriel_protocol::Size;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::*;

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
        // A bare screen (no session program drawing into it), so it can be compared.
        r#"{"width":640,"height":480,"command":"true"}"#,
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
