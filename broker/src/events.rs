//! What the broker does with a host's reports: heartbeats, session connect/disconnect,
//! refused tickets. Each change is one store transaction.

use oriel_protocol::host_link::{HostMsg, SessionEvent};

use crate::store::{now_ms, DesktopState, Store};

pub async fn handle(store: &Store, host_id: &str, msg: HostMsg) -> anyhow::Result<()> {
    match msg {
        HostMsg::Heartbeat { capacity, .. } => {
            store
                .record_heartbeat(host_id, now_ms(), i64::from(capacity))
                .await?;
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
                return Ok(());
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
    Ok(())
}
