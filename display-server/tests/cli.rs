//! The binary starts and documents itself (this test also makes `cargo test --workspace`
//! build the binary the end-to-end tests run).

#[test]
fn help_lists_the_options() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oriel-display-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--desktop",
        "--frame-window",
        "--metrics-listen",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}
