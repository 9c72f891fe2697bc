//! `oriel-bench vmm`: the micro-VMM's costs with the tiny test guest — boot to first
//! pixel, the framebuffer slot's dirty-log call, a whole frame's copy, capture polls,
//! resident memory per VM, idle CPU per VM, and a real `oriel-display-server` with one
//! idle VM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel_display_server::config::parse_size;
use oriel_display_server::source::kvm::KvmSource;
use oriel_display_server::source::FrameSource;
use oriel_vmm::{Vm, VmConfig};
use serde_json::json;

use crate::x11_bench::process_cpu_s;

#[derive(Debug, clap::Args)]
pub(crate) struct VmmArgs {
    /// Framebuffer size of the VMs.
    #[arg(long, default_value = "1024x768")]
    size: String,
    /// Boots measured for boot_to_first_pixel_ms.
    #[arg(long, default_value_t = 20)]
    boots: u32,
    /// VMs started at once for the per-VM memory and idle CPU figures.
    #[arg(long, default_value_t = 10)]
    vms: u32,
    /// Seconds over which idle CPU is measured.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

pub(crate) fn run(args: VmmArgs) -> anyhow::Result<String> {
    oriel_vmm::kvm_usable().map_err(anyhow::Error::msg)?;
    let size = parse_size(&args.size)?;
    let config = VmConfig::tiny(size.width, size.height);

    eprintln!("[1/4] {} boots of the tiny guest", args.boots);
    let mut first_pixel = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..args.boots.max(1) {
        let started = Instant::now();
        let vm = Vm::start(config.clone())?;
        let fb = vm.framebuffer();
        while fb.take_dirty_pages()?.is_empty() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the guest drew nothing in 60 s");
            }
            std::hint::spin_loop();
        }
        first_pixel.push(started.elapsed().as_secs_f64() * 1e3);
        let r = vm.wait_ready(Duration::from_secs(60))?;
        ready.push(r.as_secs_f64() * 1e3);
    }

    eprintln!("[2/4] dirty log and capture polls");
    let vm = Vm::start(config.clone())?;
    vm.wait_ready(Duration::from_secs(60))?;
    let fb = vm.framebuffer();
    fb.take_dirty_pages()?;
    let mut dirty_log = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        fb.take_dirty_pages()?;
        dirty_log.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // A whole frame out of the slot, row by row as a capture poll copies damage.
    let format = fb.format();
    let mut row = vec![0u32; format.width as usize];
    let mut full_frame_read = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        for y in 0..format.height {
            fb.read_row(y, 0, format.width, &mut row);
        }
        full_frame_read.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(&row);
    }
    drop(fb);
    let mut source = KvmSource::new(vm, 30);
    source.poll(); // the first poll compares the whole screen
    let mut poll_idle = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let damage = source.poll();
        poll_idle.push(t.elapsed().as_secs_f64() * 1e6);
        if !damage.is_empty() {
            bail!("an idle guest changed its screen");
        }
    }
    let mut poll_glyph = Vec::new();
    for i in 0..20u64 {
        let before = source.vm().console().total();
        source.inject(&oriel_protocol::InputEvent::Key {
            code: 30,
            down: true,
        });
        source.inject(&oriel_protocol::InputEvent::Key {
            code: 30,
            down: false,
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        // The guest echoes "key 1e\n" on COM1 once the glyph is drawn.
        while source.vm().console().total() < before + 7 {
            if Instant::now() > deadline {
                bail!("key {i} never reached the guest");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let t = Instant::now();
        let damage = source.poll();
        poll_glyph.push(t.elapsed().as_secs_f64() * 1e6);
        if damage.is_empty() {
            bail!("a key drew nothing");
        }
    }
    // Saved (paused, read, resumed) and restored into a new VM that runs at once.
    let (mut save_ms, mut restore_ms, mut state_bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..10 {
        let t = Instant::now();
        let state = source.vm().save()?;
        save_ms.push(t.elapsed().as_secs_f64() * 1e3);
        state_bytes = state.len();
        let t = Instant::now();
        let restored = Vm::restore(config.clone(), &state)?;
        restore_ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(restored);
    }
    drop(source);

    eprintln!(
        "[3/4] {} VMs at once, idle for {} s",
        args.vms, args.seconds
    );
    let rss_before = rss_kb(std::process::id())?;
    let vms: Vec<Vm> = (0..args.vms.max(1))
        .map(|_| Vm::start(config.clone()))
        .collect::<Result<_, _>>()?;
    for vm in &vms {
        vm.wait_ready(Duration::from_secs(60))?;
    }
    let rss_with = rss_kb(std::process::id())?;
    let cpu_before = process_cpu_s(std::process::id());
    std::thread::sleep(Duration::from_secs(args.seconds));
    let idle_cpu_s = process_cpu_s(std::process::id()) - cpu_before;
    let n = vms.len() as f64;
    let touched_mb = vms.iter().map(Vm::resident_bytes).sum::<u64>() as f64 / n / (1 << 20) as f64;
    drop(vms);
    let per_vm_mb = (rss_with.saturating_sub(rss_before)) as f64 / 1024.0 / n;

    eprintln!(
        "[4/4] oriel-display-server with one idle VM for {} s",
        args.seconds
    );
    let server = server_with_one_vm(&args.size, args.seconds)?;

    let p = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        #[expect(
            clippy::cast_possible_truncation,
            reason = "float to int saturates; q is in 0..=1, so the index is at most len - 1"
        )]
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        (v[i] * 1000.0).round() / 1000.0
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(json!({
        "bench": "vmm",
        "guest": "tiny",
        "width": size.width,
        "height": size.height,
        "boots": first_pixel.len(),
        "boot_to_first_pixel_ms": p(&mut first_pixel, 0.5),
        "boot_to_first_pixel_ms_max": p(&mut first_pixel, 1.0),
        "boot_to_ready_ms": p(&mut ready, 0.5),
        "dirty_log_us": p(&mut dirty_log, 0.5),
        "dirty_log_us_p99": p(&mut dirty_log, 0.99),
        "framebuffer_pages": (size.width as u64 * size.height as u64 * 4).div_ceil(4096),
        "full_frame_read_us": p(&mut full_frame_read, 0.5),
        "capture_poll_idle_us": p(&mut poll_idle, 0.5),
        "capture_poll_key_glyph_us": p(&mut poll_glyph, 0.5),
        "state_kib": state_bytes / 1024,
        "save_ms": p(&mut save_ms, 0.5),
        "restore_ms": p(&mut restore_ms, 0.5),
        "vms": args.vms,
        "rss_per_vm_mb": round(per_vm_mb),
        "guest_touched_mb_per_vm": round(touched_mb),
        "rss_per_vm_beyond_guest_mb": round(per_vm_mb - touched_mb),
        "idle_cpu_percent_per_vm": round(idle_cpu_s / args.seconds as f64 * 100.0 / n),
        "server_rss_mb": server.rss_mb,
        "server_overhead_beyond_guest_mb": round(server.rss_mb - touched_mb),
        "server_idle_cpu_percent": server.idle_cpu_percent,
    })
    .to_string())
}

struct ServerFigures {
    rss_mb: f64,
    idle_cpu_percent: f64,
}

/// Runs the real display server binary with one kvm desktop and measures it idle (the
/// tiny guest is deterministic, so it touches what the in-process VMs touched).
fn server_with_one_vm(size: &str, seconds: u64) -> anyhow::Result<ServerFigures> {
    let binary = std::env::current_exe()?
        .parent()
        .context("no executable directory")?
        .join("oriel-display-server");
    if !binary.exists() {
        bail!("{} is missing: build the workspace first", binary.display());
    }
    let data = std::env::temp_dir().join(format!("oriel-bench-vmm-{}", std::process::id()));
    let mut child = Command::new(&binary)
        .args(["--desktop", "vm=kvm:tiny", "--size", size])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = lines.any(|l| l.is_ok_and(|l| l.contains("listening on")));
    let figures = (|| {
        if !started {
            bail!("oriel-display-server did not start");
        }
        std::thread::sleep(Duration::from_secs(2)); // the guest boots and settles
        let cpu_before = process_cpu_s(pid);
        std::thread::sleep(Duration::from_secs(seconds));
        let cpu = process_cpu_s(pid) - cpu_before;
        Ok(ServerFigures {
            rss_mb: (rss_kb(pid)? as f64 / 1024.0 * 1000.0).round() / 1000.0,
            idle_cpu_percent: (cpu / seconds as f64 * 100.0 * 1000.0).round() / 1000.0,
        })
    })();
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    figures
}

/// Resident set of a process, kB.
fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}
