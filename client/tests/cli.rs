//! The binary documents itself and refuses bad arguments clearly (this test also makes
//! `cargo test --workspace` build the binary the end-to-end tests run).

use std::process::Command;

#[test]
fn help_lists_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_oriel"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connect") && text.contains("demo"));
}

#[test]
fn bad_fingerprint_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_oriel"))
        .args([
            "connect",
            "127.0.0.1:1",
            "--headless",
            "--fingerprint",
            "xyz",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a SHA-256 fingerprint"));
}
