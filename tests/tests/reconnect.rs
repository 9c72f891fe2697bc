//! A network outage between client and host: the client notices, asks the broker again
//! (a new ticket), reconnects to the same desktop once the path is back and goes on
//! receiving frames. A desktop that is gone ends the session with the server's reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oriel::resume::{run_resuming, Event, Reconnect};
use oriel::{launcher, Session, StopWhen};
use oriel_broker::store::{Assignment, DesktopState};
use oriel_e2e::broker::{wait_for, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_bridged_by_a_new_ticket_for_the_same_desktop() {
    let mut h = Harness::start("reconnect").await;
    h.pool(
        "p",
        Assignment::Floating,
        1,
        2,
        r#"{"workload":"typing","width":640,"height":480}"#,
    )
    .await;
    let (_host, relay) = h.add_host_behind_relay("host-r", 4).await;
    wait_for("a spare", || async {
        h.count("p", DesktopState::Ready).await == 1
    })
    .await;
    let alice = h.user("alice", "p").await;
    let (opts, first) = launcher::connect_options(&alice, "p").await.unwrap();
    let session = Session::connect(&opts).await.unwrap();

    // Every desktop the broker hands out again.
    let desktops = Arc::new(Mutex::new(Vec::new()));
    let (login, seen) = (alice.clone(), desktops.clone());
    let reconnect: Reconnect = Arc::new(move || {
        let (login, seen) = (login.clone(), seen.clone());
        Box::pin(async move {
            let (opts, reply) = launcher::connect_options(&login, "p").await?;
            seen.lock().unwrap().push(reply.desktop);
            Ok(opts)
        })
    });
    let frames = Arc::new(AtomicU64::new(0));
    let (reconnecting, connected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let interrupt = Arc::new(tokio::sync::Notify::new());
    let stop = StopWhen {
        interrupt: Some(interrupt.clone()),
        duration: Some(Duration::from_secs(240)),
        ..Default::default()
    };
    let (f, r, c) = (frames.clone(), reconnecting.clone(), connected.clone());
    let run = tokio::spawn(run_resuming(
        session,
        stop,
        Some(reconnect),
        move |_, _| {
            f.fetch_add(1, Ordering::SeqCst);
        },
        move |event| match event {
            Event::Connected(_) => {
                c.fetch_add(1, Ordering::SeqCst);
            }
            Event::Reconnecting { .. } => {
                r.fetch_add(1, Ordering::SeqCst);
            }
        },
    ));
    wait_for("frames flow", || {
        let n = frames.load(Ordering::SeqCst);
        async move { n > 10 }
    })
    .await;

    // The path goes dark: the client notices within its idle timeout.
    relay.set_cut(true);
    wait_for("the client to notice the outage", || {
        let n = reconnecting.load(Ordering::SeqCst);
        async move { n >= 1 }
    })
    .await;
    let before = frames.load(Ordering::SeqCst);
    relay.set_cut(false);
    wait_for("the session to resume", || {
        let n = connected.load(Ordering::SeqCst);
        async move { n >= 2 }
    })
    .await;
    wait_for("frames flow again", || {
        let n = frames.load(Ordering::SeqCst);
        async move { n > before + 10 }
    })
    .await;
    let handed_out = desktops.lock().unwrap().clone();
    assert!(!handed_out.is_empty());
    assert!(
        handed_out.iter().all(|d| *d == first.desktop),
        "the same desktop every time: {handed_out:?} vs {}",
        first.desktop
    );
    interrupt.notify_one();
    let outcome = run.await.unwrap().expect("the session ends cleanly");
    assert!(outcome.stats.frames > 0);
    h.shutdown().await;
}
