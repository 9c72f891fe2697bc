//! Live migration between two VMs in one process, the records passed over a channel:
//! the guest continues on the destination with every key exactly once and its screen,
//! nothing a memory-writing guest wrote is lost, a failed migration leaves the VM
//! running where it was, and malformed records are refused.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use oriel_vmm::tiny::*;
use oriel_vmm::{migrate, Boot, Convergence, RecordSink, Vm, VmConfig, VmState, VmmError};

/// Records into a bounded channel (a few at most on the way, so no flush is needed).
struct ChannelSink(mpsc::SyncSender<Vec<u8>>);

impl RecordSink for ChannelSink {
    type Error = mpsc::SendError<Vec<u8>>;
    fn send(&mut self, record: Vec<u8>) -> Result<(), Self::Error> {
        self.0.send(record)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Fails after `left` records, as a destination that goes away.
struct FailingSink {
    left: u32,
}

impl RecordSink for FailingSink {
    type Error = &'static str;
    fn send(&mut self, _: Vec<u8>) -> Result<(), Self::Error> {
        self.left = self.left.checked_sub(1).ok_or("connection lost")?;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Migrates `source` to a new VM through a channel; the source stays paused.
fn migrate_over_channel(source: &Vm, policy: Convergence) -> (Vm, oriel_vmm::MigrationReport) {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(8);
    let config = source.config().clone();
    let receiver = std::thread::spawn(move || {
        let mut incoming = Vm::migrate_in(config).unwrap();
        while let Ok(record) = rx.recv() {
            if incoming.apply(&record).unwrap() {
                return incoming.start().unwrap();
            }
        }
        panic!("the source stopped before the last record");
    });
    let outgoing = source.migrate_out().unwrap();
    let (outgoing, report) = migrate(outgoing, policy, &mut ChannelSink(tx)).unwrap();
    let (destination, downtime) = receiver.join().unwrap();
    outgoing.commit();
    assert!(downtime < Duration::from_secs(60));
    (destination, report)
}

#[test]
fn a_migrated_vm_continues_with_its_screen_and_keys() {
    if !kvm_available() {
        return;
    }
    let source = Vm::start(VmConfig::tiny(WIDTH, HEIGHT)).unwrap();
    source.wait_ready(Duration::from_secs(60)).unwrap();
    tap(&source, KEY_A);
    wait_console(&source, "key 1e");
    let screen = source.framebuffer().read_all();

    let (destination, report) = migrate_over_channel(&source, Convergence::default());
    assert_eq!(
        source.state(),
        VmState::Paused,
        "the source copy stays paused"
    );
    assert_eq!(destination.state(), VmState::Running);
    assert_eq!(destination.framebuffer().read_all(), screen);
    // Sparse RAM costs nothing: 16 MiB of RAM, a few pages touched.
    assert!(report.stats.pages < 256, "{report:?}");
    assert!(report.stats.bytes < 2 << 20, "{report:?}");

    tap(&destination, KEY_Z);
    wait_console(&destination, "key 2c");
    let console = destination.console().tail(1 << 16);
    assert!(!console.contains("key 1e"), "nothing replayed: {console}");
    for (x, y, p) in glyph(WIDTH, 1, 0x2c) {
        assert_eq!(
            destination.framebuffer().read_all()[(y * WIDTH + x) as usize],
            p
        );
    }
}

#[test]
fn nothing_a_memory_writing_guest_wrote_is_lost() {
    if !kvm_available() {
        return;
    }
    let config = VmConfig {
        memory_mib: 64,
        boot: Boot::TinyDirtying { mib_per_s: 16 },
        ..VmConfig::tiny(WIDTH, HEIGHT)
    };
    let source = Vm::start(config).unwrap();
    source.wait_ready(Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (destination, report) = migrate_over_channel(&source, Convergence::default());
    assert!(report.stats.rounds >= 1);
    destination.pause();
    // Each page of the window holds the tick that last wrote it: the destination's is
    // the source's, or a later tick's where the destination wrote on.
    let page_count = (64u64 << 20) / 4096;
    let (mut same, mut later, mut written) = (0, 0, 0);
    for page in 0..page_count {
        let read = |vm: &Vm| {
            let mut bytes = [0u8; 4096];
            vm.with_ram(|ram| {
                use vm_memory::{Bytes, GuestAddress};
                ram.read_slice(&mut bytes, GuestAddress(page * 4096))
                    .unwrap()
            });
            bytes
        };
        let (was, is) = (read(&source), read(&destination));
        let tick = |b: &[u8; 4096]| u64::from_le_bytes(b[..8].try_into().unwrap());
        if page >= 1024 && tick(&was) > 0 {
            written += 1;
        }
        if was == is {
            same += 1;
            continue;
        }
        // The guest's stack page and its program's variables change as it runs on.
        if page == 127 || (256..272).contains(&page) {
            continue;
        }
        assert!(
            page >= 1024 && tick(&is) > tick(&was) && was[8..] == is[8..],
            "page {page} differs: source tick {}, destination tick {}",
            tick(&was),
            tick(&is)
        );
        later += 1;
    }
    // 16 MiB/s for over 300 ms: more than a thousand pages of the window written.
    assert!(
        written > 1000 && same > written,
        "{written} pages written, {same} the same, {later} written later; {report:?}"
    );
}

#[test]
fn a_failed_migration_leaves_the_vm_running_where_it_was() {
    if !kvm_available() {
        return;
    }
    let source = Vm::start(VmConfig::tiny(WIDTH, HEIGHT)).unwrap();
    source.wait_ready(Duration::from_secs(60)).unwrap();
    let outgoing = source.migrate_out().unwrap();
    // The destination goes away after two records.
    let failed = migrate(
        outgoing,
        Convergence::default(),
        &mut FailingSink { left: 2 },
    );
    assert!(matches!(failed, Err(VmmError::Migration(why)) if why.contains("connection lost")));
    assert_eq!(source.state(), VmState::Running);
    tap(&source, KEY_A);
    wait_console(&source, "key 1e");

    // Given up after the stop-and-copy, before the commit: it runs on, too.
    let outgoing = source.migrate_out().unwrap();
    let sink = &mut FailingSink { left: u32::MAX };
    let (outgoing, _) = migrate(outgoing, Convergence::default(), sink).unwrap();
    assert_eq!(source.state(), VmState::Paused);
    drop(outgoing);
    assert_eq!(source.state(), VmState::Running);
    tap(&source, KEY_Z);
    wait_console(&source, "key 2c");
}

#[test]
fn malformed_records_are_refused() {
    if !kvm_available() {
        return;
    }
    let config = VmConfig::tiny(WIDTH, HEIGHT);
    let refused = |records: &[&[u8]]| {
        let mut incoming = Vm::migrate_in(config.clone()).unwrap();
        for record in records {
            if let Err(e) = incoming.apply(record) {
                return e.to_string();
            }
        }
        match incoming.start() {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    };
    assert!(refused(&[b""]).contains("corrupt"));
    assert!(refused(&[&[9, 0, 0, 0, 0]]).contains("kind 9"));
    // Page 4096 of a 16 MiB machine does not exist.
    let mut outside = vec![1u8, 1, 0, 0, 0];
    outside.extend_from_slice(&(4096u64 | 1 << 63).to_le_bytes());
    assert!(refused(&[&outside]).contains("outside"));
    // A page cut short, and a count larger than a record holds.
    let mut short = vec![1u8, 1, 0, 0, 0];
    short.extend_from_slice(&7u64.to_le_bytes());
    short.extend_from_slice(&[1; 100]);
    assert!(refused(&[&short]).contains("ends early"));
    assert!(refused(&[&[1, 0xff, 0xff, 0xff, 0xff]]).contains("pages in one record"));
    assert!(refused(&[&[3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]]).contains("corrupt"));
    assert!(refused(&[&[1, 0, 0, 0, 0]]).contains("last record has not come"));
}
