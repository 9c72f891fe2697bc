//! The other side's clipboard, held here: the bridge owns the selection for the other
//! side's offer and answers pastes. A paste lists the offer's formats at once
//! (TARGETS); its data is asked of the other side at the first paste and kept for the
//! next ones, until the offer changes.

use std::time::Instant;

use oriel_protocol::{ClipFormat, ClipboardMsg, Selection};
use x11rb::protocol::xproto::{self, Atom, AtomEnum, ConnectionExt as _, EventMask, PropMode};
use x11rb::wrapper::ConnectionExt as _;
use x11rb::NONE;

use crate::atoms::utf8_to_latin1;
use crate::{Bridge, ClipboardError, TRANSFER_TIMEOUT};

/// Largest piece of a property written in one request.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Default)]
pub(crate) struct Owned {
    offers: Vec<RemoteOffer>,
    /// The last data the other side sent, by offer and format.
    cache: Option<(u64, ClipFormat, Vec<u8>)>,
    /// Pastes waiting for the other side's data.
    pending: Vec<Paste>,
    /// Requests sent and not answered yet.
    asked: Vec<(u64, ClipFormat)>,
}

#[derive(Debug)]
struct RemoteOffer {
    selection: Selection,
    serial: u64,
    formats: Vec<ClipFormat>,
}

/// A paste of an application here, to answer.
#[derive(Debug, Clone, Copy)]
struct Paste {
    requestor: xproto::Window,
    selection: Atom,
    target: Atom,
    property: Atom,
    time: xproto::Timestamp,
    serial: u64,
    format: ClipFormat,
    since: Instant,
}

impl Bridge {
    /// The other side offers `formats`: the bridge takes the selection here.
    pub(crate) fn take(
        &mut self,
        selection: Selection,
        serial: u64,
        formats: Vec<ClipFormat>,
    ) -> Result<(), ClipboardError> {
        self.owned.offers.retain(|o| o.selection != selection);
        let atom = self.atoms.selection_atom(selection);
        if formats.is_empty() {
            let owner = self.conn.get_selection_owner(atom)?.reply()?.owner;
            if owner == self.window {
                self.conn
                    .set_selection_owner(NONE, atom, x11rb::CURRENT_TIME)?;
            }
            return Ok(());
        }
        self.owned.offers.push(RemoteOffer {
            selection,
            serial,
            formats,
        });
        self.conn
            .set_selection_owner(self.window, atom, x11rb::CURRENT_TIME)?;
        Ok(())
    }

    /// Another application took a selection the bridge held.
    pub(crate) fn lost(&mut self, selection: Atom) {
        if let Some(s) = self.atoms.selection(selection) {
            self.owned.offers.retain(|o| o.selection != s);
        }
    }

    /// An application here pastes what the bridge holds.
    pub(crate) fn paste(&mut self, e: xproto::SelectionRequestEvent) -> Result<(), ClipboardError> {
        // Obsolete requestors name no property: the target's name is used.
        let property = if e.property == NONE {
            e.target
        } else {
            e.property
        };
        let offer = self
            .atoms
            .selection(e.selection)
            .and_then(|s| self.owned.offers.iter().find(|o| o.selection == s));
        let Some(offer) = offer else {
            return self.notify(&e, NONE);
        };
        if e.target == self.atoms.targets {
            let mut targets = vec![self.atoms.targets];
            for f in &offer.formats {
                targets.extend(self.atoms.targets_of(*f));
            }
            self.conn.change_property32(
                PropMode::REPLACE,
                e.requestor,
                property,
                AtomEnum::ATOM,
                &targets,
            )?;
            return self.notify(&e, property);
        }
        let format = self.atoms.format_of(e.target);
        let Some(format) = format.filter(|f| offer.formats.contains(f)) else {
            return self.notify(&e, NONE);
        };
        let paste = Paste {
            requestor: e.requestor,
            selection: e.selection,
            target: e.target,
            property,
            time: e.time,
            serial: offer.serial,
            format,
            since: Instant::now(),
        };
        if let Some((serial, f, data)) = &self.owned.cache {
            if *serial == paste.serial && *f == format {
                let data = data.clone();
                return self.answer(paste, &data);
            }
        }
        self.owned.pending.push(paste);
        if !self.owned.asked.contains(&(paste.serial, format)) {
            self.owned.asked.push((paste.serial, format));
            self.send(ClipboardMsg::Request {
                serial: paste.serial,
                format,
            });
        }
        Ok(())
    }

    /// The other side's data for the pastes that wait for it.
    pub(crate) fn data(
        &mut self,
        serial: u64,
        format: ClipFormat,
        data: Vec<u8>,
    ) -> Result<(), ClipboardError> {
        for paste in self.answered(serial, format) {
            self.answer(paste, &data)?;
        }
        self.owned.cache = Some((serial, format, data));
        Ok(())
    }

    /// The other side cannot send the data: the pastes that wait for it fail.
    pub(crate) fn refused(
        &mut self,
        serial: u64,
        format: ClipFormat,
        reason: &str,
    ) -> Result<(), ClipboardError> {
        tracing::warn!("a paste was refused: {reason}");
        for paste in self.answered(serial, format) {
            self.refuse(paste)?;
        }
        Ok(())
    }

    /// Takes the pastes that wait for the other side's answer about `serial` in `format`.
    fn answered(&mut self, serial: u64, format: ClipFormat) -> Vec<Paste> {
        self.owned.asked.retain(|a| *a != (serial, format));
        let (answered, waiting) = self
            .owned
            .pending
            .iter()
            .partition(|p| p.serial == serial && p.format == format);
        self.owned.pending = waiting;
        answered
    }

    /// Fails pastes the other side has not answered in time, and conversions here that
    /// an application never answered.
    pub(crate) fn expire(&mut self, now: Instant) -> Result<(), ClipboardError> {
        let (late, waiting): (Vec<Paste>, Vec<Paste>) = self
            .owned
            .pending
            .iter()
            .partition(|p| now.duration_since(p.since) >= TRANSFER_TIMEOUT);
        self.owned.pending = waiting;
        for paste in late {
            tracing::warn!("a paste timed out: the other side did not send the clipboard");
            self.owned
                .asked
                .retain(|a| *a != (paste.serial, paste.format));
            self.refuse(paste)?;
        }
        self.expire_fetch(now)
    }

    fn answer(&mut self, paste: Paste, data: &[u8]) -> Result<(), ClipboardError> {
        let (kind, bytes) = if paste.target == Atom::from(AtomEnum::STRING) {
            (paste.target, utf8_to_latin1(data))
        } else if paste.target == self.atoms.text {
            (self.atoms.utf8_string, data.to_vec())
        } else {
            (paste.target, data.to_vec())
        };
        // Written whole before the requestor hears of it, piece by piece so that no
        // request exceeds what the server takes.
        let mut pieces = bytes.chunks(CHUNK);
        let first = pieces.next().unwrap_or(&[]);
        self.conn.change_property8(
            PropMode::REPLACE,
            paste.requestor,
            paste.property,
            kind,
            first,
        )?;
        for piece in pieces {
            self.conn.change_property8(
                PropMode::APPEND,
                paste.requestor,
                paste.property,
                kind,
                piece,
            )?;
        }
        self.notify_paste(paste, paste.property)
    }

    fn refuse(&mut self, paste: Paste) -> Result<(), ClipboardError> {
        self.notify_paste(paste, NONE)
    }

    fn notify_paste(&mut self, paste: Paste, property: Atom) -> Result<(), ClipboardError> {
        let event = xproto::SelectionNotifyEvent {
            response_type: xproto::SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: paste.time,
            requestor: paste.requestor,
            selection: paste.selection,
            target: paste.target,
            property,
        };
        self.conn
            .send_event(false, paste.requestor, EventMask::NO_EVENT, event)?;
        Ok(())
    }

    fn notify(
        &mut self,
        e: &xproto::SelectionRequestEvent,
        property: Atom,
    ) -> Result<(), ClipboardError> {
        let paste = Paste {
            requestor: e.requestor,
            selection: e.selection,
            target: e.target,
            property,
            time: e.time,
            serial: 0,
            format: ClipFormat::Text,
            since: Instant::now(),
        };
        self.notify_paste(paste, property)
    }
}
