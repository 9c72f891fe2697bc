//! Shared by the VMM tests.
#![allow(dead_code)] // each test binary uses a part

use std::time::{Duration, Instant};

use oriel_vmm::Vm;

/// Whether KVM tests run here (see [`oriel_vmm::kvm_tests_enabled`]).
pub(crate) fn kvm_available() -> bool {
    oriel_vmm::kvm_tests_enabled("a VMM test")
}

pub(crate) const KEY_A: u16 = 30;
pub(crate) const KEY_Z: u16 = 44;
/// The tests' screen size.
pub(crate) const WIDTH: u32 = 320;
pub(crate) const HEIGHT: u32 = 240;

/// A key pressed and released.
pub(crate) fn tap(vm: &Vm, key: u16) {
    vm.key(key, true);
    vm.key(key, false);
}

/// Waits until the console log holds `text` (the guest echoes keys after drawing them).
pub(crate) fn wait_console(vm: &Vm, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !vm.console().tail(1 << 20).contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} on the console: {}",
            vm.console().tail(2000)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Resident memory of this process, bytes.
pub(crate) fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}
