//! Every fuzz target (`fuzz/fuzz_targets`) runs for a short while on every test run,
//! from its committed seeds (`fuzz/seeds`), under libFuzzer with AddressSanitizer, so
//! that a decoder change that crashes on hostile input fails the suite. Longer runs:
//! `cd fuzz && cargo +nightly fuzz run TARGET corpus/TARGET seeds/TARGET`.
//!
//! Needs cargo-fuzz (`scripts/install-deps` installs it) and a nightly toolchain (or,
//! failing that, `RUSTC_BOOTSTRAP=1` on stable). `ORIEL_FUZZ_SECONDS` sets the time per
//! target (default 15).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// `cargo fuzz …` in the fuzz crate, on nightly when installed.
fn cargo_fuzz(dir: &Path) -> Command {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = Command::new("cargo");
    if nightly {
        cmd.arg("+nightly");
    } else {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    // What the outer `cargo test` set must not steer the inner build.
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(dir).arg("fuzz");
    cmd
}

fn targets(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("fuzz_targets"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_string())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_fuzz_target_runs_clean_from_its_seeds() {
    let dir = fuzz_dir();
    let installed = cargo_fuzz(&dir).arg("--version").output();
    assert!(
        installed.is_ok_and(|o| o.status.success()),
        "cargo-fuzz is missing: run ./scripts/install-deps"
    );
    let seconds = std::env::var("ORIEL_FUZZ_SECONDS").unwrap_or_else(|_| "15".into());
    let built = cargo_fuzz(&dir).arg("build").output().unwrap();
    assert!(
        built.status.success(),
        "the fuzz targets do not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let names = targets(&dir);
    assert!(names.len() >= 8, "{names:?}");
    for target in names {
        let corpus = dir.join("corpus").join(&target);
        let seeds = dir.join("seeds").join(&target);
        std::fs::create_dir_all(&corpus).unwrap();
        let mut run = cargo_fuzz(&dir);
        run.args(["run", &target]).arg(&corpus);
        if seeds.exists() {
            run.arg(&seeds);
        }
        let out = run
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=4096",
            ])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "fuzz target {target} failed (its input is under fuzz/artifacts/{target}):\n{}",
            &log[log.len().saturating_sub(8000)..]
        );
        let done = log
            .lines()
            .rev()
            .find(|l| l.starts_with("Done "))
            .unwrap_or("?");
        // On the process's stderr, which `cargo test` shows: what each target did.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "fuzz {target}: {done}");
    }
}
