//! The tiny test guest on real KVM: boot, framebuffer, PS/2 keys, dirty logging, reboot,
//! power-off, reset, many VMs. Skipped, with the reason printed, where /dev/kvm is missing.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use oriel_vmm::tiny::*;
use oriel_vmm::{Vm, VmConfig, VmState};

const KEY_A: u16 = 30;
const KEY_ESC: u16 = 1;
const KEY_DELETE: u16 = 111;

fn boot(width: u32, height: u32) -> Vm {
    let vm = Vm::start(VmConfig::tiny(width, height)).unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    vm
}

fn tap(vm: &Vm, key: u16) {
    vm.key(key, true);
    vm.key(key, false);
}

#[test]
fn boots_and_draws_its_test_picture() {
    if !kvm_available() {
        return;
    }
    let vm = boot(320, 240);
    let pixels = vm.framebuffer().read_all();
    assert_eq!(pixels[0], BACKGROUND);
    for (x, colour) in [
        (0, 0xff0000),
        (40, 0x00ff00),
        (80, 0x0000ff),
        (120, 0xffff00),
    ] {
        assert_eq!(pixels[(8 * 320 + x) as usize], colour, "bar at x={x}");
        assert_eq!(pixels[(23 * 320 + x + 31) as usize], colour);
        assert_eq!(pixels[(24 * 320 + x) as usize], BACKGROUND);
    }
    assert_eq!(pixels[239 * 320 + 319], BACKGROUND);
    assert_eq!(
        pixels[319], BACKGROUND,
        "no mouse marker before mouse input"
    );
    assert!(vm.console().tail(1000).contains("oriel tiny guest: ready"));
    assert_eq!(vm.state(), VmState::Running);
}

#[test]
fn keys_reach_the_guest_and_dirty_logging_reports_exactly_the_pages_it_wrote() {
    if !kvm_available() {
        return;
    }
    let (width, height) = (320, 240);
    let vm = boot(width, height);
    let fb = vm.framebuffer();
    let total_pages = fb.page_count();
    let boot_pages = fb.take_dirty_pages().unwrap();
    let painted = (width * height * 4).div_ceil(4096);
    assert_eq!(
        u32::try_from(boot_pages.len()).unwrap(),
        painted,
        "the boot fill writes every page"
    );
    assert!(
        fb.take_dirty_pages().unwrap().is_empty(),
        "an idle guest writes nothing"
    );

    for (cell, key, code, echo) in [(0, KEY_A, 0x1e_u8, "key 1e"), (1, 44, 0x2c, "key 2c")] {
        tap(&vm, key);
        wait_console(&vm, echo);
        let pixels = fb.read_all();
        let glyph = glyph(width, cell, code);
        for &(x, y, p) in &glyph {
            assert_eq!(pixels[(y * width + x) as usize], p, "glyph pixel ({x},{y})");
        }
        let expected: BTreeSet<u32> = glyph
            .iter()
            .map(|&(x, y, _)| (y * width * 4 + x * 4) / 4096)
            .collect();
        let dirty: BTreeSet<u32> = fb.take_dirty_pages().unwrap().into_iter().collect();
        assert_eq!(dirty, expected, "pages of cell {cell} (of {total_pages})");
    }
}

#[test]
fn reset_returns_the_vm_to_its_initial_state() {
    if !kvm_available() {
        return;
    }
    let vm = boot(256, 128);
    let initial = vm.framebuffer().read_all();
    tap(&vm, KEY_A);
    wait_console(&vm, "key 1e");
    assert_ne!(vm.framebuffer().read_all(), initial);
    vm.reset().unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    assert_eq!(vm.boots(), 2);
    assert_eq!(vm.framebuffer().read_all(), initial);
    // Guest memory is back to its power-on contents too: the key count restarted, so
    // the next glyph lands in cell 0 again.
    tap(&vm, 44);
    wait_console(&vm, "key 2c");
    let pixels = vm.framebuffer().read_all();
    for (x, y, p) in glyph(256, 0, 0x2c) {
        assert_eq!(pixels[(y * 256 + x) as usize], p);
    }
}

#[test]
fn the_guest_reboots_and_switches_itself_off() {
    if !kvm_available() {
        return;
    }
    let vm = boot(256, 128);
    let initial = vm.framebuffer().read_all();
    tap(&vm, KEY_A);
    wait_console(&vm, "key 1e");
    tap(&vm, KEY_DELETE); // the tiny guest pulses the i8042 reset line
    let deadline = Instant::now() + Duration::from_secs(60);
    while vm.boots() < 2 || vm.ready_after().is_none() {
        assert!(Instant::now() < deadline, "no reboot: {:?}", vm.state());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(vm.framebuffer().read_all(), initial);
    assert_eq!(vm.state(), VmState::Running);
    tap(&vm, KEY_ESC);
    while vm.state() != VmState::PoweredOff {
        assert!(Instant::now() < deadline, "no power-off: {:?}", vm.state());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn ten_vms_at_once_each_with_its_own_screen_and_keyboard() {
    if !kvm_available() {
        return;
    }
    let vms: Vec<Vm> = (0..10)
        .map(|_| Vm::start(VmConfig::tiny(128, 96)).unwrap())
        .collect();
    for vm in &vms {
        vm.wait_ready(Duration::from_secs(60)).unwrap();
    }
    let initial = vms[0].framebuffer().read_all();
    tap(&vms[3], KEY_A);
    wait_console(&vms[3], "key 1e");
    for (i, vm) in vms.iter().enumerate() {
        let changed = vm.framebuffer().read_all() != initial;
        assert_eq!(changed, i == 3, "VM {i}");
    }
}

#[test]
fn a_paused_vm_runs_nothing_until_resumed() {
    if !kvm_available() {
        return;
    }
    let vm = boot(128, 96);
    vm.pause();
    assert_eq!(vm.state(), VmState::Paused);
    tap(&vm, KEY_A);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !vm.console().tail(4096).contains("key 1e"),
        "a paused guest ran"
    );
    vm.resume();
    wait_console(&vm, "key 1e");
}

#[test]
fn bad_configurations_are_refused() {
    for config in [
        VmConfig {
            vcpus: 0,
            ..VmConfig::tiny(128, 96)
        },
        VmConfig {
            vcpus: 17,
            ..VmConfig::tiny(128, 96)
        },
        VmConfig {
            memory_mib: 97 * 1024,
            ..VmConfig::tiny(128, 96)
        },
        VmConfig::tiny(10, 96),
        VmConfig::tiny(100_000, 96),
    ] {
        assert!(Vm::start(config.clone()).is_err(), "{config:?}");
    }
}

#[test]
fn mouse_packets_reach_the_guest() {
    if !kvm_available() {
        return;
    }
    let vm = boot(128, 96);
    let corner = |vm: &Vm| vm.framebuffer().read_all()[127];
    assert_eq!(corner(&vm), BACKGROUND);
    vm.mouse(5, -3, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while corner(&vm) == BACKGROUND {
        assert!(
            Instant::now() < deadline,
            "no mouse bytes reached the guest"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
