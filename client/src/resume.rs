//! Sessions that survive network outages: when the connection is lost, the client asks
//! the broker again (a new single-use ticket for the same desktop) and reconnects, with
//! backoff, until it succeeds, the user gives up, or a deadline passes. A desktop that
//! is gone, or a refused ticket, ends it with the server's reason instead. A desktop
//! that moved to another host (live migration) is followed there at once, with the
//! ticket its old server passed on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oriel_protocol::Framebuffer;
use oriel_transport::Fingerprint;

use crate::error::Moved;
use crate::{ClientError, ConnectOptions, Outcome, Session, Shown, StopWhen};

/// Gets fresh connection options for the same desktop (from the broker: a new ticket).
pub type Reconnect = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<ConnectOptions>> + Send>> + Send + Sync,
>;

/// How long reconnecting may take before the client gives up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// What happens to the connection, for the user to see.
pub enum Event<'a> {
    /// A session is connected (the first, or a resumed one): take its handles.
    Connected(&'a Session),
    /// The connection was lost; reconnecting (attempt number, why).
    Reconnecting { attempt: u32, reason: String },
}

/// Whether `e` is the network's fault, so that reconnecting may help.
fn is_outage(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Lost(_) | ClientError::Connect { .. } | ClientError::Transport(_)
    )
}

/// Runs `session` until `stop`; with `reconnect`, outages are bridged by new sessions.
/// `observe` sees every frame of every session; `event` hears about (re)connections.
pub async fn run_resuming(
    session: Session,
    stop: StopWhen,
    reconnect: Option<Reconnect>,
    mut observe: impl FnMut(Shown, &Framebuffer),
    mut event: impl FnMut(Event<'_>),
) -> Result<Outcome, ClientError> {
    let interrupt = stop
        .interrupt
        .clone()
        .unwrap_or_else(|| Arc::new(tokio::sync::Notify::new()));
    let deadline = stop.duration.map(|d| Instant::now() + d);
    let mut session = session;
    // Sessions after an outage come from the broker's options: the clipboard stays.
    let clipboard = session.options().clipboard.clone();
    let audio = session.options().audio.clone();
    loop {
        event(Event::Connected(&session));
        let this_run = StopWhen {
            interrupt: Some(interrupt.clone()),
            duration: deadline.map(|d| d.saturating_duration_since(Instant::now())),
            source_seq: stop.source_seq,
            settled_seq: stop.settled_seq,
        };
        let opts = session.options().clone();
        let error = match session.run_observed(this_run, None, &mut observe).await {
            // Live migration: the server said where the desktop went; follow it there
            // with the ticket it gave (no broker round trip, no "reconnecting").
            Err(ClientError::Moved(moved)) => match follow(&opts, *moved).await {
                Ok(next) => {
                    session = next;
                    continue;
                }
                Err(e) if reconnect.is_some() => e,
                Err(e) => return Err(e),
            },
            Err(e) if reconnect.is_some() && is_outage(&e) => e,
            other => return other,
        };
        let reconnect = reconnect.as_ref().expect("checked above");
        let started = Instant::now();
        let mut reason = error.to_string();
        let mut attempt = 0u32;
        session = loop {
            attempt += 1;
            event(Event::Reconnecting {
                attempt,
                reason: reason.clone(),
            });
            if started.elapsed() > GIVE_UP_AFTER {
                return Err(ClientError::Lost(format!(
                    "gave up reconnecting after {} s: {reason}",
                    GIVE_UP_AFTER.as_secs()
                )));
            }
            let backoff = Duration::from_millis(500 * u64::from(attempt.min(10)));
            let attempt_once = async {
                let mut opts = reconnect()
                    .await
                    .map_err(|e| ClientError::Lost(format!("{e:#}")))?;
                opts.clipboard = clipboard.clone();
                opts.audio = audio.clone();
                Session::connect(&opts).await
            };
            tokio::select! {
                _ = interrupt.notified() => return Err(ClientError::Lost(format!("stopped while reconnecting: {reason}"))),
                connected = attempt_once => match connected {
                    Ok(s) => break s,
                    // The desktop is gone or the ticket refused: reconnecting cannot help.
                    Err(e @ ClientError::Rejected { .. }) => return Err(e),
                    Err(e) => reason = e.to_string(),
                },
            }
            tokio::select! {
                _ = interrupt.notified() => return Err(ClientError::Lost(format!("stopped while reconnecting: {reason}"))),
                _ = tokio::time::sleep(backoff) => {}
            }
        };
    }
}

/// A session with the desktop where it moved: the same desktop and client, at the
/// server and with the ticket the old server named, starting from the screen shown and
/// sending what was typed meanwhile. If it cannot connect, input ends there.
async fn follow(opts: &ConnectOptions, moved: Moved) -> Result<Session, ClientError> {
    let Moved { to, held, input } = moved;
    if let Some(input) = &input {
        input.resend_after(to.input_taken).await;
    }
    let followed = connect_there(opts, &to, held, input.clone()).await;
    if let (Err(_), Some(input)) = (&followed, input) {
        input.end();
    }
    followed
}

async fn connect_there(
    opts: &ConnectOptions,
    to: &oriel_protocol::MovedTo,
    held: Option<Framebuffer>,
    input: Option<crate::InputSender>,
) -> Result<Session, ClientError> {
    let lost = |reason: String| {
        ClientError::Lost(format!("following the desktop to {}: {reason}", to.address))
    };
    let addr = tokio::net::lookup_host(&to.address)
        .await
        .map_err(|e| lost(e.to_string()))?
        .next()
        .ok_or_else(|| lost("no address".into()))?;
    let moved = ConnectOptions {
        addr,
        fingerprint: Fingerprint(to.fingerprint),
        ticket: to.ticket.clone(),
        ..opts.clone()
    };
    Session::connect_following(&moved, held, input).await
}
