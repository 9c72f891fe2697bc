//! The destination side of a migration: records checked against the machine they are
//! for and written into its memories, then the VM started on them.

use std::time::Duration;

use super::{
    unix_us, MAX_RECORD, PAGES_PER_RECORD, TAG_FINAL, TAG_FRAMEBUFFER, TAG_RAM, ZERO_PAGE,
};
use crate::machine::Prepared;
use crate::memory::{FramebufferMemory, GuestRam};
use crate::snapshot::{self, corrupt, Meta, PAGE};
use crate::{FramebufferFormat, Vm, VmConfig, VmmError};

/// The destination side: memories filled from records, then a VM started on them.
pub struct Incoming {
    config: VmConfig,
    format: FramebufferFormat,
    host: (kvm_ioctls::Kvm, kvm_bindings::CpuId),
    /// The KVM VM, built before the pages come (its slow part), started at the end.
    prepared: Prepared,
    ram_pages: u64,
    framebuffer_pages: u64,
    last: Option<(Meta, u64)>,
    /// Bytes of records applied.
    pub bytes: u64,
}

impl Vm {
    /// Prepares to receive a VM of `config` (checked against this host now): its
    /// memories and the KVM VM around them, so that the start takes little.
    pub fn migrate_in(config: VmConfig) -> Result<Incoming, VmmError> {
        let (format, host) = Vm::host_for(&config)?;
        let memory = (
            GuestRam::new(config.memory_mib << 20)?,
            FramebufferMemory::new(format)?,
        );
        let prepared = Prepared::new(&host.0, config.vcpus, memory)?;
        Ok(Incoming {
            ram_pages: prepared.ram.page_count(),
            framebuffer_pages: u64::from(prepared.framebuffer.page_count()),
            config,
            format,
            host,
            prepared,
            last: None,
            bytes: 0,
        })
    }
}

/// A page's number and its bytes, or `None` for a page of zeros.
type PageEntry<'a> = (u64, Option<&'a [u8]>);

/// A record read and checked against the machine it is for.
enum Parsed<'a> {
    Pages {
        ram: bool,
        pages: Vec<PageEntry<'a>>,
    },
    Final {
        meta: Box<Meta>,
        paused_at: u64,
    },
}

/// The shape records must fit: RAM and framebuffer pages, the machine.
struct Limits<'c> {
    config: &'c VmConfig,
    format: FramebufferFormat,
    ram_pages: u64,
    framebuffer_pages: u64,
}

impl Limits<'_> {
    fn parse<'a>(&self, record: &'a [u8]) -> Result<Parsed<'a>, VmmError> {
        if record.len() > MAX_RECORD {
            return Err(corrupt(format!("a record of {} bytes", record.len())));
        }
        let (&tag, body) = record
            .split_first()
            .ok_or_else(|| corrupt("an empty record"))?;
        match tag {
            TAG_RAM | TAG_FRAMEBUFFER => {
                let ram = tag == TAG_RAM;
                let limit = if ram {
                    self.ram_pages
                } else {
                    self.framebuffer_pages
                };
                Ok(Parsed::Pages {
                    ram,
                    pages: parse_pages(body, limit)?,
                })
            }
            TAG_FINAL => {
                let (at, meta) = body
                    .split_first_chunk::<8>()
                    .ok_or_else(|| corrupt("it ends early"))?;
                let meta = snapshot::decode_meta(
                    meta,
                    usize::from(self.config.vcpus),
                    self.config.memory_mib << 20,
                    (self.format.width, self.format.height),
                )?;
                Ok(Parsed::Final {
                    meta: Box::new(meta),
                    paused_at: u64::from_le_bytes(*at),
                })
            }
            other => Err(corrupt(format!("a record of kind {other}"))),
        }
    }
}

/// A page record's entries, each page number below `limit`.
fn parse_pages(body: &[u8], limit: u64) -> Result<Vec<PageEntry<'_>>, VmmError> {
    let (count, mut rest) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("it ends early"))?;
    let count = u32::from_le_bytes(*count) as usize;
    if count > PAGES_PER_RECORD {
        return Err(corrupt(format!("{count} pages in one record")));
    }
    let mut pages = Vec::with_capacity(count);
    for _ in 0..count {
        let (header, tail) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("it ends early"))?;
        let header = u64::from_le_bytes(*header);
        let number = header & !ZERO_PAGE;
        if number >= limit {
            return Err(corrupt(format!("page {number} is outside the memory")));
        }
        if header & ZERO_PAGE != 0 {
            rest = tail;
            pages.push((number, None));
        } else {
            if tail.len() < PAGE {
                return Err(corrupt("it ends early"));
            }
            let (page, tail) = tail.split_at(PAGE);
            rest = tail;
            pages.push((number, Some(page)));
        }
    }
    if !rest.is_empty() {
        return Err(corrupt("bytes left over in a record"));
    }
    Ok(pages)
}

impl Vm {
    /// Whether [`Incoming::apply`] would take `record` for a VM of `config`, checked
    /// without KVM or guest memory (the same checks; for fuzzing).
    pub fn check_migration_record(config: &VmConfig, record: &[u8]) -> Result<(), VmmError> {
        let format = config.check()?;
        let limits = Limits {
            config,
            format,
            ram_pages: (config.memory_mib << 20) / PAGE as u64,
            framebuffer_pages: format.mapped_len() / PAGE as u64,
        };
        limits.parse(record).map(drop)
    }
}

impl Incoming {
    /// Applies one record; true once the last has come. Anything malformed, out of
    /// range or after the last record is refused.
    pub fn apply(&mut self, record: &[u8]) -> Result<bool, VmmError> {
        if self.last.is_some() {
            return Err(corrupt("a record after the last"));
        }
        let limits = Limits {
            config: &self.config,
            format: self.format,
            ram_pages: self.ram_pages,
            framebuffer_pages: self.framebuffer_pages,
        };
        let parsed = limits.parse(record)?;
        self.bytes += record.len() as u64;
        match parsed {
            Parsed::Pages { ram, pages } => {
                let zeros = [0u8; PAGE];
                for (number, bytes) in pages {
                    if ram {
                        self.prepared.ram.write_page(number, bytes)?;
                    } else {
                        let offset = usize::try_from(number).map_err(corrupt)? * PAGE;
                        (self.prepared.framebuffer).write(offset, bytes.unwrap_or(&zeros));
                    }
                }
                Ok(false)
            }
            Parsed::Final { meta, paused_at } => {
                self.last = Some((*meta, paused_at));
                Ok(true)
            }
        }
    }

    /// Starts the VM on what came; with the time it was paused on no host (from the
    /// source's pause to this VM's start), as far as the two clocks agree.
    pub fn start(self) -> Result<(Vm, Duration), VmmError> {
        let Some((meta, paused_at)) = self.last else {
            return Err(VmmError::Migration("the last record has not come".into()));
        };
        let vm = Vm::power_on_with(
            self.config,
            self.format,
            self.host,
            self.prepared,
            Some(&meta),
        )?;
        let downtime = Duration::from_micros(unix_us().saturating_sub(paused_at));
        Ok((vm, downtime))
    }
}
