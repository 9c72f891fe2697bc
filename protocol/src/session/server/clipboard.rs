//! The session's clipboard channel: the server enforces its desktop's policy on every
//! message either way. What the policy forbids never crosses; a paste that cannot be
//! served is answered with the reason, so no side waits for data that will not come.

use super::{ClientStream, Record, ServerAction, ServerSession};
use crate::clipboard::{ClipboardMsg, ClipboardPolicy, Travel};
use crate::messages::Channel;
use crate::session::SendChannel;

/// Room for a clipboard message's framing beyond its data.
const MESSAGE_OVERHEAD: usize = 1024;

impl ServerSession {
    /// Opens the server's clipboard stream and says what the desktop allows.
    pub(super) fn start_clipboard(&mut self, policy: ClipboardPolicy) {
        self.clipboard = Some(policy);
        self.open(SendChannel::Clipboard);
        self.send(SendChannel::Clipboard, &ClipboardMsg::Policy(policy));
    }

    /// The largest message the client's clipboard stream may carry, if it may have one.
    pub(super) fn clipboard_stream_limit(&self) -> Option<usize> {
        let policy = self.clipboard?;
        let limit = policy.max_bytes as usize + MESSAGE_OVERHEAD;
        Some(limit.min(Channel::Clipboard.max_message_len()))
    }

    pub(super) fn read_clipboard(&mut self, stream: u64) {
        loop {
            let Some(input) = self.inputs.get_mut(&stream) else {
                return;
            };
            debug_assert_eq!(input.kind, ClientStream::Clipboard);
            match input.reader.next_message::<ClipboardMsg>() {
                Ok(Some(msg)) => self.clipboard_from_client(msg),
                Ok(None) => return,
                Err(e) => return self.fail(&format!("clipboard stream: {e}")),
            }
        }
    }

    fn clipboard_from_client(&mut self, msg: ClipboardMsg) {
        let Some(policy) = self.clipboard else {
            return;
        };
        match policy.check(&msg, Travel::ClientToServer) {
            Ok(()) => {
                self.record_transfer(&msg, false);
                self.push(ServerAction::Clipboard(msg));
            }
            Err(reason) => match msg {
                // The client pastes what it may not have: it hears why.
                ClipboardMsg::Request { serial, format } => {
                    self.refuse_to_client(serial, format, reason)
                }
                // The desktop asked for this: its paste fails with the reason.
                ClipboardMsg::Data { serial, format, .. } => {
                    self.record_refused(false, format);
                    self.push(ServerAction::Clipboard(ClipboardMsg::Refused {
                        serial,
                        format,
                        reason,
                    }));
                }
                // An offer the policy forbids, or a malformed message, goes no further.
                ClipboardMsg::Offer { .. } => {}
                ClipboardMsg::Policy(_) | ClipboardMsg::Refused { .. } => {
                    self.fail(&format!("clipboard stream: {reason}"))
                }
            },
        }
    }

    pub(super) fn clipboard_from_desktop(&mut self, msg: ClipboardMsg) {
        let Some(policy) = self.clipboard else {
            return;
        };
        match policy.check(&msg, Travel::ServerToClient) {
            Ok(()) => {
                self.record_transfer(&msg, true);
                self.send(SendChannel::Clipboard, &msg);
            }
            Err(reason) => match msg {
                // The client pasted and the data may not go: it hears why.
                ClipboardMsg::Data { serial, format, .. } => {
                    self.refuse_to_client(serial, format, reason)
                }
                // The desktop pastes what it may not have.
                ClipboardMsg::Request { serial, format } => {
                    self.record_refused(false, format);
                    self.push(ServerAction::Clipboard(ClipboardMsg::Refused {
                        serial,
                        format,
                        reason,
                    }));
                }
                ClipboardMsg::Offer { .. }
                | ClipboardMsg::Policy(_)
                | ClipboardMsg::Refused { .. } => {}
            },
        }
    }

    /// Tells the client its paste cannot be served, and why.
    fn refuse_to_client(&mut self, serial: u64, format: crate::ClipFormat, reason: String) {
        self.record_refused(true, format);
        let refusal = ClipboardMsg::Refused {
            serial,
            format,
            reason,
        };
        self.send(SendChannel::Clipboard, &refusal);
    }

    /// Counts data and refusals as they pass (`to_client`: the way they travel).
    fn record_transfer(&mut self, msg: &ClipboardMsg, travelling_to_client: bool) {
        match msg {
            ClipboardMsg::Data { format, data, .. } => self.record(Record::Clipboard {
                to_client: travelling_to_client,
                format: *format,
                bytes: data.len(),
                refused: false,
            }),
            ClipboardMsg::Refused { format, .. } => {
                self.record_refused(travelling_to_client, *format)
            }
            _ => {}
        }
    }

    fn record_refused(&mut self, to_client: bool, format: crate::ClipFormat) {
        self.record(Record::Clipboard {
            to_client,
            format,
            bytes: 0,
            refused: true,
        });
    }
}
