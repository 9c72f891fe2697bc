//! A VM moved between two QUIC endpoints on loopback as two display servers move it:
//! the guest continues with its screen and keys on the destination, and a destination
//! that goes away mid-migration leaves the VM running on the source.

use std::time::Duration;

use oriel_display_server::vm_transfer::{receive_vm, send_vm, MIGRATION_ALPN};
use oriel_transport::tls::{pinned_client_config, Identity};
use oriel_vmm::{Boot, Convergence, Vm, VmConfig, VmState};

fn kvm() -> bool {
    oriel_vmm::kvm_tests_enabled("a migration test")
}

fn tap(vm: &Vm, key: u16) {
    vm.key(key, true);
    vm.key(key, false);
}

fn wait_console(vm: &Vm, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !vm.console().tail(1 << 16).contains(text) {
        assert!(std::time::Instant::now() < deadline, "no {text:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running tiny guest that writes its memory, and its configuration.
fn writing_vm() -> (VmConfig, Vm) {
    let config = VmConfig {
        memory_mib: 64,
        boot: Boot::TinyDirtying { mib_per_s: 8 },
        ..VmConfig::tiny(320, 240)
    };
    let vm = Vm::start(config.clone()).unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    (config, vm)
}

/// A running VM to move, the destination's endpoint and a source endpoint that pins it.
struct Rig {
    config: VmConfig,
    source: Vm,
    destination: quinn::Endpoint,
    client: quinn::Endpoint,
    addr: std::net::SocketAddr,
}

/// The rig, where KVM tests run.
fn rig() -> Option<Rig> {
    if !kvm() {
        return None;
    }
    let (config, source) = writing_vm();
    let (destination, client) = endpoints();
    let addr = destination.local_addr().unwrap();
    Some(Rig {
        config,
        source,
        destination,
        client,
        addr,
    })
}

/// The destination's endpoint and a source endpoint that pins it.
fn endpoints() -> (quinn::Endpoint, quinn::Endpoint) {
    let identity = Identity::generate(&["localhost".into()]).unwrap();
    let server = identity.quic_server_config(MIGRATION_ALPN).unwrap();
    let destination = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut source = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    source.set_default_client_config(
        pinned_client_config(identity.fingerprint(), MIGRATION_ALPN).unwrap(),
    );
    (destination, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_moves_to_another_endpoint_and_runs_on() {
    if !kvm() {
        return;
    }
    let (config, source) = writing_vm();
    tap(&source, 30);
    wait_console(&source, "key 1e");
    let (destination, client) = endpoints();
    let addr = destination.local_addr().unwrap();
    let receiving = {
        let config = config.clone();
        tokio::spawn(async move {
            let connection = destination.accept().await.unwrap().await.unwrap();
            let stream = connection.accept_bi().await.unwrap();
            let mut vm = None;
            let moved = receive_vm(stream, config, |v| {
                vm = Some(v);
                Ok(())
            })
            .await
            .map(|downtime| (vm.expect("adopted"), downtime));
            (moved, connection)
        })
    };
    let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
    let stream = connection.open_bi().await.unwrap();
    let outgoing = source.migrate_out().unwrap();
    let sent = send_vm(stream, &config, outgoing, Convergence::default())
        .await
        .unwrap();
    let (moved, _connection) = receiving.await.unwrap();
    let (vm, downtime) = moved.unwrap();
    // Both sides report the destination's measurement (to the µs).
    assert_eq!(sent.downtime.as_micros(), downtime.as_micros());
    assert!(sent.report.stats.bytes > 0);
    assert_eq!(source.state(), VmState::Paused);
    tap(&vm, 44);
    wait_console(&vm, "key 2c");
    assert!(!vm.console().tail(1 << 16).contains("key 1e"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_goes_away_leaves_the_vm_running_on_the_source() {
    let Some(Rig {
        config,
        source,
        destination,
        client,
        addr,
    }) = rig()
    else {
        return;
    };
    // The destination reads the shape and a little, then its host dies.
    tokio::spawn(async move {
        let connection = destination.accept().await.unwrap().await.unwrap();
        let (_send, mut recv) = connection.accept_bi().await.unwrap();
        let mut some = [0u8; 64];
        recv.read_exact(&mut some).await.unwrap();
        connection.close(1u32.into(), b"host died");
        destination.close(1u32.into(), b"host died");
    });
    let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
    let stream = connection.open_bi().await.unwrap();
    let outgoing = source.migrate_out().unwrap();
    let failed = send_vm(stream, &config, outgoing, Convergence::default()).await;
    assert!(failed.is_err());
    assert_eq!(source.state(), VmState::Running);
    tap(&source, 30);
    wait_console(&source, "key 1e");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_cannot_take_the_vm_at_the_end_leaves_it_running_on_the_source() {
    let Some(Rig {
        config,
        source,
        destination,
        client,
        addr,
    }) = rig()
    else {
        return;
    };
    let receiving = {
        let config = config.clone();
        tokio::spawn(async move {
            let connection = destination.accept().await.unwrap().await.unwrap();
            let stream = connection.accept_bi().await.unwrap();
            // Started, then refused (a desktop of that name appeared meanwhile, say).
            let refused = receive_vm(stream, config, |_vm| anyhow::bail!("no room")).await;
            assert!(refused.is_err());
            connection.closed().await;
        })
    };
    let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
    let stream = connection.open_bi().await.unwrap();
    let outgoing = source.migrate_out().unwrap();
    let failed = send_vm(stream, &config, outgoing, Convergence::default()).await;
    let why = failed.unwrap_err().to_string();
    assert!(why.contains("could not start"), "{why}");
    assert_eq!(source.state(), VmState::Running);
    tap(&source, 30);
    wait_console(&source, "key 1e");
    connection.close(0u32.into(), b"done");
    receiving.await.unwrap();
}
