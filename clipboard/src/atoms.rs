//! The atoms the bridge speaks, interned once, and how selection targets map to the
//! channel's formats.

use oriel_protocol::{ClipFormat, Selection};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{Atom, AtomEnum, ConnectionExt as _};

use crate::ClipboardError;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Atoms {
    pub(crate) clipboard: Atom,
    pub(crate) targets: Atom,
    pub(crate) incr: Atom,
    pub(crate) utf8_string: Atom,
    pub(crate) text: Atom,
    pub(crate) text_plain_utf8: Atom,
    pub(crate) text_plain: Atom,
    pub(crate) png: Atom,
    /// The property conversions land in, on the bridge's window.
    pub(crate) transfer: Atom,
    /// The client message that wakes the bridge's thread.
    pub(crate) wake: Atom,
}

impl Atoms {
    pub(crate) fn intern(conn: &impl Connection) -> Result<Self, ClipboardError> {
        let names: [&[u8]; 10] = [
            b"CLIPBOARD",
            b"TARGETS",
            b"INCR",
            b"UTF8_STRING",
            b"TEXT",
            b"text/plain;charset=utf-8",
            b"text/plain",
            b"image/png",
            b"ORIEL_CLIPBOARD_TRANSFER",
            b"ORIEL_CLIPBOARD_WAKE",
        ];
        let cookies = names
            .iter()
            .map(|n| conn.intern_atom(false, n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut atoms = Vec::with_capacity(names.len());
        for cookie in cookies {
            atoms.push(cookie.reply()?.atom);
        }
        Ok(Self {
            clipboard: atoms[0],
            targets: atoms[1],
            incr: atoms[2],
            utf8_string: atoms[3],
            text: atoms[4],
            text_plain_utf8: atoms[5],
            text_plain: atoms[6],
            png: atoms[7],
            transfer: atoms[8],
            wake: atoms[9],
        })
    }

    pub(crate) fn selection(&self, atom: Atom) -> Option<Selection> {
        if atom == self.clipboard {
            Some(Selection::Clipboard)
        } else if atom == Atom::from(AtomEnum::PRIMARY) {
            Some(Selection::Primary)
        } else {
            None
        }
    }

    pub(crate) fn selection_atom(&self, selection: Selection) -> Atom {
        match selection {
            Selection::Clipboard => self.clipboard,
            Selection::Primary => AtomEnum::PRIMARY.into(),
        }
    }

    /// The targets a paste of `format` may ask for.
    pub(crate) fn targets_of(&self, format: ClipFormat) -> Vec<Atom> {
        match format {
            ClipFormat::Text => vec![
                self.utf8_string,
                self.text_plain_utf8,
                AtomEnum::STRING.into(),
                self.text,
                self.text_plain,
            ],
            ClipFormat::Png => vec![self.png],
        }
    }

    /// The format a target asks for, if the channel carries it.
    pub(crate) fn format_of(&self, target: Atom) -> Option<ClipFormat> {
        [ClipFormat::Text, ClipFormat::Png]
            .into_iter()
            .find(|f| self.targets_of(*f).contains(&target))
    }

    /// The target to ask an owner for, among those it lists, to get `format`: UTF-8
    /// before Latin-1.
    pub(crate) fn best_target(&self, offered: &[Atom], format: ClipFormat) -> Option<Atom> {
        self.targets_of(format)
            .into_iter()
            .find(|t| offered.contains(t))
    }
}

/// Latin-1 (the STRING target) as UTF-8.
pub(crate) fn latin1_to_utf8(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| char::from(b))
        .collect::<String>()
        .into_bytes()
}

/// UTF-8 as Latin-1, for a requestor that asked for STRING: what Latin-1 cannot say
/// becomes '?'.
pub(crate) fn utf8_to_latin1(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_round_trips_what_it_can_say() {
        let text = "café ½ – ok".as_bytes();
        let latin1 = utf8_to_latin1(text);
        assert_eq!(latin1, b"caf\xe9 \xbd ? ok");
        assert_eq!(latin1_to_utf8(&latin1), "café ½ ? ok".as_bytes());
    }
}
