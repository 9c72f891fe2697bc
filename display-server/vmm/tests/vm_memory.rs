//! Memory: a VM configured far larger than the host starts (only touched pages cost),
//! and destroying a VM gives its memory back. One test in its own process, so the
//! resident-size figures are this test's alone.

mod common;

use std::time::Duration;

use common::*;
use oriel_vmm::{Vm, VmConfig};
use vm_memory::{Bytes, GuestAddress};

#[test]
fn big_vms_cost_only_touched_memory_and_destroy_frees_it() {
    if !kvm_available() {
        return;
    }
    let before = rss();
    let big = Vm::start(VmConfig {
        vcpus: 16,
        memory_mib: 96 * 1024,
        ..VmConfig::tiny(320, 240)
    })
    .unwrap();
    big.wait_ready(Duration::from_secs(60)).unwrap();
    // Guest RAM above 4 GiB is there and writable.
    big.with_ram(|ram| {
        ram.write_obj(0x1234_5678u32, GuestAddress(90 << 30))
            .unwrap();
        assert_eq!(
            ram.read_obj::<u32>(GuestAddress(90 << 30)).unwrap(),
            0x1234_5678
        );
    });
    let grown = rss().saturating_sub(before);
    eprintln!("16 vCPUs, 96 GiB: resident growth {} MiB", grown >> 20);
    assert!(grown < 256 << 20, "a 96 GiB VM made {grown} bytes resident");
    drop(big);

    let vm = Vm::start(VmConfig {
        memory_mib: 1024,
        ..VmConfig::tiny(320, 240)
    })
    .unwrap();
    vm.wait_ready(Duration::from_secs(60)).unwrap();
    let touched = 512usize << 20;
    let base = rss();
    vm.with_ram(|ram| {
        let chunk = vec![0x55u8; 1 << 20];
        for mib in 0..(touched >> 20) {
            ram.write_slice(&chunk, GuestAddress(((64 + mib) as u64) << 20))
                .unwrap();
        }
    });
    let with_vm = rss();
    assert!(
        with_vm > base + (touched as u64) * 9 / 10,
        "touched memory is resident"
    );
    drop(vm);
    let after = rss();
    eprintln!(
        "touched {} MiB: resident {} MiB with the VM, {} MiB after destroy",
        touched >> 20,
        with_vm >> 20,
        after >> 20
    );
    assert!(
        after + (touched as u64) * 9 / 10 < with_vm,
        "destroy gave the memory back"
    );
}
