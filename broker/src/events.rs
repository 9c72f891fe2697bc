//! What the broker does with a host's reports: heartbeats (failed desktops, generations
//! the host is behind on, idle timeouts), session connect/disconnect, refused tickets.
//! Each change is one store transaction; heartbeats themselves are written in batches
//! ([`Heartbeats`]). Returns the commands the host must carry out
//! in answer. An error here concerns one report: the caller logs it and keeps the link.

use oriel_protocol::host_link::{DesktopReport, HostCommand, HostMsg, SessionEvent};
use oriel_protocol::text;

use crate::audit::AuditLimiter;
use crate::heartbeats::Heartbeats;
use crate::logoff;
use crate::store::{now_ms, Desktop, DesktopState, HostBeat, HostConnection, Store, HELD};

pub async fn handle(
    store: &Store,
    audit: &AuditLimiter,
    beats: &Heartbeats,
    host_id: &str,
    msg: HostMsg,
) -> anyhow::Result<Vec<HostCommand>> {
    let mut commands = Vec::new();
    match msg {
        HostMsg::Heartbeat {
            capacity,
            load,
            desktops,
        } => {
            beats.note(
                host_id,
                HostBeat {
                    at_ms: now_ms(),
                    capacity,
                    load,
                    viewers: desktops
                        .iter()
                        .filter_map(|r| Some((r.name.clone(), r.viewer.clone()?)))
                        .collect(),
                },
            );
            // Before the desktops are judged: a settled move changes where one is.
            for what in crate::in_doubt::settle(store, host_id, &desktops, now_ms()).await? {
                tracing::info!("{what}");
            }
            let known = store.desktops_on_host(host_id).await?;
            let pairs: Vec<(&Desktop, &DesktopReport)> = known
                .iter()
                .filter_map(|d| Some((d, desktops.iter().find(|r| r.name == d.name)?)))
                .collect();
            mark_failed(store, &pairs).await?;
            mark_lost(store, &known, &desktops).await?;
            catch_up_sessions(store, &pairs).await?;
            commands.extend(catch_up_generations(store, &pairs).await?);
            commands.extend(idle_logoffs(store, &pairs).await?);
        }
        HostMsg::Session {
            desktop,
            user,
            session,
            event,
        } => {
            let Some(d) = store
                .desktops_on_host(host_id)
                .await?
                .into_iter()
                .find(|d| d.name == desktop)
            else {
                tracing::warn!(
                    desktop = %text::for_log(&desktop),
                    "session event for a desktop the broker does not know"
                );
                return Ok(commands);
            };
            let actor = match store.user_by_id(&user).await? {
                Some(u) => u.name,
                None => text::for_log(&user).into_owned(),
            };
            match event {
                SessionEvent::Connected { from } => {
                    let from = HostConnection {
                        session,
                        client_address: &from,
                    };
                    connected(store, &d, &user, &actor, from).await?;
                }
                SessionEvent::Disconnected => {
                    if store
                        .end_host_session(&d.id, session, "client disconnected")
                        .await?
                    {
                        // Only a connected desktop becomes disconnected: a logoff may
                        // have moved it on already.
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
        }
        HostMsg::TicketRefused { desktop, reason } => {
            // What a client presented: bounded, and rate-limited per host.
            let detail = format!(
                "desktop {}: {}",
                text::for_log(&desktop),
                text::for_log(&reason)
            );
            audit
                .record(store, host_id, host_id, "ticket_refused", &detail)
                .await?;
        }
        HostMsg::Register(_) => anyhow::bail!("host registered twice"),
        HostMsg::CommandDone { .. } => {}
        HostMsg::WebCertificates { fingerprints } => {
            let fingerprints = crate::hostlink::web_fingerprints(&fingerprints)?;
            if let Some(host) = store.host_by_id(host_id).await? {
                store
                    .set_host_web(host_id, host.web_address.as_deref(), &fingerprints)
                    .await?;
            }
        }
    }
    Ok(commands)
}

/// A client connected with a valid ticket of the desktop's current generation. A
/// session of an earlier connection still open there was taken over by this one.
async fn connected(
    store: &Store,
    d: &Desktop,
    user_id: &str,
    actor: &str,
    from: HostConnection<'_>,
) -> anyhow::Result<()> {
    if d.assigned_user_id.as_deref() != Some(user_id) {
        // The host admitted a ticket the store no longer backs (a log-off raced the
        // connect); the revocation on its way to the host ends it.
        tracing::warn!(
            desktop = d.name,
            "a session started on a desktop no longer assigned to its user"
        );
    }
    let (_, replaced) = store.take_over_session(user_id, &d.id, from).await?;
    for from in [DesktopState::Assigned, DesktopState::Disconnected] {
        if store
            .set_desktop_state(&d.id, Some(from), DesktopState::Connected)
            .await?
        {
            break;
        }
    }
    let mut detail = format!("desktop {}", d.name);
    if replaced.is_some() {
        detail.push_str(" (took over the previous connection)");
    }
    store.audit(actor, "connect", &detail).await?;
    Ok(())
}

/// Desktops the host reports failed (e.g. their X server died): their session ends and
/// they become `failed` with the host's reason, which the reconcile loop destroys and
/// replaces; their users get a new desktop when they connect again.
async fn mark_failed(store: &Store, pairs: &[(&Desktop, &DesktopReport)]) -> anyhow::Result<()> {
    for (d, report) in pairs {
        if report.running || matches!(d.state, DesktopState::Failed | DesktopState::Deleting) {
            continue;
        }
        let reason = report.failure.as_deref().unwrap_or("stopped running");
        if let Some(s) = store.active_session_for_desktop(&d.id).await? {
            store.end_session(&s.id, "desktop failed").await?;
        }
        store.fail_desktop(&d.id, Some(d.state), reason).await?;
        let reason = text::for_log(reason);
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

/// Desktops the store has on this host, ready or held, that the host does not report
/// (it restarted and lost them): failed, so that the reconcile loop replaces them and
/// their users get a new one, instead of tickets for a desktop that is not there.
async fn mark_lost(
    store: &Store,
    known: &[Desktop],
    reports: &[DesktopReport],
) -> anyhow::Result<()> {
    for d in known {
        // A desktop being migrated leaves its host just before the store learns where
        // it went; a suspended one runs nowhere, its state kept on disk.
        let live = (d.state == DesktopState::Ready || HELD.contains(&d.state))
            && d.migrating_to.is_none()
            && d.suspended_ms.is_none();
        if live && !reports.iter().any(|r| r.name == d.name) {
            if let Some(s) = store.active_session_for_desktop(&d.id).await? {
                store.end_session(&s.id, "desktop lost").await?;
            }
            let reason = "its host no longer has it (the display server restarted?)";
            store.fail_desktop(&d.id, Some(d.state), reason).await?;
            tracing::warn!(desktop = d.name, "{reason}");
        }
    }
    Ok(())
}

/// How long a desktop may be `connected` in the store while its host reports no
/// viewer, before the broker takes the disconnect event as lost.
const LOST_EVENT_AFTER_MS: i64 = 10_000;

/// A session whose end the broker never heard of (the host's event queue overflowed, or
/// the link dropped with it): the host reports no viewer for a while, so it ends.
async fn catch_up_sessions(
    store: &Store,
    pairs: &[(&Desktop, &DesktopReport)],
) -> anyhow::Result<()> {
    for (d, report) in pairs {
        if d.state != DesktopState::Connected
            || report.sessions > 0
            || now_ms() - d.state_changed_ms < LOST_EVENT_AFTER_MS
        {
            continue;
        }
        if let Some(s) = store.active_session_for_desktop(&d.id).await? {
            store.end_session(&s.id, "client disconnected").await?;
        }
        store
            .set_desktop_state(
                &d.id,
                Some(DesktopState::Connected),
                DesktopState::Disconnected,
            )
            .await?;
    }
    Ok(())
}

/// Generations beyond this are not a host's honest count: ignored (and logged).
const MAX_GENERATION: u64 = 1 << 48;

/// A host behind on a desktop's generation missed a log-off or reassignment (its link
/// was down when it happened): tell it again. A host ahead of the store (a database
/// restored from a backup, whose assignments are older than the host's sessions) gets a
/// generation past its own, which ends those sessions, and the store takes it.
async fn catch_up_generations(
    store: &Store,
    pairs: &[(&Desktop, &DesktopReport)],
) -> anyhow::Result<Vec<HostCommand>> {
    let mut commands = Vec::new();
    for (d, report) in pairs {
        let known = logoff::generation(d);
        if report.generation < known {
            commands.extend(logoff::revocation(d).map(|r| r.command));
        } else if report.generation > known {
            if report.generation > MAX_GENERATION {
                tracing::warn!(desktop = d.name, "host reports an implausible generation");
                continue;
            }
            let next = report.generation + 1;
            store
                .raise_generation(&d.id, i64::try_from(next).unwrap_or(i64::MAX))
                .await?;
            commands.push(HostCommand::Disconnect {
                desktop: d.name.clone(),
                generation: next,
            });
        }
    }
    Ok(commands)
}

/// Logs off sessions idle past their pool's idle timeout: the session ends, a floating
/// desktop goes to reset, a dedicated one stays its user's and the host disconnects it.
async fn idle_logoffs(
    store: &Store,
    pairs: &[(&Desktop, &DesktopReport)],
) -> anyhow::Result<Vec<HostCommand>> {
    let mut commands = Vec::new();
    for (d, report) in pairs {
        if report.sessions == 0 {
            continue;
        }
        let Some(pool) = store.pool_by_id(&d.pool_id).await? else {
            continue;
        };
        if pool.idle_timeout_s <= 0 || i64::from(report.idle_s) < pool.idle_timeout_s {
            continue;
        }
        let revocation = logoff::log_off(store, d, "idle timeout").await?;
        commands.extend(revocation.map(|r| r.command));
        store
            .audit(
                "broker",
                "idle_logoff",
                &format!("desktop {} idle {} s", d.name, report.idle_s),
            )
            .await?;
    }
    Ok(commands)
}
