//! A desktop's clipboard: the X11 bridge on its X server, shared by the desktop's
//! sessions. Offers of the desktop go to every session (a viewer that connects later
//! hears the current one); pastes are routed to the session that offered or asked.
//! Each session's core enforces the desktop's policy; the bridge enforces its cap on
//! what it reads from the desktop's applications.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use oriel_clipboard::{BridgeConfig, X11Clipboard};
use oriel_protocol::{ClipFormat, ClipboardMsg, ClipboardPolicy, Selection};
use tokio::sync::mpsc;

/// How an x11 desktop's clipboard is set up (from its pool's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClipboardSetting {
    pub policy: ClipboardPolicy,
    /// Bridge PRIMARY too.
    pub primary: bool,
}

/// Client offers the desktop may still paste from (older ones are forgotten).
const REMEMBERED_OFFERS: usize = 16;

pub struct DesktopClipboard {
    policy: ClipboardPolicy,
    routes: Arc<Mutex<Routes>>,
    bridge: X11Clipboard,
}

#[derive(Default)]
struct Routes {
    sessions: HashMap<u64, mpsc::UnboundedSender<ClipboardMsg>>,
    /// The desktop's current offer of each selection.
    desktop_offers: HashMap<Selection, ClipboardMsg>,
    /// Offers of clients as the bridge knows them: its serial → (session, the client's
    /// serial). Each client numbers its own offers; the desktop sees one sequence.
    client_offers: Vec<(u64, u64, u64)>,
    next_serial: u64,
    /// Sessions waiting for the desktop's data, by the desktop's serial and format.
    waiting: HashMap<(u64, ClipFormat), Vec<u64>>,
}

impl DesktopClipboard {
    /// Starts the bridge on `display`.
    pub fn start(display: &str, setting: ClipboardSetting) -> anyhow::Result<Arc<Self>> {
        let routes = Arc::new(Mutex::new(Routes::default()));
        let weak: Weak<Mutex<Routes>> = Arc::downgrade(&routes);
        let bridge = X11Clipboard::start(
            Some(display),
            BridgeConfig {
                primary: setting.primary,
                max_bytes: setting.policy.max_bytes,
            },
            move |msg| {
                if let Some(routes) = weak.upgrade() {
                    lock(&routes).route_from_desktop(msg);
                }
            },
        )?;
        Ok(Arc::new(Self {
            policy: setting.policy,
            routes,
            bridge,
        }))
    }

    pub fn policy(&self) -> ClipboardPolicy {
        self.policy
    }

    /// Registers session `session`: what the desktop offers now comes first.
    pub fn join(&self, session: u64) -> mpsc::UnboundedReceiver<ClipboardMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut routes = lock(&self.routes);
        for offer in routes.desktop_offers.values() {
            let _ = tx.send(offer.clone());
        }
        routes.sessions.insert(session, tx);
        rx
    }

    pub fn leave(&self, session: u64) {
        let mut routes = lock(&self.routes);
        routes.sessions.remove(&session);
        routes.client_offers.retain(|(_, s, _)| *s != session);
        for waiting in routes.waiting.values_mut() {
            waiting.retain(|s| *s != session);
        }
    }

    /// A message of session `session`'s client (the core checked it against the policy).
    pub fn route_from_session(&self, session: u64, msg: ClipboardMsg) {
        let to_bridge = lock(&self.routes).route_from_session(session, msg);
        if let Some(msg) = to_bridge {
            self.bridge.deliver(msg);
        }
    }
}

impl Routes {
    /// Routes a message of the bridge to the sessions it concerns.
    fn route_from_desktop(&mut self, msg: ClipboardMsg) {
        match &msg {
            ClipboardMsg::Offer { selection, .. } => {
                self.desktop_offers.insert(*selection, msg.clone());
                for tx in self.sessions.values() {
                    let _ = tx.send(msg.clone());
                }
            }
            ClipboardMsg::Data { serial, format, .. }
            | ClipboardMsg::Refused { serial, format, .. } => {
                for session in self.waiting.remove(&(*serial, *format)).unwrap_or_default() {
                    if let Some(tx) = self.sessions.get(&session) {
                        let _ = tx.send(msg.clone());
                    }
                }
            }
            ClipboardMsg::Request { serial, format } => {
                let owner = self
                    .client_offers
                    .iter()
                    .find(|(ours, _, _)| ours == serial)
                    .and_then(|(_, session, theirs)| Some((self.sessions.get(session)?, *theirs)));
                if let Some((tx, theirs)) = owner {
                    let _ = tx.send(ClipboardMsg::Request {
                        serial: theirs,
                        format: *format,
                    });
                }
                // A viewer that left: the bridge's paste times out.
            }
            ClipboardMsg::Policy(_) => {}
        }
    }

    /// Turns a client's message into the bridge's terms; `None`: nothing for it.
    fn route_from_session(&mut self, session: u64, msg: ClipboardMsg) -> Option<ClipboardMsg> {
        match msg {
            ClipboardMsg::Offer {
                selection,
                serial,
                formats,
            } => {
                self.next_serial += 1;
                let ours = self.next_serial;
                self.client_offers.push((ours, session, serial));
                if self.client_offers.len() > REMEMBERED_OFFERS {
                    self.client_offers.remove(0);
                }
                Some(ClipboardMsg::Offer {
                    selection,
                    serial: ours,
                    formats,
                })
            }
            ClipboardMsg::Request { serial, format } => {
                let waiting = self.waiting.entry((serial, format)).or_default();
                let first = waiting.is_empty();
                if !waiting.contains(&session) {
                    waiting.push(session);
                }
                first.then_some(ClipboardMsg::Request { serial, format })
            }
            ClipboardMsg::Data {
                serial,
                format,
                data,
            } => Some(ClipboardMsg::Data {
                serial: self.ours(session, serial)?,
                format,
                data,
            }),
            ClipboardMsg::Refused {
                serial,
                format,
                reason,
            } => Some(ClipboardMsg::Refused {
                serial: self.ours(session, serial)?,
                format,
                reason,
            }),
            ClipboardMsg::Policy(_) => None,
        }
    }

    /// The bridge's serial of a session's offer.
    fn ours(&self, session: u64, theirs: u64) -> Option<u64> {
        self.client_offers
            .iter()
            .rev()
            .find(|(_, s, t)| *s == session && *t == theirs)
            .map(|(ours, _, _)| *ours)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_of_two_viewers_are_told_apart_and_answers_go_to_who_asked() {
        let mut routes = Routes::default();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        routes.sessions.insert(1, tx1);
        routes.sessions.insert(2, tx2);
        let offer = |serial| ClipboardMsg::Offer {
            selection: Selection::Clipboard,
            serial,
            formats: vec![ClipFormat::Text],
        };
        // Both clients number their first offer 1; the desktop sees 1 and 2.
        assert_eq!(routes.route_from_session(1, offer(1)), Some(offer(1)));
        assert_eq!(routes.route_from_session(2, offer(1)), Some(offer(2)));
        // The desktop pastes its offer 2: session 2 is asked for its offer 1.
        routes.route_from_desktop(ClipboardMsg::Request {
            serial: 2,
            format: ClipFormat::Text,
        });
        assert!(rx1.try_recv().is_err());
        assert_eq!(
            rx2.try_recv().unwrap(),
            ClipboardMsg::Request {
                serial: 1,
                format: ClipFormat::Text
            }
        );
        let data = |serial| ClipboardMsg::Data {
            serial,
            format: ClipFormat::Text,
            data: b"x".to_vec(),
        };
        assert_eq!(routes.route_from_session(2, data(1)), Some(data(2)));

        // Both paste the desktop's offer 7: one request goes, both get the data.
        let request = ClipboardMsg::Request {
            serial: 7,
            format: ClipFormat::Text,
        };
        assert_eq!(
            routes.route_from_session(1, request.clone()),
            Some(request.clone())
        );
        assert_eq!(routes.route_from_session(2, request), None);
        routes.route_from_desktop(data(7));
        assert_eq!(rx1.try_recv().unwrap(), data(7));
        assert_eq!(rx2.try_recv().unwrap(), data(7));
    }
}
