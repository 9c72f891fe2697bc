//! The client's end of the clipboard channel: it learns the desktop's policy from the
//! server's first clipboard message and sends nothing the policy forbids (the server
//! checks again). A paste the policy or the cap stops is answered locally at once.

use super::{ClientAction, ClientSession, Phase};
use crate::clipboard::{ClipboardMsg, ClipboardPolicy, Travel};
use crate::messages::Channel;
use crate::wire::encode_message;

#[derive(Debug, Default)]
pub(super) struct ClientClipboard {
    /// The server opened its clipboard stream.
    pub(super) stream_seen: bool,
    /// The desktop's policy, once the server said it.
    policy: Option<ClipboardPolicy>,
    /// The client's clipboard stream has been opened (its tag went out).
    opened: bool,
}

impl ClientSession {
    /// The desktop's clipboard policy, if the session has a clipboard.
    pub fn clipboard_policy(&self) -> Option<ClipboardPolicy> {
        self.clipboard.policy
    }

    pub(super) fn clipboard_from_server(&mut self, msg: ClipboardMsg) {
        match (&msg, self.clipboard.policy) {
            (ClipboardMsg::Policy(p), None) => {
                self.clipboard.policy = Some(*p);
                self.push(ClientAction::Clipboard(msg));
            }
            (ClipboardMsg::Policy(_), Some(_)) => self.fail("second clipboard policy"),
            (_, None) => self.fail("clipboard message before the policy"),
            (_, Some(_)) => self.push(ClientAction::Clipboard(msg)),
        }
    }

    pub(super) fn clipboard_from_local(&mut self, msg: ClipboardMsg) {
        let Some(policy) = self.clipboard.policy else {
            return; // the desktop has no clipboard
        };
        if self.phase != Phase::Running {
            return;
        }
        let msg = match policy.check(&msg, Travel::ClientToServer) {
            Ok(()) => msg,
            Err(reason) => match msg {
                // The desktop asked for this and cannot have it: it hears why.
                ClipboardMsg::Data { serial, format, .. } => ClipboardMsg::Refused {
                    serial,
                    format,
                    reason,
                },
                // A local paste the policy stops: refused here, nothing is sent.
                ClipboardMsg::Request { serial, format } => {
                    return self.push(ClientAction::Clipboard(ClipboardMsg::Refused {
                        serial,
                        format,
                        reason,
                    }));
                }
                _ => return,
            },
        };
        match encode_message(&msg, Channel::Clipboard.max_message_len()) {
            Ok(bytes) => {
                let bytes = if self.clipboard.opened {
                    bytes
                } else {
                    self.clipboard.opened = true;
                    let mut tagged = Vec::with_capacity(bytes.len() + 1);
                    tagged.push(Channel::Clipboard as u8);
                    tagged.extend_from_slice(&bytes);
                    tagged
                };
                self.push(ClientAction::SendClipboard(bytes));
            }
            Err(e) => self.fail(&format!("cannot send a clipboard message: {e}")),
        }
    }
}
