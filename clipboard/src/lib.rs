//! The X11 end of Oriel's clipboard channel. A bridge connects to one X server and
//! stands in for the other side of the channel there:
//!
//! - when an application of this X server copies, the bridge reads the formats it
//!   offers (TARGETS) and announces them ([`ClipboardMsg::Offer`]); the data is read
//!   from the application only when the other side asks ([`ClipboardMsg::Request`]);
//! - when the other side offers, the bridge takes the selection here, and when an
//!   application pastes, it asks the other side for the data and answers the paste
//!   once it comes.
//!
//! The display server runs one bridge per x11 desktop, the viewer one on its own X
//! server, with the same code. A bridge runs on a thread of its own; messages for it go
//! in through [`X11Clipboard::deliver`], its messages come out through a callback.

mod atoms;
mod fetch;
mod owner;

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oriel_protocol::ClipboardMsg;
use x11rb::connection::{Connection, RequestConnection as _};
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _, EventMask, WindowClass};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use atoms::Atoms;

/// How long an application may take to hand over its clipboard, and how long a paste
/// waits for the other side's data.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the bridge looks for transfers that timed out.
const TICK: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    #[error("cannot connect to X display {display}: {reason}")]
    Connect { display: String, reason: String },
    #[error("the X server lacks the XFIXES extension (needed to see copies)")]
    NoXfixes,
    #[error("X connection: {0}")]
    Connection(#[from] x11rb::errors::ConnectionError),
    #[error("X request: {0}")]
    Reply(#[from] x11rb::errors::ReplyError),
    #[error("X ids: {0}")]
    Ids(#[from] x11rb::errors::ReplyOrIdError),
}

/// What a bridge does.
#[derive(Debug, Clone, Copy)]
pub struct BridgeConfig {
    /// Bridge PRIMARY (what selecting text puts) too, not only CLIPBOARD.
    pub primary: bool,
    /// Most bytes read from an application for one transfer.
    pub max_bytes: u32,
}

enum Command {
    Remote(ClipboardMsg),
    Announce,
    Quit,
}

/// A running bridge; dropping it stops it (the selections it held are released).
pub struct X11Clipboard {
    conn: Arc<RustConnection>,
    window: xproto::Window,
    wake: xproto::Atom,
    commands: mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl X11Clipboard {
    /// Connects to `display` (`None`: `$DISPLAY`) and starts bridging. `out` gets every
    /// message for the other side.
    pub fn start(
        display: Option<&str>,
        config: BridgeConfig,
        out: impl FnMut(ClipboardMsg) + Send + 'static,
    ) -> Result<Self, ClipboardError> {
        let name = display
            .map(str::to_owned)
            .or_else(|| std::env::var("DISPLAY").ok())
            .unwrap_or_else(|| "(unset DISPLAY)".into());
        let (conn, screen) = x11rb::connect(display).map_err(|e| ClipboardError::Connect {
            display: name.clone(),
            reason: e.to_string(),
        })?;
        let conn = Arc::new(conn);
        if conn
            .extension_information(xfixes::X11_EXTENSION_NAME)?
            .is_none()
        {
            return Err(ClipboardError::NoXfixes);
        }
        conn.xfixes_query_version(5, 0)?.reply()?;
        let atoms = Atoms::intern(&*conn)?;
        let root = conn.setup().roots[screen].root;
        let window = conn.generate_id()?;
        conn.create_window(
            0,
            window,
            root,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &xproto::CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )?;
        let mut selections = vec![oriel_protocol::Selection::Clipboard];
        if config.primary {
            selections.push(oriel_protocol::Selection::Primary);
        }
        let mask = xfixes::SelectionEventMask::SET_SELECTION_OWNER
            | xfixes::SelectionEventMask::SELECTION_WINDOW_DESTROY
            | xfixes::SelectionEventMask::SELECTION_CLIENT_CLOSE;
        for s in &selections {
            conn.xfixes_select_selection_input(window, atoms.selection_atom(*s), mask)?;
        }
        conn.flush()?;
        let (commands, inbox) = mpsc::channel();
        let mut bridge = Bridge {
            conn: conn.clone(),
            window,
            atoms,
            config,
            out: Box::new(out),
            local: fetch::Local::default(),
            owned: owner::Owned::default(),
        };
        // What the selections hold already is offered at once.
        for s in selections {
            let owner = conn
                .get_selection_owner(atoms.selection_atom(s))?
                .reply()?
                .owner;
            bridge.owner_changed(s, owner);
        }
        conn.flush()?;
        tracing::info!(display = name, "clipboard bridge running");
        let thread = std::thread::Builder::new()
            .name("clipboard".into())
            .spawn(move || {
                if let Err(e) = bridge.run(&inbox) {
                    tracing::warn!("clipboard bridge stopped: {e}");
                }
            })
            .map_err(|e| ClipboardError::Connect {
                display: name,
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(Self {
            conn,
            window,
            wake: atoms.wake,
            commands,
            thread: Some(thread),
        })
    }

    /// Hands the bridge a message from the other side.
    pub fn deliver(&self, msg: ClipboardMsg) {
        self.command(Command::Remote(msg));
    }

    /// Offers again what this X server's clipboard holds (the other side is new).
    pub fn announce(&self) {
        self.command(Command::Announce);
    }

    fn command(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            // The thread waits on the X connection: an event to its own window wakes it.
            let event = xproto::ClientMessageEvent::new(32, self.window, self.wake, [0u32; 5]);
            let _ = self
                .conn
                .send_event(false, self.window, EventMask::NO_EVENT, event);
            let _ = self.conn.flush();
        }
    }
}

impl Drop for X11Clipboard {
    fn drop(&mut self) {
        self.command(Command::Quit);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The bridge's thread state.
struct Bridge {
    conn: Arc<RustConnection>,
    window: xproto::Window,
    atoms: Atoms,
    config: BridgeConfig,
    out: Box<dyn FnMut(ClipboardMsg) + Send>,
    /// What this X server's applications offer, and the reads from them.
    local: fetch::Local,
    /// What the other side offers, held here as the selection owner.
    owned: owner::Owned,
}

impl Bridge {
    fn run(&mut self, inbox: &mpsc::Receiver<Command>) -> Result<(), ClipboardError> {
        let fd = self.conn.stream().as_raw_fd();
        loop {
            loop {
                match inbox.try_recv() {
                    Ok(Command::Remote(msg)) => self.remote(msg)?,
                    Ok(Command::Announce) => self.announce(),
                    Ok(Command::Quit) | Err(mpsc::TryRecvError::Disconnected) => {
                        let _ = self.conn.destroy_window(self.window);
                        let _ = self.conn.flush();
                        return Ok(());
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            while let Some(event) = self.conn.poll_for_event()? {
                self.event(event)?;
            }
            self.expire(Instant::now())?;
            self.conn.flush()?;
            // Events read while waiting for replies are handled before sleeping.
            if let Some(event) = self.conn.poll_for_event()? {
                self.event(event)?;
                continue;
            }
            wait_readable(fd, TICK);
        }
    }

    fn event(&mut self, event: Event) -> Result<(), ClipboardError> {
        match event {
            Event::XfixesSelectionNotify(e) => {
                if let Some(s) = self.atoms.selection(e.selection) {
                    self.owner_changed(s, e.owner);
                }
            }
            Event::SelectionNotify(e) if e.requestor == self.window => self.converted(e)?,
            Event::PropertyNotify(e)
                if e.window == self.window
                    && e.atom == self.atoms.transfer
                    && e.state == xproto::Property::NEW_VALUE =>
            {
                self.incr_chunk()?
            }
            Event::SelectionRequest(e) => self.paste(e)?,
            Event::SelectionClear(e) => self.lost(e.selection),
            _ => {}
        }
        Ok(())
    }

    fn remote(&mut self, msg: ClipboardMsg) -> Result<(), ClipboardError> {
        match msg {
            ClipboardMsg::Policy(_) => {}
            ClipboardMsg::Offer {
                selection,
                serial,
                formats,
            } => {
                if selection == oriel_protocol::Selection::Primary && !self.config.primary {
                    return Ok(());
                }
                self.take(selection, serial, formats)?;
            }
            ClipboardMsg::Request { serial, format } => self.request(serial, format)?,
            ClipboardMsg::Data {
                serial,
                format,
                data,
            } => self.data(serial, format, data)?,
            ClipboardMsg::Refused {
                serial,
                format,
                reason,
            } => self.refused(serial, format, &reason)?,
        }
        Ok(())
    }

    fn send(&mut self, msg: ClipboardMsg) {
        (self.out)(msg);
    }
}

/// Sleeps until the X connection has something to read, or `timeout`.
fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pollfd` is one valid, initialised pollfd that outlives the call.
    unsafe { libc::poll(&mut pollfd, 1, ms) };
}
