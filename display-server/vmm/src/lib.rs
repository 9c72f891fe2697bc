//! Oriel's micro-VMM: desktop VMs on KVM (kvm-ioctls), with a linear framebuffer whose
//! damage comes from KVM dirty-page logging, PS/2 keyboard and mouse on an i8042, an
//! 8250 serial console kept as a log, and the KVM PIC/IOAPIC/PIT. Guests are Linux
//! kernels (vesafb on the framebuffer, see [`image`]) or the tiny test guest.

pub mod boot;
pub mod console;
mod cpu;
mod devices;
pub mod i8042;
pub mod image;
pub mod layout;
mod machine;
pub mod memory;
mod migration;
mod mptable;
pub mod scancode;
mod snapshot;
pub mod tiny;
mod unemulated;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

pub use boot::{Boot, LinuxBoot};
pub use console::ConsoleLog;
pub use devices::{STATUS_PORT, STATUS_POWER_OFF, STATUS_READY, STATUS_RESET};
pub use machine::Outcome;
pub use memory::FramebufferFormat;
use memory::{FramebufferMemory, GuestRam};
pub use migration::{
    migrate, Convergence, Incoming, MigrationReport, Outgoing, OutgoingStats, RecordSink, Step,
    MAX_RECORD,
};

use machine::{lock, Machine, Prepared};

/// RHEV-H's promise: up to 16 vCPUs and 96 GiB per VM.
pub const MAX_VCPUS: u8 = 16;
pub const MAX_MEMORY_MIB: u64 = 96 * 1024;
/// Room for the boot tables, stack and the tiny guest.
pub const MIN_MEMORY_MIB: u64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("cannot use KVM: {0}")]
    NoKvm(String),
    #[error("KVM: cannot {0}: {1}")]
    Kvm(&'static str, String),
    #[error("invalid VM configuration: {0}")]
    Config(&'static str),
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("boot: {0}")]
    Boot(String),
    /// A saved state that cannot be taken or used (see [`Vm::save`], [`Vm::restore`]).
    #[error("{0}")]
    State(String),
    /// A live migration that cannot go on (the VM keeps running where it was).
    #[error("migration: {0}")]
    Migration(String),
}

impl VmmError {
    fn kvm(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmmError {
        move |e| VmmError::Kvm(what, e.to_string())
    }

    fn guest_write(e: vm_memory::GuestMemoryError) -> VmmError {
        VmmError::Memory(format!("cannot write guest memory: {e}"))
    }
}

/// Whether this host can run VMs: `/dev/kvm` exists and this user may open it.
pub fn kvm_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm is not usable here ({e})"))
}

/// For tests that need KVM: whether they can run here. Without `/dev/kvm` they are
/// skipped, and say so on the process's own stderr, which `cargo test` shows even for
/// tests that pass; a `/dev/kvm` that exists but cannot be used fails the test instead,
/// so a broken KVM never passes for a missing one.
pub fn kvm_tests_enabled(test: &str) -> bool {
    if !std::path::Path::new("/dev/kvm").exists() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: this machine has no /dev/kvm"
        );
        return false;
    }
    if let Err(reason) = kvm_usable() {
        panic!("{reason}; /dev/kvm exists, so {test} must run");
    }
    true
}

/// What a VM is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub vcpus: u8,
    pub memory_mib: u64,
    pub width: u32,
    pub height: u32,
    pub boot: Boot,
}

impl VmConfig {
    /// The tiny test guest on one vCPU with a little memory.
    pub fn tiny(width: u32, height: u32) -> Self {
        Self {
            vcpus: 1,
            memory_mib: 16,
            width,
            height,
            boot: Boot::Tiny,
        }
    }

    /// The largest saved state ([`Vm::save`]) a VM of this configuration can have,
    /// so that a reader can refuse a bigger file before reading it.
    pub fn max_state_len(&self) -> Result<u64, VmmError> {
        let format = self.check()?;
        Ok(snapshot::max_len(
            self.memory_mib << 20,
            format.mapped_len(),
        ))
    }

    fn check(&self) -> Result<FramebufferFormat, VmmError> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(VmmError::Config("vCPUs must be 1 to 16"));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(VmmError::Config("memory must be 4 MiB to 96 GiB"));
        }
        if self.width < 64 || self.height < 64 || self.width > 8192 || self.height > 8192 {
            return Err(VmmError::Config("the screen must be 64x64 to 8192x8192"));
        }
        FramebufferFormat::new(self.width, self.height)
    }
}

/// Where a VM is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    Running,
    Paused,
    /// The guest switched itself off.
    PoweredOff,
    /// The VM cannot run (KVM refused the guest, or a reboot failed).
    Failed(String),
}

struct Inner {
    kvm: Kvm,
    cpuid: CpuId,
    config: VmConfig,
    format: FramebufferFormat,
    console: ConsoleLog,
    machine: Mutex<Arc<Machine>>,
    generation: AtomicU64,
    state: Mutex<VmState>,
    events: mpsc::Sender<Event>,
}

enum Event {
    Stopped { generation: u64, outcome: Outcome },
    Quit,
}

/// A desktop VM. Dropping it destroys the VM and gives its memory back.
pub struct Vm {
    inner: Arc<Inner>,
    supervisor: Option<JoinHandle<()>>,
}

impl Vm {
    /// Creates the VM and powers it on.
    pub fn start(config: VmConfig) -> Result<Vm, VmmError> {
        Self::start_from(config, None)
    }

    /// Creates a VM that continues exactly where the VM that [`Vm::save`]d `state` was
    /// (with the same configuration); it runs at once. A state of another shape, from a
    /// newer Oriel, or damaged is refused with [`VmmError::State`].
    pub fn restore(config: VmConfig, state: &[u8]) -> Result<Vm, VmmError> {
        Self::start_from(config, Some(state))
    }

    /// Whether `state` is a saved state [`Vm::restore`] would take for `config`, checked
    /// without KVM (the same checks restore makes before it creates anything).
    pub fn check_state(config: &VmConfig, state: &[u8]) -> Result<(), VmmError> {
        decode_state(config, config.check()?, state).map(drop)
    }

    fn start_from(config: VmConfig, state: Option<&[u8]>) -> Result<Vm, VmmError> {
        let (format, host) = Self::host_for(&config)?;
        let memory = fresh_memory(&config, format)?;
        let meta = match state {
            Some(bytes) => {
                let decoded = decode_state(&config, format, bytes)?;
                memory.0.load(decoded.ram.iter())?;
                memory.1.load(decoded.framebuffer)?;
                Some(decoded.meta)
            }
            None => None,
        };
        let prepared = Prepared::new(&host.0, config.vcpus, memory)?;
        Self::power_on_with(config, format, host, prepared, meta.as_ref())
    }

    /// Checks `config` against this host; its screen format, KVM and the CPUID it offers.
    fn host_for(config: &VmConfig) -> Result<(FramebufferFormat, (Kvm, CpuId)), VmmError> {
        let format = config.check()?;
        if config.width > 16383 && matches!(config.boot, Boot::Linux(_)) {
            return Err(VmmError::Config(
                "Linux framebuffers are at most 16383 pixels wide",
            ));
        }
        let kvm = Kvm::new().map_err(|e| VmmError::NoKvm(format!("/dev/kvm: {e}")))?;
        let max_vcpus = kvm.get_max_vcpus();
        if usize::from(config.vcpus) > max_vcpus {
            return Err(VmmError::Config("more vCPUs than this host's KVM allows"));
        }
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(VmmError::kvm("read the supported CPUID"))?;
        Ok((format, (kvm, cpuid)))
    }

    /// Starts a prepared VM (its memories fresh, or filled from a saved state).
    fn power_on_with(
        config: VmConfig,
        format: FramebufferFormat,
        (kvm, cpuid): (Kvm, CpuId),
        prepared: Prepared,
        meta: Option<&snapshot::Meta>,
    ) -> Result<Vm, VmmError> {
        let (events, receiver) = mpsc::channel();
        let console = ConsoleLog::default();
        let machine = power_on(
            &cpuid,
            &config,
            format,
            &console,
            (1, &events),
            (prepared, meta),
        )?;
        let inner = Arc::new(Inner {
            kvm,
            cpuid,
            config,
            format,
            console,
            machine: Mutex::new(machine),
            generation: AtomicU64::new(1),
            state: Mutex::new(VmState::Running),
            events,
        });
        let weak = Arc::downgrade(&inner);
        let supervisor = std::thread::Builder::new()
            .name("vm-supervisor".into())
            .spawn(move || supervise(weak, receiver))
            .map_err(|e| VmmError::Kvm("start the supervisor", e.to_string()))?;
        Ok(Vm {
            inner,
            supervisor: Some(supervisor),
        })
    }

    pub fn config(&self) -> &VmConfig {
        &self.inner.config
    }

    pub fn state(&self) -> VmState {
        lock(&self.inner.state).clone()
    }

    /// The serial console log (shared: it keeps growing while the VM runs).
    pub fn console(&self) -> ConsoleLog {
        self.inner.console.clone()
    }

    /// Power-cycles the VM: a new machine in its power-on state; the old one's memory
    /// is given back. The console log is kept.
    pub fn reset(&self) -> Result<(), VmmError> {
        self.inner.reset()
    }

    /// Holds the vCPUs (no guest code runs, no CPU used) until [`Vm::resume`].
    pub fn pause(&self) {
        self.inner.pause();
    }

    pub fn resume(&self) {
        self.inner.resume();
    }

    /// A key pressed or released, by Linux evdev code.
    pub fn key(&self, evdev: u16, down: bool) {
        lock(&self.machine().devices).input(|c| c.key(evdev, down));
    }

    /// Relative mouse motion, buttons held (`i8042::BUTTON_*`) and wheel clicks.
    pub fn mouse(&self, dx: i32, dy: i32, buttons: u8, wheel: i32) {
        lock(&self.machine().devices).input(|c| c.mouse(dx, dy, buttons, wheel));
    }

    /// The current machine's framebuffer.
    pub fn framebuffer(&self) -> FramebufferView {
        let machine = lock(&self.inner.machine);
        FramebufferView {
            machine: machine.clone(),
            generation: self.inner.generation.load(Ordering::SeqCst),
        }
    }

    pub fn format(&self) -> FramebufferFormat {
        self.inner.format
    }

    /// How long the current boot took to report "ready" on the status port (the tiny
    /// guest does, once its first screen is drawn).
    pub fn ready_after(&self) -> Option<Duration> {
        self.machine().ready_after()
    }

    /// Waits up to `timeout` for the guest's "ready".
    pub fn wait_ready(&self, timeout: Duration) -> Result<Duration, VmmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.ready_after() {
                return Ok(t);
            }
            if let VmState::Failed(reason) = self.state() {
                return Err(VmmError::Boot(reason));
            }
            if Instant::now() > deadline {
                return Err(VmmError::Boot(format!(
                    "the guest did not report ready within {timeout:?}; console: {}",
                    self.inner.console.tail(400)
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs `f` on guest RAM (for loaders and tests).
    pub fn with_ram<R>(&self, f: impl FnOnce(&vm_memory::GuestMemoryMmap) -> R) -> R {
        f(&self.machine().ram.memory)
    }

    /// Host memory the guest has touched: resident RAM and framebuffer pages.
    pub fn resident_bytes(&self) -> u64 {
        let machine = self.machine();
        machine.ram.resident_bytes() + machine.framebuffer.resident_bytes()
    }

    /// The whole VM's state (vCPUs, interrupt controllers, timers, devices, RAM and
    /// screen), for [`Vm::restore`]. A running VM is paused while it is read and then
    /// runs on; a VM that is off or failed has no state to save.
    pub fn save(&self) -> Result<Vec<u8>, VmmError> {
        let state = lock(&self.inner.state);
        let machine = self.machine();
        match *state {
            VmState::Paused => machine.save(),
            VmState::Running => {
                machine.set_paused(true);
                let saved = machine.save();
                machine.set_paused(false);
                saved
            }
            VmState::PoweredOff | VmState::Failed(_) => Err(VmmError::State(
                "the VM is not running; there is no state to save".into(),
            )),
        }
    }

    /// Power-ons so far (1 + resets).
    pub fn boots(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    fn machine(&self) -> Arc<Machine> {
        lock(&self.inner.machine).clone()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.inner.events.send(Event::Quit);
        if let Some(thread) = self.supervisor.take() {
            let _ = thread.join();
        }
        lock(&self.inner.machine).shut_down();
    }
}

impl Inner {
    fn pause(&self) {
        let mut state = lock(&self.state);
        if *state == VmState::Running {
            lock(&self.machine).set_paused(true);
            *state = VmState::Paused;
        }
    }

    fn resume(&self) {
        let mut state = lock(&self.state);
        if *state == VmState::Paused {
            lock(&self.machine).set_paused(false);
            *state = VmState::Running;
        }
    }

    fn reset(&self) -> Result<(), VmmError> {
        let result = {
            let mut machine = lock(&self.machine);
            machine.shut_down();
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            // The old machine's memory goes back before the new one takes any.
            machine.ram.discard();
            machine.framebuffer.discard();
            fresh_memory(&self.config, self.format)
                .and_then(|memory| Prepared::new(&self.kvm, self.config.vcpus, memory))
                .and_then(|prepared| {
                    power_on(
                        &self.cpuid,
                        &self.config,
                        self.format,
                        &self.console,
                        (generation, &self.events),
                        (prepared, None),
                    )
                })
                .map(|new| *machine = new)
        };
        // The state lock is taken after the machine lock is released (pause takes them
        // the other way round).
        *lock(&self.state) = match &result {
            Ok(()) => VmState::Running,
            Err(e) => VmState::Failed(format!("reboot failed: {e}")),
        };
        result
    }
}

/// `bytes` read as a saved state of a machine of `config`, its screen `format`.
fn decode_state<'a>(
    config: &VmConfig,
    format: FramebufferFormat,
    bytes: &'a [u8],
) -> Result<snapshot::Decoded<'a>, VmmError> {
    snapshot::decode(
        bytes,
        usize::from(config.vcpus),
        config.memory_mib << 20,
        (format.width, format.height, format.mapped_len()),
    )
}

fn power_on(
    cpuid: &CpuId,
    config: &VmConfig,
    format: FramebufferFormat,
    console: &ConsoleLog,
    (generation, events): (u64, &mpsc::Sender<Event>),
    (prepared, restore): (Prepared, Option<&snapshot::Meta>),
) -> Result<Arc<Machine>, VmmError> {
    let events = events.clone();
    Machine::power_on(
        prepared,
        machine::Spec {
            cpuid,
            framebuffer: format,
            boot: &config.boot,
            console: console.clone(),
            restore,
        },
        Box::new(move |outcome| {
            let _ = events.send(Event::Stopped {
                generation,
                outcome,
            });
        }),
    )
}

/// Fresh memories for a machine of `config`.
fn fresh_memory(
    config: &VmConfig,
    format: FramebufferFormat,
) -> Result<(GuestRam, FramebufferMemory), VmmError> {
    Ok((
        GuestRam::new(config.memory_mib << 20)?,
        FramebufferMemory::new(format)?,
    ))
}

/// Carries out what guests ask for from their vCPU threads: a reboot builds a new
/// machine; a power-off or failure is recorded.
fn supervise(inner: std::sync::Weak<Inner>, events: mpsc::Receiver<Event>) {
    while let Ok(Event::Stopped {
        generation,
        outcome,
    }) = events.recv()
    {
        let Some(inner) = inner.upgrade() else { return };
        if generation != inner.generation.load(Ordering::SeqCst) {
            continue; // a machine already replaced
        }
        match outcome {
            Outcome::Reset => {
                tracing::info!("guest rebooted");
                if let Err(e) = inner.reset() {
                    tracing::warn!("VM reboot failed: {e}");
                }
            }
            Outcome::PowerOff => {
                tracing::info!("guest powered off");
                *lock(&inner.state) = VmState::PoweredOff;
            }
            Outcome::Failed(reason) => {
                tracing::warn!("VM failed: {reason}");
                *lock(&inner.state) = VmState::Failed(reason);
            }
        }
    }
}

/// A machine's framebuffer as of one boot; a reset makes a new one (compare
/// [`FramebufferView::generation`]).
pub struct FramebufferView {
    machine: Arc<Machine>,
    generation: u64,
}

impl FramebufferView {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn format(&self) -> FramebufferFormat {
        self.machine.framebuffer.format
    }

    /// Framebuffer pages the guest wrote since the last call (KVM's dirty log).
    pub fn take_dirty_pages(&self) -> Result<Vec<u32>, VmmError> {
        self.machine.framebuffer.take_dirty_pages(&self.machine.vm)
    }

    /// Pixels `x0..x1` of row `y` as 0x00RRGGBB.
    pub fn read_row(&self, y: u32, x0: u32, x1: u32, dst: &mut [u32]) {
        self.machine.framebuffer.read_row(y, x0, x1, dst)
    }

    /// The whole screen as 0x00RRGGBB, row-major.
    pub fn read_all(&self) -> Vec<u32> {
        let f = self.format();
        let mut pixels = vec![0u32; (f.width * f.height) as usize];
        for (y, row) in (0u32..).zip(pixels.chunks_mut(f.width as usize)) {
            self.read_row(y, 0, f.width, row);
        }
        pixels
    }

    pub fn page_count(&self) -> u32 {
        self.machine.framebuffer.page_count()
    }
}
