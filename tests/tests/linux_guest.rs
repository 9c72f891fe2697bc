//! A Debian image boots to an interactive shell on the framebuffer console: built with
//! the real `oriel-display-server image build` (downloads linux-image-amd64 and
//! busybox-static), booted by the micro-VMM, typed into through a client.
//!
//! Nested, software-assisted KVM (the CI machines) emulates guest kernel code slowly and
//! without SSE, where Linux does not finish booting, so this runs only when asked: `ORIEL_TEST_LINUX=1 cargo test -p oriel-e2e --test
//! linux_guest` (on real KVM hosts it takes seconds). `ORIEL_TEST_LINUX_APPEND` adds
//! kernel arguments (e.g. "noxsave clearcpuid=cx16,popcnt,smap,smep nokaslr" on nested,
//! software-assisted KVM, whose emulator lacks those instructions),
//! `ORIEL_TEST_LINUX_TIMEOUT` is the boot timeout in seconds [default: 600].

use std::process::Command;
use std::time::Duration;

use oriel_display_server::source::SourceConfig;
use oriel_display_server::{Desktop, DisplayServer, ServerConfig};
use oriel_e2e::kvm::*;
use oriel_e2e::*;
use oriel_protocol::desktop_spec::DesktopSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debian_image_boots_to_a_shell_on_the_framebuffer_console() {
    if std::env::var_os("ORIEL_TEST_LINUX").is_none() {
        skipped(
            "the Linux guest test",
            "booting Linux needs real KVM (not nested, software-assisted); set ORIEL_TEST_LINUX=1 to run it",
        );
        return;
    }
    if !kvm_available() {
        return;
    }
    let timeout = Duration::from_secs(
        std::env::var("ORIEL_TEST_LINUX_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let dir = temp_dir("linux-guest");
    let images = dir.join("images");
    let mut build = Command::new(workspace_binary("oriel-display-server"));
    build.args(["image", "build", "--images"]).arg(&images);
    if let Ok(extra) = std::env::var("ORIEL_TEST_LINUX_APPEND") {
        build.args(["--append", &extra]);
    }
    let status = build.status().expect("oriel-display-server runs");
    assert!(status.success(), "image build failed");

    let spec = DesktopSpec::parse("kvm", r#"{"image":"debian","width":1024,"height":768}"#)
        .expect("good parameters");
    let source = SourceConfig::from_spec(&spec)
        .and_then(|config| config.open(&images))
        .expect("the VM starts");
    let desktop = Desktop::new("linux", source);
    let identity = oriel_transport::Identity::generate(&["localhost".into()]).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let server = DisplayServer::start(config, &identity, vec![desktop.clone()]).unwrap();

    wait_console(&desktop, "oriel guest: Linux", timeout).await;
    // The framebuffer console has drawn text (vesafb bound to the framebuffer).
    let (screen, _) = settled(&desktop).await;
    let first = screen.pixels()[0];
    assert!(
        screen.pixels().iter().any(|&p| p != first),
        "the framebuffer console drew nothing"
    );

    // A shell on tty1 takes keys from the PS/2 keyboard.
    let (input, _controller, run) = background_session(&server, "linux").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the shell prints its prompt
    for event in us_keys("\necho oriel-$((6*7)) > /dev/ttyS0\n") {
        input.send(event).await.unwrap();
    }
    wait_console(&desktop, "oriel-42", timeout).await;
    run.abort();

    let (guest, seq) = settled(&desktop).await;
    let screen = client_screen(&connect_options(&server, "linux"), seq).await;
    let png = dir.join("linux-console.png");
    image::save_buffer(
        &png,
        &screen
            .pixels()
            .iter()
            .flat_map(|&p| oriel_protocol::rgb_bytes(p))
            .collect::<Vec<u8>>(),
        guest.width(),
        guest.height(),
        image::ColorType::Rgb8,
    )
    .unwrap();
    eprintln!("the console as the client saw it: {}", png.display());
    assert_eq!(diff_pixels(&screen, &guest), 0);
    server.shutdown().await;
}
