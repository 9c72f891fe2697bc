//! The link between a display server (host) and the broker: one long-lived QUIC
//! connection the host dials, with the broker's certificate pinned, carrying one
//! bidirectional stream of messages. The host registers with a one-time join token
//! and gets a long-lived credential; then it reports heartbeats and session events,
//! and the broker pushes commands without polling.

use serde::{Deserialize, Serialize};

use crate::desktop_spec::DesktopSpec;

/// TLS application protocol of the host link.
/// Version 2: tickets and reports carry assignment generations, sessions their ids.
/// Version 3: desktop specs are typed ([`DesktopSpec`]), not JSON text.
pub const HOST_ALPN: &[u8] = b"oriel-host/3";

/// Largest host-link message.
pub const MAX_HOST_MESSAGE: usize = 1024 * 1024;

/// Host → broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg {
    /// First message: who the host is and how clients reach it.
    Register(Register),
    /// Periodic state report.
    Heartbeat {
        capacity: u32,
        desktops: Vec<DesktopReport>,
    },
    /// A client connected to or left a desktop. `session` is the host's id of that
    /// connection: a new connection may take a desktop over while the old one is still
    /// winding down, so the broker matches the two events of one session by it.
    Session {
        desktop: String,
        user: String,
        session: u64,
        event: SessionEvent,
    },
    /// A client was refused at the handshake (for the audit log).
    TicketRefused { desktop: String, reason: String },
    /// Outcome of a broker command, with its output for commands that read something.
    CommandDone {
        id: u64,
        error: Option<String>,
        output: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// One of the two proves the host may join: a join token the first time, then the
    /// credential the broker handed out.
    pub join_token: Option<String>,
    pub credential: Option<String>,
    pub name: String,
    /// QUIC address clients dial, host:port.
    pub display_address: String,
    /// SHA-256 of the display server certificate, hex.
    pub fingerprint: String,
    pub capacity: u32,
    pub desktops: Vec<DesktopReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEvent {
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesktopReport {
    pub name: String,
    pub running: bool,
    /// Why the desktop failed (its source broke); the broker replaces it.
    pub failure: Option<String>,
    pub sessions: u32,
    /// Seconds since the last input from a viewer (or since the last viewer joined).
    pub idle_s: u32,
    /// The assignment generation the host knows: tickets of older ones are refused.
    /// The broker sends [`HostCommand::Disconnect`] when it is behind the store's.
    pub generation: u64,
}

/// Broker → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerMsg {
    Registered {
        host_id: String,
        /// Set when the host joined with a token: keep it and use it from now on.
        credential: Option<String>,
        /// Public key that signs connect tickets (Ed25519).
        ticket_key: [u8; 32],
    },
    Refused {
        reason: String,
    },
    Command {
        id: u64,
        command: HostCommand,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostCommand {
    /// Create and start a desktop at an assignment generation.
    Create {
        desktop: String,
        spec: DesktopSpec,
        generation: u64,
    },
    /// Bring a desktop back to its clean state (its sessions end), at a generation.
    Reset {
        desktop: String,
        spec: DesktopSpec,
        generation: u64,
    },
    /// Stop a desktop, keeping its state; its sessions end.
    Stop { desktop: String },
    /// Start a stopped desktop again.
    Start { desktop: String },
    /// A log-off or reassignment: the desktop's generation becomes `generation`, so
    /// sessions and tickets of earlier generations end and are refused from now on.
    /// The desktop keeps running.
    Disconnect { desktop: String, generation: u64 },
    /// Stop and remove a desktop.
    Destroy { desktop: String },
    /// The newest `max_bytes` of the desktop's serial console log (kvm desktops).
    ConsoleLog { desktop: String, max_bytes: u32 },
}

/// Most console log a host sends in one answer.
pub const MAX_CONSOLE_LOG: u32 = 256 * 1024;
