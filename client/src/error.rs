//! Why a client session could not start or ended badly.

use std::net::SocketAddr;

use oriel_protocol::session::client::SessionError;
use oriel_protocol::RejectCode;
use oriel_transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("the server refused the session ({code:?}): {message}")]
    Rejected { code: RejectCode, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("decoding a frame failed: {0}")]
    Decode(#[from] oriel_protocol::codec::CodecError),
    #[error("connection lost: {0}")]
    Lost(String),
    /// The server ended the session because the desktop went: stopped, reset, logged
    /// off, or failed (the message says which).
    #[error("{0}")]
    DesktopGone(String),
    /// The desktop moved to another display server (live migration): connect there.
    #[error("the desktop moved to {}", .0.to.address)]
    Moved(Box<Moved>),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl From<SessionError> for ClientError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Rejected { code, message } => ClientError::Rejected { code, message },
            SessionError::Protocol(reason) => ClientError::Protocol(reason),
        }
    }
}

/// Where a desktop went, and what its viewer showed when it left.
#[derive(Debug)]
pub struct Moved {
    pub to: oriel_protocol::MovedTo,
    /// The screen as the session left it, for the next session to start from.
    pub held: Option<oriel_protocol::Framebuffer>,
    /// The session's input queue, with what was typed since: the next session sends it.
    pub input: Option<crate::InputSender>,
}
