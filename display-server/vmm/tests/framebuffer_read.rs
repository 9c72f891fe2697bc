//! How long capture takes to copy a whole 1024x768 framebuffer out of the tiny guest's
//! slot, row by row as `KvmSource::poll` does. Ignored by default (timing figures only;
//! it asserts nothing about them); run with
//! `cargo test --release -p oriel-vmm --test framebuffer_read -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use oriel_vmm::{Vm, VmConfig};

#[test]
#[ignore = "timing figures only; run by hand with --release --ignored --nocapture"]
fn full_frame_read_timing() {
    if !kvm_available() {
        return;
    }
    let vm = Vm::start(VmConfig::tiny(1024, 768)).unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    vm.pause();
    let fb = vm.framebuffer();
    let format = fb.format();
    let mut row = vec![0u32; format.width as usize];
    let read_frame = |row: &mut [u32]| {
        for y in 0..format.height {
            fb.read_row(y, 0, format.width, row);
        }
    };
    for _ in 0..10 {
        read_frame(&mut row);
    }
    let frames = 2000;
    let mut samples = Vec::with_capacity(frames);
    for _ in 0..frames {
        let t = Instant::now();
        read_frame(&mut row);
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(&row);
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!(
        "full 1024x768x4 frame, row by row: median {median:.1} us, p10 {:.1} us, p90 {:.1} us ({:.2} GB/s at the median); resident {} KiB",
        samples[samples.len() / 10],
        samples[samples.len() * 9 / 10],
        format.bytes() as f64 / median / 1e3,
        vm.resident_bytes() >> 10,
    );
}
