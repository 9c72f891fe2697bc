//! One boot of a VM: the KVM VM with its memory, devices and vCPU threads. A reset
//! builds a new machine (exactly the power-on state, RAM given back to the host); the
//! [`crate::Vm`] owns the current one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_pit_config, CpuId, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress};

use crate::boot::{self, Boot};
use crate::console::ConsoleLog;
use crate::cpu;
use crate::devices::{Action, Devices, IrqLine};
use crate::memory::{FramebufferFormat, FramebufferMemory, GuestRam};
use crate::snapshot::{self, Meta, VcpuState};
use crate::VmmError;

/// Why a machine stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest rebooted (i8042 reset, triple fault, status port).
    Reset,
    /// The guest switched itself off.
    PowerOff,
    /// KVM could not run the guest.
    Failed(String),
}

#[derive(Debug, Default)]
struct Control {
    paused: bool,
    stopping: bool,
    /// vCPU threads waiting in the pause loop.
    parked: usize,
    /// vCPU threads that have returned.
    exited: usize,
    outcome: Option<Outcome>,
    /// A save in progress: each paused vCPU thread fills its slot.
    saving: Option<Vec<Option<Result<VcpuState, String>>>>,
}

pub(crate) struct Machine {
    pub vm: Arc<VmFd>,
    pub framebuffer: FramebufferMemory,
    pub ram: GuestRam,
    pub devices: Mutex<Devices>,
    vcpus: usize,
    /// The MSRs a save reads (KVM's list for this host).
    msr_indices: Vec<u32>,
    memory_bytes: u64,
    control: Mutex<Control>,
    changed: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
    ready: Mutex<Option<Duration>>,
    /// Told when the machine stops by itself, with its outcome.
    on_stop: Box<dyn Fn(Outcome) + Send + Sync>,
    reported: AtomicBool,
}

/// What a machine needs to power on, besides its [`Prepared`] VM.
pub(crate) struct Spec<'a> {
    pub cpuid: &'a CpuId,
    pub framebuffer: FramebufferFormat,
    pub boot: &'a Boot,
    pub console: ConsoleLog,
    /// Continue from this saved state (its memories already in the prepared VM's)
    /// instead of booting.
    pub restore: Option<&'a Meta>,
}

/// A KVM VM with its interrupt controllers, PIT, memories and vCPUs, nothing running:
/// the slow part of a power-on (KVM sizes its tables to the memory), done before a
/// migrating VM's last state arrives.
pub(crate) struct Prepared {
    vm: VmFd,
    pub ram: GuestRam,
    pub framebuffer: FramebufferMemory,
    vcpus: Vec<VcpuFd>,
    msr_indices: Vec<u32>,
    memory_bytes: u64,
}

/// The TSS KVM needs on Intel hosts, in the hole below 4 GiB.
const TSS_ADDRESS: usize = 0xfffb_d000;

impl Prepared {
    /// Creates the VM around `memory` (fresh, or filled from a saved state).
    pub(crate) fn new(
        kvm: &Kvm,
        vcpus: u8,
        (ram, framebuffer): (GuestRam, FramebufferMemory),
    ) -> Result<Self, VmmError> {
        let vm = kvm.create_vm().map_err(VmmError::kvm("create the VM"))?;
        vm.set_tss_address(TSS_ADDRESS)
            .map_err(VmmError::kvm("set the TSS address"))?;
        vm.create_irq_chip()
            .map_err(VmmError::kvm("create the interrupt controllers"))?;
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
        .map_err(VmmError::kvm("create the PIT"))?;
        ram.register(&vm)?;
        framebuffer.register(&vm)?;
        let vcpus = (0..vcpus)
            .map(|index| {
                vm.create_vcpu(u64::from(index))
                    .map_err(VmmError::kvm("create a vCPU"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let msr_indices = kvm
            .get_msr_index_list()
            .map_err(VmmError::kvm("list the MSRs"))?
            .as_slice()
            .to_vec();
        Ok(Self {
            memory_bytes: ram.page_count() * crate::layout::PAGE_SIZE,
            vm,
            ram,
            framebuffer,
            vcpus,
            msr_indices,
        })
    }
}

impl Machine {
    /// Boots the prepared VM, or gives it a saved state, and starts its vCPUs.
    pub(crate) fn power_on(
        prepared: Prepared,
        spec: Spec<'_>,
        on_stop: Box<dyn Fn(Outcome) + Send + Sync>,
    ) -> Result<Arc<Self>, VmmError> {
        install_kick_handler();
        let Prepared {
            vm,
            ram,
            framebuffer,
            vcpus,
            msr_indices,
            memory_bytes,
        } = prepared;
        let entry = match spec.restore {
            None => {
                cpu::write_boot_tables(&ram.memory)?;
                Some(boot::load(
                    spec.boot,
                    &ram.memory,
                    memory_bytes,
                    u8::try_from(vcpus.len()).unwrap_or(u8::MAX),
                    spec.framebuffer,
                )?)
            }
            Some(meta) => {
                snapshot::restore_vm(&vm, &meta.vm)?;
                None
            }
        };

        let vm = Arc::new(vm);
        let irq = |gsi| Ok(IrqLine::new(vm.clone(), gsi));
        let devices = match spec.restore {
            None => Devices::new(spec.console, irq),
            Some(meta) => Devices::restore(&meta.devices, spec.console, irq),
        }
        .map_err(|e| VmmError::Kvm("wire the interrupts", e.to_string()))?;

        for (index, vcpu) in (0u8..).zip(&vcpus) {
            match spec.restore {
                None => {
                    let entry = entry.as_ref().filter(|_| index == 0);
                    cpu::configure(vcpu, index, spec.cpuid, entry)?;
                }
                Some(meta) => {
                    cpu::set_cpuid(vcpu, index, spec.cpuid)?;
                    snapshot::restore_vcpu(vcpu, &meta.vcpus[usize::from(index)])?;
                }
            }
        }

        let machine = Arc::new(Machine {
            vm,
            framebuffer,
            ram,
            devices: Mutex::new(devices),
            vcpus: vcpus.len(),
            msr_indices,
            memory_bytes,
            control: Mutex::new(Control::default()),
            changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            started: Instant::now(),
            ready: Mutex::new(None),
            on_stop,
            reported: AtomicBool::new(false),
        });
        for (index, vcpu) in vcpus.into_iter().enumerate() {
            let m = machine.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || m.run_vcpu(index, vcpu))
                .map_err(|e| VmmError::Kvm("start a vCPU thread", e.to_string()))?;
            lock(&machine.threads).push(thread);
        }
        Ok(machine)
    }

    /// Time from power-on to the guest's "ready" on the status port.
    pub(crate) fn ready_after(&self) -> Option<Duration> {
        *lock(&self.ready)
    }

    /// Holds every vCPU outside the guest (a paused VM uses no CPU), or lets them run.
    pub(crate) fn set_paused(&self, paused: bool) {
        let mut control = lock(&self.control);
        control.paused = paused;
        self.changed.notify_all();
        if paused {
            drop(self.kick_until(control, |c| c.parked + c.exited >= self.vcpus));
        }
    }

    /// Stops every vCPU thread and waits for them; the machine can then be dropped.
    pub(crate) fn shut_down(&self) {
        let mut control = lock(&self.control);
        control.stopping = true;
        self.changed.notify_all();
        drop(self.kick_until(control, |c| c.exited >= self.vcpus));
        for thread in lock(&self.threads).drain(..) {
            let _ = thread.join();
        }
    }

    /// Interrupts the vCPU threads (a signal makes KVM_RUN return) until `done` holds.
    /// Repeated, because a signal that lands just before a thread enters KVM_RUN is lost.
    fn kick_until<'a>(
        &'a self,
        mut control: MutexGuard<'a, Control>,
        done: impl Fn(&Control) -> bool,
    ) -> MutexGuard<'a, Control> {
        while !done(&control) {
            self.kick_threads();
            control = self
                .changed
                .wait_timeout(control, Duration::from_millis(2))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        control
    }

    /// Signals every live vCPU thread, so one in KVM_RUN returns to its loop.
    fn kick_threads(&self) {
        use std::os::unix::thread::JoinHandleExt;
        for thread in lock(&self.threads).iter() {
            if !thread.is_finished() {
                // SAFETY: the thread is alive (not finished) and joinable, so its
                // pthread_t is valid.
                unsafe { libc::pthread_kill(thread.as_pthread_t(), kick_signal()) };
            }
        }
    }

    /// The whole machine's state, in [`snapshot`]'s format. The machine must be paused.
    pub(crate) fn save(&self) -> Result<Vec<u8>, VmmError> {
        let meta = self.save_meta()?;
        snapshot::encode(
            &meta,
            |out| self.ram.write_pages(out),
            &self.framebuffer.dump(),
        )
    }

    /// Everything of the machine's state but its memories. The machine must be paused.
    pub(crate) fn save_meta(&self) -> Result<Meta, VmmError> {
        let mut control = lock(&self.control);
        if !control.paused || control.stopping || control.exited > 0 {
            return Err(VmmError::State(
                "only a paused, running machine can be saved".into(),
            ));
        }
        control.saving = Some((0..self.vcpus).map(|_| None).collect());
        self.changed.notify_all();
        loop {
            let done = control
                .saving
                .as_ref()
                .is_some_and(|slots| slots.iter().all(Option::is_some));
            if done || control.exited > 0 {
                break;
            }
            control = self
                .changed
                .wait_timeout(control, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let slots = control.saving.take().unwrap_or_default();
        drop(control);
        let mut vcpus = Vec::with_capacity(slots.len());
        for slot in slots {
            match slot {
                Some(Ok(state)) => vcpus.push(state),
                Some(Err(e)) => return Err(VmmError::State(format!("cannot save a vCPU: {e}"))),
                None => return Err(VmmError::State("a vCPU stopped during the save".into())),
            }
        }
        Ok(Meta {
            memory_bytes: self.memory_bytes,
            width: self.framebuffer.format.width,
            height: self.framebuffer.format.height,
            vcpus,
            vm: snapshot::save_vm(&self.vm)?,
            devices: lock(&self.devices).save(),
        })
    }

    fn run_vcpu(self: Arc<Self>, index: usize, mut vcpu: VcpuFd) {
        loop {
            {
                let mut control = lock(&self.control);
                while control.paused && !control.stopping {
                    // A save asks each parked vCPU for its state.
                    if let Some(slot) = control.saving.as_mut().and_then(|s| s.get_mut(index)) {
                        if slot.is_none() {
                            *slot = Some(
                                snapshot::save_vcpu(&vcpu, &self.msr_indices)
                                    .map_err(|e| e.to_string()),
                            );
                            self.changed.notify_all();
                        }
                    }
                    control.parked += 1;
                    self.changed.notify_all();
                    control = self
                        .changed
                        .wait(control)
                        .unwrap_or_else(|e| e.into_inner());
                    control.parked -= 1;
                }
                if control.stopping {
                    break;
                }
            }
            let outcome = match vcpu.run() {
                Ok(VcpuExit::InternalError) => {
                    if self.complete_unemulated(&mut vcpu) {
                        None
                    } else {
                        Some(Outcome::Failed(internal_error(&mut vcpu)))
                    }
                }
                Ok(exit) => self.handle_exit(exit),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
                Err(e) => Some(Outcome::Failed(format!("KVM_RUN failed: {e}"))),
            };
            if let Some(outcome) = outcome {
                self.stop_by_guest(outcome);
            }
        }
        let mut control = lock(&self.control);
        control.exited += 1;
        self.changed.notify_all();
    }

    fn handle_exit(&self, exit: VcpuExit<'_>) -> Option<Outcome> {
        match exit {
            VcpuExit::IoIn(port, data) => {
                lock(&self.devices).io_in(port, data);
                None
            }
            VcpuExit::IoOut(port, data) => match lock(&self.devices).io_out(port, data)? {
                Action::Ready => {
                    lock(&self.ready).get_or_insert(self.started.elapsed());
                    None
                }
                Action::Reset => Some(Outcome::Reset),
                Action::PowerOff => Some(Outcome::PowerOff),
            },
            // Nothing is mapped for MMIO: reads float high, writes go nowhere.
            VcpuExit::MmioRead(_, data) => {
                data.fill(0xff);
                None
            }
            VcpuExit::MmioWrite(..) => None,
            VcpuExit::Intr | VcpuExit::IrqWindowOpen => None,
            // A triple fault resets a PC.
            VcpuExit::Shutdown => Some(Outcome::Reset),
            // With the in-kernel LAPIC, HLT only exits when the guest can never wake.
            VcpuExit::Hlt => Some(Outcome::PowerOff),
            VcpuExit::SystemEvent(kind, _) => Some(match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_RESET => Outcome::Reset,
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Outcome::PowerOff,
                other => Outcome::Failed(format!("system event {other}")),
            }),
            VcpuExit::FailEntry(reason, cpu) => Some(Outcome::Failed(format!(
                "KVM could not enter the guest on vCPU {cpu} (reason {reason:#x})"
            ))),
            other => Some(Outcome::Failed(format!("unexpected vCPU exit {other:?}"))),
        }
    }

    /// Completes an instruction KVM failed to emulate, as the CPU would, when it is one
    /// of those in [`crate::unemulated`]; false for anything else.
    fn complete_unemulated(&self, vcpu: &mut VcpuFd) -> bool {
        use crate::unemulated::{decode, Completion};
        // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, so `internal` is set.
        let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
        if suberror != kvm_bindings::KVM_INTERNAL_ERROR_EMULATION {
            return false;
        }
        let Ok(mut regs) = vcpu.get_regs() else {
            return false;
        };
        let read = |vcpu: &VcpuFd, address: u64, out: &mut [u8]| -> bool {
            // Byte by byte: the instruction or operand may straddle a page.
            for (i, byte) in out.iter_mut().enumerate() {
                let at = match vcpu.translate_gva(address.wrapping_add(i as u64)) {
                    Ok(at) if at.valid != 0 => at.physical_address,
                    _ => return false,
                };
                match self.ram.memory.read_obj::<u8>(GuestAddress(at)) {
                    Ok(b) => *byte = b,
                    Err(_) => return false,
                }
            }
            true
        };
        let mut code = [0u8; 15];
        let mut n = 0;
        while n < code.len() && read(vcpu, regs.rip + n as u64, &mut code[n..n + 1]) {
            n += 1;
        }
        match decode(&code[..n], &regs) {
            Some(Completion::Breakpoint) => {
                let Ok(mut events) = vcpu.get_vcpu_events() else {
                    return false;
                };
                regs.rip += 1;
                events.exception.injected = 1;
                events.exception.nr = 3; // #BP
                events.exception.has_error_code = 0;
                events.exception.error_code = 0;
                vcpu.set_regs(&regs).is_ok() && vcpu.set_vcpu_events(&events).is_ok()
            }
            Some(Completion::Skip { len }) => {
                regs.rip += len;
                vcpu.set_regs(&regs).is_ok()
            }
            Some(Completion::LoadMxcsr { address, len }) => {
                let mut value = [0u8; 4];
                let Ok(mut fpu) = vcpu.get_fpu() else {
                    return false;
                };
                // Reserved MXCSR bits would be #GP on a CPU: leave that to the failure path.
                if !read(vcpu, address, &mut value) || u32::from_le_bytes(value) >> 16 != 0 {
                    return false;
                }
                fpu.mxcsr = u32::from_le_bytes(value);
                regs.rip += len;
                vcpu.set_fpu(&fpu).is_ok() && vcpu.set_regs(&regs).is_ok()
            }
            None => false,
        }
    }

    /// The guest ended this machine: every vCPU stops and the owner is told once.
    fn stop_by_guest(&self, outcome: Outcome) {
        {
            let mut control = lock(&self.control);
            control.stopping = true;
            control.outcome.get_or_insert(outcome.clone());
            self.changed.notify_all();
        }
        self.kick_threads();
        if !self.reported.swap(true, Ordering::SeqCst) {
            (self.on_stop)(outcome);
        }
    }
}

/// What KVM says of an internal error, with where the guest was: what an admin needs to
/// tell a guest bug from a host limit.
fn internal_error(vcpu: &mut VcpuFd) -> String {
    // SAFETY: KVM filled the `internal` member of the exit union for this exit reason.
    let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
    let what = match suberror {
        kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => "an instruction KVM cannot emulate",
        kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => "an exception while delivering one",
        kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => "an event KVM could not deliver",
        _ => "an internal error",
    };
    let rip = vcpu.get_regs().map_or(0, |r| r.rip);
    format!("KVM stopped the guest: {what} (suberror {suberror}) at RIP {rip:#x}")
}

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// The kick signal does nothing but interrupt KVM_RUN (no SA_RESTART: the ioctl
/// returns EINTR).
fn install_kick_handler() {
    static ONCE: Once = Once::new();
    extern "C" fn on_kick(_: libc::c_int) {}
    ONCE.call_once(|| {
        // SAFETY: sigaction is plain data; all zeroes is a valid, empty action.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
        // SAFETY: initialises the mask of the action we own.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: installing an async-signal-safe handler that does nothing.
        unsafe { libc::sigaction(kick_signal(), &action, std::ptr::null_mut()) };
    });
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
