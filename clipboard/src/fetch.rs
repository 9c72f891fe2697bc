//! The local side: what this X server's applications copy. An owner change is
//! announced with the formats the new owner lists (its TARGETS); its data is read only
//! when the other side asks, one conversion at a time, incremental (INCR) transfers
//! included, never more than the cap.

use std::collections::VecDeque;
use std::time::Instant;

use oriel_protocol::clipboard::human_bytes;
use oriel_protocol::{ClipFormat, ClipboardMsg, Selection};
use x11rb::protocol::xproto::{self, Atom, AtomEnum, ConnectionExt as _};
use x11rb::NONE;

use crate::atoms::latin1_to_utf8;
use crate::{Bridge, ClipboardError, TRANSFER_TIMEOUT};

#[derive(Debug, Default)]
pub(crate) struct Local {
    serial: u64,
    /// The current offer of each selection owned by an application here.
    offers: Vec<LocalOffer>,
    queue: VecDeque<Job>,
    current: Option<Current>,
}

#[derive(Debug)]
struct LocalOffer {
    selection: Selection,
    serial: u64,
    /// What the owner listed (empty until its TARGETS came).
    targets: Vec<Atom>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Targets,
    Data(ClipFormat),
}

#[derive(Debug, Clone, Copy)]
struct Job {
    selection: Selection,
    serial: u64,
    want: Want,
}

#[derive(Debug)]
struct Current {
    job: Job,
    target: Atom,
    started: Instant,
    /// An incremental transfer's data so far.
    incr: Option<Vec<u8>>,
    /// An incremental transfer given up: its chunks are read and dropped until it ends,
    /// so that none lands in the next transfer.
    discarding: bool,
}

impl Bridge {
    /// An application took `selection` (or nobody holds it: `owner` is `NONE`).
    pub(crate) fn owner_changed(&mut self, selection: Selection, owner: xproto::Window) {
        self.local.offers.retain(|o| o.selection != selection);
        if owner == self.window {
            return; // the bridge took it for the other side's offer
        }
        self.local.serial += 1;
        let serial = self.local.serial;
        if owner == NONE {
            return self.send(ClipboardMsg::Offer {
                selection,
                serial,
                formats: Vec::new(),
            });
        }
        self.local.offers.push(LocalOffer {
            selection,
            serial,
            targets: Vec::new(),
        });
        self.local.queue.push_back(Job {
            selection,
            serial,
            want: Want::Targets,
        });
        if let Err(e) = self.next_conversion() {
            tracing::warn!("clipboard: {e}");
        }
    }

    /// Offers again what the selections hold (those whose formats are known).
    pub(crate) fn announce(&mut self) {
        let offers: Vec<(Selection, u64, Vec<Atom>)> = self
            .local
            .offers
            .iter()
            .filter(|o| !o.targets.is_empty())
            .map(|o| (o.selection, o.serial, o.targets.clone()))
            .collect();
        for (selection, serial, targets) in offers {
            let formats = self.formats(&targets);
            self.send(ClipboardMsg::Offer {
                selection,
                serial,
                formats,
            });
        }
    }

    fn formats(&self, targets: &[Atom]) -> Vec<ClipFormat> {
        [ClipFormat::Text, ClipFormat::Png]
            .into_iter()
            .filter(|f| self.atoms.best_target(targets, *f).is_some())
            .collect()
    }

    /// The other side pastes offer `serial`.
    pub(crate) fn request(
        &mut self,
        serial: u64,
        format: ClipFormat,
    ) -> Result<(), ClipboardError> {
        let Some(offer) = self.local.offers.iter().find(|o| o.serial == serial) else {
            self.send(ClipboardMsg::Refused {
                serial,
                format,
                reason: "the clipboard changed since it was offered".into(),
            });
            return Ok(());
        };
        let job = Job {
            selection: offer.selection,
            serial,
            want: Want::Data(format),
        };
        self.local.queue.push_back(job);
        self.next_conversion()
    }

    fn next_conversion(&mut self) -> Result<(), ClipboardError> {
        while self.local.current.is_none() {
            let Some(job) = self.local.queue.pop_front() else {
                return Ok(());
            };
            let Some(offer) = self.local.offers.iter().find(|o| o.serial == job.serial) else {
                self.fail(job, "the clipboard changed since it was offered".into());
                continue;
            };
            let target = match job.want {
                Want::Targets => self.atoms.targets,
                Want::Data(format) => match self.atoms.best_target(&offer.targets, format) {
                    Some(t) => t,
                    None => {
                        let reason = format!("the clipboard holds no {}", format.name());
                        self.fail(job, reason);
                        continue;
                    }
                },
            };
            let (window, transfer) = (self.window, self.atoms.transfer);
            self.conn.delete_property(window, transfer)?;
            let selection = self.atoms.selection_atom(job.selection);
            self.conn.convert_selection(
                window,
                selection,
                target,
                transfer,
                x11rb::CURRENT_TIME,
            )?;
            self.local.current = Some(Current {
                job,
                target,
                started: Instant::now(),
                incr: None,
                discarding: false,
            });
        }
        Ok(())
    }

    /// The owner answered the conversion (`SelectionNotify` to the bridge's window).
    pub(crate) fn converted(
        &mut self,
        e: xproto::SelectionNotifyEvent,
    ) -> Result<(), ClipboardError> {
        let Some(current) = &self.local.current else {
            return Ok(());
        };
        if current.incr.is_some() || e.target != current.target {
            return Ok(());
        }
        if e.property == NONE {
            return self.finish(Err(
                "the application holding the clipboard refused to hand it over".into(),
            ));
        }
        let reply = self.read_transfer(false)?;
        if reply.type_ == self.atoms.incr {
            let announced = reply.value32().and_then(|mut v| v.next()).unwrap_or(0);
            let allowed = self.config.max_bytes;
            if announced > allowed {
                let current = self.local.current.as_mut().expect("checked above");
                current.incr = Some(Vec::new());
                current.discarding = true;
                self.conn
                    .delete_property(self.window, self.atoms.transfer)?;
                return self.give_up(too_large(u64::from(announced), allowed));
            }
            // Deleting the INCR property asks for the first chunk.
            self.local.current.as_mut().expect("checked above").incr = Some(Vec::new());
            self.conn
                .delete_property(self.window, self.atoms.transfer)?;
            return Ok(());
        }
        self.conn
            .delete_property(self.window, self.atoms.transfer)?;
        if reply.bytes_after > 0 {
            let len = u64::from(reply.bytes_after) + reply.value.len() as u64;
            return self.finish(Err(too_large(len, self.config.max_bytes)));
        }
        let data = self.value_bytes(&reply);
        self.finish(Ok(data))
    }

    /// A chunk of an incremental transfer arrived (an empty chunk ends it).
    pub(crate) fn incr_chunk(&mut self) -> Result<(), ClipboardError> {
        if self.local.current.as_ref().is_none_or(|c| c.incr.is_none()) {
            return Ok(());
        }
        let reply = self.read_transfer(true)?;
        let chunk = self.value_bytes(&reply);
        let max = self.config.max_bytes;
        let current = self.local.current.as_mut().expect("checked above");
        if current.discarding {
            if chunk.is_empty() {
                self.local.current = None;
                self.next_conversion()?;
            }
            return Ok(());
        }
        let buf = current.incr.as_mut().expect("checked above");
        if chunk.is_empty() {
            let data = std::mem::take(buf);
            return self.finish(Ok(data));
        }
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > u64::from(max) {
            let len = buf.len() as u64;
            current.discarding = true;
            return self.give_up(too_large(len, max));
        }
        Ok(())
    }

    fn read_transfer(&self, delete: bool) -> Result<xproto::GetPropertyReply, ClipboardError> {
        // One word past the cap: more than the cap shows as bytes left over.
        let words = self.config.max_bytes / 4 + 1;
        Ok(self
            .conn
            .get_property(
                delete,
                self.window,
                self.atoms.transfer,
                AtomEnum::ANY,
                0,
                words,
            )?
            .reply()?)
    }

    /// A property's value as the channel carries it: TARGETS as atoms, STRING as UTF-8.
    fn value_bytes(&self, reply: &xproto::GetPropertyReply) -> Vec<u8> {
        if reply.type_ == Atom::from(AtomEnum::STRING) {
            latin1_to_utf8(&reply.value)
        } else {
            reply.value.clone()
        }
    }

    /// Times out a conversion the owner never answered.
    pub(crate) fn expire_fetch(&mut self, now: Instant) -> Result<(), ClipboardError> {
        let Some(current) = &self.local.current else {
            return Ok(());
        };
        if now.duration_since(current.started) < TRANSFER_TIMEOUT {
            return Ok(());
        }
        if current.discarding {
            self.local.current = None;
            return self.next_conversion();
        }
        let secs = TRANSFER_TIMEOUT.as_secs();
        self.finish(Err(format!(
            "the application holding the clipboard did not hand it over within {secs} s"
        )))
    }

    /// Ends the conversion in progress and starts the next.
    fn finish(&mut self, result: Result<Vec<u8>, String>) -> Result<(), ClipboardError> {
        let Some(current) = self.local.current.take() else {
            return Ok(());
        };
        let job = current.job;
        match (job.want, result) {
            (Want::Targets, result) => {
                let targets: Vec<Atom> = match result {
                    Ok(bytes) => bytes
                        .chunks_exact(4)
                        .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
                        .collect(),
                    // An owner that lists no targets may still hand over Latin-1 text.
                    Err(_) => vec![AtomEnum::STRING.into()],
                };
                let formats = self.formats(&targets);
                if let Some(offer) = self
                    .local
                    .offers
                    .iter_mut()
                    .find(|o| o.serial == job.serial)
                {
                    offer.targets = targets;
                    self.send(ClipboardMsg::Offer {
                        selection: job.selection,
                        serial: job.serial,
                        formats,
                    });
                }
            }
            (Want::Data(format), Ok(data)) => {
                if let Err(reason) = fits(data.len(), self.config.max_bytes) {
                    self.fail(job, reason);
                } else {
                    self.send(ClipboardMsg::Data {
                        serial: job.serial,
                        format,
                        data,
                    });
                }
            }
            (Want::Data(_), Err(reason)) => self.fail(job, reason),
        }
        self.next_conversion()
    }

    /// Refuses the request of a transfer given up, which stays current (discarding) until
    /// its owner ends it.
    fn give_up(&mut self, reason: String) -> Result<(), ClipboardError> {
        if let Some(current) = &self.local.current {
            let job = current.job;
            self.fail(job, reason);
        }
        Ok(())
    }

    fn fail(&mut self, job: Job, reason: String) {
        tracing::info!("clipboard: {reason}");
        match job.want {
            Want::Data(format) => self.send(ClipboardMsg::Refused {
                serial: job.serial,
                format,
                reason,
            }),
            Want::Targets => {}
        }
    }
}

fn fits(len: usize, max: u32) -> Result<(), String> {
    if len as u64 > u64::from(max) {
        Err(too_large(len as u64, max))
    } else {
        Ok(())
    }
}

fn too_large(len: u64, max: u32) -> String {
    format!(
        "the clipboard holds {}, more than the {} allowed",
        human_bytes(len),
        human_bytes(u64::from(max))
    )
}
