//! Keyboard and pointer into an X display through XTEST. It shares the source's
//! connection (x11rb's connections take requests from any thread), so input never waits
//! for a capture to finish.
//!
//! Keys arrive as Linux evdev codes; X servers with the evdev/xkb keymap (Xorg, Xvfb)
//! number the same physical keys evdev + 8.

use std::sync::Arc;

use oriel_protocol::{InputEvent, PointerButton};
use x11rb::connection::Connection;
use x11rb::protocol::xproto;
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use super::InputSink;

/// X keycodes of the evdev keymap are the Linux key codes plus this.
const EVDEV_KEYCODE_OFFSET: u16 = 8;

pub(super) struct X11Input {
    conn: Arc<RustConnection>,
    root: xproto::Window,
}

impl X11Input {
    pub(super) fn new(conn: Arc<RustConnection>, root: xproto::Window) -> Self {
        Self { conn, root }
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) {
        let sent = self
            .conn
            .xtest_fake_input(kind, detail, x11rb::CURRENT_TIME, self.root, x, y, 0)
            .and_then(|_| self.conn.flush());
        if let Err(e) = sent {
            tracing::warn!("X input injection failed: {e}");
        }
    }
}

impl InputSink for X11Input {
    fn inject(&self, event: &InputEvent) {
        match *event {
            InputEvent::Key { code, down } => {
                let Ok(keycode) = u8::try_from(code + EVDEV_KEYCODE_OFFSET) else {
                    return; // beyond what X keycodes can name
                };
                let kind = if down {
                    xproto::KEY_PRESS_EVENT
                } else {
                    xproto::KEY_RELEASE_EVENT
                };
                self.fake(kind, keycode, 0, 0);
            }
            InputEvent::PointerMove { x, y } => {
                let clamp = |v: u32| i16::try_from(v).unwrap_or(i16::MAX);
                let (x, y) = (clamp(x), clamp(y));
                self.fake(xproto::MOTION_NOTIFY_EVENT, 0, x, y);
            }
            InputEvent::PointerButton { button, down } => {
                let detail = match button {
                    PointerButton::Left => 1,
                    PointerButton::Middle => 2,
                    PointerButton::Right => 3,
                    PointerButton::Back => 8,
                    PointerButton::Forward => 9,
                };
                let kind = if down {
                    xproto::BUTTON_PRESS_EVENT
                } else {
                    xproto::BUTTON_RELEASE_EVENT
                };
                self.fake(kind, detail, 0, 0);
            }
            InputEvent::Wheel { dx, dy } => {
                // X reports wheel notches as clicks of buttons 4/5 (vertical), 6/7.
                let clicks = [(dy, 5u8, 4u8), (dx, 7, 6)];
                for (amount, positive, negative) in clicks {
                    let button = if amount > 0 { positive } else { negative };
                    for _ in 0..amount.unsigned_abs().min(32) {
                        self.fake(xproto::BUTTON_PRESS_EVENT, button, 0, 0);
                        self.fake(xproto::BUTTON_RELEASE_EVENT, button, 0, 0);
                    }
                }
            }
        }
    }
}
