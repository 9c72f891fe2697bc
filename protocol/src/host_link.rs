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
/// Version 4: heartbeats carry the host's load and each viewer's live figures, a
/// connect its client's address; thumbnails; command output is typed.
/// Version 5: where browsers connect and the certificates they are shown.
pub const HOST_ALPN: &[u8] = b"oriel-host/5";

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
        load: HostLoad,
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
        output: Option<CommandOutput>,
    },
    /// The browsers' certificate rotated: the SHA-256 (hex) of the one shown now and of
    /// the next.
    WebCertificates { fingerprints: Vec<String> },
}

/// What a command that reads something answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutput {
    /// Text, e.g. a console log.
    Text(String),
    /// A PNG image, e.g. a thumbnail of a screen.
    Png(Vec<u8>),
    /// A desktop moved to another host: what the move took.
    Migrated(MigrationFigures),
}

/// What a live migration took, as the source host measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationFigures {
    /// The desktop's VM was paused on no host this long (the destination's clock).
    pub downtime_us: u64,
    pub total_ms: u64,
    pub bytes: u64,
    pub rounds: u32,
}

/// How busy the host machine is, as of a heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLoad {
    /// CPU busy over the last heartbeat interval, in thousandths of all its cores.
    pub cpu_permille: u32,
    pub cpus: u32,
    /// Memory in use (total less available), bytes.
    pub memory_used: u64,
    pub memory_total: u64,
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
    /// Where browsers connect (WebTransport), host:port, if the host takes them.
    pub web_address: Option<String>,
    /// SHA-256 (hex) of the certificate browsers are shown now and of the next one.
    pub web_fingerprints: Vec<String>,
    pub capacity: u32,
    pub desktops: Vec<DesktopReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEvent {
    /// `from`: the client's address as the host sees it (ip:port).
    Connected {
        from: String,
    },
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
    /// The newest viewer's figures while one is connected.
    pub viewer: Option<ViewerFigures>,
}

/// A connected viewer, as its host sees it over the last heartbeat interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerFigures {
    /// The host's id of the connection (as in [`HostMsg::Session`]).
    pub session: u64,
    /// The client's address (ip:port).
    pub from: String,
    /// Screen updates sent per second, in tenths.
    pub fps_tenths: u32,
    /// Bytes sent to the viewer, kbit/s.
    pub kbit_per_s: u32,
    /// The connection's round-trip time, microseconds.
    pub rtt_us: u32,
    /// Video regions open now.
    pub video_regions: u32,
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
    /// A PNG of the desktop's screen scaled to fit `max_width` x `max_height` (each at
    /// most [`MAX_THUMBNAIL_SIDE`]), keeping its aspect.
    Thumbnail {
        desktop: String,
        max_width: u32,
        max_height: u32,
    },
    /// Live-migrate a kvm desktop to the display server at `to` (pinned by its
    /// certificate's SHA-256), with a migration ticket the broker signed for it. The
    /// desktop runs on here if anything fails before the destination has it.
    MigrateOut {
        desktop: String,
        to: String,
        fingerprint: [u8; 32],
        ticket: Vec<u8>,
        /// A connect ticket for the desktop's user at the destination, which the source
        /// passes to its viewer so that it follows the desktop there.
        viewer_ticket: Option<Vec<u8>>,
    },
    /// Suspend a kvm desktop to disk: its whole state is saved to a file on the host
    /// and the VM ends, so it costs no RAM; its sessions end.
    Suspend { desktop: String },
    /// Resume a suspended desktop from its saved state, as `spec` describes it, at
    /// `generation` (or the saved one, if later): it continues where it was.
    Resume {
        desktop: String,
        spec: DesktopSpec,
        generation: u64,
    },
}

/// Largest side of a thumbnail a host renders.
pub const MAX_THUMBNAIL_SIDE: u32 = 640;

/// Most console log a host sends in one answer.
pub const MAX_CONSOLE_LOG: u32 = 256 * 1024;
