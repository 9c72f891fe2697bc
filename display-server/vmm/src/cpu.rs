//! vCPU state at power-on: 64-bit long mode with identity paging (as the Linux 64-bit
//! boot protocol and the tiny guest expect), CPUID from KVM_GET_SUPPORTED_CPUID with
//! each vCPU's APIC id, and the local APIC wired for the legacy PIC (LINT0 ExtINT,
//! LINT1 NMI).

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, CpuId, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout;
use crate::VmmError;

/// Where a vCPU starts and what it finds in its registers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Entry {
    pub rip: u64,
    pub rsp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
}

const CODE_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;

/// GDT entries: null, 64-bit code, data, TSS (VM entry wants a usable TR).
const GDT_ENTRIES: [u64; 4] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x0080_8b00_0000_ffff,
];

/// The GDT's limit: its size in bytes minus one.
#[expect(
    clippy::cast_possible_truncation,
    reason = "four 8-byte descriptors, 31 bytes"
)]
const GDT_LIMIT: u16 = (GDT_ENTRIES.len() * 8 - 1) as u16;

/// Writes the boot GDT and the identity page tables (2 MiB pages, low 4 GiB).
pub(crate) fn write_boot_tables(memory: &GuestMemoryMmap) -> Result<(), VmmError> {
    for (i, entry) in GDT_ENTRIES.iter().enumerate() {
        memory
            .write_obj(*entry, GuestAddress(layout::GDT + i as u64 * 8))
            .map_err(VmmError::guest_write)?;
    }
    memory
        .write_obj(layout::PDPT | 0x3, GuestAddress(layout::PML4))
        .map_err(VmmError::guest_write)?;
    for directory in 0..4u64 {
        let pd = layout::PAGE_DIRECTORIES + directory * 0x1000;
        memory
            .write_obj(pd | 0x3, GuestAddress(layout::PDPT + directory * 8))
            .map_err(VmmError::guest_write)?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|i| (((directory << 30) + (i << 21)) | 0x83).to_le_bytes())
            .collect();
        memory
            .write_slice(&entries, GuestAddress(pd))
            .map_err(VmmError::guest_write)?;
    }
    Ok(())
}

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Puts a vCPU in its power-on state for this VM: CPUID, MSRs, FPU, long mode, LAPIC,
/// and (for the boot vCPU) the entry registers. Application processors wait for the
/// guest's INIT/SIPI in KVM, as on a PC.
pub(crate) fn configure(
    vcpu: &VcpuFd,
    index: u8,
    cpuid: &CpuId,
    entry: Option<&Entry>,
) -> Result<(), VmmError> {
    set_cpuid(vcpu, index, cpuid)?;

    let msrs = Msrs::from_entries(&[
        // IA32_MISC_ENABLE: fast strings.
        kvm_msr_entry {
            index: 0x1a0,
            data: 1,
            ..Default::default()
        },
        kvm_msr_entry {
            index: 0x10,
            data: 0,
            ..Default::default()
        }, // TSC
        kvm_msr_entry {
            index: 0x174,
            data: 0,
            ..Default::default()
        }, // SYSENTER_CS
        kvm_msr_entry {
            index: 0x175,
            data: 0,
            ..Default::default()
        },
        kvm_msr_entry {
            index: 0x176,
            data: 0,
            ..Default::default()
        },
        kvm_msr_entry {
            index: 0xc000_0081,
            data: 0,
            ..Default::default()
        }, // STAR
        kvm_msr_entry {
            index: 0xc000_0082,
            data: 0,
            ..Default::default()
        }, // LSTAR
        kvm_msr_entry {
            index: 0xc000_0084,
            data: 0,
            ..Default::default()
        }, // FMASK
        kvm_msr_entry {
            index: 0xc000_0102,
            data: 0,
            ..Default::default()
        }, // KERNEL_GS_BASE
    ])
    .map_err(|_| VmmError::Config("MSR list"))?;
    vcpu.set_msrs(&msrs).map_err(VmmError::kvm("set MSRs"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(VmmError::kvm("set FPU"))?;

    let mut lapic = vcpu.get_lapic().map_err(VmmError::kvm("get LAPIC"))?;
    set_lapic_register(&mut lapic.regs, 0x350, 0x700); // LINT0: ExtINT
    set_lapic_register(&mut lapic.regs, 0x360, 0x400); // LINT1: NMI
    vcpu.set_lapic(&lapic).map_err(VmmError::kvm("set LAPIC"))?;

    let Some(entry) = entry else {
        return Ok(());
    };
    let mut sregs = vcpu.get_sregs().map_err(VmmError::kvm("get sregs"))?;
    sregs.gdt.base = layout::GDT;
    sregs.gdt.limit = GDT_LIMIT;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = segment(CODE_SELECTOR, 0xb, true);
    let data = segment(DATA_SELECTOR, 0x3, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        base: 0,
        limit: 0x67,
        selector: TSS_SELECTOR,
        type_: 0xb,
        present: 1,
        s: 0,
        ..Default::default()
    };
    sregs.cr3 = layout::PML4;
    sregs.cr4 = 0x20; // PAE
    sregs.cr0 = 0x8000_0033; // PG | NE | ET | MP | PE
    sregs.efer = 0x500; // LME | LMA
    vcpu.set_sregs(&sregs).map_err(VmmError::kvm("set sregs"))?;

    let regs = kvm_regs {
        rflags: 0x2,
        rip: entry.rip,
        rsp: entry.rsp,
        rbp: entry.rsp,
        rsi: entry.rsi,
        rdi: entry.rdi,
        rdx: entry.rdx,
        rcx: entry.rcx,
        r8: entry.r8,
        r9: entry.r9,
        r10: entry.r10,
        ..Default::default()
    };
    vcpu.set_regs(&regs)
        .map_err(VmmError::kvm("set registers"))?;
    Ok(())
}

/// This host's CPUID for vCPU `index` (its APIC id): the first thing a vCPU is given,
/// at power-on and when it continues from a saved state.
pub(crate) fn set_cpuid(vcpu: &VcpuFd, index: u8, cpuid: &CpuId) -> Result<(), VmmError> {
    let mut cpuid = cpuid.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            // Initial APIC id and logical processor count.
            1 => {
                e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(index) << 24);
            }
            // x2APIC topology: this vCPU's id.
            0xb | 0x1f => e.edx = u32::from(index),
            _ => {}
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(VmmError::kvm("set CPUID"))
}

fn set_lapic_register(regs: &mut [std::os::raw::c_char; 1024], offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *byte as std::os::raw::c_char;
    }
}
