//! Live migration of kvm desktops through the broker: two display servers and a broker
//! on loopback, the tiny guest on /dev/kvm.

use std::time::Duration;

use oriel::launcher;
use oriel_broker::store::Role;
use oriel_display_server::source::kvm::KvmSource;
use oriel_e2e::broker::{wait_for, Harness};
use oriel_e2e::browser::Browser;
use oriel_e2e::kvm::*;
use oriel_e2e::*;
use oriel_protocol::{InputEvent, Rect};
use oriel_vmm::tiny;

const PASSWORD: &str = "a-long-password";

async fn tap(input: &oriel::InputSender, code: u16) {
    for down in [true, false] {
        input.send(InputEvent::Key { code, down }).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_moves_a_used_kvm_desktop_to_another_host_with_its_keys_and_screen() {
    if !kvm_available() {
        return;
    }
    let (width, height) = (256, 192);
    let mut h = Harness::start("migration").await;
    let a = tiny_pool_on_new_host(&mut h, ("vms", 1, 1), (width, height), ("host-a", 2)).await;
    let b = h.add_host("host-b", 2);
    let alice = h.user("alice", "vms").await;
    let (opts, reply) = launcher::connect_options(&alice, "vms").await.unwrap();
    let on_a = a
        .desktop(&reply.desktop)
        .expect("the desktop runs on host-a");
    wait_console(&on_a, "oriel tiny guest: ready", Duration::from_secs(60)).await;
    let session = oriel::Session::connect(&opts).await.unwrap();
    // The viewer's loop, without a way back to the broker: it can only follow the
    // desktop where its server says it went. Each session it runs hands out its input.
    let (inputs_tx, mut inputs) = tokio::sync::mpsc::unbounded_channel();
    // What each frame changed on the viewer's screen, by the session that sent it.
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(usize, Vec<Rect>)>::new()));
    let sessions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shown = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (seen, counting, showing) = (changes.clone(), sessions.clone(), shown.clone());
    let run = tokio::spawn(oriel::resume::run_resuming(
        session,
        oriel::StopWhen::default(),
        None,
        move |frame, screen| {
            if let oriel::Shown::Frame { changed, .. } = frame {
                let n = counting.load(std::sync::atomic::Ordering::SeqCst);
                seen.lock().unwrap().push((n, changed));
                *showing.lock().unwrap() = Some(screen.clone());
            }
        },
        move |event| {
            if let oriel::resume::Event::Connected(s) = event {
                sessions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = inputs_tx.send(s.input());
            }
        },
    ));
    let input = inputs.recv().await.unwrap();
    tap(&input, 30).await;
    wait_console(&on_a, "key 1e", Duration::from_secs(60)).await;
    drop(on_a);

    let admin = h.admin("root").await.client().unwrap();
    let (a_id, b_id) = (
        host_id(&admin, "host-a").await,
        host_id(&admin, "host-b").await,
    );
    let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    let id = desktops[0]["id"].as_str().unwrap().to_string();
    // Not to the host it is on.
    let same: Result<serde_json::Value, _> = admin
        .post(
            &format!("/admin/desktops/{id}/migrate"),
            &serde_json::json!({"to": a_id}),
        )
        .await;
    assert!(format!("{:?}", same.unwrap_err()).contains("already"));
    let moved: serde_json::Value = admin
        .post(
            &format!("/admin/desktops/{id}/migrate"),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    assert_eq!(moved["to"], b_id.as_str(), "{moved}");
    assert!(moved["downtime_ms"].as_f64().unwrap() > 0.0);

    // The VM runs on host-b only, as the same desktop; the store says so.
    assert!(a.desktops().get_any(&reply.desktop).is_none());
    let on_b = b
        .desktop(&reply.desktop)
        .expect("the desktop runs on host-b");
    let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    assert_eq!(desktops[0]["host_id"], b_id.as_str());
    assert!(desktops[0]["migrating_to"].is_null());

    // The viewer followed the desktop to host-b by itself (its old server told it where,
    // with a ticket); the guest's key count went with it: the next key draws in the
    // next cell.
    let input = tokio::time::timeout(Duration::from_secs(30), inputs.recv())
        .await
        .expect("the viewer followed the desktop")
        .unwrap();
    assert!(!run.is_finished());
    tap(&input, 44).await;
    wait_console(&on_b, "key 2c", Duration::from_secs(60)).await;
    assert!(!console(&on_b).contains("key 1e"), "nothing replayed");
    let (guest, seq) = settled(&on_b).await;
    for (cell, code) in [(0, 0x1e), (1, 0x2c)] {
        for (x, y, p) in tiny::glyph(width, cell, code) {
            assert_eq!(guest.pixels()[(y * width + x) as usize], p, "cell {cell}");
        }
    }
    // The viewer's new session started from the screen it showed: no frame repainted
    // it whole, only the new key's tile was sent.
    wait_for("the viewer shows the guest's screen", || async {
        shown.lock().unwrap().as_ref() == Some(&guest)
    })
    .await;
    let full = (width * height) as u64;
    let after: Vec<Vec<Rect>> = changes
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n == 2)
        .map(|(_, rects)| rects.clone())
        .collect();
    assert!(
        !after.is_empty(),
        "the key was drawn on the followed session"
    );
    for rects in &after {
        let area: u64 = rects.iter().map(|r| r.pixel_count() as u64).sum();
        assert!(
            area < full / 4,
            "a frame at the switch changed {area} of {full} pixels: {rects:?}"
        );
    }

    let (opts, _) = launcher::connect_options(&alice, "vms").await.unwrap();
    assert_eq!(diff_pixels(&client_screen(&opts, seq).await, &guest), 0);
    // An operator moves it back from the console (a real browser); the viewer, which
    // was taken over meanwhile, is the screenshot client's: the first one still runs.
    h.user_with_password("ops", PASSWORD, Role::Operator, None)
        .await;
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    browser.sign_in(&base, "ops", PASSWORD).await;
    browser.goto(&format!("{base}/admin/desktops/{id}")).await;
    // The operator picks the destination (the only other host, here).
    browser
        .select("form[action$='/migrate'] select[name='to']", &a_id)
        .await;
    browser.click("form[action$='/migrate'] button").await;
    browser.wait_for_text("moved to host").await;
    browser.screenshot("console-migrated").await;
    browser.close().await;
    assert!(b.desktops().get_any(&reply.desktop).is_none());
    assert!(a.desktop(&reply.desktop).is_some(), "back on host-a");
    run.abort();

    // History, audit and metrics.
    let moves: serde_json::Value = admin.get("/admin/migrations").await.unwrap();
    assert_eq!(moves[0]["outcome"], "done", "{moves}");
    assert_eq!(moves[0]["desktop_id"], id.as_str());
    assert_eq!(moves[0]["to_host"], a_id.as_str());
    let audit: serde_json::Value = admin.get("/admin/audit?limit=20").await.unwrap();
    assert!(audit.to_string().contains("migrated desktop"), "{audit}");
    assert_eq!(
        h.metric("oriel_broker_migrations_total{outcome=\"done\"}")
            .await,
        2.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_leaves_the_desktop_running_where_it_was_and_forged_tickets_are_refused() {
    if !kvm_available() {
        return;
    }
    let mut h = Harness::start("migration-fails").await;
    let a = tiny_pool_on_new_host(&mut h, ("vms", 1, 1), (256, 192), ("host-a", 2)).await;
    let dead = h.add_host("host-dead", 2);
    let admin = h.admin("root").await.client().unwrap();
    wait_for("host-dead registered", || async {
        let hosts: serde_json::Value = admin.get("/admin/hosts").await.unwrap();
        hosts.as_array().unwrap().len() == 2
    })
    .await;
    // Its display endpoint goes away; its agent still reports it up.
    dead.shutdown().await;
    let dead_id = host_id(&admin, "host-dead").await;
    let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    let (id, name) = (
        desktops[0]["id"].as_str().unwrap().to_string(),
        desktops[0]["name"].as_str().unwrap().to_string(),
    );
    // A user is connected while the move fails.
    let alice = h.user("alice", "vms").await;
    let (opts, _) = launcher::connect_options(&alice, "vms").await.unwrap();
    let vm = a.desktop(&name).expect("on host-a");
    wait_console(&vm, "oriel tiny guest: ready", Duration::from_secs(60)).await;
    let session = oriel::Session::connect(&opts).await.unwrap();
    let input = session.input();
    let run = tokio::spawn(session.run(oriel::StopWhen::default(), None));
    let failed: Result<serde_json::Value, _> = admin
        .post(
            &format!("/admin/desktops/{id}/migrate"),
            &serde_json::json!({"to": dead_id}),
        )
        .await;
    let why = format!("{:?}", failed.unwrap_err());
    assert!(why.contains("502"), "{why}");
    // Still on host-a, running, and the store never moved it; its user's session
    // never noticed: it runs on, and a key still reaches the guest.
    let vm = a.desktop(&name).expect("still on host-a");
    {
        let source = vm.source();
        let kvm = source.as_any().downcast_ref::<KvmSource>().unwrap();
        assert_eq!(kvm.vm().state(), oriel_vmm::VmState::Running);
    }
    assert!(!run.is_finished(), "the viewer's session runs on");
    tap(&input, 30).await;
    wait_console(&vm, "key 1e", Duration::from_secs(60)).await;
    run.abort();
    let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    assert_eq!(
        desktops[0]["host_id"],
        host_id(&admin, "host-a").await.as_str()
    );
    assert!(desktops[0]["migrating_to"].is_null());
    let moves: serde_json::Value = admin.get("/admin/migrations").await.unwrap();
    assert_ne!(moves[0]["outcome"], "done", "{moves}");
    assert_eq!(
        h.metric("oriel_broker_migrations_total{outcome=\"failed\"}")
            .await,
        1.0
    );

    // A ticket the broker did not sign is refused by the destination before anything.
    let b = h.add_host("host-b", 2);
    let identity_pin = b.fingerprint();
    let to = b.local_addr().unwrap();
    let reason = present_ticket(to, identity_pin, None, &[7u8; 200]).await;
    assert!(reason.contains("migration ticket"), "{reason}");

    // A ticket the broker did sign, for host-a's desktop to move to host-b, is good
    // only from host-a: a connection that cannot prove it holds host-a's certificate
    // is refused (pinned both ways).
    wait_for("host-b registered", || async {
        let hosts: serde_json::Value = admin.get("/admin/hosts").await.unwrap();
        hosts.to_string().contains("host-b")
    })
    .await;
    let keys = oriel_broker::keys::BrokerKeys::load_or_create(&h.dir.join("broker")).unwrap();
    let now = oriel_transport::unix_micros() / 1_000_000;
    let mut claims = oriel_protocol::migration_ticket::MigrationClaims {
        desktop: name.clone(),
        spec: oriel_protocol::desktop_spec::DesktopSpec::parse("kvm", r#"{"image":"tiny"}"#)
            .unwrap(),
        generation: 1,
        to_host: host_id(&admin, "host-b").await,
        from_fingerprint: a.fingerprint().0,
        issued_unix: now,
        expires_unix: now + 30,
        nonce: [9; 16],
    };
    let impostor = oriel_transport::Identity::generate(&[]).unwrap();
    for (i, presented) in [None, Some(&impostor)].into_iter().enumerate() {
        claims.nonce = [u8::try_from(i).unwrap(); 16];
        let ticket =
            oriel_protocol::migration_ticket::sign_migration_ticket(&claims, &keys.ticket_key);
        let reason = present_ticket(to, identity_pin, presented, &ticket).await;
        assert!(reason.contains("did not prove it is the host"), "{reason}");
    }
    h.shutdown().await;
}

/// Keys typed while the desktop moves, through the viewer, reach the guest once each:
/// those the source took before its last copy in the state that moves, the rest (held
/// by the source, in flight, or typed while the viewer follows) resent by the viewer to
/// the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_typed_while_the_desktop_moves_arrive_once() {
    if !kvm_available() {
        return;
    }
    const KEYS: u32 = 40;
    let width = 256;
    let mut h = Harness::start("migration-typing").await;
    let a = tiny_pool_on_new_host(&mut h, ("vms", 1, 1), (width, 192), ("host-a", 2)).await;
    let b = h.add_host("host-b", 2);
    let alice = h.user("alice", "vms").await;
    let (opts, reply) = launcher::connect_options(&alice, "vms").await.unwrap();
    let vm = a.desktop(&reply.desktop).expect("on host-a");
    wait_console(&vm, "oriel tiny guest: ready", Duration::from_secs(60)).await;
    drop(vm);
    let admin = h.admin("root").await.client().unwrap();
    wait_for("host-b registered", || async {
        let hosts: serde_json::Value = admin.get("/admin/hosts").await.unwrap();
        hosts.as_array().unwrap().len() == 2
    })
    .await;
    let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    let id = desktops[0]["id"].as_str().unwrap().to_string();
    let session = oriel::Session::connect(&opts).await.unwrap();
    let input = session.input();
    let run = tokio::spawn(oriel::resume::run_resuming(
        session,
        oriel::StopWhen::default(),
        None,
        |_, _| {},
        |_| {},
    ));
    // A key every 4 ms from before the move until after it, on the handle the viewer
    // had from the start.
    let typing = tokio::spawn(async move {
        for _ in 0..KEYS {
            tap(&input, 30).await;
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        input
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let _: serde_json::Value = admin
        .post(
            &format!("/admin/desktops/{id}/migrate"),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    let input = typing.await.unwrap();
    // One more key: it lands in cell KEYS only if each key before landed once.
    tap(&input, 44).await;
    let vm = b.desktop(&reply.desktop).expect("on host-b");
    wait_console(&vm, "key 2c", Duration::from_secs(60)).await;
    let (guest, _) = settled(&vm).await;
    let holds = |cell: u32, code: u8| {
        tiny::glyph(width, cell, code)
            .into_iter()
            .all(|(x, y, p)| guest.pixels()[(y * width + x) as usize] == p)
    };
    let last = (0..64).find(|&c| holds(c, 0x2c));
    assert_eq!(
        last,
        Some(KEYS),
        "the last key is not in cell {KEYS}: keys were lost or doubled"
    );
    run.abort();
    h.shutdown().await;
}

/// Presents migration ticket `ticket` to the display server at `to` (pinned by `pin`),
/// as `identity` if any; why the server closed the connection.
async fn present_ticket(
    to: std::net::SocketAddr,
    pin: oriel_transport::Fingerprint,
    identity: Option<&oriel_transport::Identity>,
    ticket: &[u8],
) -> String {
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(
        oriel_transport::tls::pinned_client_config_as(
            pin,
            oriel_display_server::vm_transfer::MIGRATION_ALPN,
            identity,
        )
        .unwrap(),
    );
    let connection = client.connect(to, "localhost").unwrap().await.unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    let len = u16::try_from(ticket.len()).unwrap();
    send.write_all(&len.to_le_bytes()).await.unwrap();
    send.write_all(ticket).await.unwrap();
    connection.closed().await.to_string()
}

/// The id of host `name`.
async fn host_id(admin: &oriel_transport::api_client::ApiClient, name: &str) -> String {
    let hosts: serde_json::Value = admin.get("/admin/hosts").await.unwrap();
    hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_host_moves_its_desktops_in_use_to_another() {
    if !kvm_available() {
        return;
    }
    let mut h = Harness::start("migration-drain").await;
    let a = tiny_pool_on_new_host(&mut h, ("vms", 3, 3), (256, 192), ("host-a", 3)).await;
    let b = h.add_host("host-b", 3);
    let admin = h.admin("root").await.client().unwrap();
    // Three users, each typing a key into their own VM.
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat"] {
        let login = h.user(name, "vms").await;
        let (opts, reply) = launcher::connect_options(&login, "vms").await.unwrap();
        let vm = a.desktop(&reply.desktop).expect("on host-a");
        wait_console(&vm, "oriel tiny guest: ready", Duration::from_secs(60)).await;
        let session = oriel::Session::connect(&opts).await.unwrap();
        tap(&session.input(), 30).await;
        wait_console(&vm, "key 1e", Duration::from_secs(60)).await;
        let run = tokio::spawn(session.run(oriel::StopWhen::default(), None));
        users.push((login, reply.desktop, run));
    }
    let a_id = host_id(&admin, "host-a").await;
    let b_id = host_id(&admin, "host-b").await;
    wait_for("host-b registered", || async {
        let hosts: serde_json::Value = admin.get("/admin/hosts").await.unwrap();
        hosts.as_array().unwrap().len() == 2
    })
    .await;
    admin
        .post_no_reply(
            &format!("/admin/hosts/{a_id}/state"),
            &serde_json::json!({"state": "maintenance"}),
        )
        .await
        .unwrap();
    wait_for("every desktop moved to host-b", || async {
        let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
        desktops
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["host_id"] == b_id.as_str())
    })
    .await;
    assert!(a.desktops().is_empty(), "host-a is empty");
    for (login, desktop, run) in users {
        run.abort();
        let vm = b.desktop(&desktop).expect("on host-b");
        // The user connects again through the broker and finds their VM as it was.
        let (opts, again) = launcher::connect_options(&login, "vms").await.unwrap();
        assert_eq!(again.desktop, desktop);
        let session = oriel::Session::connect(&opts).await.unwrap();
        tap(&session.input(), 44).await;
        wait_console(&vm, "key 2c", Duration::from_secs(60)).await;
        let (guest, _) = settled(&vm).await;
        for (x, y, p) in tiny::glyph(256, 1, 0x2c) {
            assert_eq!(guest.pixels()[(y * 256 + x) as usize], p);
        }
    }
    let moves: serde_json::Value = admin.get("/admin/migrations").await.unwrap();
    let done = moves
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["outcome"] == "done")
        .count();
    assert_eq!(done, 3, "{moves}");
    h.shutdown().await;
}
