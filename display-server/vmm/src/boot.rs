//! Loading what a VM boots into guest RAM: the tiny test guest (a flat 64-bit binary), or
//! a Linux kernel (ELF vmlinux or bzImage) with its initramfs, command line and zero page
//! (e820 map, and `screen_info` describing the framebuffer so vesafb binds to it).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{self, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::cpu::Entry;
use crate::layout;
use crate::memory::FramebufferFormat;
use crate::VmmError;

/// What a VM runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// The tiny test guest built into this crate.
    Tiny,
    /// The tiny guest that also writes `mib_per_s` of its RAM every second (a page at a
    /// time, 100 times a second), a memory-writing workload for migration.
    TinyDirtying {
        mib_per_s: u32,
    },
    Linux(LinuxBoot),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxBoot {
    /// An uncompressed vmlinux (ELF) or a bzImage.
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
}

/// The tiny guest, assembled by build.rs (empty when nasm was missing at build time).
pub const TINY_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tiny.bin"));

const E820_RAM: u32 = 1;
const VIDEO_TYPE_VLFB: u8 = 0x23;
const VIDEO_CAPABILITY_64BIT_BASE: u32 = 1 << 1;

/// Puts `boot` into `memory`; returns where the boot vCPU starts.
pub fn load(
    boot: &Boot,
    memory: &GuestMemoryMmap,
    memory_bytes: u64,
    vcpus: u8,
    fb: FramebufferFormat,
) -> Result<Entry, VmmError> {
    match boot {
        Boot::Tiny => load_tiny(memory, fb, 0, memory_bytes),
        Boot::TinyDirtying { mib_per_s } => load_tiny(memory, fb, *mib_per_s, memory_bytes),
        Boot::Linux(linux) => {
            crate::mptable::write(memory, vcpus)?;
            load_linux(linux, memory, memory_bytes, fb)
        }
    }
}

/// Where the tiny guest's dirtying window starts: above its code, stack and page tables.
const TINY_DIRTY_START: u64 = 4 << 20;

fn load_tiny(
    memory: &GuestMemoryMmap,
    fb: FramebufferFormat,
    dirty_mib_per_s: u32,
    memory_bytes: u64,
) -> Result<Entry, VmmError> {
    if TINY_GUEST.is_empty() {
        return Err(VmmError::Boot(
            "the tiny guest was not assembled: nasm was missing when oriel-vmm was built (run scripts/install-deps, then rebuild)".into(),
        ));
    }
    memory
        .write_slice(TINY_GUEST, GuestAddress(layout::KERNEL))
        .map_err(VmmError::guest_write)?;
    let dirty_end = memory_bytes.min(layout::HOLE_START);
    if dirty_mib_per_s > 0 && dirty_end <= TINY_DIRTY_START {
        return Err(VmmError::Config(
            "a dirtying tiny guest needs more than 4 MiB of RAM",
        ));
    }
    Ok(Entry {
        rip: layout::KERNEL,
        rsp: layout::BOOT_STACK,
        rdi: layout::FRAMEBUFFER,
        rsi: u64::from(fb.width),
        rdx: u64::from(fb.height),
        rcx: u64::from(fb.stride),
        // 256 pages a MiB, 100 ticks a second.
        r8: (u64::from(dirty_mib_per_s) * 256).div_ceil(100),
        r9: TINY_DIRTY_START,
        r10: dirty_end.max(TINY_DIRTY_START),
    })
}

fn load_linux(
    linux: &LinuxBoot,
    memory: &GuestMemoryMmap,
    memory_bytes: u64,
    fb: FramebufferFormat,
) -> Result<Entry, VmmError> {
    let open = |path: &PathBuf| {
        File::open(path).map_err(|e| VmmError::Boot(format!("cannot open {}: {e}", path.display())))
    };
    let mut kernel = open(&linux.kernel)?;
    let mut magic = [0u8; 4];
    kernel
        .read_exact(&mut magic)
        .map_err(|e| VmmError::Boot(format!("cannot read {}: {e}", linux.kernel.display())))?;
    let start = Some(GuestAddress(layout::KERNEL));
    let (loaded, entry) = if magic == *b"\x7fELF" {
        let loaded = loader::Elf::load(memory, None, &mut kernel, start)
            .map_err(|e| VmmError::Boot(format!("{}: {e}", linux.kernel.display())))?;
        let entry = loaded.kernel_load.0;
        (loaded, entry)
    } else {
        let loaded = loader::BzImage::load(memory, None, &mut kernel, start)
            .map_err(|e| VmmError::Boot(format!("{}: {e}", linux.kernel.display())))?;
        // The 64-bit entry point is 0x200 past the protected-mode code.
        let entry = loaded.kernel_load.0 + 0x200;
        (loaded, entry)
    };

    let mut params = boot_params::default();
    if let Some(header) = loaded.setup_header {
        params.hdr = header;
    }
    params.hdr.type_of_loader = 0xff;
    params.hdr.boot_flag = 0xaa55;
    params.hdr.header = 0x5372_6448; // "HdrS"
    params.hdr.kernel_alignment = 0x0100_0000;
    params.hdr.loadflags |= 0x01; // loaded high

    let mut cmdline = Cmdline::new(layout::CMDLINE_MAX)
        .map_err(|e| VmmError::Boot(format!("command line: {e}")))?;
    cmdline
        .insert_str(&linux.cmdline)
        .map_err(|e| VmmError::Boot(format!("command line: {e}")))?;
    loader::load_cmdline(memory, GuestAddress(layout::CMDLINE), &cmdline)
        .map_err(|e| VmmError::Boot(format!("command line: {e}")))?;
    params.hdr.cmd_line_ptr = header_u32(layout::CMDLINE, "the command line's address")?;
    params.hdr.cmdline_size = header_u32(linux.cmdline.len() as u64 + 1, "the command line")?;

    let low_ram_end = memory_bytes.min(layout::HOLE_START);
    if let Some(path) = &linux.initramfs {
        let image = std::fs::read(path)
            .map_err(|e| VmmError::Boot(format!("cannot read {}: {e}", path.display())))?;
        let size = image.len() as u64;
        // As high in low RAM as it fits (below 2 GiB, the default initrd_addr_max), page
        // aligned, clear of the kernel.
        let top = low_ram_end.min(0x8000_0000);
        let address = top.checked_sub(size).map(|a| a & !(layout::PAGE_SIZE - 1));
        match address {
            Some(address) if address > loaded.kernel_end => {
                memory
                    .write_slice(&image, GuestAddress(address))
                    .map_err(VmmError::guest_write)?;
                // Both below 2 GiB (`top`).
                params.hdr.ramdisk_image = header_u32(address, "the initramfs address")?;
                params.hdr.ramdisk_size = header_u32(size, "the initramfs")?;
            }
            _ => {
                return Err(VmmError::Boot(format!(
                    "the initramfs ({size} bytes) does not fit in the VM's memory"
                )))
            }
        }
    }

    let mut e820 = vec![
        (0, layout::LOW_RAM_END),
        (layout::KERNEL, low_ram_end - layout::KERNEL),
    ];
    if memory_bytes > layout::HOLE_START {
        e820.push((layout::FOUR_GIB, memory_bytes - layout::HOLE_START));
    }
    for (i, (addr, size)) in e820.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: E820_RAM,
        };
    }
    params.e820_entries =
        u8::try_from(e820.len()).map_err(|_| VmmError::Boot("too many e820 entries".into()))?;

    let si = &mut params.screen_info;
    si.orig_video_isVGA = VIDEO_TYPE_VLFB;
    si.lfb_base = (layout::FRAMEBUFFER & 0xffff_ffff) as u32; // the high half follows
    si.ext_lfb_base = (layout::FRAMEBUFFER >> 32) as u32;
    si.capabilities = VIDEO_CAPABILITY_64BIT_BASE;
    si.lfb_size = header_u32(fb.mapped_len() >> 16, "the framebuffer")?;
    let screen_field = |v: u32| {
        u16::try_from(v).map_err(|_| {
            VmmError::Boot(format!(
                "a {}x{} framebuffer (stride {}) does not fit the boot screen_info",
                fb.width, fb.height, fb.stride
            ))
        })
    };
    si.lfb_width = screen_field(fb.width)?;
    si.lfb_height = screen_field(fb.height)?;
    si.lfb_depth = 32;
    si.lfb_linelength = screen_field(fb.stride)?;
    (si.red_size, si.red_pos) = (8, 16);
    (si.green_size, si.green_pos) = (8, 8);
    (si.blue_size, si.blue_pos) = (8, 0);
    (si.rsvd_size, si.rsvd_pos) = (8, 24);

    memory
        .write_obj(params, GuestAddress(layout::ZERO_PAGE))
        .map_err(VmmError::guest_write)?;
    Ok(Entry {
        rip: entry,
        rsp: layout::BOOT_STACK,
        rsi: layout::ZERO_PAGE,
        ..Default::default()
    })
}

/// A value for one of the boot header's 32-bit fields.
fn header_u32(value: u64, what: &str) -> Result<u32, VmmError> {
    u32::try_from(value)
        .map_err(|_| VmmError::Boot(format!("{what} ({value:#x}) does not fit the boot header")))
}
