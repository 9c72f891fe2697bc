//! Suspend to disk and resume, as the broker's commands drive a display server: the
//! tiny guest continues where it was with its keys, and a state file that is cut
//! short, damaged, from a newer Oriel or of another desktop is refused with a clear
//! error and left in place.

use std::time::Duration;

use oriel_display_server::agent::execute;
use oriel_display_server::source::kvm::KvmSource;
use oriel_display_server::suspend::state_file;
use oriel_display_server::{DisplayServer, ServerConfig};
use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::host_link::HostCommand;
use oriel_protocol::InputEvent;

fn spec() -> DesktopSpec {
    DesktopSpec::parse("kvm", r#"{"image":"tiny","width":256,"height":192}"#).unwrap()
}

fn server(tag: &str) -> (DisplayServer, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("oriel-suspend-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let identity = oriel_transport::Identity::generate(&[]).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        suspend_dir: dir.clone(),
        ..Default::default()
    };
    (
        DisplayServer::start(config, &identity, vec![]).unwrap(),
        dir,
    )
}

fn console(server: &DisplayServer, name: &str) -> String {
    let desktop = server.desktop(name).expect("the desktop runs");
    let source = desktop.source();
    let kvm = source.as_any().downcast_ref::<KvmSource>().unwrap();
    kvm.vm().console().tail(1 << 16)
}

fn wait_console(server: &DisplayServer, name: &str, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !console(server, name).contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} on the console"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tap(server: &DisplayServer, name: &str, code: u16) {
    let desktop = server.desktop(name).unwrap();
    for down in [true, false] {
        desktop.inject(&InputEvent::Key { code, down });
    }
}

fn run(server: &DisplayServer, command: HostCommand) -> anyhow::Result<()> {
    execute(server, command).map(drop)
}

fn resume(generation: u64) -> HostCommand {
    HostCommand::Resume {
        desktop: "d".into(),
        spec: spec(),
        generation,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_desktop_resumes_where_it_was_and_bad_files_are_refused() {
    if !oriel_vmm::kvm_tests_enabled("a suspend test") {
        return;
    }
    let (server, dir) = server("round-trip");
    let create = HostCommand::Create {
        desktop: "d".into(),
        spec: spec(),
        generation: 4,
    };
    tokio::task::block_in_place(|| {
        run(&server, create).unwrap();
        wait_console(&server, "d", "oriel tiny guest: ready");
        tap(&server, "d", 30);
        wait_console(&server, "d", "key 1e");

        run(
            &server,
            HostCommand::Suspend {
                desktop: "d".into(),
            },
        )
        .unwrap();
        assert!(
            server.desktops().get_any("d").is_none(),
            "no VM is left running"
        );
        let file = state_file(&dir, "d").unwrap();
        let good = std::fs::read(&file).unwrap();
        // Sparse: a 16 MiB guest that touched little saves little.
        assert!(good.len() < 4 << 20, "{} bytes", good.len());
        // A log-off while suspended is taken at resume.
        run(
            &server,
            HostCommand::Disconnect {
                desktop: "d".into(),
                generation: 5,
            },
        )
        .unwrap();

        let refused = |bytes: &[u8], reason: &str| {
            std::fs::write(&file, bytes).unwrap();
            let e = run(&server, resume(5)).expect_err("a bad file is refused");
            assert!(format!("{e:#}").contains(reason), "{e:#}");
            assert!(server.desktops().get_any("d").is_none());
            assert!(
                file.exists(),
                "a refused file stays for an operator to look at"
            );
        };
        refused(&good[..good.len() / 2], "it ends early");
        refused(&good[..20], "cut short");
        let mut bad = good.clone();
        bad[0] ^= 0xff;
        refused(&bad, "not an Oriel suspended desktop");
        let mut newer = good.clone();
        newer[8..12].copy_from_slice(&99u32.to_le_bytes());
        refused(&newer, "newer Oriel");
        let mut other = good.clone();
        other[30] = b'e';
        refused(&other, "holds desktop 'e'");
        let mut long = good.clone();
        long.resize(64 << 20, 0);
        refused(&long, "larger than any state");
        // Damage inside the VM's state: the VMM's own checks refuse it.
        let mut garbled = good.clone();
        let at = 31 + 8 + 4;
        garbled[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = {
            std::fs::write(&file, &garbled).unwrap();
            run(&server, resume(5)).expect_err("a garbled state is refused")
        };
        assert!(
            format!("{e:#}").contains("cannot resume desktop 'd'"),
            "{e:#}"
        );

        std::fs::write(&file, &good).unwrap();
        run(&server, resume(5)).unwrap();
        assert!(!file.exists(), "the state goes once the desktop runs");
        assert_eq!(server.desktop("d").unwrap().generation(), 5);
        // The guest counted the key before: the next one is its second.
        tap(&server, "d", 44);
        wait_console(&server, "d", "key 2c");
        assert!(
            !console(&server, "d").contains("key 1e"),
            "nothing replayed"
        );
        let desktop = server.desktop("d").unwrap();
        let screen = {
            let source = desktop.source();
            let kvm = source.as_any().downcast_ref::<KvmSource>().unwrap();
            kvm.vm().framebuffer().read_all()
        };
        for (cell, code) in [(0, 0x1e), (1, 0x2c)] {
            for (x, y, p) in oriel_vmm::tiny::glyph(256, cell, code) {
                assert_eq!(screen[(y * 256 + x) as usize], p, "cell {cell}");
            }
        }
        // Resuming a desktop that runs is a retried command: nothing happens.
        run(&server, resume(5)).unwrap();
        // Destroying a suspended desktop forgets its state.
        run(
            &server,
            HostCommand::Suspend {
                desktop: "d".into(),
            },
        )
        .unwrap();
        run(
            &server,
            HostCommand::Destroy {
                desktop: "d".into(),
            },
        )
        .unwrap();
        assert!(!file.exists());
        let e = run(&server, resume(5)).unwrap_err();
        assert!(format!("{e:#}").contains("no suspended state"), "{e:#}");
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_vms_suspend() {
    let (server, dir) = server("synthetic");
    let create = HostCommand::Create {
        desktop: "s".into(),
        spec: DesktopSpec::parse("synthetic", r#"{"workload":"idle"}"#).unwrap(),
        generation: 1,
    };
    tokio::task::block_in_place(|| {
        run(&server, create).unwrap();
        let e = run(
            &server,
            HostCommand::Suspend {
                desktop: "s".into(),
            },
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("only kvm desktops suspend"),
            "{e:#}"
        );
        assert!(server.desktop("s").is_some(), "it runs on");
        let e = run(
            &server,
            HostCommand::Suspend {
                desktop: "../x".into(),
            },
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("cannot name a file"), "{e:#}");
    });
    let _ = std::fs::remove_dir_all(dir);
}
