//! Suspend to disk through the broker: a broker and a display server on loopback, the
//! tiny guest on /dev/kvm. An operator suspends a desktop in use (the CLI), its user
//! connecting resumes it where it was; the pool's policy suspends it once its user has
//! left, and the console resumes it.

use std::time::Duration;

use oriel::launcher;
use oriel_broker::store::Role;
use oriel_display_server::suspend::state_file;
use oriel_e2e::broker::{wait_for, Harness};
use oriel_e2e::browser::Browser;
use oriel_e2e::kvm::*;
use oriel_e2e::*;
use oriel_protocol::InputEvent;
use oriel_vmm::tiny;

const PASSWORD: &str = "a-long-password";
const WIDTH: u32 = 256;

async fn tap(input: &oriel::InputSender, code: u16) {
    for down in [true, false] {
        input.send(InputEvent::Key { code, down }).await.unwrap();
    }
}

/// `oriel-broker admin --config CONFIG ARGS…`, which must succeed; its JSON output.
async fn admin_cli(config: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "admin".to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(workspace_binary("oriel-broker"))
            .args(&all)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The guest's screen shows keys `codes` in its first cells.
fn shows_keys(desktop: &std::sync::Arc<oriel_display_server::Desktop>, codes: &[u8]) {
    let screen = guest_screen(desktop);
    for (cell, &code) in (0u32..).zip(codes) {
        for (x, y, p) in tiny::glyph(WIDTH, cell, code) {
            assert_eq!(screen.pixels()[(y * WIDTH + x) as usize], p, "cell {cell}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_desktop_costs_no_vm_and_resumes_where_it_was() {
    if !kvm_available() {
        return;
    }
    let mut h = Harness::start("suspend").await;
    let a = tiny_pool_on_new_host(&mut h, ("vms", 1, 1), (WIDTH, 192), ("host-a", 2)).await;
    let alice = h.user("alice", "vms").await;
    let (opts, reply) = launcher::connect_options(&alice, "vms").await.unwrap();
    let name = reply.desktop.clone();
    let vm = a.desktop(&name).expect("the desktop runs on host-a");
    wait_console(&vm, "oriel tiny guest: ready", Duration::from_secs(60)).await;
    let session = oriel::Session::connect(&opts).await.unwrap();
    let input = session.input();
    let run = tokio::spawn(session.run(oriel::StopWhen::default(), None));
    tap(&input, 30).await;
    wait_console(&vm, "key 1e", Duration::from_secs(60)).await;
    drop(vm);

    // An operator suspends it with the CLI: the VM is gone from its host, its state is
    // on the host's disk, and the viewer's session ended.
    let config = h.dir.join("admin.toml");
    let data_dir = h.dir.join("broker");
    std::fs::write(
        &config,
        format!("data-dir = {:?}\n", data_dir.to_str().unwrap()),
    )
    .unwrap();
    let admin = h.admin("root").await.client().unwrap();
    let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    let id = desktops[0]["id"].as_str().unwrap().to_string();
    let suspended = admin_cli(&config, &["desktop", "suspend", &id]).await;
    assert!(suspended["suspended_ms"].is_i64(), "{suspended}");
    assert!(a.desktops().get_any(&name).is_none(), "no VM runs");
    let file = state_file(&a.config().suspend_dir, &name).unwrap();
    assert!(file.exists());
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the viewer's session ended")
        .unwrap()
        .ok();
    // Nothing else happens to a suspended desktop meanwhile.
    h.passes(3).await;
    let again: Result<serde_json::Value, _> = admin
        .post(
            &format!("/admin/desktops/{id}/suspend"),
            &serde_json::json!({}),
        )
        .await;
    assert!(format!("{:?}", again.unwrap_err()).contains("suspended already"));
    let moved: Result<serde_json::Value, _> = admin
        .post(
            &format!("/admin/desktops/{id}/migrate"),
            &serde_json::json!({}),
        )
        .await;
    assert!(format!("{:?}", moved.unwrap_err()).contains("resume it first"));
    let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    assert_eq!(desktops[0]["state"], "disconnected", "{desktops}");

    // Its user connects: the broker resumes it first, and it continues where it was.
    let (opts, _) = launcher::connect_options(&alice, "vms").await.unwrap();
    let vm = a.desktop(&name).expect("resumed on host-a");
    assert!(!file.exists());
    let session = oriel::Session::connect(&opts).await.unwrap();
    let input = session.input();
    let run = tokio::spawn(session.run(oriel::StopWhen::default(), None));
    tap(&input, 44).await;
    wait_console(&vm, "key 2c", Duration::from_secs(60)).await;
    assert!(!console(&vm).contains("key 1e"), "nothing replayed");
    shows_keys(&vm, &[0x1e, 0x2c]);
    let (guest, seq) = settled(&vm).await;
    let (opts, _) = launcher::connect_options(&alice, "vms").await.unwrap();
    assert_eq!(diff_pixels(&client_screen(&opts, seq).await, &guest), 0);
    drop(vm);

    // The pool's policy: a dedicated kvm desktop its user left is suspended after the
    // pool's disconnect timeout.
    let _: serde_json::Value = admin
        .post(
            "/admin/pools/vms",
            &serde_json::json!({"disconnect_timeout_s": 1}),
        )
        .await
        .unwrap();
    run.abort();
    // Audited once it is done.
    wait_for("the pool's policy suspended the unused desktop", || async {
        let audit: serde_json::Value = admin.get("/admin/audit?limit=20").await.unwrap();
        audit.to_string().contains("unused past its pool's timeout")
    })
    .await;
    let d: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    assert!(d[0]["suspended_ms"].is_i64(), "{d}");
    assert!(a.desktops().get_any(&name).is_none());

    // An operator resumes it from the console (a real browser), with the policy off.
    let _: serde_json::Value = admin
        .post(
            "/admin/pools/vms",
            &serde_json::json!({"disconnect_timeout_s": 0}),
        )
        .await
        .unwrap();
    h.user_with_password("ops", PASSWORD, Role::Operator, None)
        .await;
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    browser.sign_in(&base, "ops", PASSWORD).await;
    browser.goto(&format!("{base}/admin/desktops/{id}")).await;
    browser.wait_for_text("to disk").await;
    browser.click("form[action$='/resume'] button").await;
    browser.wait_for_text("resumed where it was").await;
    browser.screenshot("console-resumed").await;
    browser.close().await;
    let vm = a.desktop(&name).expect("resumed by the console");
    shows_keys(&vm, &[0x1e, 0x2c]);

    assert_eq!(
        h.metric("oriel_broker_suspensions_total{action=\"suspend\",outcome=\"done\"}")
            .await,
        2.0
    );
    assert_eq!(
        h.metric("oriel_broker_suspensions_total{action=\"resume\",outcome=\"done\"}")
            .await,
        2.0
    );
    h.shutdown().await;
}
