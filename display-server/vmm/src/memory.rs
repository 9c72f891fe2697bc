//! Guest memory: RAM mapped with MAP_NORESERVE (a VM may be configured far larger than
//! the host, only touched pages cost), and the framebuffer in a KVM slot of its own
//! with dirty-page logging, so capture reads only the pages the guest wrote.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap, MmapRegion, VolatileMemory,
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
    pub(crate) fn register(&self, vm: &VmFd) -> Result<(), VmmError> {
        self.register_logged(vm, false)
    }

    /// (Re)maps every RAM region with KVM's dirty-page log on or off. Switching it on
    /// starts a log with no page in it; the guest may run meanwhile.
    pub(crate) fn register_logged(&self, vm: &VmFd, logged: bool) -> Result<(), VmmError> {
        let flags = if logged { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
        for (slot, region) in (0u32..).zip(self.memory.iter()) {
            register_slot(vm, slot, flags, region.start_addr().0, region)
                .map_err(VmmError::kvm("map RAM"))?;
        }
        Ok(())
    }

    /// Pages (numbered over the regions in order) the guest wrote since the last call or
    /// since logging started; KVM clears its log as it hands it over.
    pub(crate) fn take_dirty_pages(&self, vm: &VmFd) -> Result<Vec<u64>, VmmError> {
        let mut pages = Vec::new();
        let mut first = 0u64;
        for (slot, region) in (0u32..).zip(self.memory.iter()) {
            let bitmap = vm
                .get_dirty_log(slot, region.size())
                .map_err(VmmError::kvm("read the dirty log"))?;
            pages.extend(set_bits(&bitmap).map(|bit| first + bit));
            first += region.len() / PAGE_SIZE;
        }
        Ok(pages)
    }

    /// Pages the host holds for the guest, in memory or in swap: every page the guest
    /// ever touched is among them, so the others are zeros.
    pub(crate) fn resident_pages(&self) -> Vec<u64> {
        let mut pages = Vec::new();
        let mut first = 0u64;
        for region in self.memory.iter() {
            pages.extend(held_pages(region).into_iter().map(|p| first + p as u64));
            first += region.len() / PAGE_SIZE;
        }
        pages
    }

    /// RAM's size in pages.
    pub(crate) fn page_count(&self) -> u64 {
        self.memory.iter().map(|r| r.len() / PAGE_SIZE).sum()
    }

    /// Guest address of RAM page `number`, if RAM has it.
    fn page_address(&self, number: u64) -> Option<GuestAddress> {
        let mut first = 0u64;
        for region in self.memory.iter() {
            let count = region.len() / PAGE_SIZE;
            if number < first + count {
                return Some(
                    region
                        .start_addr()
                        .unchecked_add((number - first) * PAGE_SIZE),
                );
            }
            first += count;
        }
        None
    }

    /// Copies RAM page `number` into `out`.
    pub(crate) fn read_page(
        &self,
        number: u64,
        out: &mut [u8; PAGE_BYTES],
    ) -> Result<(), VmmError> {
        let at = self
            .page_address(number)
            .ok_or_else(|| VmmError::State(format!("RAM page {number} is outside RAM")))?;
        self.memory
            .read_slice(out, at)
            .map_err(|e| VmmError::Memory(format!("cannot read guest memory: {e}")))
    }

    /// Writes RAM page `number` (all zeros when `bytes` is `None`).
    pub(crate) fn write_page(&self, number: u64, bytes: Option<&[u8]>) -> Result<(), VmmError> {
        let at = self
            .page_address(number)
            .ok_or_else(|| VmmError::State(format!("RAM page {number} is outside RAM")))?;
        let zeros = [0u8; PAGE_BYTES];
        let bytes = bytes.unwrap_or(&zeros);
        if bytes.len() != PAGE_BYTES {
            return Err(VmmError::State("a RAM page is not 4 KiB".into()));
        }
        self.memory
            .write_slice(bytes, at)
            .map_err(VmmError::guest_write)
    }

    /// Bytes of guest RAM resident in host memory: what the guest has touched.
    pub fn resident_bytes(&self) -> u64 {
        self.memory.iter().map(|r| resident(r)).sum()
    }

    /// Appends every page of RAM that is not all zeros to `out` as its page number
    /// (u64, counted over the regions in order) and its bytes; returns how many.
    pub(crate) fn write_pages(&self, out: &mut Vec<u8>) -> Result<u64, VmmError> {
        let mut page = [0u8; PAGE_BYTES];
        let mut count = 0u64;
        // Only pages the host holds can hold anything: a large guest that touched
        // little is saved without reading the rest (ascending, as the format wants).
        for number in self.resident_pages() {
            self.read_page(number, &mut page)?;
            if page.iter().any(|b| *b != 0) {
                out.extend_from_slice(&number.to_le_bytes());
                out.extend_from_slice(&page);
                count += 1;
            }
        }
        Ok(count)
    }

    /// Fills RAM with `pages` (page numbers as [`GuestRam::write_pages`] counts them);
    /// the rest stays untouched zeros, costing the host nothing.
    pub(crate) fn load<'a>(
        &self,
        pages: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), VmmError> {
        for (number, bytes) in pages {
            self.write_page(number, Some(bytes))?;
        }
        Ok(())
    }

    /// Gives every RAM page back to the host: the guest then reads zeros, as after
    /// power-on, and the host's memory is free again.
    pub fn discard(&self) {
        for region in self.memory.iter() {
            discard(region);
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

/// The framebuffer's host mapping: a vm-memory [`MmapRegion`], read only through
/// bounds-checked [`VolatileSlice`](vm_memory::VolatileSlice)s (the guest writes it while capture reads it, so no
/// Rust reference to it is ever formed).
pub struct FramebufferMemory {
    region: MmapRegion,
    pub format: FramebufferFormat,
}

impl FramebufferMemory {
    pub fn new(format: FramebufferFormat) -> Result<Self, VmmError> {
        let len = usize::try_from(format.mapped_len())
            .map_err(|_| VmmError::Config("framebuffer too large"))?;
        let region = MmapRegionBuilder::new(len)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| VmmError::Memory(e.to_string()))?;
        Ok(Self { region, format })
    }

    pub(crate) fn register(&self, vm: &VmFd) -> Result<(), VmmError> {
        register_slot(
            vm,
            FRAMEBUFFER_SLOT,
            KVM_MEM_LOG_DIRTY_PAGES,
            layout::FRAMEBUFFER,
            &self.region,
        )
        .map_err(VmmError::kvm("map framebuffer"))
    }

    /// Page numbers (within the framebuffer) the guest wrote since the last call; KVM
    /// clears its log as it hands it over.
    pub fn take_dirty_pages(&self, vm: &VmFd) -> Result<Vec<u32>, VmmError> {
        let bitmap = vm
            .get_dirty_log(FRAMEBUFFER_SLOT, self.region.size())
            .map_err(VmmError::kvm("read the dirty log"))?;
        // A framebuffer has far fewer than 2^32 pages.
        Ok(set_bits(&bitmap)
            .map(|bit| u32::try_from(bit).unwrap_or(u32::MAX))
            .collect())
    }

    /// Copies up to `dst.len()` bytes from framebuffer offset `offset`, clipped to the
    /// mapping; returns how many it copied (the rest of `dst` is left as it was). The guest
    /// may write concurrently, which at worst gives a torn pixel that the next dirty page
    /// fixes.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> usize {
        let available = self.region.size().saturating_sub(offset);
        let n = dst.len().min(available);
        match self.region.get_slice(offset, n) {
            // Bytes, not pixels: vm-memory copies a `u8` slice in bulk, but other element
            // types one volatile load at a time.
            Ok(slice) => slice.copy_to(dst),
            Err(_) => 0,
        }
    }

    /// Pixels of row `y`, columns `x0..x1` (clipped to `dst` and to the mapping), as
    /// 0x00RRGGBB.
    pub fn read_row(&self, y: u32, x0: u32, x1: u32, dst: &mut [u32]) {
        let offset = (y as usize)
            .checked_mul(self.format.stride as usize)
            .and_then(|line| line.checked_add(x0 as usize * 4));
        let Some(offset) = offset else { return };
        let n = (x1.saturating_sub(x0) as usize).min(dst.len());
        let dst = &mut dst[..n];
        self.read(offset, bytemuck::cast_slice_mut(dst));
        for p in dst {
            *p &= 0x00ff_ffff;
        }
    }

    /// Bytes of the framebuffer resident in host memory.
    pub fn resident_bytes(&self) -> u64 {
        resident(&self.region)
    }

    /// A copy of the whole mapping (for a saved state).
    pub(crate) fn dump(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.region.size()];
        let n = self.read(0, &mut out);
        out.truncate(n);
        out
    }

    /// Fills the mapping from what [`FramebufferMemory::dump`] made.
    pub(crate) fn load(&self, bytes: &[u8]) -> Result<(), VmmError> {
        let slice = self
            .region
            .get_slice(0, bytes.len())
            .map_err(|e| VmmError::State(format!("the saved framebuffer does not fit: {e}")))?;
        slice.copy_from(bytes);
        Ok(())
    }

    /// Writes `bytes` at `offset`, clipped to the mapping.
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
        let n = bytes.len().min(self.region.size().saturating_sub(offset));
        if let Ok(slice) = self.region.get_slice(offset, n) {
            slice.copy_from(&bytes[..n]);
        }
    }

    /// Zeroes the framebuffer (power-on state) and frees its pages.
    pub fn discard(&self) {
        discard(&self.region);
    }

    pub fn page_count(&self) -> u32 {
        u32::try_from(self.region.size() as u64 / PAGE_SIZE).unwrap_or(u32::MAX)
    }
}

/// Gives KVM `mapping` as the guest-physical range at `guest_phys_addr` in `slot`.
///
/// The caller keeps the mapping alive for as long as the VM can use the slot: in
/// [`Machine`](crate::machine::Machine) the `VmFd` is declared, and so dropped, before
/// the RAM and framebuffer that it maps.
fn register_slot(
    vm: &VmFd,
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    mapping: &MmapRegion,
) -> Result<(), kvm_ioctls::Error> {
    let region = kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr,
        memory_size: mapping.size() as u64,
        userspace_addr: mapping.as_ptr() as u64,
    };
    // SAFETY: `userspace_addr..+memory_size` is one live mapping that we own (a
    // `MmapRegion`); it outlives the VM's use of it (see above), and each caller uses its
    // own slot and guest range, so slots do not overlap.
    unsafe { vm.set_user_memory_region(region) }
}

/// Drops every page of a private anonymous mapping: it reads as zeros afterwards, and
/// the host's memory is free again.
fn discard(mapping: &MmapRegion) {
    // SAFETY: the range is exactly one mapping we own; MADV_DONTNEED on private anonymous
    // memory only replaces its pages with zero pages, it never unmaps them.
    unsafe { libc::madvise(mapping.as_ptr().cast(), mapping.size(), libc::MADV_DONTNEED) };
}

#[expect(clippy::cast_possible_truncation, reason = "a page is 4096 bytes")]
const PAGE_BYTES: usize = PAGE_SIZE as usize;

/// Indices of the set bits of a KVM dirty bitmap, ascending.
fn set_bits(bitmap: &[u64]) -> impl Iterator<Item = u64> + '_ {
    (0u64..).zip(bitmap).flat_map(|(word_index, &word)| {
        let mut word = word;
        std::iter::from_fn(move || {
            (word != 0).then(|| {
                let bit = word.trailing_zeros();
                word &= word - 1;
                word_index * 64 + u64::from(bit)
            })
        })
    })
}

/// Resident bytes of a mapping (mincore).
fn resident(mapping: &MmapRegion) -> u64 {
    let mut pages = 0u64;
    for_each_resident(mapping, |_| pages += 1);
    pages * PAGE_SIZE
}

/// The pages of a mapping the guest may have written, ascending: those in host memory
/// and those swapped out (/proc/self/pagemap; mincore would miss the swapped ones, and
/// a copy that skipped them would lose their contents). Pages never touched are
/// neither and read as zeros. If pagemap cannot be read, every page.
fn held_pages(mapping: &MmapRegion) -> Vec<usize> {
    let pages = mapping.size() / PAGE_BYTES;
    let first = mapping.as_ptr() as usize / PAGE_BYTES;
    read_pagemap(first, pages).unwrap_or_else(|e| {
        tracing::warn!("cannot read /proc/self/pagemap ({e}); every page of guest RAM is read");
        (0..pages).collect()
    })
}

/// Pages `first..first + pages` of this process that are present or swapped.
fn read_pagemap(first: usize, pages: usize) -> std::io::Result<Vec<usize>> {
    use std::os::unix::fs::FileExt;
    /// Entries read at once (512 KiB).
    const CHUNK: usize = 64 * 1024;
    const PRESENT_OR_SWAPPED: u64 = 0b11 << 62;
    let file = std::fs::File::open("/proc/self/pagemap")?;
    let mut buf = vec![0u8; CHUNK * 8];
    let mut held = Vec::new();
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(CHUNK);
        let bytes = &mut buf[..n * 8];
        file.read_exact_at(bytes, ((first + done) * 8) as u64)?;
        for (i, entry) in bytes.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(entry);
            if u64::from_ne_bytes(word) & PRESENT_OR_SWAPPED != 0 {
                held.push(done + i);
            }
        }
        done += n;
    }
    Ok(held)
}

/// Calls `f` with the index of each resident page of a mapping (mincore), a gigabyte
/// of it at a time.
fn for_each_resident(mapping: &MmapRegion, mut f: impl FnMut(usize)) {
    const CHUNK: usize = 1 << 30;
    let page = PAGE_BYTES;
    let (ptr, len) = (mapping.as_ptr(), mapping.size());
    let mut vec = Vec::new();
    for offset in (0..len).step_by(CHUNK) {
        let n = (len - offset).min(CHUNK);
        vec.resize(n.div_ceil(page), 0u8);
        // Only handed to the kernel, never dereferenced, so a wrapping offset will do.
        let start = ptr.wrapping_add(offset);
        // SAFETY: `start..start + n` lies in one mapping we own (`offset + n <= len`);
        // mincore only reports on it, into `vec`, which has a byte per page of it.
        let ok = unsafe { libc::mincore(start.cast(), n, vec.as_mut_ptr()) } == 0;
        if ok {
            let first = offset / page;
            for (i, _) in vec.iter().enumerate().filter(|(_, b)| **b & 1 == 1) {
                f(first + i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte `i` of the test pattern.
    fn pattern(i: usize) -> u8 {
        u8::try_from(i % 251).unwrap()
    }

    /// A 100x100 framebuffer (40,000 bytes in a 64 KiB slot) whose byte `i` is `i % 251`.
    fn patterned() -> FramebufferMemory {
        let fb = FramebufferMemory::new(FramebufferFormat::new(100, 100).unwrap()).unwrap();
        let bytes: Vec<u8> = (0..fb.region.size()).map(pattern).collect();
        fb.region
            .get_slice(0, bytes.len())
            .unwrap()
            .copy_from(&bytes);
        fb
    }

    fn pixel_at(offset: usize) -> u32 {
        let b = |k: usize| u32::from(pattern(offset + k));
        b(0) | b(1) << 8 | b(2) << 16
    }

    #[test]
    fn rows_read_back_what_the_slot_holds_without_the_top_byte() {
        let fb = patterned();
        assert_eq!(fb.region.size(), 1 << 16);
        assert_eq!(fb.page_count(), 16);
        let mut row = vec![0u32; 100];
        fb.read_row(37, 0, 100, &mut row);
        for (x, p) in row.iter().enumerate() {
            assert_eq!(*p, pixel_at(37 * 400 + x * 4), "x={x}");
        }
        // A part of a row lands at the start of `dst`.
        let mut part = [0u32; 100];
        fb.read_row(99, 10, 13, &mut part);
        assert_eq!(part[..3], [10, 11, 12].map(|x| pixel_at(99 * 400 + x * 4)));
        assert_eq!(part[3..], [0; 97]);
    }

    #[test]
    fn reads_past_the_end_are_clipped() {
        let fb = patterned();
        let len = fb.region.size();
        let mut buf = [0xaau8; 16];
        assert_eq!(fb.read(len - 4, &mut buf), 4);
        assert_eq!(buf[..4], [0, 1, 2, 3].map(|k| pattern(len - 4 + k)));
        assert_eq!(buf[4..], [0xaa; 12]);
        assert_eq!(fb.read(len, &mut buf), 0);
        assert_eq!(fb.read(usize::MAX, &mut buf), 0);
        assert_eq!(fb.read(0, &mut []), 0);

        // Rows past the slot, empty or reversed column ranges, and `dst` shorter than the
        // range: clipped, never out of bounds.
        let mut row = [7u32; 100];
        fb.read_row(u32::MAX, u32::MAX, u32::MAX, &mut row);
        fb.read_row(u32::MAX, 0, 100, &mut row);
        fb.read_row(1000, 0, 100, &mut row);
        fb.read_row(0, 50, 10, &mut row);
        assert_eq!(row, [7; 100]);
        // The last row of the slot: 64 KiB / 400 = 163 rows and 336 bytes (84 pixels).
        fb.read_row(163, 0, 100, &mut row);
        assert_eq!(row[83], pixel_at(163 * 400 + 83 * 4));
        assert_eq!(row[84..], [7; 16]);
        let mut short = [0u32; 4];
        fb.read_row(0, 0, 100, &mut short);
        assert_eq!(short, [0, 1, 2, 3].map(|x| pixel_at(x * 4)));
    }

    #[test]
    fn the_pages_held_are_those_written_and_saving_reads_only_them() {
        let ram = GuestRam::new(16 << 20).unwrap();
        assert!(ram.resident_pages().is_empty(), "nothing touched yet");
        let page = [7u8; PAGE_BYTES];
        for number in [3, 1000, 2047] {
            ram.write_page(number, Some(&page)).unwrap();
        }
        assert_eq!(ram.resident_pages(), vec![3, 1000, 2047]);
        let mut out = Vec::new();
        assert_eq!(ram.write_pages(&mut out).unwrap(), 3);
        assert_eq!(out.len(), 3 * (8 + PAGE_BYTES));
        assert_eq!(out[..8], 3u64.to_le_bytes());
    }

    #[test]
    fn discard_zeroes_the_slot_and_frees_it() {
        let fb = patterned();
        assert_eq!(fb.resident_bytes(), 1 << 16);
        fb.discard();
        assert_eq!(fb.resident_bytes(), 0);
        let mut row = [7u32; 100];
        fb.read_row(50, 0, 100, &mut row);
        assert_eq!(row, [0; 100]);
    }
}
