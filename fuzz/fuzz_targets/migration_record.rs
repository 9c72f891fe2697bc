//! A live migration's records from another host: any bytes must be refused with an
//! error (or accepted only when every page and the CPU state fit the machine), never
//! panic or allocate without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oriel_vmm::{Vm, VmConfig};

fuzz_target!(|data: &[u8]| {
    let mut config = VmConfig::tiny(64, 64);
    config.memory_mib = 4;
    let _ = Vm::check_migration_record(&config, data);
});
