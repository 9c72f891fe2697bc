//! What the host reports of itself and of its viewers at each heartbeat: counters a
//! session bumps as it sends, turned into rates when the agent reads them, and the
//! machine's CPU and memory.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oriel_protocol::host_link::{HostLoad, ViewerFigures};

use crate::desktop::lock;

/// One connected viewer's live counters.
pub struct ViewerCounters {
    pub session: u64,
    pub desktop: String,
    /// The client's address (ip:port).
    pub from: String,
    updates: AtomicU64,
    bytes: AtomicU64,
    rtt_us: AtomicU32,
    video_regions: AtomicU32,
    /// When the rates were last read, and the counts then.
    last_read: Mutex<(Instant, u64, u64)>,
}

impl ViewerCounters {
    pub fn new(session: u64, desktop: &str, from: String) -> Arc<Self> {
        Arc::new(Self {
            session,
            desktop: desktop.to_string(),
            from,
            updates: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            rtt_us: AtomicU32::new(0),
            video_regions: AtomicU32::new(0),
            last_read: Mutex::new((Instant::now(), 0, 0)),
        })
    }

    /// Bytes went to the viewer, on any channel.
    pub fn sent(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// A screen update (a lossless frame or video pictures) was encoded for it.
    pub fn updated(&self) {
        self.updates.fetch_add(1, Relaxed);
    }

    pub fn set_path(&self, rtt: Duration, video_regions: usize) {
        let rtt = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
        self.rtt_us.store(rtt, Relaxed);
        let regions = u32::try_from(video_regions).unwrap_or(u32::MAX);
        self.video_regions.store(regions, Relaxed);
    }

    /// The figures since the previous call (or since the viewer came).
    pub fn read(&self, now: Instant) -> ViewerFigures {
        let (updates, bytes) = (self.updates.load(Relaxed), self.bytes.load(Relaxed));
        let mut last = lock(&self.last_read);
        let elapsed = now
            .saturating_duration_since(last.0)
            .as_secs_f64()
            .max(0.001);
        let fps_tenths = (updates - last.1) as f64 * 10.0 / elapsed;
        let kbit_per_s = (bytes - last.2) as f64 * 8.0 / 1000.0 / elapsed;
        *last = (now, updates, bytes);
        ViewerFigures {
            session: self.session,
            from: self.from.clone(),
            fps_tenths: whole(fps_tenths),
            kbit_per_s: whole(kbit_per_s),
            rtt_us: self.rtt_us.load(Relaxed),
            video_regions: self.video_regions.load(Relaxed),
        }
    }
}

/// A rate or share as a whole number, rounded, within `u32`.
fn whole(x: f64) -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to u32's range first"
    )]
    let n = x.round().clamp(0.0, f64::from(u32::MAX)) as u32;
    n
}

/// The viewers connected to this server now.
#[derive(Default)]
pub struct Viewers(Mutex<Vec<Arc<ViewerCounters>>>);

impl Viewers {
    pub fn add(&self, viewer: Arc<ViewerCounters>) {
        lock(&self.0).push(viewer);
    }

    pub fn remove(&self, viewer: &Arc<ViewerCounters>) {
        lock(&self.0).retain(|v| !Arc::ptr_eq(v, viewer));
    }

    /// The newest viewer of `desktop` (a connection taking a desktop over is newer than
    /// the one winding down).
    pub fn newest_on(&self, desktop: &str) -> Option<Arc<ViewerCounters>> {
        lock(&self.0)
            .iter()
            .filter(|v| v.desktop == desktop)
            .max_by_key(|v| v.session)
            .cloned()
    }
}

/// Samples the machine's CPU and memory; CPU use is measured between two samples.
/// Where the machine's figures cannot be read, the load is reported as zero.
pub struct LoadMeter(Option<sysinfo::System>);

impl Default for LoadMeter {
    fn default() -> Self {
        let system = sysinfo::System::new()
            .inspect_err(|e| tracing::warn!("the host's load cannot be read: {e}"))
            .ok()
            .map(|mut system| {
                system.refresh_cpu_usage();
                system
            });
        Self(system)
    }
}

impl LoadMeter {
    /// The load since the previous call (CPU) and now (memory).
    pub fn sample(&mut self) -> HostLoad {
        let Some(system) = &mut self.0 else {
            return HostLoad::default();
        };
        system.refresh_cpu_usage();
        system.refresh_memory();
        let cpu = system.global_cpu_usage();
        HostLoad {
            cpu_permille: whole(f64::from(cpu) * 10.0).min(1000),
            cpus: u32::try_from(system.cpus().len()).unwrap_or(u32::MAX),
            memory_used: system.used_memory(),
            memory_total: system.total_memory(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_counted_since_the_previous_read() {
        let v = ViewerCounters::new(7, "d", "127.0.0.1:5000".into());
        let start = lock(&v.last_read).0;
        for _ in 0..30 {
            v.updated();
        }
        v.sent(250_000);
        v.set_path(Duration::from_micros(1500), 2);
        let f = v.read(start + Duration::from_secs(2));
        assert_eq!(f.fps_tenths, 150);
        assert_eq!(f.kbit_per_s, 1000);
        assert_eq!((f.rtt_us, f.video_regions, f.session), (1500, 2, 7));
        let f = v.read(start + Duration::from_secs(4));
        assert_eq!((f.fps_tenths, f.kbit_per_s), (0, 0));
    }

    #[test]
    fn the_newest_viewer_of_a_desktop_is_reported() {
        let viewers = Viewers::default();
        let (old, new) = (
            ViewerCounters::new(1, "d", String::new()),
            ViewerCounters::new(2, "d", String::new()),
        );
        viewers.add(new.clone());
        viewers.add(old.clone());
        viewers.add(ViewerCounters::new(3, "other", String::new()));
        assert_eq!(viewers.newest_on("d").unwrap().session, 2);
        viewers.remove(&new);
        assert_eq!(viewers.newest_on("d").unwrap().session, 1);
        assert!(viewers.newest_on("none").is_none());
    }

    #[test]
    fn the_machine_reports_memory_and_cores() {
        let load = LoadMeter::default().sample();
        assert!(load.cpus >= 1 && load.cpu_permille <= 1000);
        assert!(load.memory_total > 0 && load.memory_used <= load.memory_total);
    }
}
