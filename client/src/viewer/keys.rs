//! The keyboard: keys go to the desktop by physical key and are remembered until
//! released, except the viewer's own shortcuts (full screen, keyboard grab, the
//! figures overlay, sound, Ctrl+Alt+Del).

use oriel_protocol::InputEvent;
use winit::keyboard::KeyCode;
use winit::window::Fullscreen;

use super::{keymap, overlay, Viewer};

impl Viewer {
    pub(super) fn key(&mut self, code: u16, down: bool) {
        if down {
            self.pressed.insert(code);
        } else {
            self.pressed.remove(&code);
        }
        self.send(InputEvent::Key { code, down });
    }

    pub(super) fn release_all_keys(&mut self) {
        for code in std::mem::take(&mut self.pressed) {
            self.send(InputEvent::Key { code, down: false });
        }
    }

    pub(super) fn send_ctrl_alt_del(&mut self) {
        for code in keymap::CTRL_ALT_DEL {
            self.send(InputEvent::Key { code, down: true });
        }
        for code in keymap::CTRL_ALT_DEL.iter().rev() {
            self.send(InputEvent::Key {
                code: *code,
                down: false,
            });
        }
    }

    /// Handles the viewer's own shortcuts; true when the key is not for the desktop.
    pub(super) fn shortcut(&mut self, key: KeyCode, down: bool) -> bool {
        let ctrl_alt = self.modifiers.control_key() && self.modifiers.alt_key();
        match key {
            KeyCode::F11 if !ctrl_alt => {
                if down {
                    if let Some(w) = &self.window {
                        let full = w.fullscreen().is_none();
                        w.set_fullscreen(full.then_some(Fullscreen::Borderless(None)));
                    }
                }
                true
            }
            // Ctrl+Alt+G gives the keyboard back to the local desktop, and takes it again.
            KeyCode::KeyG if ctrl_alt => {
                if down {
                    self.grab_released = !self.grab_released;
                    self.update_grab(true);
                }
                true
            }
            KeyCode::KeyO if ctrl_alt => {
                if down {
                    self.overlay = match self.overlay.take() {
                        Some(_) => None,
                        None => Some(overlay::Overlay::new()),
                    };
                    if let Some(w) = &self.window {
                        w.request_redraw();
                    }
                }
                true
            }
            KeyCode::KeyM | KeyCode::ArrowUp | KeyCode::ArrowDown
                if ctrl_alt && self.options.sound.is_some() =>
            {
                if let (true, Some(level)) = (down, &self.options.sound) {
                    match key {
                        KeyCode::KeyM => {
                            level.toggle_mute();
                        }
                        KeyCode::ArrowUp => {
                            level.step(10);
                        }
                        _ => {
                            level.step(-10);
                        }
                    }
                    self.update_title();
                }
                true
            }
            // Ctrl+Alt+End sends Ctrl+Alt+Del (which the local system would take).
            KeyCode::End if ctrl_alt => {
                if down {
                    self.release_all_keys();
                    self.send_ctrl_alt_del();
                }
                true
            }
            _ => false,
        }
    }
}
