//! A whole machine's state — every vCPU, KVM's interrupt controllers, PIT and clock,
//! our devices, guest RAM and the framebuffer — in a versioned, bounds-checked format,
//! so that a machine can continue exactly where another one was (suspend to disk,
//! migration).
//!
//! Layout (integers little-endian): the magic `ORIELVM\0`, the format version (u32),
//! the length (u32, at most [`MAX_META`]) and bincode of [`Meta`]; then RAM: its size
//! (u64) and the count (u64) of pages that are not all zeros, each as its page number
//! (u64, ascending) and 4 KiB, so untouched RAM costs nothing; then the framebuffer as
//! its length (u64) and raw bytes. Sizes must be what the machine's configuration
//! makes. A state from a newer format, of another shape, cut short or with bytes left
//! over is refused with a clear error; nothing in it is trusted before it is checked.

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

use crate::i8042::I8042;
use crate::VmmError;

const MAGIC: [u8; 8] = *b"ORIELVM\0";
/// The format this build writes and the newest it reads.
pub(crate) const VERSION: u32 = 1;
/// The CPU and device part is small (about 5 KiB per vCPU); anything larger is corrupt.
const MAX_META: u32 = 1 << 20;

/// Everything but the two memories.
#[derive(Serialize, Deserialize)]
pub(crate) struct Meta {
    pub memory_bytes: u64,
    pub width: u32,
    pub height: u32,
    pub vcpus: Vec<VcpuState>,
    pub vm: VmLevel,
    pub devices: DevicesState,
}

/// One vCPU, as KVM holds it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct VcpuState {
    regs: kvm_regs,
    sregs: kvm_sregs,
    /// FPU, SSE and AVX registers (a superset of `kvm_fpu`).
    xsave: kvm_xsave,
    xcrs: kvm_xcrs,
    /// Every MSR KVM lets us read, the TSC among them.
    msrs: Vec<kvm_msr_entry>,
    lapic: kvm_lapic_state,
    mp_state: kvm_mp_state,
    events: kvm_vcpu_events,
    debugregs: kvm_debugregs,
}

/// KVM's in-kernel devices and clock.
#[derive(Serialize, Deserialize)]
pub(crate) struct VmLevel {
    pic_master: kvm_irqchip,
    pic_slave: kvm_irqchip,
    ioapic: kvm_irqchip,
    pit: kvm_pit_state2,
    clock: kvm_clock_data,
}

/// Our devices (the CMOS clock and the status port keep nothing).
#[derive(Serialize, Deserialize)]
pub(crate) struct DevicesState {
    pub i8042: I8042,
    pub serial: SerialRegisters,
    pub cmos_index: u8,
}

/// vm-superio's `SerialState`, which has no serde of its own.
#[derive(Serialize, Deserialize)]
pub(crate) struct SerialRegisters {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    in_buffer: Vec<u8>,
}

/// The 8250's receive FIFO is 64 bytes in vm-superio.
const SERIAL_FIFO: usize = 64;

impl SerialRegisters {
    pub(crate) fn from_state(s: &vm_superio::serial::SerialState) -> Self {
        Self {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }

    pub(crate) fn to_state(&self) -> vm_superio::serial::SerialState {
        vm_superio::serial::SerialState {
            baud_divisor_low: self.baud_divisor_low,
            baud_divisor_high: self.baud_divisor_high,
            interrupt_enable: self.interrupt_enable,
            interrupt_identification: self.interrupt_identification,
            line_control: self.line_control,
            line_status: self.line_status,
            modem_control: self.modem_control,
            modem_status: self.modem_status,
            scratch: self.scratch,
            in_buffer: self.in_buffer.clone(),
        }
    }
}

pub(crate) fn corrupt(why: impl std::fmt::Display) -> VmmError {
    VmmError::State(format!("the saved VM state is corrupt: {why}"))
}

/// RAM pages in the state are this large.
pub(crate) const PAGE: usize = 4096;

/// Writes `meta`, RAM and `framebuffer` in the format above. `write_pages` appends each
/// page of RAM that is not all zeros as (page number, bytes) and returns how many.
pub(crate) fn encode(
    meta: &Meta,
    write_pages: impl FnOnce(&mut Vec<u8>) -> Result<u64, VmmError>,
    framebuffer: &[u8],
) -> Result<Vec<u8>, VmmError> {
    let body = encode_meta(meta)?;
    let body_len = u32::try_from(body.len()).unwrap_or(MAX_META);
    let mut out = Vec::with_capacity(64 + body.len() + framebuffer.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&meta.memory_bytes.to_le_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    let count = write_pages(&mut out)?;
    out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(framebuffer.len() as u64).to_le_bytes());
    out.extend_from_slice(framebuffer);
    Ok(out)
}

/// The longest encoding of a machine with `memory_bytes` of RAM and a framebuffer
/// of `framebuffer_bytes`: every page present.
pub(crate) fn max_len(memory_bytes: u64, framebuffer_bytes: u64) -> u64 {
    let pages = memory_bytes.div_ceil(4096);
    (MAGIC.len() as u64 + 4 + 4 + u64::from(MAX_META) + 8 + 8)
        .saturating_add(pages.saturating_mul(8 + 4096))
        .saturating_add(8 + framebuffer_bytes)
}

/// The CPU and device part alone, at most [`MAX_META`] bytes (a migration sends it
/// after the memories).
pub(crate) fn encode_meta(meta: &Meta) -> Result<Vec<u8>, VmmError> {
    let body = bincode::serde::encode_to_vec(meta, bincode::config::standard())
        .map_err(|e| VmmError::State(format!("cannot encode the VM state: {e}")))?;
    if body.len() > MAX_META as usize {
        return Err(VmmError::State("the VM's CPU state is too large".into()));
    }
    Ok(body)
}

/// Reads what [`encode_meta`] wrote, for a machine of `vcpus` vCPUs, `memory_bytes`
/// of RAM and a `width` x `height` screen: anything else is refused.
pub(crate) fn decode_meta(
    body: &[u8],
    vcpus: usize,
    memory_bytes: u64,
    (width, height): (u32, u32),
) -> Result<Meta, VmmError> {
    if body.len() > MAX_META as usize {
        return Err(corrupt(format!("a CPU state of {} bytes", body.len())));
    }
    let (meta, used): (Meta, usize) = bincode::serde::decode_from_slice(
        body,
        bincode::config::standard().with_limit::<{ MAX_META as usize }>(),
    )
    .map_err(corrupt)?;
    if used != body.len() {
        return Err(corrupt("bytes left over in the CPU state"));
    }
    if meta.vcpus.len() != vcpus || meta.memory_bytes != memory_bytes {
        return Err(VmmError::State(format!(
            "the VM state is of a machine with {} vCPUs and {} MiB, not {vcpus} and {} MiB",
            meta.vcpus.len(),
            meta.memory_bytes >> 20,
            memory_bytes >> 20
        )));
    }
    if (meta.width, meta.height) != (width, height) {
        return Err(VmmError::State(format!(
            "the VM state has a {}x{} screen, not {width}x{height}",
            meta.width, meta.height
        )));
    }
    meta.devices.check()?;
    Ok(meta)
}

/// A state read back: what [`encode`] wrote, the memories borrowed from `bytes`.
pub(crate) struct Decoded<'a> {
    pub meta: Meta,
    pub ram: RamPages<'a>,
    pub framebuffer: &'a [u8],
}

/// The pages of RAM in a state (checked: ascending, within RAM).
pub(crate) struct RamPages<'a> {
    entries: &'a [u8],
}

impl<'a> RamPages<'a> {
    /// (page number, its 4 KiB), ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        self.entries.chunks_exact(8 + PAGE).map(|entry| {
            let (number, page) = entry.split_at(8);
            let mut n = [0u8; 8];
            n.copy_from_slice(number);
            (u64::from_le_bytes(n), page)
        })
    }
}

/// Reads a state for a machine of `vcpus` vCPUs, `memory_bytes` of RAM and a
/// framebuffer of `framebuffer_bytes`, `width` x `height`: anything else is refused.
pub(crate) fn decode(
    bytes: &[u8],
    vcpus: usize,
    memory_bytes: u64,
    (width, height, framebuffer_bytes): (u32, u32, u64),
) -> Result<Decoded<'_>, VmmError> {
    if !bytes.starts_with(&MAGIC) {
        return Err(VmmError::State("this is not a saved Oriel VM state".into()));
    }
    let mut rest = &bytes[MAGIC.len()..];
    let version = u32::from_le_bytes(take_array(&mut rest)?);
    if version > VERSION {
        return Err(VmmError::State(format!(
            "the VM state is of format {version}, from a newer Oriel; this one reads up to {VERSION}"
        )));
    }
    if version == 0 {
        return Err(corrupt("format 0"));
    }
    let meta_len = u32::from_le_bytes(take_array(&mut rest)?);
    if meta_len > MAX_META {
        return Err(corrupt(format!("a CPU state of {meta_len} bytes")));
    }
    let body = take(&mut rest, meta_len as usize)?;
    let ram = take_pages(&mut rest, memory_bytes)?;
    let framebuffer = take_memory(&mut rest, framebuffer_bytes, "framebuffer")?;
    if !rest.is_empty() {
        return Err(corrupt("bytes left over after the framebuffer"));
    }
    let meta = decode_meta(body, vcpus, memory_bytes, (width, height))?;
    Ok(Decoded {
        meta,
        ram,
        framebuffer,
    })
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], VmmError> {
    if rest.len() < n {
        return Err(corrupt("it ends early"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], VmmError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(rest, N)?);
    Ok(out)
}

fn take_pages<'a>(rest: &mut &'a [u8], memory_bytes: u64) -> Result<RamPages<'a>, VmmError> {
    let size = u64::from_le_bytes(take_array(rest)?);
    if size != memory_bytes {
        return Err(corrupt(format!("RAM of {size} bytes, not {memory_bytes}")));
    }
    let pages = memory_bytes / PAGE as u64;
    let count = u64::from_le_bytes(take_array(rest)?);
    if count > pages {
        return Err(corrupt(format!(
            "{count} pages of RAM, more than its {pages}"
        )));
    }
    let len = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(8 + PAGE))
        .ok_or_else(|| corrupt("too many pages"))?;
    let ram = RamPages {
        entries: take(rest, len)?,
    };
    let mut next = 0;
    for (number, _) in ram.iter() {
        if number < next || number >= pages {
            return Err(corrupt(format!("RAM page {number} out of order or place")));
        }
        next = number + 1;
    }
    Ok(ram)
}

fn take_memory<'a>(rest: &mut &'a [u8], want: u64, what: &str) -> Result<&'a [u8], VmmError> {
    let len = u64::from_le_bytes(take_array(rest)?);
    if len != want {
        return Err(corrupt(format!("{what} of {len} bytes, not {want}")));
    }
    take(rest, usize::try_from(len).map_err(corrupt)?)
}

impl DevicesState {
    /// What a device would never hold, refused before it is used.
    fn check(&self) -> Result<(), VmmError> {
        self.i8042.check().map_err(corrupt)?;
        if self.serial.in_buffer.len() > SERIAL_FIFO {
            return Err(corrupt("the serial FIFO overflows"));
        }
        Ok(())
    }
}

/// Reads a vCPU's state; the vCPU must be out of KVM_RUN (the machine paused).
pub(crate) fn save_vcpu(vcpu: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, VmmError> {
    let kvm = VmmError::kvm;
    Ok(VcpuState {
        regs: vcpu.get_regs().map_err(kvm("read registers"))?,
        sregs: vcpu.get_sregs().map_err(kvm("read sregs"))?,
        xsave: vcpu.get_xsave().map_err(kvm("read XSAVE"))?,
        xcrs: vcpu.get_xcrs().map_err(kvm("read XCRs"))?,
        msrs: read_msrs(vcpu, msr_indices)?,
        lapic: vcpu.get_lapic().map_err(kvm("read the LAPIC"))?,
        mp_state: vcpu.get_mp_state().map_err(kvm("read the MP state"))?,
        events: vcpu.get_vcpu_events().map_err(kvm("read vCPU events"))?,
        debugregs: vcpu.get_debug_regs().map_err(kvm("read debug registers"))?,
    })
}

/// Every MSR of `indices` that KVM lets us read. KVM stops at the first it refuses;
/// that one is skipped and the rest read on.
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, VmmError> {
    let mut read = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(kvm_bindings::KVM_MAX_MSR_ENTRIES)];
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| VmmError::Config("MSR list"))?;
        let n = vcpu
            .get_msrs(&mut msrs)
            .map_err(VmmError::kvm("read MSRs"))?;
        read.extend_from_slice(&msrs.as_slice()[..n]);
        let skip = if n < chunk.len() { n + 1 } else { n };
        rest = &rest[skip..];
    }
    Ok(read)
}

/// Gives a new vCPU (its CPUID already set) the state `state`.
pub(crate) fn restore_vcpu(vcpu: &VcpuFd, state: &VcpuState) -> Result<(), VmmError> {
    let kvm = VmmError::kvm;
    vcpu.set_sregs(&state.sregs).map_err(kvm("set sregs"))?;
    vcpu.set_regs(&state.regs).map_err(kvm("set registers"))?;
    // SAFETY: the kvm_xsave is the 4 KiB legacy buffer KVM_GET_XSAVE filled on a host
    // with the same CPUID; KVM reads no more than that struct.
    unsafe { vcpu.set_xsave(&state.xsave) }.map_err(kvm("set XSAVE"))?;
    vcpu.set_xcrs(&state.xcrs).map_err(kvm("set XCRs"))?;
    vcpu.set_debug_regs(&state.debugregs)
        .map_err(kvm("set debug registers"))?;
    vcpu.set_lapic(&state.lapic).map_err(kvm("set the LAPIC"))?;
    vcpu.set_mp_state(state.mp_state)
        .map_err(kvm("set the MP state"))?;
    for chunk in state.msrs.chunks(kvm_bindings::KVM_MAX_MSR_ENTRIES) {
        let msrs = Msrs::from_entries(chunk).map_err(|_| VmmError::Config("MSR list"))?;
        let n = vcpu.set_msrs(&msrs).map_err(kvm("set MSRs"))?;
        if n != chunk.len() {
            return Err(VmmError::Kvm(
                "set MSRs",
                format!("KVM refused MSR {:#x}", chunk[n].index),
            ));
        }
    }
    vcpu.set_vcpu_events(&state.events)
        .map_err(kvm("set vCPU events"))?;
    Ok(())
}

/// Reads KVM's interrupt controllers, PIT and clock.
pub(crate) fn save_vm(vm: &VmFd) -> Result<VmLevel, VmmError> {
    let chip = |chip_id| -> Result<kvm_irqchip, VmmError> {
        let mut chip = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        vm.get_irqchip(&mut chip)
            .map_err(VmmError::kvm("read an interrupt controller"))?;
        Ok(chip)
    };
    Ok(VmLevel {
        pic_master: chip(KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: chip(KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: chip(KVM_IRQCHIP_IOAPIC)?,
        pit: vm.get_pit2().map_err(VmmError::kvm("read the PIT"))?,
        clock: vm.get_clock().map_err(VmmError::kvm("read the clock"))?,
    })
}

/// Gives a new VM (irqchip and PIT created) the state `state`.
pub(crate) fn restore_vm(vm: &VmFd, state: &VmLevel) -> Result<(), VmmError> {
    let chips = [&state.pic_master, &state.pic_slave, &state.ioapic];
    let ids = [
        KVM_IRQCHIP_PIC_MASTER,
        KVM_IRQCHIP_PIC_SLAVE,
        KVM_IRQCHIP_IOAPIC,
    ];
    for (chip, id) in chips.into_iter().zip(ids) {
        if chip.chip_id != id {
            return Err(corrupt("interrupt controllers out of order"));
        }
        vm.set_irqchip(chip)
            .map_err(VmmError::kvm("set an interrupt controller"))?;
    }
    vm.set_pit2(&state.pit)
        .map_err(VmmError::kvm("set the PIT"))?;
    // Only the clock's value: the flags say how KVM read it, not how to set it.
    let clock = kvm_clock_data {
        clock: state.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock)
        .map_err(VmmError::kvm("set the clock"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RAM section of `memory_bytes` holding pages `numbers`.
    fn section(memory_bytes: u64, numbers: &[u64]) -> Vec<u8> {
        let mut out = memory_bytes.to_le_bytes().to_vec();
        out.extend_from_slice(&(numbers.len() as u64).to_le_bytes());
        for n in numbers {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&[u8::try_from(*n % 251).unwrap(); PAGE]);
        }
        out
    }

    fn pages(memory_bytes: u64, numbers: &[u64]) -> Result<Vec<u64>, VmmError> {
        let bytes = section(memory_bytes, numbers);
        let mut rest = bytes.as_slice();
        let ram = take_pages(&mut rest, memory_bytes)?;
        assert!(rest.is_empty());
        Ok(ram
            .iter()
            .map(|(n, page)| {
                assert_eq!(page[0], u8::try_from(n % 251).unwrap());
                n
            })
            .collect())
    }

    #[test]
    fn ram_pages_must_ascend_within_ram() {
        let four = 4 * PAGE as u64;
        assert_eq!(pages(four, &[0, 2, 3]).unwrap(), [0, 2, 3]);
        assert_eq!(pages(four, &[]).unwrap(), Vec::<u64>::new());
        for bad in [&[2, 1][..], &[1, 1], &[4], &[0, 1, 2, 3, 3]] {
            assert!(pages(four, bad).is_err(), "{bad:?}");
        }
        // A count larger than what follows, or than RAM holds, is refused before
        // anything is read or allocated.
        let mut lying = section(four, &[0]);
        lying[8..16].copy_from_slice(&3u64.to_le_bytes());
        assert!(take_pages(&mut lying.as_slice(), four).is_err());
        lying[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(take_pages(&mut lying.as_slice(), four).is_err());
        assert!(take_pages(&mut section(four, &[0]).as_slice(), 2 * four).is_err());
    }
}
