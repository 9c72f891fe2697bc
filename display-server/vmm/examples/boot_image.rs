//! Boots an image of a store and follows its serial console, writing the framebuffer to
//! a PPM file every few seconds: a way to watch a guest boot without a display server.
//!
//! cargo run --release -p oriel-vmm --example boot_image -- STORE IMAGE [SECONDS] [OUT.ppm] [EXTRA KERNEL ARGS]

// A program: its output is what it prints.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::{Duration, Instant};

use oriel_vmm::image::Image;
use oriel_vmm::{Boot, Vm, VmConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: boot_image STORE IMAGE [SECONDS] [OUT.ppm] [EXTRA KERNEL ARGS]");
        std::process::exit(2);
    }
    let mut image = Image::open(args[1].as_ref(), &args[2]).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(60);
    let out = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "framebuffer.ppm".into());
    if let (Some(extra), Boot::Linux(linux)) = (args.get(5), &mut image.boot) {
        linux.cmdline.push(' ');
        linux.cmdline.push_str(extra);
    }
    let vm = Vm::start(VmConfig {
        vcpus: image.vcpus,
        memory_mib: image.memory_mib,
        width: 1024,
        height: 768,
        boot: image.boot,
    })
    .unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let start = Instant::now();
    let mut printed = 0u64;
    let mut last_dump = Instant::now();
    let mut state = vm.state();
    while start.elapsed() < Duration::from_secs(seconds) {
        if vm.state() != state {
            state = vm.state();
            eprintln!("\n[{:?}] state {state:?}", start.elapsed());
            if !matches!(
                state,
                oriel_vmm::VmState::Running | oriel_vmm::VmState::Paused
            ) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let console = vm.console();
        let total = console.total();
        if total > printed {
            let tail = console.tail(usize::try_from(total - printed).unwrap_or(usize::MAX));
            print!("{tail}");
            std::io::stdout().flush().ok();
            printed = total;
        }
        if last_dump.elapsed() > Duration::from_secs(10) {
            dump(&vm, &out);
            last_dump = Instant::now();
        }
    }
    dump(&vm, &out);
    eprintln!(
        "\n[{:?}] state {:?}, framebuffer in {out}",
        start.elapsed(),
        vm.state()
    );
}

fn dump(vm: &Vm, path: &str) {
    let f = vm.format();
    let pixels = vm.framebuffer().read_all();
    let mut ppm = format!("P6\n{} {}\n255\n", f.width, f.height).into_bytes();
    for p in pixels {
        let [b, g, r, _] = p.to_le_bytes(); // 0x00RRGGBB
        ppm.extend_from_slice(&[r, g, b]);
    }
    let _ = std::fs::write(path, ppm);
}
