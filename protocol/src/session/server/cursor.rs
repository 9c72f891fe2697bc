//! Cursor pacing: the newest shape and position go out once the previous cursor
//! message is written, so a slow client gets the latest state, not a queue of moves.

use crate::messages::CursorMsg;

#[derive(Debug, Default)]
pub(super) struct CursorPacer {
    /// Messages handed out and not yet written.
    writes: usize,
    sent_serial: Option<u64>,
    sent_position: Option<(u32, u32, bool)>,
    shape: Option<(u64, CursorMsg)>,
    position: Option<(u32, u32, bool)>,
}

impl CursorPacer {
    pub(super) fn shape(&mut self, serial: u64, shape: CursorMsg) {
        self.shape = Some((serial, shape));
    }

    pub(super) fn position(&mut self, x: u32, y: u32, visible: bool) {
        self.position = Some((x, y, visible));
    }

    pub(super) fn written(&mut self) {
        self.writes = self.writes.saturating_sub(1);
    }

    /// The next message to send, if the last is written and something changed: the
    /// shape when its serial changed, else the position.
    pub(super) fn next_message(&mut self) -> Option<CursorMsg> {
        if self.writes > 0 {
            return None;
        }
        if let Some((serial, shape)) = self.shape.take() {
            if self.sent_serial != Some(serial) {
                self.sent_serial = Some(serial);
                self.writes += 1;
                return Some(shape);
            }
        }
        let position = self.position?;
        if self.sent_position == Some(position) {
            return None;
        }
        self.sent_position = Some(position);
        self.writes += 1;
        let (x, y, visible) = position;
        Some(CursorMsg::Position { x, y, visible })
    }
}
