//! A VM saved and restored continues exactly where it was: the tiny guest's key count,
//! its screen and a key still queued in the i8042 survive. A state that does not fit,
//! comes from a newer format or is damaged is refused with a clear error.

mod common;

use std::time::Duration;

use common::*;
use oriel_vmm::tiny::*;
use oriel_vmm::{Vm, VmConfig, VmState, VmmError};

const KEY_B: u16 = 48;

fn assert_glyph(vm: &Vm, cell: u32, code: u8) {
    let pixels = vm.framebuffer().read_all();
    for (x, y, p) in glyph(WIDTH, cell, code) {
        assert_eq!(
            pixels[(y * WIDTH + x) as usize],
            p,
            "cell {cell}, code {code:#x}, pixel ({x},{y})"
        );
    }
}

#[test]
fn a_restored_vm_continues_where_it_was() {
    if !kvm_available() {
        return;
    }
    let config = VmConfig::tiny(WIDTH, HEIGHT);
    let vm = Vm::start(config.clone()).unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    tap(&vm, KEY_A);
    wait_console(&vm, "key 1e");
    // A key typed while the VM is paused waits in the i8042 (and its interrupt in the
    // PIC): it must be delivered once, by the restored VM.
    vm.pause();
    tap(&vm, KEY_Z);
    let screen = vm.framebuffer().read_all();
    let state = vm.save().unwrap();
    assert_eq!(
        vm.state(),
        VmState::Paused,
        "a save leaves a paused VM paused"
    );
    drop(vm);

    let restored = Vm::restore(config, &state).unwrap();
    assert_eq!(restored.state(), VmState::Running);
    wait_console(&restored, "key 2c");
    assert!(
        !restored.console().tail(1 << 16).contains("key 1e"),
        "the key typed before the save is not replayed"
    );
    // The screen it had, plus the queued key in the next cell: the key count survived.
    let now = restored.framebuffer().read_all();
    let changed = screen.iter().zip(&now).filter(|(a, b)| a != b).count();
    assert!(changed > 0 && changed <= 64, "{changed} pixels changed");
    assert_glyph(&restored, 0, 0x1e);
    assert_glyph(&restored, 1, 0x2c);
    tap(&restored, KEY_B);
    wait_console(&restored, "key 30");
    assert_glyph(&restored, 2, 0x30);

    // It can be saved again, running, and that state restores too.
    let again = restored.save().unwrap();
    assert_eq!(restored.state(), VmState::Running);
    drop(restored);
    let third = Vm::restore(VmConfig::tiny(WIDTH, HEIGHT), &again).unwrap();
    tap(&third, KEY_A);
    wait_console(&third, "key 1e");
    assert_glyph(&third, 3, 0x1e);
}

#[test]
fn a_machine_of_two_vcpus_is_saved_and_restored_whole() {
    if !kvm_available() {
        return;
    }
    // The second vCPU waits for INIT/SIPI in KVM: its MP state must come back as it was.
    let config = VmConfig {
        vcpus: 2,
        ..VmConfig::tiny(WIDTH, HEIGHT)
    };
    let vm = Vm::start(config.clone()).unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    tap(&vm, KEY_A);
    wait_console(&vm, "key 1e");
    let state = vm.save().unwrap();
    drop(vm);
    let one_vcpu = VmConfig::tiny(WIDTH, HEIGHT);
    assert!(matches!(
        Vm::restore(one_vcpu, &state),
        Err(VmmError::State(why)) if why.contains("2 vCPUs")
    ));
    let restored = Vm::restore(config, &state).unwrap();
    tap(&restored, KEY_Z);
    wait_console(&restored, "key 2c");
    assert_glyph(&restored, 1, 0x2c);
}

#[test]
fn states_that_do_not_fit_are_refused_clearly() {
    if !kvm_available() {
        return;
    }
    let config = VmConfig::tiny(WIDTH, HEIGHT);
    let vm = Vm::start(config.clone()).unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    let state = vm.save().unwrap();
    drop(vm);
    let refused = |bytes: &[u8], config: VmConfig| match Vm::restore(config, bytes) {
        Err(VmmError::State(why)) => why,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a bad state was accepted"),
    };
    assert!(refused(b"hello", config.clone()).contains("not a saved Oriel VM state"));
    let mut newer = state.clone();
    newer[8..12].copy_from_slice(&99u32.to_le_bytes());
    assert!(refused(&newer, config.clone()).contains("newer Oriel"));
    assert!(refused(&state[..state.len() - 1], config.clone()).contains("corrupt"));
    let mut longer = state.clone();
    longer.push(0);
    assert!(refused(&longer, config.clone()).contains("left over"));
    let mut garbled = state.clone();
    for b in &mut garbled[16..400] {
        *b = 0xff;
    }
    assert!(refused(&garbled, config.clone()).contains("corrupt"));
    assert!(refused(&state, VmConfig::tiny(640, 480)).contains("corrupt"));
    let mut bigger = config.clone();
    bigger.memory_mib *= 2;
    assert!(refused(&state, bigger).contains("corrupt"));
    // Every prefix is refused without a panic.
    for cut in (0..state.len()).step_by(state.len() / 97 + 1) {
        assert!(Vm::restore(config.clone(), &state[..cut]).is_err());
    }
}
