//! The shipped binaries, as a user runs them: `oriel-display-server`, `oriel connect`
//! and `oriel demo`, as separate processes on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use oriel_display_server::source::synthetic::Workload;
use oriel_e2e::*;

struct Server {
    child: Child,
    addr: String,
    fingerprint: String,
    metrics: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server_binary(tag: &str, workload: &str, ticks: u64) -> Server {
    start_server_binary_with(tag, workload, &["--ticks", &ticks.to_string()])
}

/// `oriel-display-server` with the desktop `default=KIND` and `extra` flags.
fn start_server_binary_with(tag: &str, kind: &str, extra: &[&str]) -> Server {
    let data = temp_dir(tag);
    let mut child = Command::new(workspace_binary("oriel-display-server"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--desktop")
        .arg(format!("default={kind}"))
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start oriel-display-server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut value = |prefix: &str| -> String {
        let line = lines.next().expect("server output").expect("utf-8 line");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .trim()
            .to_string()
    };
    let addr = value("oriel-display-server: listening on ");
    let fingerprint = value("oriel-display-server: certificate SHA-256 fingerprint: ");
    let metrics = value("oriel-display-server: metrics on http://");
    let metrics = metrics.trim_end_matches("/metrics").to_string();
    Server {
        child,
        addr,
        fingerprint,
        metrics,
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics port");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn connect_binary_shows_the_desktop_pixel_exact_and_metrics_count_it() {
    const TICKS: u64 = 30;
    let server = start_server_binary("connect", "typing", TICKS);
    let shot = temp_dir("connect-shot").join("screen.png");
    let out = Command::new(workspace_binary("oriel"))
        .args([
            "connect",
            &server.addr,
            "--headless",
            "--duration",
            "8s",
            "--fingerprint",
        ])
        .arg(&server.fingerprint)
        .arg("--screenshot")
        .arg(&shot)
        .output()
        .expect("run oriel connect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oriel connect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("frames"), "{stdout}");
    let got = oriel::screenshot::load_png(&shot).expect("screenshot");
    let expected = truth(&synthetic(Workload::Typing, TICKS), TICKS);
    assert_eq!(
        diff_pixels(&got, &expected),
        0,
        "screenshot differs from truth"
    );

    let metrics = http_get(&server.metrics, "/metrics");
    assert!(metrics.contains("oriel_sessions_total 1"), "{metrics}");
    assert!(metrics.contains("oriel_frames_sent_total"), "{metrics}");
}

#[test]
fn connect_binary_refuses_a_wrong_fingerprint_clearly() {
    let server = start_server_binary("badpin", "idle", 5);
    let out = Command::new(workspace_binary("oriel"))
        .args(["connect", &server.addr, "--headless", "--fingerprint"])
        .arg("00".repeat(32))
        .output()
        .expect("run oriel connect");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match the pinned"), "{stderr}");
}

#[test]
fn demo_runs_a_whole_deployment() {
    let shot = temp_dir("demo").join("demo.png");
    let out = Command::new(workspace_binary("oriel"))
        .args([
            "demo",
            "--workload",
            "typing",
            "--duration",
            "3s",
            "--screenshot",
        ])
        .arg(&shot)
        .output()
        .expect("run oriel demo");
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("frames"));
    let png = oriel::screenshot::load_png(&shot).expect("demo screenshot");
    assert_eq!((png.width(), png.height()), (1920, 1080));
}

#[test]
fn demo_runs_a_cluster_and_survives_its_leader_s_death() {
    let shot = temp_dir("demo-cluster").join("demo.png");
    let out = Command::new(workspace_binary("oriel"))
        .args(["demo", "--brokers", "3", "--store", "postgres"])
        .args(["--workload", "typing", "--duration", "10s", "--screenshot"])
        .arg(&shot)
        .output()
        .expect("run oriel demo");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "demo failed: {stderr}");
    assert!(
        stderr.contains("starting 3 brokers on one database"),
        "{stderr}"
    );
    // The leader was killed halfway and another took over, while the session went on
    // to its end ("N frames in 10.0 s").
    let seconds: f64 = stdout
        .split_once(" frames in ")
        .and_then(|(_, rest)| rest.split_once(" s")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no session summary: {stdout}"));
    assert!(
        seconds >= 9.5,
        "the session ended after {seconds} s: {stdout}"
    );
    assert!(
        stdout.contains("failover: broker") && stdout.contains("led the reconcile loop"),
        "{stdout}"
    );
    let png = oriel::screenshot::load_png(&shot).expect("demo screenshot");
    assert_eq!((png.width(), png.height()), (1920, 1080));
}

#[test]
fn demo_refuses_a_cluster_on_sqlite_clearly() {
    let out = Command::new(workspace_binary("oriel"))
        .args(["demo", "--brokers", "2"])
        .output()
        .expect("run oriel demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs --store postgres"), "{stderr}");
}

#[test]
fn a_kvm_desktop_from_the_command_line_shows_the_guest_screen() {
    use oriel_vmm::tiny;
    if !oriel_e2e::kvm::kvm_available() {
        return;
    }
    let (w, h) = (320u32, 240u32);
    let server = start_server_binary_with("kvm-cli", "kvm:tiny", &["--size", "320x240"]);
    let shot = temp_dir("kvm-shot").join("screen.png");
    let out = Command::new(workspace_binary("oriel"))
        .args(["connect", &server.addr, "--headless", "--duration", "3s"])
        .arg("--fingerprint")
        .arg(&server.fingerprint)
        .arg("--screenshot")
        .arg(&shot)
        .output()
        .expect("run oriel connect");
    assert!(
        out.status.success(),
        "oriel connect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The tiny guest's boot picture: its background with four 32x16 bars at y = 8.
    let mut expected = vec![tiny::BACKGROUND; (w * h) as usize];
    for (x0, colour) in tiny::BARS {
        for y in 8..24 {
            for x in x0..x0 + 32 {
                expected[(y * w + x) as usize] = colour;
            }
        }
    }
    let expected =
        oriel_protocol::Framebuffer::from_pixels(oriel_protocol::Size::new(w, h), expected)
            .unwrap();
    let got = oriel::screenshot::load_png(&shot).expect("screenshot");
    assert_eq!(diff_pixels(&got, &expected), 0, "the guest's picture");
    let metrics = http_get(&server.metrics, "/metrics");
    assert!(
        metrics.contains("oriel_vm_boots_total{desktop=\"default\"} 1"),
        "{metrics}"
    );
}

#[test]
fn image_commands_explain_themselves() {
    let images = temp_dir("image-cli");
    let list = Command::new(workspace_binary("oriel-display-server"))
        .args(["image", "list", "--images"])
        .arg(&images)
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).starts_with("tiny"));
    let bad = Command::new(workspace_binary("oriel-display-server"))
        .args(["image", "build", "--name", "../x", "--images"])
        .arg(&images)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot name an image"));
    let missing = Command::new(workspace_binary("oriel-display-server"))
        .args([
            "--desktop",
            "vm=kvm:nope",
            "--metrics-listen",
            "off",
            "--images",
        ])
        .arg(&images)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no image 'nope'") && err.contains("image build"),
        "{err}"
    );
    let no_image = Command::new(workspace_binary("oriel-display-server"))
        .args(["--desktop", "vm=kvm", "--metrics-listen", "off"])
        .output()
        .unwrap();
    assert!(!no_image.status.success(), "a kvm desktop needs an image");
    assert!(String::from_utf8_lossy(&no_image.stderr).contains("kvm:debian"));
}

#[test]
fn server_help_and_bad_flags() {
    let help = Command::new(workspace_binary("oriel-display-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--frame-window"));
    let bad = Command::new(workspace_binary("oriel-display-server"))
        .args(["--desktop", "x=dance", "--metrics-listen", "off"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown workload"));
}
