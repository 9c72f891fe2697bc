//! What the broker does with a host's reports: heartbeats (and the idle timeouts they
//! reveal), session connect/disconnect, refused tickets. Each change is one store
//! transaction. Returns the commands the host must carry out in answer.

use oriel_protocol::host_link::{DesktopReport, HostCommand, HostMsg, SessionEvent};

use crate::store::{now_ms, Assignment, DesktopState, Store};

pub async fn handle(
    store: &Store,
    host_id: &str,
    msg: HostMsg,
) -> anyhow::Result<Vec<HostCommand>> {
    let mut commands = Vec::new();
    match msg {
        HostMsg::Heartbeat { capacity, desktops } => {
            store
                .record_heartbeat(host_id, now_ms(), i64::from(capacity))
                .await?;
            mark_failed(store, host_id, &desktops).await?;
            commands = idle_logoffs(store, host_id, &desktops).await?;
        }
        HostMsg::Session {
            desktop,
            user,
            event,
        } => {
            let Some(d) = store
                .desktops_on_host(host_id)
                .await?
                .into_iter()
                .find(|d| d.name == desktop)
            else {
                tracing::warn!(
                    desktop,
                    "session event for a desktop the broker does not know"
                );
                return Ok(commands);
            };
            match event {
                SessionEvent::Connected => {
                    store
                        .set_desktop_state(&d.id, None, DesktopState::Connected)
                        .await?;
                    if !user.is_empty() {
                        store.start_session(&user, &d.id).await?;
                    }
                    store
                        .audit(&user, "connect", &format!("desktop {desktop}"))
                        .await?;
                }
                SessionEvent::Disconnected => {
                    if let Some(s) = store.active_session_for_desktop(&d.id).await? {
                        store.end_session(&s.id, "client disconnected").await?;
                    }
                    // Only a connected desktop becomes disconnected: a logoff may have
                    // moved it on already.
                    store
                        .set_desktop_state(
                            &d.id,
                            Some(DesktopState::Connected),
                            DesktopState::Disconnected,
                        )
                        .await?;
                }
            }
        }
        HostMsg::TicketRefused { desktop, reason } => {
            store
                .audit(
                    host_id,
                    "ticket_refused",
                    &format!("desktop {desktop}: {reason}"),
                )
                .await?;
        }
        HostMsg::Register(_) => anyhow::bail!("host registered twice"),
        HostMsg::CommandDone { .. } => {}
    }
    Ok(commands)
}

/// Desktops the host reports failed (e.g. their X server died): their session ends and
/// they become `failed`, which the reconcile loop destroys and replaces; their users get
/// a new desktop when they connect again.
async fn mark_failed(
    store: &Store,
    host_id: &str,
    reports: &[DesktopReport],
) -> anyhow::Result<()> {
    let failed: Vec<&DesktopReport> = reports.iter().filter(|r| !r.running).collect();
    if failed.is_empty() {
        return Ok(());
    }
    for d in store.desktops_on_host(host_id).await? {
        let Some(report) = failed.iter().find(|r| r.name == d.name) else {
            continue;
        };
        if matches!(d.state, DesktopState::Failed | DesktopState::Deleting) {
            continue;
        }
        let reason = report.failure.as_deref().unwrap_or("stopped running");
        if let Some(s) = store.active_session_for_desktop(&d.id).await? {
            store.end_session(&s.id, "desktop failed").await?;
        }
        store
            .set_desktop_state(&d.id, Some(d.state), DesktopState::Failed)
            .await?;
        store
            .audit(
                "broker",
                "desktop_failed",
                &format!("desktop {}: {reason}", d.name),
            )
            .await?;
        tracing::warn!(desktop = d.name, "desktop failed: {reason}");
    }
    Ok(())
}

/// Logs off sessions idle past their pool's idle timeout: the session ends, a floating
/// desktop goes to reset, a dedicated one stays its user's and the host disconnects it.
async fn idle_logoffs(
    store: &Store,
    host_id: &str,
    reports: &[DesktopReport],
) -> anyhow::Result<Vec<HostCommand>> {
    let mut commands = Vec::new();
    let idle: Vec<&DesktopReport> = reports.iter().filter(|r| r.sessions > 0).collect();
    if idle.is_empty() {
        return Ok(commands);
    }
    for d in store.desktops_on_host(host_id).await? {
        let Some(report) = idle.iter().find(|r| r.name == d.name) else {
            continue;
        };
        let Some(pool) = store.pool_by_id(&d.pool_id).await? else {
            continue;
        };
        if pool.idle_timeout_s <= 0 || i64::from(report.idle_s) < pool.idle_timeout_s {
            continue;
        }
        if let Some(s) = store.active_session_for_desktop(&d.id).await? {
            store.end_session(&s.id, "idle timeout").await?;
        }
        let floating = pool.assignment == Assignment::Floating;
        store.release_desktop(&d.id, floating).await?;
        store
            .audit(
                "broker",
                "idle_logoff",
                &format!("desktop {} idle {} s", d.name, report.idle_s),
            )
            .await?;
        if !floating {
            commands.push(HostCommand::Disconnect { desktop: d.name });
        }
    }
    Ok(commands)
}
