//! What the dashboard shows, kept live: one task reads the estate from the store after
//! writes while any console is open and publishes it when it changed; each open page gets its
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
use crate::store::{
    AuditEntry, DesktopState, Host, HostState, Permission, Pool, Session, Store, HELD,
};

/// While a console is open, the estate is read again after each write to the store,
/// at most this often (a burst of writes is one read)...
const MIN_GAP: Duration = Duration::from_millis(500);
/// ... and at least this often (writes of other brokers, and the ages shown).
const MAX_GAP: Duration = Duration::from_secs(2);
/// Audit entries the dashboard shows.
const RECENT_AUDIT: i64 = 12;

/// Hosts the dashboard lists: all of them up to this many; beyond it, those that need
/// attention (not up, or silent), this many at most. The hosts page lists them all.
pub(super) const LISTED_HOSTS: usize = 20;
/// Sessions the dashboard lists, newest first.
pub(super) const LISTED_SESSIONS: usize = 20;
/// A host silent this long needs attention.
const SILENT_MS: i64 = 30_000;

/// The estate as the dashboard shows it: counts, and short lists. Its reads are
/// counts grouped in SQL and short lists, so its cost grows little with the estate.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Snapshot {
    /// Hosts by state.
    pub hosts_by_state: Vec<(HostState, usize)>,
    /// Desktop slots of hosts that are up, and desktops placed on them.
    pub capacity: i64,
    pub placed: i64,
    /// The hosts listed (see [`LISTED_HOSTS`]), and whether that is all of them.
    pub hosts: Vec<HostRow>,
    pub all_hosts_listed: bool,
    pub pools: Vec<PoolRow>,
    pub sessions_active: usize,
    pub sessions: Vec<SessionRow>,
    pub audit: Vec<AuditEntry>,
    pub activity: Activity,
}

/// The last hour, oldest first.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Activity {
    /// Sessions active at the end of each five minutes.
    pub sessions: Vec<usize>,
    /// Connections hosts reported, each minute.
    pub connects: Vec<i64>,
    /// Refused logins, connects and tickets, each minute.
    pub failures: Vec<i64>,
}

/// The audit events that count as failures on the dashboard.
const FAILURES: &[&str] = &[
    "login_failed",
    "login_throttled",
    "connect_denied",
    "ticket_refused",
];

impl Activity {
    async fn read(store: &Store, now_ms: i64) -> crate::store::Result<Self> {
        const MINUTE: i64 = 60_000;
        let hour_ago = now_ms - 60 * MINUTE;
        let per_minute = |counts: Vec<(i64, i64)>| {
            let last = now_ms / MINUTE;
            (last - 59..=last)
                .map(|m| {
                    counts
                        .iter()
                        .find(|(at, _)| *at == m)
                        .map_or(0, |(_, n)| *n)
                })
                .collect()
        };
        let spans = store.session_spans_since(hour_ago).await?;
        let sessions = (0..12)
            .map(|k| now_ms - (11 - k) * 5 * MINUTE)
            .map(|t| {
                spans
                    .iter()
                    .filter(|(start, end)| *start <= t && end.is_none_or(|e| e > t))
                    .count()
            })
            .collect();
        Ok(Activity {
            sessions,
            connects: per_minute(store.audit_per_minute(&["connect"], hour_ago).await?),
            failures: per_minute(store.audit_per_minute(FAILURES, hour_ago).await?),
        })
    }
}

#[derive(Debug, PartialEq)]
pub(super) struct HostRow {
    pub host: Host,
    /// Desktops placed on it (not being deleted).
    pub desktops: i64,
}

#[derive(Debug, PartialEq)]
pub(super) struct PoolRow {
    pub pool: Pool,
    pub ready: i64,
    pub assigned: i64,
    pub starting: i64,
    pub failed: i64,
}

#[derive(Debug, PartialEq)]
pub(super) struct SessionRow {
    pub session: Session,
    pub user: String,
    pub desktop: String,
}

impl Snapshot {
    async fn read(store: &Store) -> crate::store::Result<Self> {
        let on_host: HashMap<String, i64> =
            store.desktop_counts_by_host().await?.into_iter().collect();
        let counts = store.desktop_counts_by_pool().await?;
        let hosts = store.list_hosts().await?;
        let now = crate::store::now_ms();
        let mut hosts_by_state: Vec<(HostState, usize)> = HostState::ALL
            .iter()
            .map(|s| (*s, hosts.iter().filter(|h| h.state == *s).count()))
            .collect();
        hosts_by_state.retain(|(_, n)| *n > 0);
        let up = || hosts.iter().filter(|h| h.state == HostState::Up);
        let capacity = up().map(|h| h.capacity).sum();
        let placed = up().map(|h| on_host.get(&h.id).copied().unwrap_or(0)).sum();
        let all_hosts_listed = hosts.len() <= LISTED_HOSTS;
        let hosts = hosts
            .into_iter()
            .filter(|h| {
                all_hosts_listed
                    || h.state != HostState::Up
                    || now - h.last_heartbeat_ms > SILENT_MS
            })
            .take(LISTED_HOSTS)
            .map(|host| HostRow {
                desktops: on_host.get(&host.id).copied().unwrap_or(0),
                host,
            })
            .collect();
        let pools = store
            .list_pools()
            .await?
            .into_iter()
            .map(|pool| {
                let count = |states: &[DesktopState]| {
                    counts
                        .iter()
                        .filter(|(p, s, _)| *p == pool.id && states.contains(s))
                        .map(|(_, _, n)| n)
                        .sum()
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
        let mut active = store.list_sessions(true).await?;
        let sessions_active = active.len();
        active.sort_by_key(|s| std::cmp::Reverse(s.started_ms));
        let mut sessions = Vec::new();
        for session in active.into_iter().take(LISTED_SESSIONS) {
            let user = store.user_by_id(&session.user_id).await?;
            let desktop = store.desktop_by_id(&session.desktop_id).await?;
            sessions.push(SessionRow {
                user: user.map(|u| u.name).unwrap_or_default(),
                desktop: desktop.map(|d| d.name).unwrap_or_default(),
                session,
            });
        }
        Ok(Snapshot {
            hosts_by_state,
            capacity,
            placed,
            hosts,
            all_hosts_listed,
            pools,
            sessions_active,
            sessions,
            audit: store.list_audit(RECENT_AUDIT).await?,
            activity: Activity::read(store, now).await?,
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
    let Some(mut commits) = state.upgrade().map(|s| s.store.commits()) else {
        return;
    };
    loop {
        // A write, or the longest wait.
        let _ = tokio::time::timeout(MAX_GAP, commits.changed()).await;
        commits.mark_unchanged();
        let Some(state) = state.upgrade() else { return };
        if state.live.tx.receiver_count() > 0 {
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
        drop(state);
        tokio::time::sleep(MIN_GAP).await;
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
