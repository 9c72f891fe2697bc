//! What a session is opened with, and when [`super::Session::run`] returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oriel_protocol::{Capabilities, CAP_AUDIO, CAP_CLIPBOARD, CAP_MICROPHONE};
use oriel_transport::Fingerprint;

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub addr: SocketAddr,
    /// SHA-256 of the server certificate; any other certificate is refused.
    pub fingerprint: Fingerprint,
    pub desktop: String,
    pub ticket: Vec<u8>,
    pub client_name: String,
    pub capabilities: Capabilities,
    /// The local clipboard, shared with desktops that allow it.
    pub clipboard: Option<crate::clipboard::ClipboardPort>,
    /// Where the desktop's sound goes (none: it is not asked for).
    pub audio: Option<crate::audio::AudioOutput>,
    /// The viewer's microphone, for desktops that take one.
    pub microphone: Option<crate::microphone::Microphone>,
}

impl ConnectOptions {
    /// What the hello offers: sound and the clipboard only where they have somewhere
    /// to go.
    pub(super) fn offered_capabilities(&self) -> Capabilities {
        let mut caps = self.capabilities;
        if self.audio.is_none() {
            caps.flags &= !CAP_AUDIO;
        }
        if self.clipboard.is_none() {
            caps.flags &= !CAP_CLIPBOARD;
        }
        if self.microphone.is_none() {
            caps.flags &= !CAP_MICROPHONE;
        }
        caps
    }

    pub fn new(addr: SocketAddr, fingerprint: Fingerprint) -> Self {
        Self {
            addr,
            fingerprint,
            desktop: "default".into(),
            ticket: Vec::new(),
            client_name: format!("oriel/{}", env!("CARGO_PKG_VERSION")),
            capabilities: Capabilities::all(),
            clipboard: None,
            audio: None,
            microphone: None,
        }
    }
}

/// When [`Session::run`] returns.
#[derive(Debug, Clone, Default)]
pub struct StopWhen {
    /// When notified (e.g. on Ctrl-C).
    pub interrupt: Option<Arc<tokio::sync::Notify>>,
    /// After this long.
    pub duration: Option<Duration>,
    /// Once a frame carrying at least this source sequence is decoded.
    pub source_seq: Option<u64>,
    /// Once a display frame carrying at least this source sequence is decoded and no
    /// video region is active: the framebuffer then holds that state exactly.
    pub settled_seq: Option<u64>,
}
