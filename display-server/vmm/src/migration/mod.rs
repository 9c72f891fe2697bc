//! Pre-copy live migration of a machine, without I/O: the source's [`Outgoing`] turns
//! the running VM into records, the destination's [`Incoming`] builds a VM from them;
//! moving the records is the caller's (host-to-host QUIC in the display server, a
//! channel in tests).
//!
//! RAM goes while the VM runs: first every page the host holds for it, then rounds of
//! the pages KVM's dirty log says were written meanwhile. When what is left fits the
//! downtime budget at the bandwidth seen ([`Convergence`]), the VM is paused and the
//! rest goes with the CPU and device state; a VM that dirties faster than the link
//! carries is throttled, and given up on (it keeps running here) if even that fails.
//! The framebuffer is compared with what was sent rather than logged: its dirty log
//! belongs to screen capture.
//!
//! Records: a tag byte, then for pages (tags [`TAG_RAM`], [`TAG_FRAMEBUFFER`]) a count
//! (u32, at most [`PAGES_PER_RECORD`]) of entries, each a page number (u64, the top bit
//! set for a page of zeros, which has no bytes) and 4 KiB; for the end ([`TAG_FINAL`])
//! the Unix time in µs the source paused (u64) and the CPU and device state.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::machine::{lock, Machine};
use crate::snapshot::{self, PAGE};
use crate::{Inner, Vm, VmState, VmmError};

mod incoming;

pub use incoming::Incoming;

const TAG_RAM: u8 = 1;
const TAG_FRAMEBUFFER: u8 = 2;
const TAG_FINAL: u8 = 3;
/// Pages in one record: records stay about a megabyte.
const PAGES_PER_RECORD: usize = 256;
/// The largest record either side makes or takes.
pub const MAX_RECORD: usize = 1 + 4 + PAGES_PER_RECORD * (8 + PAGE);
const ZERO_PAGE: u64 = 1 << 63;

/// When to stop copying while the VM runs.
#[derive(Debug, Clone, Copy)]
pub struct Convergence {
    /// The longest the VM may be paused for the last copy.
    pub downtime: Duration,
    /// Rounds after which a migration that does not fit is given up.
    pub max_rounds: u32,
    /// The most of each second the vCPUs may be held when throttled, percent.
    pub max_throttle: u8,
}

impl Default for Convergence {
    fn default() -> Self {
        Self {
            downtime: Duration::from_millis(50),
            max_rounds: 30,
            max_throttle: 80,
        }
    }
}

/// What to do after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Another round while the VM runs, its vCPUs held this percent of the time.
    Round { throttle: u8 },
    /// Pause the VM and send the rest.
    StopAndCopy,
    /// It will not fit: the VM stays here.
    GiveUp,
}

impl Convergence {
    /// `remaining` bytes are dirty after `round` rounds (1 = the first full copy), the
    /// link carried `bytes_per_s`, the previous round left `previous` and the vCPUs are
    /// held `throttle` percent of the time.
    pub fn step(
        &self,
        round: u32,
        remaining: u64,
        previous: u64,
        bytes_per_s: f64,
        throttle: u8,
    ) -> Step {
        let would_take = remaining as f64 / bytes_per_s.max(1.0);
        if would_take <= self.downtime.as_secs_f64() {
            return Step::StopAndCopy;
        }
        if round >= self.max_rounds {
            return Step::GiveUp;
        }
        // Dirtying as fast as we copy (what is left no longer halves): slow the guest
        // down, as QEMU's auto-converge does.
        let throttle = if round >= 2 && remaining * 2 > previous {
            throttle.saturating_add(20).min(self.max_throttle)
        } else {
            throttle
        };
        Step::Round { throttle }
    }
}

/// What a migration moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingStats {
    /// Rounds while the VM ran (the first full copy is round 1).
    pub rounds: u32,
    /// Pages sent with their bytes, and pages sent as "zeros".
    pub pages: u64,
    pub zero_pages: u64,
    pub framebuffer_pages: u64,
    /// Bytes of all records.
    pub bytes: u64,
    /// Pages still dirty when the VM was paused (sent during the downtime).
    pub final_pages: u64,
    /// The highest throttle applied, percent.
    pub throttle: u8,
}

/// The source side of a migration: reads a running VM's memories while KVM logs what
/// it writes. Dropped before [`Outgoing::commit`], it gives the VM back running.
pub struct Outgoing {
    inner: Arc<Inner>,
    machine: Arc<Machine>,
    generation: u64,
    /// This round's pages to send, last first.
    queue: Vec<u64>,
    /// The framebuffer as the destination has it.
    sent_framebuffer: Vec<u8>,
    throttle: Option<Throttle>,
    /// The VM was running when the migration began (and runs again if it fails).
    was_running: bool,
    paused: bool,
    committed: bool,
    pub stats: OutgoingStats,
}

impl Vm {
    /// Starts migrating this VM away: KVM begins logging the pages it writes, and
    /// round 1 is every page the host holds for it.
    pub fn migrate_out(&self) -> Result<Outgoing, VmmError> {
        let state = lock(&self.inner.state).clone();
        let was_running = match state {
            VmState::Running => true,
            VmState::Paused => false,
            VmState::PoweredOff | VmState::Failed(_) => {
                return Err(VmmError::Migration("the VM is not running".into()))
            }
        };
        let machine = self.machine();
        machine.ram.register_logged(&machine.vm, true)?;
        let mut queue = machine.ram.resident_pages();
        queue.reverse();
        let sent_framebuffer = vec![0u8; machine.framebuffer.page_count() as usize * PAGE];
        Ok(Outgoing {
            inner: self.inner.clone(),
            generation: self.inner.generation.load(Ordering::SeqCst),
            machine,
            queue,
            sent_framebuffer,
            throttle: None,
            was_running,
            paused: false,
            committed: false,
            stats: OutgoingStats {
                rounds: 1,
                ..OutgoingStats::default()
            },
        })
    }
}

impl Outgoing {
    /// The next record of this round's RAM, or `None` when the round is sent.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, VmmError> {
        if self.queue.is_empty() {
            return Ok(None);
        }
        let take = self.queue.len().min(PAGES_PER_RECORD);
        let numbers: Vec<u64> = self.queue.drain(self.queue.len() - take..).rev().collect();
        let mut record = record_header(TAG_RAM, numbers.len());
        let mut page = [0u8; PAGE];
        for number in numbers {
            self.machine.ram.read_page(number, &mut page)?;
            self.push_page(&mut record, number, &page);
        }
        self.stats.bytes += record.len() as u64;
        Ok(Some(record))
    }

    /// Records of the framebuffer pages that differ from what was sent.
    pub fn framebuffer_records(&mut self) -> Vec<Vec<u8>> {
        let now = self.machine.framebuffer.dump();
        let changed: Vec<usize> = (0..now.len() / PAGE)
            .filter(|&i| {
                now[i * PAGE..(i + 1) * PAGE] != self.sent_framebuffer[i * PAGE..(i + 1) * PAGE]
            })
            .collect();
        let mut records = Vec::new();
        for batch in changed.chunks(PAGES_PER_RECORD) {
            let mut record = record_header(TAG_FRAMEBUFFER, batch.len());
            for &i in batch {
                let page = &now[i * PAGE..(i + 1) * PAGE];
                self.push_page(&mut record, i as u64, page);
                self.stats.framebuffer_pages += 1;
            }
            self.stats.bytes += record.len() as u64;
            records.push(record);
        }
        self.sent_framebuffer = now;
        records
    }

    /// Starts the next round: the pages written since the last; returns how many.
    pub fn next_round(&mut self) -> Result<u64, VmmError> {
        self.check_same_machine()?;
        let mut dirty = self.machine.ram.take_dirty_pages(&self.machine.vm)?;
        dirty.reverse();
        // Pages this round had not sent yet are sent once.
        let mut queue = std::mem::take(&mut self.queue);
        queue.extend(dirty);
        queue.sort_unstable_by(|a, b| b.cmp(a));
        queue.dedup();
        self.queue = queue;
        self.stats.rounds += 1;
        Ok(self.queue.len() as u64)
    }

    /// Holds the vCPUs `percent` of the time from now on (0: not at all).
    pub fn set_throttle(&mut self, percent: u8) {
        self.stats.throttle = self.stats.throttle.max(percent);
        match (&self.throttle, percent) {
            (Some(t), _) => t.percent.store(percent, Ordering::Relaxed),
            (None, 0) => {}
            (None, _) => self.throttle = Some(Throttle::start(self.machine.clone(), percent)),
        }
    }

    /// Pauses the VM and returns the last records: RAM written since the last round,
    /// the framebuffer's changes and the CPU and device state. The VM stays paused;
    /// drop this to let it run on here, [`Outgoing::commit`] once the destination has
    /// it all.
    pub fn stop_and_copy(&mut self) -> Result<Vec<Vec<u8>>, VmmError> {
        if let Some(throttle) = self.throttle.take() {
            throttle.stop();
        }
        if self.was_running {
            self.inner.pause();
        }
        self.paused = true;
        let paused_at = unix_us();
        let queued = self.next_round()?;
        self.stats.rounds -= 1;
        self.stats.final_pages = queued;
        let mut records = Vec::new();
        while let Some(record) = self.next_record()? {
            records.push(record);
        }
        records.extend(self.framebuffer_records());
        let meta = snapshot::encode_meta(&self.machine.save_meta()?)?;
        let mut last = vec![TAG_FINAL];
        last.extend_from_slice(&paused_at.to_le_bytes());
        last.extend_from_slice(&meta);
        self.stats.bytes += last.len() as u64;
        records.push(last);
        Ok(records)
    }

    /// The destination has the VM: this copy stays paused for good (drop the [`Vm`]).
    pub fn commit(mut self) {
        self.committed = true;
    }

    fn push_page(&mut self, record: &mut Vec<u8>, number: u64, page: &[u8]) {
        if page.iter().all(|b| *b == 0) {
            record.extend_from_slice(&(number | ZERO_PAGE).to_le_bytes());
            self.stats.zero_pages += 1;
        } else {
            record.extend_from_slice(&number.to_le_bytes());
            record.extend_from_slice(page);
            self.stats.pages += 1;
        }
    }

    fn check_same_machine(&self) -> Result<(), VmmError> {
        if self.inner.generation.load(Ordering::SeqCst) != self.generation {
            return Err(VmmError::Migration(
                "the guest rebooted during the migration".into(),
            ));
        }
        Ok(())
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        if let Some(throttle) = self.throttle.take() {
            throttle.stop();
        }
        if self.committed {
            return;
        }
        if let Err(e) = self.machine.ram.register_logged(&self.machine.vm, false) {
            tracing::warn!("cannot stop logging dirty pages: {e}");
        }
        if self.paused && self.was_running {
            self.inner.resume();
        }
    }
}

fn record_header(tag: u8, count: usize) -> Vec<u8> {
    let mut record = Vec::with_capacity(5 + count * (8 + PAGE));
    record.push(tag);
    record.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    record
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Auto-converge: a thread that holds the vCPUs `percent` of every 20 ms.
struct Throttle {
    percent: Arc<AtomicU8>,
    done: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Throttle {
    const PERIOD: Duration = Duration::from_millis(20);

    fn start(machine: Arc<Machine>, percent: u8) -> Self {
        let shared = Arc::new(AtomicU8::new(percent));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (shared.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                let held = Self::PERIOD * u32::from(p.load(Ordering::Relaxed).min(100)) / 100;
                if !held.is_zero() {
                    machine.set_paused(true);
                    std::thread::sleep(held);
                    machine.set_paused(false);
                }
                std::thread::sleep(Self::PERIOD - held);
            }
        });
        Self {
            percent: shared,
            done,
            thread,
        }
    }

    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationReport {
    pub stats: OutgoingStats,
    /// From the first record to the last one handed to `send`.
    pub total: Duration,
    /// The link's rate measured over the last round, bytes/s.
    pub bytes_per_s: f64,
    /// How fast the guest wrote new pages during the last round, bytes/s.
    pub dirty_bytes_per_s: f64,
}

/// Where a migration's records go.
pub trait RecordSink {
    type Error: std::fmt::Display;
    /// Queues a record for the destination (blocking while the link is busy).
    fn send(&mut self, record: Vec<u8>) -> Result<(), Self::Error>;
    /// Returns once the destination has applied every record sent so far, so that a
    /// round's time is that of its delivery and nothing of it is still on the way when
    /// the VM is paused.
    fn flush(&mut self) -> Result<(), Self::Error>;
    /// The VM pauses for the stop-and-copy next: from here on what reaches its devices
    /// is not in the state that goes (input must wait for the outcome).
    fn stopping(&mut self) {}
}

/// Runs a migration's source side to its end: rounds while the VM runs, then the stop
/// and copy, each record handed to `sink`. On success the VM is paused and `outgoing`
/// is returned for [`Outgoing::commit`] once the destination confirms; on any error it
/// is dropped and the VM runs on.
pub fn migrate<S: RecordSink>(
    mut outgoing: Outgoing,
    policy: Convergence,
    sink: &mut S,
) -> Result<(Outgoing, MigrationReport), VmmError> {
    let started = std::time::Instant::now();
    let lost = |e: S::Error| VmmError::Migration(format!("cannot send to the destination: {e}"));
    let mut previous = u64::MAX;
    let (mut bytes_per_s, mut dirty_bytes_per_s);
    loop {
        let round_started = std::time::Instant::now();
        let bytes_before = outgoing.stats.bytes;
        while let Some(record) = outgoing.next_record()? {
            sink.send(record).map_err(lost)?;
        }
        for record in outgoing.framebuffer_records() {
            sink.send(record).map_err(lost)?;
        }
        sink.flush().map_err(lost)?;
        let elapsed = round_started.elapsed().as_secs_f64().max(1e-6);
        bytes_per_s = (outgoing.stats.bytes - bytes_before) as f64 / elapsed;
        let remaining = outgoing.next_round()? * PAGE as u64;
        dirty_bytes_per_s = remaining as f64 / elapsed;
        let step = policy.step(
            outgoing.stats.rounds - 1,
            remaining,
            previous,
            // A round too small to measure the link says little: assume it is fast.
            if elapsed < 0.005 {
                f64::MAX
            } else {
                bytes_per_s
            },
            outgoing.stats.throttle,
        );
        previous = remaining;
        match step {
            Step::StopAndCopy => break,
            Step::GiveUp => {
                return Err(VmmError::Migration(format!(
                    "the VM writes its memory faster than it can be sent ({} rounds, {} MiB still dirty)",
                    outgoing.stats.rounds,
                    remaining >> 20
                )))
            }
            Step::Round { throttle } => outgoing.set_throttle(throttle),
        }
    }
    sink.stopping();
    for record in outgoing.stop_and_copy()? {
        sink.send(record).map_err(lost)?;
    }
    let report = MigrationReport {
        stats: outgoing.stats.clone(),
        total: started.elapsed(),
        bytes_per_s,
        dirty_bytes_per_s,
    };
    Ok((outgoing, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_that_fits_the_budget_stops_and_copies() {
        let policy = Convergence::default();
        // 1 MiB left at 100 MiB/s is 10 ms.
        assert_eq!(
            policy.step(1, 1 << 20, u64::MAX, 100.0 * 1048576.0, 0),
            Step::StopAndCopy
        );
        assert_eq!(
            policy.step(1, 64 << 20, u64::MAX, 100.0 * 1048576.0, 0),
            Step::Round { throttle: 0 }
        );
    }

    #[test]
    fn a_guest_that_dirties_as_fast_as_the_link_is_throttled_then_given_up() {
        let policy = Convergence::default();
        let rate = 100.0 * 1048576.0;
        assert_eq!(
            policy.step(2, 60 << 20, 64 << 20, rate, 0),
            Step::Round { throttle: 20 }
        );
        assert_eq!(
            policy.step(5, 60 << 20, 64 << 20, rate, 80),
            Step::Round { throttle: 80 }
        );
        // Shrinking fast enough: no more throttle.
        assert_eq!(
            policy.step(3, 10 << 20, 64 << 20, rate, 20),
            Step::Round { throttle: 20 }
        );
        assert_eq!(policy.step(30, 60 << 20, 64 << 20, rate, 80), Step::GiveUp);
    }
}
