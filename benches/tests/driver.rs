//! The benchmark driver runs end to end and prints its JSON line (figures are not
//! checked here: timings are for the benchmark to report, not for tests to assert).

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_oriel-bench"))
        .args(args)
        .output()
        .expect("oriel-bench runs");
    assert!(
        out.status.success(),
        "oriel-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).expect("valid JSON")
}

#[test]
fn an_x11_workload_on_xvfb_gives_the_display_figures() {
    let figures = bench(&[
        "--source",
        "x11",
        "--workload",
        "text",
        "--seconds",
        "2",
        "--size",
        "800x600",
    ]);
    assert_eq!(figures["source"], "x11");
    assert_eq!(figures["capture"], "Xvfb framebuffer file");
    assert_eq!(figures["width"], 800);
    assert_eq!(figures["pixel_exact"], true, "{figures}");
    assert!(figures["frames_sent"].as_u64().unwrap() > 0);
    assert!(figures["server_cpu_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_density_bench_serves_every_desktop() {
    // Typing and scrolling only: the video clip needs ffmpeg, a bench-only package.
    let figures = bench(&[
        "density",
        "--desktops",
        "3",
        "--video",
        "0",
        "--seconds",
        "3",
        "--size",
        "640x400",
    ]);
    assert_eq!(figures["desktops"], 3);
    assert_eq!(
        (figures["scroll"].clone(), figures["typing"].clone()),
        (1.into(), 2.into())
    );
    assert_eq!(figures["sessions_failed"], 0, "{figures}");
    assert!(
        figures["session_frames_per_s_min"].as_f64().unwrap() > 0.0,
        "{figures}"
    );
}

#[test]
fn x11_flags_need_the_x11_source() {
    let out = Command::new(env!("CARGO_BIN_EXE_oriel-bench"))
        .args(["--display", ":5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--source x11"));
}

#[test]
fn the_vmm_bench_gives_its_figures() {
    if !oriel_vmm::kvm_tests_enabled("the vmm bench test") {
        return;
    }
    let figures = bench(&[
        "vmm",
        "--boots",
        "2",
        "--vms",
        "2",
        "--seconds",
        "1",
        "--size",
        "320x240",
    ]);
    assert_eq!(figures["bench"], "vmm");
    assert_eq!(figures["framebuffer_pages"], 75);
    for key in [
        "boot_to_first_pixel_ms",
        "dirty_log_us",
        "rss_per_vm_mb",
        "server_rss_mb",
    ] {
        assert!(figures[key].as_f64().unwrap() > 0.0, "{key}: {figures}");
    }
    assert!(figures["idle_cpu_percent_per_vm"].as_f64().is_some());
}

#[test]
fn the_migrate_bench_gives_its_figures() {
    if !oriel_vmm::kvm_tests_enabled("the migrate bench test") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_oriel-bench"))
        .args([
            "migrate",
            "--memory-mib",
            "64",
            "--dirty-mib-per-s",
            "8",
            "--migrations",
            "2",
            "--display-moves",
            "2",
            "--size",
            "320x240",
        ])
        .output()
        .expect("oriel-bench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON"))
        .collect();
    let [moves, display] = lines.as_slice() else {
        panic!("two lines: {lines:?}");
    };
    assert_eq!(moves["workload"], "migrate");
    assert_eq!(moves["migrations"], 2);
    for key in ["total_ms_p50", "downtime_ms_p99", "mib_sent_p50"] {
        assert!(moves[key].as_f64().unwrap() > 0.0, "{key}: {moves}");
    }
    // What was sent is about what the guest touched (untouched RAM is not sent).
    assert!(moves["mib_sent_max"].as_f64().unwrap() < 64.0, "{moves}");
    assert_eq!(display["workload"], "migrate-display");
    assert!(
        display["display_gap_ms_p99"].as_f64().unwrap() > 0.0,
        "{display}"
    );
}
