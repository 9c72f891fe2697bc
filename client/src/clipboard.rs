//! The viewer's clipboard: an X11 bridge on the viewer's own X server (the one its
//! window is on), wired to whichever session runs. It outlives sessions: a session
//! that resumes after an outage or follows a moved desktop picks it up, and what the
//! local clipboard holds is announced again to the new session.

use std::sync::Arc;

use oriel_clipboard::{BridgeConfig, ClipboardError, X11Clipboard};
use oriel_protocol::clipboard::MAX_CLIPBOARD_BYTES;
use oriel_protocol::ClipboardMsg;
use tokio::sync::{mpsc, Mutex, OwnedMutexGuard};

/// The local clipboard, as sessions use it.
#[derive(Clone)]
pub struct ClipboardPort {
    bridge: Arc<X11Clipboard>,
    from_local: Arc<Mutex<mpsc::UnboundedReceiver<ClipboardMsg>>>,
}

impl std::fmt::Debug for ClipboardPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipboardPort").finish_non_exhaustive()
    }
}

impl ClipboardPort {
    /// Bridges the clipboard of X display `display` (`None`: `$DISPLAY`), and PRIMARY
    /// too with `primary`. The desktop's policy decides what may cross; the bridge reads
    /// up to the protocol's largest cap from local applications.
    pub fn start(display: Option<&str>, primary: bool) -> Result<Self, ClipboardError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let bridge = X11Clipboard::start(
            display,
            BridgeConfig {
                primary,
                max_bytes: MAX_CLIPBOARD_BYTES,
            },
            move |msg| drop(tx.send(msg)),
        )?;
        Ok(Self {
            bridge: Arc::new(bridge),
            from_local: Arc::new(Mutex::new(rx)),
        })
    }

    /// Takes the local side's messages for one session (until the guard drops).
    pub(crate) async fn attach(&self) -> OwnedMutexGuard<mpsc::UnboundedReceiver<ClipboardMsg>> {
        self.from_local.clone().lock_owned().await
    }

    /// A message of the desktop's side for the local clipboard.
    pub(crate) fn deliver(&self, msg: ClipboardMsg) {
        match msg {
            ClipboardMsg::Policy(policy) => {
                tracing::info!(
                    to_desktop = policy.to_desktop,
                    to_client = policy.to_client,
                    max_bytes = policy.max_bytes,
                    "the desktop shares its clipboard"
                );
                // The new session hears what the local clipboard holds.
                self.bridge.announce();
            }
            msg => self.bridge.deliver(msg),
        }
    }
}

/// The next message of the local clipboard, if this session has one.
pub(crate) async fn next_local(
    rx: &mut Option<OwnedMutexGuard<mpsc::UnboundedReceiver<ClipboardMsg>>>,
) -> Option<ClipboardMsg> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes the client's clipboard stream, opening it at the first message.
pub(crate) fn writer(conn: quinn::Connection) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let Ok(mut stream) = conn.open_uni().await else {
            return;
        };
        // Below the screen's streams: a large paste waits for nothing on screen.
        let _ = stream.set_priority(-1);
        while let Some(bytes) = rx.recv().await {
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = stream.finish();
    });
    tx
}
