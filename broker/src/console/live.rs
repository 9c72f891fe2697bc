//! What the dashboard shows, kept live: one task reads the estate from the store while
//! any console is open and publishes it when it changed; each open page gets its
//! sections re-rendered (for its own role and CSRF token) over Server-Sent Events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use futures_util::Stream;
use tokio::sync::watch;

use super::pages;
use super::session::Staff;
use crate::api::AppState;
use crate::store::{AuditEntry, DesktopState, Host, Permission, Pool, Session, Store, HELD};

/// How often the estate is read while a console is open: an event shows within this
/// (plus a render and a hop).
const REFRESH: Duration = Duration::from_millis(500);
/// Audit entries the dashboard shows.
const RECENT_AUDIT: i64 = 12;

/// The estate as the dashboard shows it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Snapshot {
    pub hosts: Vec<HostRow>,
    pub pools: Vec<PoolRow>,
    pub sessions: Vec<SessionRow>,
    pub audit: Vec<AuditEntry>,
}

#[derive(Debug, PartialEq)]
pub(super) struct HostRow {
    pub host: Host,
    /// Desktops placed on it (not deleted).
    pub desktops: usize,
}

#[derive(Debug, PartialEq)]
pub(super) struct PoolRow {
    pub pool: Pool,
    pub ready: usize,
    pub assigned: usize,
    pub starting: usize,
    pub failed: usize,
}

#[derive(Debug, PartialEq)]
pub(super) struct SessionRow {
    pub session: Session,
    pub user: String,
    pub desktop: String,
}

impl Snapshot {
    async fn read(store: &Store) -> crate::store::Result<Self> {
        let desktops = store.list_desktops(None).await?;
        let live = |d: &&crate::store::Desktop| d.state != DesktopState::Deleting;
        let mut on_host: HashMap<&str, usize> = HashMap::new();
        for d in desktops.iter().filter(live) {
            if let Some(host) = &d.host_id {
                *on_host.entry(host).or_default() += 1;
            }
        }
        let hosts = store
            .list_hosts()
            .await?
            .into_iter()
            .map(|host| HostRow {
                desktops: on_host.get(host.id.as_str()).copied().unwrap_or(0),
                host,
            })
            .collect();
        let pools = store
            .list_pools()
            .await?
            .into_iter()
            .map(|pool| {
                let count = |states: &[DesktopState]| {
                    desktops
                        .iter()
                        .filter(|d| d.pool_id == pool.id && states.contains(&d.state))
                        .count()
                };
                PoolRow {
                    ready: count(&[DesktopState::Ready]),
                    assigned: count(&HELD),
                    starting: count(&[DesktopState::Provisioning, DesktopState::Resetting]),
                    failed: count(&[DesktopState::Failed]),
                    pool,
                }
            })
            .collect();
        let users: HashMap<String, String> = store
            .list_users()
            .await?
            .into_iter()
            .map(|u| (u.id, u.name))
            .collect();
        let desktop_names: HashMap<&str, &str> = desktops
            .iter()
            .map(|d| (d.id.as_str(), d.name.as_str()))
            .collect();
        let sessions = store
            .list_sessions(true)
            .await?
            .into_iter()
            .map(|session| SessionRow {
                user: users.get(&session.user_id).cloned().unwrap_or_default(),
                desktop: desktop_names
                    .get(session.desktop_id.as_str())
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                session,
            })
            .collect();
        Ok(Snapshot {
            hosts,
            pools,
            sessions,
            audit: store.list_audit(RECENT_AUDIT).await?,
        })
    }
}

/// The published estate, and the task that keeps it current while someone watches.
pub struct Live {
    tx: watch::Sender<Arc<Snapshot>>,
    started: std::sync::OnceLock<()>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            tx: watch::Sender::new(Arc::default()),
            started: std::sync::OnceLock::new(),
        }
    }
}

impl Live {
    /// The estate now (read afresh), and a receiver of its later changes. The first
    /// call starts the refresh task, which ends with the broker's state.
    pub(super) async fn subscribe(
        state: &Arc<AppState>,
    ) -> crate::store::Result<(Arc<Snapshot>, watch::Receiver<Arc<Snapshot>>)> {
        let live = &state.live;
        live.started.get_or_init(|| {
            tokio::spawn(refresh(Arc::downgrade(state)));
        });
        let now = Arc::new(Snapshot::read(&state.store).await?);
        let rx = live.tx.subscribe();
        Ok((now, rx))
    }
}

async fn refresh(state: Weak<AppState>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        if state.live.tx.receiver_count() == 0 {
            continue;
        }
        match Snapshot::read(&state.store).await {
            Ok(now) => {
                state.live.tx.send_if_modified(|old| {
                    let changed = **old != now;
                    if changed {
                        *old = Arc::new(now);
                    }
                    changed
                });
            }
            Err(e) => tracing::debug!("console: cannot read the estate: {e}"),
        }
    }
}

/// `GET /admin/events`: the dashboard's sections, re-rendered at each change.
pub(super) async fn events(State(state): State<Arc<AppState>>, jar: CookieJar) -> Response {
    let staff = match Staff::of(&state, &jar, Permission::See).await {
        Ok(staff) => staff,
        Err(answer) => return answer,
    };
    let (now, rx) = match Live::subscribe(&state).await {
        Ok(pair) => pair,
        Err(e) => return crate::api::ApiErr::from(e).into_response(),
    };
    Sse::new(sections(staff, now, rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One `sections` event now, then one per change: `{"id": "html", ...}`.
fn sections(
    staff: Staff,
    now: Arc<Snapshot>,
    rx: watch::Receiver<Arc<Snapshot>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let first = Some(now);
    futures_util::stream::unfold(
        (staff, first, rx),
        |(staff, mut first, mut rx)| async move {
            let snapshot = match first.take() {
                Some(now) => now,
                None => {
                    rx.changed().await.ok()?;
                    rx.borrow_and_update().clone()
                }
            };
            let rendered = pages::sections(&snapshot, &staff);
            let event = Event::default()
                .event("sections")
                .json_data(rendered)
                .unwrap_or_default();
            Some((Ok(event), (staff, first, rx)))
        },
    )
}
