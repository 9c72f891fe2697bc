//! KVM desktops end to end: a VM of the micro-VMM served over real QUIC to real
//! clients, and a kvm pool through the broker. They use the tiny test guest (booting
//! Linux is tests/linux_guest.rs, behind a flag). Skipped, with the reason printed,
//! only where /dev/kvm is missing.

use std::time::{Duration, Instant};

use oriel::{launcher, Session, StopWhen};
use oriel_display_server::source::kvm::KvmSource;
use oriel_display_server::{Desktop, DisplayServer, ServerConfig};
use oriel_e2e::broker::Harness;
use oriel_e2e::kvm::*;
use oriel_e2e::*;
use oriel_protocol::{Framebuffer, InputEvent};
use oriel_vmm::tiny;
use oriel_vmm::{Vm, VmConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sees_guest_memory_exactly_and_its_keys_and_pointer_reach_the_guest() {
    if !kvm_available() {
        return;
    }
    let (width, height) = (320, 240);
    let vm = Vm::start(VmConfig::tiny(width, height)).unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    let desktop = Desktop::new("vm", Box::new(KvmSource::new(vm, 30)));
    let identity = oriel_transport::Identity::generate(&["localhost".into()]).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let server = DisplayServer::start(config, &identity, vec![desktop.clone()]).unwrap();
    let opts = connect_options(&server, "vm");

    let (guest, seq) = settled(&desktop).await;
    assert_eq!(guest.pixels()[(8 * width) as usize], tiny::BARS[0].1);
    let screen = client_screen(&opts, seq).await;
    assert_eq!(
        diff_pixels(&screen, &guest),
        0,
        "client equals guest memory"
    );

    // Keys through the protocol: the guest draws their glyphs.
    let (input, _controller, run) = background_session(&server, "vm").await;
    for code in [30u16, 48, 46] {
        // a, b, c
        input
            .send(InputEvent::Key { code, down: true })
            .await
            .unwrap();
        input
            .send(InputEvent::Key { code, down: false })
            .await
            .unwrap();
    }
    wait_console(&desktop, "key 2e", Duration::from_secs(60)).await;
    let corner = |fb: &Framebuffer| fb.pixels()[(width - 1) as usize];
    assert_eq!(
        corner(&guest_screen(&desktop)),
        tiny::BACKGROUND,
        "no mouse input yet"
    );
    // The pointer: the PS/2 mouse's packets recolour the guest's corner marker.
    for (x, y) in [(100, 100), (140, 90)] {
        input.send(InputEvent::PointerMove { x, y }).await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    while corner(&guest_screen(&desktop)) == tiny::BACKGROUND {
        assert!(
            Instant::now() < deadline,
            "mouse packets never reached the guest"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (guest, seq) = settled(&desktop).await;
    for (cell, code) in [(0, 0x1e), (1, 0x30), (2, 0x2e)] {
        for (x, y, p) in tiny::glyph(width, cell, code) {
            assert_eq!(
                guest.pixels()[(y * width + x) as usize],
                p,
                "glyph of {code:#x}"
            );
        }
    }
    let screen = client_screen(&opts, seq).await;
    assert_eq!(
        diff_pixels(&screen, &guest),
        0,
        "client equals guest memory after typing"
    );
    run.abort();
    let metrics = server.metrics();
    assert!(
        metrics.contains("oriel_vm_boots_total{desktop=\"vm\"} 1"),
        "{metrics}"
    );
    let resident = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oriel_vm_guest_resident_bytes{desktop=\"vm\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("resident guest memory reported");
    assert!(
        resident >= u64::from(width * height * 4),
        "the guest drew its screen"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kvm_pool_gives_two_users_two_vms_and_admins_read_their_consoles() {
    if !kvm_available() {
        return;
    }
    let mut h = Harness::start("kvm-pool").await;
    let host = tiny_pool_on_new_host(&mut h, ("vms", 2, 3), (256, 192), ("kvm-host", 4)).await;
    let alice = h.user("alice", "vms").await;
    let bob = h.user("bob", "vms").await;
    let (alice_opts, alice_desk) = launcher::connect_options(&alice, "vms").await.unwrap();
    let (_, bob_desk) = launcher::connect_options(&bob, "vms").await.unwrap();
    assert_ne!(alice_desk.desktop, bob_desk.desktop, "two users, two VMs");
    let alice_vm = host.desktop(&alice_desk.desktop).unwrap();
    let bob_vm = host.desktop(&bob_desk.desktop).unwrap();

    // Each user sees their own VM; alice's key changes only hers (typed once the guest
    // is up: keys during its boot are dropped, as during a PC's POST).
    wait_console(
        &alice_vm,
        "oriel tiny guest: ready",
        Duration::from_secs(60),
    )
    .await;
    let session = Session::connect(&alice_opts).await.unwrap();
    let input = session.input();
    let run = tokio::spawn(session.run(
        StopWhen {
            duration: Some(Duration::from_secs(60)),
            ..Default::default()
        },
        None,
    ));
    input
        .send(InputEvent::Key {
            code: 30,
            down: true,
        })
        .await
        .unwrap();
    input
        .send(InputEvent::Key {
            code: 30,
            down: false,
        })
        .await
        .unwrap();
    wait_console(&alice_vm, "key 1e", Duration::from_secs(60)).await;
    let (alice_guest, alice_seq) = settled(&alice_vm).await;
    let (bob_guest, bob_seq) = settled(&bob_vm).await;
    assert_ne!(alice_guest, bob_guest);
    assert!(!console(&bob_vm).contains("key 1e"));
    run.abort();
    // Tickets are single-use: each connection asks the broker again.
    let (alice_opts, _) = launcher::connect_options(&alice, "vms").await.unwrap();
    let alice_screen = client_screen(&alice_opts, alice_seq).await;
    assert_eq!(diff_pixels(&alice_screen, &alice_guest), 0);
    let (bob_opts, _) = launcher::connect_options(&bob, "vms").await.unwrap();
    let bob_screen = client_screen(&bob_opts, bob_seq).await;
    assert_eq!(diff_pixels(&bob_screen, &bob_guest), 0);
    drop((alice_vm, bob_vm));

    // The serial console through the broker's admin API; users may not read it.
    let admin = h.admin("root").await.client().unwrap();
    let desktops: serde_json::Value = admin.get("/admin/desktops?pool=vms").await.unwrap();
    let id = desktops
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == alice_desk.desktop.as_str())
        .expect("alice's desktop listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply: serde_json::Value = admin
        .get(&format!("/admin/desktops/{id}/console"))
        .await
        .unwrap();
    let text = reply["console"].as_str().unwrap();
    assert!(
        text.contains("oriel tiny guest: ready") && text.contains("key 1e"),
        "{text}"
    );
    let as_user = alice
        .client()
        .unwrap()
        .get::<serde_json::Value>(&format!("/admin/desktops/{id}/console"))
        .await;
    match as_user {
        Err(oriel_transport::api_client::ApiCallError::Status { status, .. }) => {
            assert_eq!(status, 403, "users cannot read consoles")
        }
        other => panic!("a user read a console: {other:?}"),
    }
    h.shutdown().await;
}
