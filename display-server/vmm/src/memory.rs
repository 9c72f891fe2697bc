//! Guest memory: RAM mapped with MAP_NORESERVE (a VM may be configured far larger than
//! the host, only touched pages cost), and the framebuffer in a KVM slot of its own
//! with dirty-page logging, so capture reads only the pages the guest wrote.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

use crate::layout::{self, PAGE_SIZE};
use crate::VmmError;

/// The framebuffer's KVM slot; RAM uses the slots below it.
pub const FRAMEBUFFER_SLOT: u32 = 8;

pub struct GuestRam {
    pub memory: GuestMemoryMmap,
}

impl GuestRam {
    pub fn new(bytes: u64) -> Result<Self, VmmError> {
        let mut regions = Vec::new();
        for (start, len) in layout::ram_ranges(bytes) {
            let len = usize::try_from(len).map_err(|_| VmmError::Config("memory too large"))?;
            let mapping = MmapRegionBuilder::new(len)
                .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                .with_mmap_flags(libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE)
                .build()
                .map_err(|e| VmmError::Memory(e.to_string()))?;
            let region = GuestRegionMmap::new(mapping, GuestAddress(start))
                .ok_or(VmmError::Config("guest memory range overflows"))?;
            regions.push(region);
        }
        let memory =
            GuestMemoryMmap::from_regions(regions).map_err(|e| VmmError::Memory(e.to_string()))?;
        Ok(Self { memory })
    }

    /// Tells KVM about every RAM region (slots 0..).
    pub fn register(&self, vm: &VmFd) -> Result<(), VmmError> {
        for (slot, region) in self.memory.iter().enumerate() {
            let region_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the mapping lives as long as the VM (GuestRam is dropped after the
            // VmFd in `Machine`), and it does not overlap another slot.
            unsafe { vm.set_user_memory_region(region_desc) }.map_err(VmmError::kvm("map RAM"))?;
        }
        Ok(())
    }

    /// Bytes of guest RAM resident in host memory: what the guest has touched.
    pub fn resident_bytes(&self) -> u64 {
        self.memory
            .iter()
            .map(|r| resident(r.as_ptr(), r.len() as usize))
            .sum()
    }

    /// Gives every RAM page back to the host: the guest then reads zeros, as after
    /// power-on, and the host's memory is free again.
    pub fn discard(&self) {
        for region in self.memory.iter() {
            // SAFETY: a private anonymous mapping we own; DONTNEED only drops its pages.
            unsafe {
                libc::madvise(
                    region.as_ptr().cast(),
                    region.len() as usize,
                    libc::MADV_DONTNEED,
                );
            }
        }
    }
}

/// Shape of a linear 32-bpp framebuffer (XRGB8888, little-endian: blue first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramebufferFormat {
    pub width: u32,
    pub height: u32,
    /// Bytes per line.
    pub stride: u32,
}

impl FramebufferFormat {
    pub fn new(width: u32, height: u32) -> Result<Self, VmmError> {
        let stride = width
            .checked_mul(4)
            .ok_or(VmmError::Config("framebuffer too wide"))?;
        let format = Self {
            width,
            height,
            stride,
        };
        if width == 0 || height == 0 || format.mapped_len() > layout::FRAMEBUFFER_MAX {
            return Err(VmmError::Config("framebuffer size out of range"));
        }
        Ok(format)
    }

    pub fn bytes(&self) -> u64 {
        u64::from(self.stride) * u64::from(self.height)
    }

    /// The slot's size: whole 64 KiB units, as `screen_info.lfb_size` counts them.
    pub fn mapped_len(&self) -> u64 {
        self.bytes().div_ceil(1 << 16) << 16
    }
}

/// The framebuffer's host mapping.
pub struct FramebufferMemory {
    ptr: *mut u8,
    len: usize,
    pub format: FramebufferFormat,
}

// SAFETY: the mapping is plain shared memory; readers copy out of it, the guest writes it.
unsafe impl Send for FramebufferMemory {}
// SAFETY: as for Send: nothing in it is tied to a thread, and every read copies out.
unsafe impl Sync for FramebufferMemory {}

impl FramebufferMemory {
    pub fn new(format: FramebufferFormat) -> Result<Self, VmmError> {
        let len = format.mapped_len() as usize;
        // SAFETY: a fresh anonymous mapping, unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(VmmError::Memory(
                std::io::Error::last_os_error().to_string(),
            ));
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
            format,
        })
    }

    pub fn register(&self, vm: &VmFd) -> Result<(), VmmError> {
        let region = kvm_userspace_memory_region {
            slot: FRAMEBUFFER_SLOT,
            flags: KVM_MEM_LOG_DIRTY_PAGES,
            guest_phys_addr: layout::FRAMEBUFFER,
            memory_size: self.len as u64,
            userspace_addr: self.ptr as u64,
        };
        // SAFETY: as for RAM: the mapping outlives the VM's use of it.
        unsafe { vm.set_user_memory_region(region) }.map_err(VmmError::kvm("map framebuffer"))
    }

    /// Page numbers (within the framebuffer) the guest wrote since the last call; KVM
    /// clears its log as it hands it over.
    pub fn take_dirty_pages(&self, vm: &VmFd) -> Result<Vec<u32>, VmmError> {
        let bitmap = vm
            .get_dirty_log(FRAMEBUFFER_SLOT, self.len)
            .map_err(VmmError::kvm("read the dirty log"))?;
        let mut pages = Vec::new();
        for (word_index, mut word) in bitmap.into_iter().enumerate() {
            while word != 0 {
                let bit = word.trailing_zeros();
                pages.push(word_index as u32 * 64 + bit);
                word &= word - 1;
            }
        }
        Ok(pages)
    }

    /// Copies `dst.len()` bytes from framebuffer offset `offset` (clamped to the mapping).
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        let end = (offset + dst.len()).min(self.len);
        let n = end.saturating_sub(offset);
        if n == 0 {
            return;
        }
        // SAFETY: `offset` < `end` <= `len`: inside our mapping.
        let src = unsafe { self.ptr.add(offset) };
        // SAFETY: `n` bytes from `src` lie in our mapping and fit `dst`; the guest may
        // write concurrently, which at worst gives a torn pixel that the next dirty page
        // fixes.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), n) };
    }

    /// Pixels of row `y`, columns `x0..x1`, as 0x00RRGGBB.
    pub fn read_row(&self, y: u32, x0: u32, x1: u32, dst: &mut [u32]) {
        let offset = y as usize * self.format.stride as usize + x0 as usize * 4;
        let n = (x1 - x0) as usize;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut dst[..n]);
        self.read(offset, bytes);
        for p in &mut dst[..n] {
            *p &= 0x00ff_ffff;
        }
    }

    /// Bytes of the framebuffer resident in host memory.
    pub fn resident_bytes(&self) -> u64 {
        resident(self.ptr, self.len)
    }

    /// Zeroes the framebuffer (power-on state) and frees its pages.
    pub fn discard(&self) {
        // SAFETY: our private anonymous mapping.
        unsafe { libc::madvise(self.ptr.cast(), self.len, libc::MADV_DONTNEED) };
    }

    pub fn page_count(&self) -> u32 {
        (self.len as u64 / PAGE_SIZE) as u32
    }
}

/// Resident bytes of a mapping (mincore), a gigabyte of it at a time.
fn resident(ptr: *const u8, len: usize) -> u64 {
    const CHUNK: usize = 1 << 30;
    let page = PAGE_SIZE as usize;
    let mut vec = Vec::new();
    let mut total = 0u64;
    for offset in (0..len).step_by(CHUNK) {
        let n = (len - offset).min(CHUNK);
        vec.resize(n.div_ceil(page), 0u8);
        // SAFETY: `offset` < `len`, so the pointer stays inside the mapping.
        let start = unsafe { ptr.add(offset) };
        // SAFETY: the range lies in one mapping we own; mincore only reports on it.
        let ok = unsafe { libc::mincore(start as *mut _, n, vec.as_mut_ptr()) } == 0;
        if ok {
            total += vec.iter().filter(|b| *b & 1 == 1).count() as u64 * PAGE_SIZE;
        }
    }
    total
}

impl Drop for FramebufferMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
