//! Assembles the tiny test guest with nasm (installed by scripts/install-deps, as openh264
//! uses it too). Without nasm the VMM still builds; the tiny guest then reports that it
//! was not assembled.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "guest/tiny.asm";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("tiny.bin");
    let assembled = Command::new("nasm")
        .args(["-f", "bin", "-o"])
        .arg(&out)
        .arg(source)
        .status();
    match assembled {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("nasm failed on {source}: {status}"),
        Err(e) => {
            println!("cargo:warning=nasm not found ({e}): the tiny test guest is not built; run scripts/install-deps");
            std::fs::write(&out, []).unwrap();
        }
    }
}
