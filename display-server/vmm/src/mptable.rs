//! The Intel MultiProcessor table: how a guest without ACPI learns its CPUs (one entry
//! per vCPU, by APIC id), the ISA bus and the IOAPIC with the ISA interrupts wired to its
//! pins. Without it Linux runs on one CPU and on the PIC alone.
//!
//! Layout (Intel MP spec 1.4): a floating pointer at the start of the EBDA (the last KiB
//! of base memory, where Linux looks), followed by the configuration table.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout;
use crate::VmmError;

/// KVM's in-kernel local APIC and IOAPIC, at their PC addresses.
const LOCAL_APIC: u32 = 0xfee0_0000;
const IOAPIC: u32 = 0xfec0_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const ISA_IRQS: u8 = 16;

/// Writes the table for `vcpus` CPUs at [`layout::LOW_RAM_END`].
pub(crate) fn write(memory: &GuestMemoryMmap, vcpus: u8) -> Result<(), VmmError> {
    let table_at = u32::try_from(layout::LOW_RAM_END + 16)
        .map_err(|_| VmmError::Config("the MP table must lie below 4 GiB"))?;
    let ioapic_id = vcpus; // after the CPUs' APIC ids
    let mut entries: Vec<u8> = Vec::new();
    let mut count = 0u16;
    for cpu in 0..vcpus {
        let flags = 1 | if cpu == 0 { 2 } else { 0 }; // enabled, boot processor
        entries.extend_from_slice(&[0, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&0x0000_0600u32.to_le_bytes()); // family 6
        entries.extend_from_slice(&0x0000_0201u32.to_le_bytes()); // FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC.to_le_bytes());
    count += 1;
    // ISA IRQ n reaches IOAPIC pin n (KVM's default GSI routing), edge, active high.
    for irq in 0..ISA_IRQS {
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0 takes the PIC (ExtINT), LINT1 is NMI, on every local APIC.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    let table_len = u16::try_from(44 + entries.len())
        .map_err(|_| VmmError::Config("too many vCPUs for the MP table"))?;
    table.extend_from_slice(&table_len.to_le_bytes());
    table.push(4); // spec 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"ORIEL   ");
    table.extend_from_slice(b"MICROVM     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&LOCAL_APIC.to_le_bytes());
    table.extend_from_slice(&[0, 0, 0, 0]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut pointer = Vec::with_capacity(16);
    pointer.extend_from_slice(b"_MP_");
    pointer.extend_from_slice(&table_at.to_le_bytes());
    pointer.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // 16 bytes, spec 1.4
    pointer[10] = checksum(&pointer);

    if 16 + table.len() > 1024 {
        return Err(VmmError::Config("too many vCPUs for the MP table"));
    }
    memory
        .write_slice(&pointer, GuestAddress(layout::LOW_RAM_END))
        .map_err(VmmError::guest_write)?;
    memory
        .write_slice(&table, GuestAddress(u64::from(table_at)))
        .map_err(VmmError::guest_write)
}

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_sum_to_zero_and_list_every_cpu() {
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write(&memory, 16).unwrap();
        let mut pointer = [0u8; 16];
        memory
            .read_slice(&mut pointer, GuestAddress(layout::LOW_RAM_END))
            .unwrap();
        assert_eq!(&pointer[..4], b"_MP_");
        assert_eq!(pointer.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let at = u32::from_le_bytes(pointer[4..8].try_into().unwrap());
        let mut header = [0u8; 44];
        memory
            .read_slice(&mut header, GuestAddress(at.into()))
            .unwrap();
        let len = u16::from_le_bytes([header[4], header[5]]) as usize;
        let mut table = vec![0u8; len];
        memory
            .read_slice(&mut table, GuestAddress(at.into()))
            .unwrap();
        assert_eq!(&table[..4], b"PCMP");
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let cpus = table[44..]
            .chunks(20)
            .take(16)
            .filter(|e| e[0] == 0)
            .count();
        assert_eq!(cpus, 16);
    }
}
