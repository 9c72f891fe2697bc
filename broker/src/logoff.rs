//! Log-offs, whoever asks: the user, an administrator, an idle timeout. Each ends the
//! desktop's session, gives the desktop back (a floating one goes to reset, a dedicated
//! one stays its user's) and moves its assignment generation on, which revokes every
//! ticket issued before. The host hears it through the returned command.

use oriel_protocol::host_link::HostCommand;

use crate::store::{Assignment, Desktop, Result, Store};

/// What a log-off leaves for the host to do: the host and its command.
pub struct Revocation {
    pub host_id: String,
    pub command: HostCommand,
}

/// Logs the desktop's user off for `reason` (kept as the session's end reason).
/// Returns the command that ends the desktop's sessions on its host, if it has one.
pub async fn log_off(store: &Store, desktop: &Desktop, reason: &str) -> Result<Option<Revocation>> {
    if let Some(s) = store.active_session_for_desktop(&desktop.id).await? {
        store.end_session(&s.id, reason).await?;
    }
    let floating = store
        .pool_by_id(&desktop.pool_id)
        .await?
        .is_some_and(|p| p.assignment == Assignment::Floating);
    let released = store.release_desktop(&desktop.id, floating).await?;
    Ok(revocation(&released))
}

/// The command that tells a desktop's host its current generation: sessions and
/// tickets of earlier ones end.
pub fn revocation(desktop: &Desktop) -> Option<Revocation> {
    Some(Revocation {
        host_id: desktop.host_id.clone()?,
        command: HostCommand::Disconnect {
            desktop: desktop.name.clone(),
            generation: generation(desktop),
        },
    })
}

/// A desktop's generation as the host link carries it.
pub fn generation(desktop: &Desktop) -> u64 {
    u64::try_from(desktop.generation).unwrap_or(0)
}
