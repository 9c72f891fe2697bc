//! Suspend to disk: a kvm desktop's whole machine ([`oriel_vmm::Vm::save`]) goes to a
//! file in the server's suspend directory and the VM ends, so a suspended desktop
//! costs no RAM; resuming builds the VM from the file and serves it as the same
//! desktop, which continues exactly where it was.
//!
//! The file (integers little-endian): the magic `ORIELSUS`, the format version (u32),
//! the desktop's generation (u64), when it was saved (u64, Unix seconds), its name
//! (u16 length, bytes), then the VM state in the VMM's own versioned format. A file
//! that is cut short, damaged, from a newer Oriel, of another desktop or too big for
//! the machine it claims is refused with a clear error and left where it is.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_vmm::Vm;

use crate::desktop::Desktop;
use crate::source::config::SourceConfig;
use crate::source::kvm::KvmSource;
use crate::DisplayServer;

const MAGIC: [u8; 8] = *b"ORIELSUS";
/// The format this build writes and the newest it reads.
const VERSION: u32 = 1;
/// Longest desktop name a file holds (names are far shorter).
const MAX_NAME: usize = 255;

/// What a suspension wrote.
#[derive(Debug, Clone)]
pub struct Suspended {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The file desktop `name`'s state is kept in, under `dir`. Names that are not plain
/// file names are refused, so no name reaches outside the directory.
pub fn state_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let plain = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !plain {
        bail!("desktop name '{name}' cannot name a file; it is not suspended");
    }
    Ok(dir.join(format!("{name}.vmstate")))
}

/// Whether desktop `name` is suspended here.
pub fn is_suspended(server: &DisplayServer, name: &str) -> bool {
    state_file(&server.config().suspend_dir, name).is_ok_and(|p| p.exists())
}

/// Suspends desktop `name` (running or stopped): pauses its VM, writes its state and
/// removes the desktop. If the state cannot be written the desktop runs on as it was.
pub fn suspend(server: &DisplayServer, name: &str) -> anyhow::Result<Suspended> {
    let path = state_file(&server.config().suspend_dir, name)?;
    let desktop = server
        .desktops()
        .get_any(name)
        .ok_or_else(|| anyhow!("no desktop '{name}'"))?;
    let stopped = server.desktops().is_stopped(name);
    let state = {
        let source = desktop.source();
        let kvm = source
            .as_any()
            .downcast_ref::<KvmSource>()
            .ok_or_else(|| anyhow!("desktop '{name}' is not a VM; only kvm desktops suspend"))?;
        // Paused from here on: what is saved is the last thing the guest did.
        kvm.vm().pause();
        match kvm.vm().save() {
            Ok(state) => state,
            Err(e) => {
                if !stopped {
                    kvm.vm().resume();
                }
                return Err(e).context(format!("cannot save desktop '{name}'"));
            }
        }
    };
    let written = write_state(&path, name, desktop.generation(), &state);
    if let Err(e) = written {
        if !stopped {
            desktop.source().set_paused(false);
        }
        return Err(e);
    }
    server.desktops().destroy(name);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    tracing::info!(desktop = name, bytes, path = %path.display(), "desktop suspended");
    Ok(Suspended { path, bytes })
}

/// Resumes desktop `name` from its saved state as `spec` describes it, at
/// `generation` or the saved one if that is later. A desktop that runs here already
/// is left as it is (the command may be a retry).
pub fn resume(
    server: &DisplayServer,
    name: &str,
    spec: &DesktopSpec,
    generation: u64,
) -> anyhow::Result<()> {
    if server.desktops().get_any(name).is_some() {
        return Ok(());
    }
    let path = state_file(&server.config().suspend_dir, name)?;
    let SourceConfig::Kvm(kvm) = SourceConfig::from_spec(spec)? else {
        bail!("only kvm desktops resume");
    };
    let config = kvm.vm_config(&server.config().images_dir)?;
    let limit = config.max_state_len()?;
    let saved = read_state(&path, name, limit)?;
    let vm = Vm::restore(config, &saved.state)
        .with_context(|| format!("cannot resume desktop '{name}' from {}", path.display()))?;
    let generation = generation.max(saved.generation);
    let source = KvmSource::new(vm, kvm.fps);
    let desktop = Desktop::at_generation(name, Box::new(source), generation);
    // Captured before anyone connects, so a viewer that shows the desktop from before
    // gets only what differs.
    desktop.capture_once();
    server.desktops().add(desktop)?;
    // Only once it runs: a failed resume keeps the state to try again.
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
    let asleep_s = (oriel_transport::unix_micros() / 1_000_000).saturating_sub(saved.saved_unix);
    tracing::info!(desktop = name, asleep_s, "desktop resumed");
    Ok(())
}

/// Forgets desktop `name`'s saved state, if it has one (it was reset or destroyed).
pub fn discard(server: &DisplayServer, name: &str) {
    let Ok(path) = state_file(&server.config().suspend_dir, name) else {
        return;
    };
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(desktop = name, "suspended state discarded"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Writes the file next to its final name and renames it there once it is on disk,
/// so a crash leaves the old file or the new one, never half of one.
fn write_state(path: &Path, name: &str, generation: u64, state: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    oriel_transport::files::create_private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let partial = path.with_extension("partial");
    let write = || -> std::io::Result<()> {
        oriel_transport::files::write_private(&partial, &header(name, generation))?;
        let mut file = std::fs::OpenOptions::new().append(true).open(&partial)?;
        file.write_all(state)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        anyhow!(
            "cannot write the suspended state to {}: {e}",
            path.display()
        )
    })
}

fn header(name: &str, generation: u64) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(MAX_NAME)];
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(oriel_transport::unix_micros() / 1_000_000).to_le_bytes());
    out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(name);
    out
}

/// A suspended desktop read back.
pub struct SavedState {
    pub generation: u64,
    pub saved_unix: u64,
    pub state: Vec<u8>,
}

/// Reads desktop `name`'s file, checking its header and that it is no longer than a
/// state of at most `limit` bytes can make it; the VM state itself is checked by the
/// VMM when it is restored.
pub fn read_state(path: &Path, name: &str, limit: u64) -> anyhow::Result<SavedState> {
    let corrupt = |why: &str| anyhow!("the suspended state {} is unusable: {why}", path.display());
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "desktop '{name}' has no suspended state here ({} is missing)",
                path.display()
            )
        }
        Err(e) => bail!("cannot open {}: {e}", path.display()),
    };
    let len = file.metadata()?.len();
    if len > limit + (32 + MAX_NAME) as u64 {
        return Err(corrupt(
            "it is larger than any state of this desktop's machine",
        ));
    }
    let mut fixed = [0u8; 30];
    file.read_exact(&mut fixed)
        .map_err(|_| corrupt("it is cut short"))?;
    if fixed[..8] != MAGIC {
        return Err(corrupt("it is not an Oriel suspended desktop"));
    }
    let word = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().unwrap_or_default());
    let version = u32::from_le_bytes(fixed[8..12].try_into().unwrap_or_default());
    if version > VERSION {
        return Err(corrupt(&format!(
            "it was written by a newer Oriel (format {version}; this one reads up to {VERSION})"
        )));
    }
    let (generation, saved_unix) = (word(12), word(20));
    let name_len = usize::from(u16::from_le_bytes([fixed[28], fixed[29]]));
    if name_len > MAX_NAME {
        return Err(corrupt("its desktop name is too long"));
    }
    let mut saved_name = vec![0u8; name_len];
    file.read_exact(&mut saved_name)
        .map_err(|_| corrupt("it is cut short"))?;
    if saved_name != name.as_bytes() {
        return Err(corrupt(&format!(
            "it holds desktop '{}', not '{name}'",
            String::from_utf8_lossy(&saved_name)
        )));
    }
    let mut state = Vec::new();
    file.read_to_end(&mut state)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(SavedState {
        generation,
        saved_unix,
        state,
    })
}
