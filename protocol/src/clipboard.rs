//! The clipboard channel: lazy, as SPICE's agent does it. A side whose clipboard
//! changes announces the formats it holds (`Offer`); the data crosses only when the
//! other side pastes (`Request`, answered by `Data` or `Refused`). Each side numbers its
//! own offers; a request names the offer it wants by that number.
//!
//! The display server enforces its desktop's [`ClipboardPolicy`]: which way data may
//! flow, and how much of it.

use serde::{Deserialize, Serialize};

/// Default most bytes one clipboard transfer may carry.
pub const DEFAULT_CLIPBOARD_MAX_BYTES: u32 = 16 * 1024 * 1024;
/// The largest cap a pool may set (a clipboard message must fit the channel).
pub const MAX_CLIPBOARD_BYTES: u32 = 64 * 1024 * 1024;
/// Most formats one offer lists.
pub const MAX_OFFER_FORMATS: usize = 8;
/// Longest refusal reason.
pub const MAX_REASON: usize = 512;

/// What a clipboard holds, as the channel carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClipFormat {
    /// UTF-8 text.
    Text,
    /// A PNG image.
    Png,
}

impl ClipFormat {
    pub fn name(self) -> &'static str {
        match self {
            ClipFormat::Text => "text",
            ClipFormat::Png => "png",
        }
    }
}

/// Which X selection an offer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Selection {
    /// What "copy" puts (the CLIPBOARD selection).
    Clipboard,
    /// What selecting text puts (the PRIMARY selection), when both sides want it.
    Primary,
}

/// One clipboard message; both directions use the same ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClipboardMsg {
    /// Server → client, first on the server's clipboard stream: what this desktop
    /// allows. A client sends nothing the policy forbids.
    Policy(ClipboardPolicy),
    /// The sender's selection now holds these formats (none: it is empty). It replaces
    /// the sender's earlier offer for that selection.
    Offer {
        selection: Selection,
        serial: u64,
        formats: Vec<ClipFormat>,
    },
    /// The receiver pastes: send the data of offer `serial` in `format`.
    Request { serial: u64, format: ClipFormat },
    /// The data a request asked for.
    Data {
        serial: u64,
        format: ClipFormat,
        data: Vec<u8>,
    },
    /// A request cannot be answered (the offer is stale, the data is too large, the
    /// policy forbids it, the owner did not answer).
    Refused {
        serial: u64,
        format: ClipFormat,
        reason: String,
    },
}

/// Which way a desktop's clipboard may flow, and how much at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipboardPolicy {
    /// The client's clipboard may be pasted in the desktop.
    pub to_desktop: bool,
    /// The desktop's clipboard may be pasted on the client.
    pub to_client: bool,
    /// Most bytes of one transfer.
    pub max_bytes: u32,
}

impl Default for ClipboardPolicy {
    fn default() -> Self {
        Self {
            to_desktop: true,
            to_client: true,
            max_bytes: DEFAULT_CLIPBOARD_MAX_BYTES,
        }
    }
}

/// Which way a clipboard message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Travel {
    ServerToClient,
    ClientToServer,
}

impl ClipboardPolicy {
    /// The policy a pool names: `both` (the default), `to-desktop`, `to-client` or
    /// `off`, with a cap.
    pub fn parse(mode: Option<&str>, max_bytes: Option<u32>) -> Result<Self, String> {
        let (to_desktop, to_client) = match mode.unwrap_or("both") {
            "both" => (true, true),
            "to-desktop" => (true, false),
            "to-client" => (false, true),
            "off" => (false, false),
            _ => return Err("clipboard must be 'both', 'to-desktop', 'to-client' or 'off'".into()),
        };
        let max_bytes = max_bytes.unwrap_or(DEFAULT_CLIPBOARD_MAX_BYTES);
        if max_bytes == 0 || max_bytes > MAX_CLIPBOARD_BYTES {
            return Err(format!(
                "clipboard_max_bytes must be between 1 and {MAX_CLIPBOARD_BYTES}"
            ));
        }
        Ok(Self {
            to_desktop,
            to_client,
            max_bytes,
        })
    }

    /// Whether data may flow from the desktop to the client (`true`) or the other way.
    fn allows_flow(&self, to_client: bool) -> bool {
        if to_client {
            self.to_client
        } else {
            self.to_desktop
        }
    }

    /// Checks one message travelling `travel`: `Err` says why it may not pass. An
    /// offer or its data moves data the way it travels; a request moves it back.
    pub fn check(&self, msg: &ClipboardMsg, travel: Travel) -> Result<(), String> {
        let forward = travel == Travel::ServerToClient;
        match msg {
            ClipboardMsg::Policy(_) => {
                if forward {
                    Ok(())
                } else {
                    Err("a client does not set the clipboard policy".into())
                }
            }
            ClipboardMsg::Offer { formats, .. } => {
                if formats.len() > MAX_OFFER_FORMATS {
                    return Err(format!(
                        "an offer lists more than {MAX_OFFER_FORMATS} formats"
                    ));
                }
                self.flow(forward)
            }
            ClipboardMsg::Request { .. } => self.flow(!forward),
            ClipboardMsg::Data { data, .. } => {
                self.flow(forward)?;
                self.fits(data.len())
            }
            ClipboardMsg::Refused { reason, .. } => {
                if reason.len() > MAX_REASON {
                    Err(format!(
                        "a refusal's reason is longer than {MAX_REASON} bytes"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn flow(&self, to_client: bool) -> Result<(), String> {
        if self.allows_flow(to_client) {
            Ok(())
        } else if to_client {
            Err("this desktop's policy does not allow copying from the desktop".into())
        } else {
            Err("this desktop's policy does not allow pasting into the desktop".into())
        }
    }

    /// Whether `len` bytes fit one transfer, with the reason a user reads if not.
    pub fn fits(&self, len: usize) -> Result<(), String> {
        if len as u64 > u64::from(self.max_bytes) {
            Err(format!(
                "the clipboard holds {}, more than the {} this desktop allows",
                human_bytes(len as u64),
                human_bytes(u64::from(self.max_bytes))
            ))
        } else {
            Ok(())
        }
    }
}

/// Sizes as a user reads them ("16 MiB", "512 KiB", "20 bytes").
pub fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= 1024 {
        format!("{} KiB", n.div_ceil(1024))
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> ClipboardMsg {
        ClipboardMsg::Data {
            serial: 1,
            format: ClipFormat::Text,
            data: vec![b'a'; len],
        }
    }

    #[test]
    fn each_direction_is_allowed_on_its_own() {
        let to_desktop = ClipboardPolicy::parse(Some("to-desktop"), None).unwrap();
        let offer = ClipboardMsg::Offer {
            selection: Selection::Clipboard,
            serial: 1,
            formats: vec![ClipFormat::Text],
        };
        let request = ClipboardMsg::Request {
            serial: 1,
            format: ClipFormat::Text,
        };
        // The client's clipboard reaches the desktop...
        assert!(to_desktop.check(&offer, Travel::ClientToServer).is_ok());
        assert!(to_desktop.check(&request, Travel::ServerToClient).is_ok());
        assert!(to_desktop.check(&data(5), Travel::ClientToServer).is_ok());
        // ...and nothing of the desktop's reaches the client.
        let e = to_desktop
            .check(&offer, Travel::ServerToClient)
            .unwrap_err();
        assert!(e.contains("copying from the desktop"), "{e}");
        assert!(to_desktop.check(&request, Travel::ClientToServer).is_err());
        assert!(to_desktop.check(&data(5), Travel::ServerToClient).is_err());

        let off = ClipboardPolicy::parse(Some("off"), None).unwrap();
        for travel in [Travel::ClientToServer, Travel::ServerToClient] {
            assert!(off.check(&offer, travel).is_err());
            assert!(off.check(&data(1), travel).is_err());
        }
    }

    #[test]
    fn data_over_the_cap_is_refused_with_its_size() {
        let p = ClipboardPolicy::parse(None, Some(1024 * 1024)).unwrap();
        assert!(p.check(&data(1024 * 1024), Travel::ClientToServer).is_ok());
        let e = p
            .check(&data(3 * 1024 * 1024), Travel::ServerToClient)
            .unwrap_err();
        assert_eq!(
            e,
            "the clipboard holds 3 MiB, more than the 1 MiB this desktop allows"
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(ClipboardPolicy::parse(Some("sideways"), None).is_err());
        assert!(ClipboardPolicy::parse(None, Some(0)).is_err());
        assert!(ClipboardPolicy::parse(None, Some(MAX_CLIPBOARD_BYTES + 1)).is_err());
        assert_eq!(
            ClipboardPolicy::parse(None, None).unwrap(),
            ClipboardPolicy::default()
        );
    }

    #[test]
    fn a_client_cannot_set_the_policy() {
        let p = ClipboardPolicy::default();
        let msg = ClipboardMsg::Policy(p);
        assert!(p.check(&msg, Travel::ClientToServer).is_err());
        assert!(p.check(&msg, Travel::ServerToClient).is_ok());
    }
}
