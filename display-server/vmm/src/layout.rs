//! Guest physical memory layout, PC style: RAM from 0 up to the 32-bit hole, the
//! framebuffer in the hole (a slot of its own, not RAM, not in the e820 map), and the
//! rest of RAM from 4 GiB up.

/// The boot GDT.
pub const GDT: u64 = 0x500;
/// Linux's zero page (`boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Identity page tables: PML4, one PDPT and four page directories of 2 MiB pages cover
/// the low 4 GiB, framebuffer included.
pub const PML4: u64 = 0x9000;
pub const PDPT: u64 = 0xa000;
pub const PAGE_DIRECTORIES: u64 = 0xb000;
/// The initial stack grows down from here.
pub const BOOT_STACK: u64 = 0x8_0000;
/// The kernel command line.
pub const CMDLINE: u64 = 0x2_0000;
pub const CMDLINE_MAX: usize = 4096;
/// Where kernels and the tiny guest are loaded (1 MiB).
pub const KERNEL: u64 = 0x10_0000;
/// End of the low legacy area (EBDA, VGA, BIOS): not RAM for the e820 map.
pub const LOW_RAM_END: u64 = 0x9_fc00;

/// RAM stops here below 4 GiB; above is the hole for the framebuffer and MMIO.
pub const HOLE_START: u64 = 0xc000_0000;
pub const FOUR_GIB: u64 = 1 << 32;
/// The linear framebuffer.
pub const FRAMEBUFFER: u64 = 0xe000_0000;
/// Largest framebuffer: up to the end of the hole's first 256 MiB.
pub const FRAMEBUFFER_MAX: u64 = 0x1000_0000;

pub const PAGE_SIZE: u64 = 4096;

const _: () = assert!(FRAMEBUFFER >= HOLE_START && FRAMEBUFFER + FRAMEBUFFER_MAX <= FOUR_GIB);

/// Guest RAM as (guest address, length) ranges for `memory` bytes.
pub fn ram_ranges(memory: u64) -> Vec<(u64, u64)> {
    if memory <= HOLE_START {
        vec![(0, memory)]
    } else {
        vec![(0, HOLE_START), (FOUR_GIB, memory - HOLE_START)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_hole() {
        assert_eq!(ram_ranges(1 << 30), [(0, 1 << 30)]);
        let big = 96 << 30;
        let ranges = ram_ranges(big);
        assert_eq!(ranges, [(0, HOLE_START), (FOUR_GIB, big - HOLE_START)]);
        assert_eq!(ranges.iter().map(|r| r.1).sum::<u64>(), big);
    }
}
