//! The reconcile loop (desired vs actual, kube-rs style): every tick it compares the
//! pools' desired state with the desktops and hosts in the store and issues the
//! commands that close the gap. Commands run concurrently; a failed one is retried
//! on a later tick with backoff, since the store still shows the gap.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oriel_protocol::host_link::{DesktopSpec, HostCommand};

use crate::hostlink::HostLink;
use crate::store::{now_ms, Assignment, Desktop, DesktopState, Host, HostState, Pool, Store};

pub const TICK: Duration = Duration::from_millis(500);
/// A host that has not sent a heartbeat for this long is marked down.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Reconciler {
    store: Store,
    link: Arc<HostLink>,
    /// Desktops with a command in flight, so a tick does not repeat it.
    busy: Mutex<HashSet<String>>,
    /// Desktop → when it may be retried after a failure.
    backoff: Mutex<HashMap<String, (Instant, Duration)>>,
}

impl Reconciler {
    pub fn new(store: Store, link: Arc<HostLink>) -> Arc<Self> {
        Arc::new(Self {
            store,
            link,
            busy: Mutex::new(HashSet::new()),
            backoff: Mutex::new(HashMap::new()),
        })
    }

    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            loop {
                ticker.tick().await;
                if let Err(e) = me.tick().await {
                    tracing::warn!("reconcile: {e:#}");
                }
            }
        })
    }

    /// One pass over hosts and pools.
    pub async fn tick(self: &Arc<Self>) -> anyhow::Result<()> {
        self.mark_silent_hosts_down().await?;
        let hosts = self.store.list_hosts().await?;
        let desktops = self.store.list_desktops(None).await?;
        for pool in self.store.list_pools().await? {
            let in_pool: Vec<&Desktop> = desktops.iter().filter(|d| d.pool_id == pool.id).collect();
            self.reconcile_pool(&pool, &in_pool, &hosts, &desktops)
                .await?;
        }
        Ok(())
    }

    async fn mark_silent_hosts_down(&self) -> anyhow::Result<()> {
        let cutoff = now_ms() - HOST_TIMEOUT.as_millis() as i64;
        for host in self.store.hosts_missing_heartbeat(cutoff).await? {
            if host.state != HostState::Up {
                continue;
            }
            self.store.set_host_state(&host.id, HostState::Down).await?;
            self.store
                .audit(
                    "broker",
                    "host_down",
                    &format!("{} missed its heartbeats", host.name),
                )
                .await?;
            // Its desktops are gone with it; the pools get replacements elsewhere.
            for d in self.store.desktops_on_host(&host.id).await? {
                if !matches!(d.state, DesktopState::Failed | DesktopState::Deleting) {
                    self.store
                        .set_desktop_state(&d.id, None, DesktopState::Failed)
                        .await?;
                }
            }
            tracing::warn!(host = host.name, "host down; its desktops are failed");
        }
        Ok(())
    }

    async fn reconcile_pool(
        self: &Arc<Self>,
        pool: &Pool,
        in_pool: &[&Desktop],
        hosts: &[Host],
        all: &[Desktop],
    ) -> anyhow::Result<()> {
        let spec = DesktopSpec {
            kind: pool.source_kind.clone(),
            params: pool.source_params.clone(),
        };
        let live =
            |d: &&&Desktop| !matches!(d.state, DesktopState::Failed | DesktopState::Deleting);
        let now = now_ms();

        for d in in_pool.iter() {
            let draining = d
                .host_id
                .as_deref()
                .and_then(|id| hosts.iter().find(|h| h.id == id))
                .is_some_and(|h| h.state == HostState::Maintenance);
            match d.state {
                // Draining: free desktops on a host in maintenance are removed (and
                // replaced elsewhere below); assigned ones stay until they are released.
                DesktopState::Ready | DesktopState::Resetting
                    if draining && d.assigned_user_id.is_none() =>
                {
                    self.store
                        .set_desktop_state(&d.id, Some(d.state), DesktopState::Deleting)
                        .await?;
                }
                // Deleted by an administrator, or left behind on a host that went down
                // and came back: destroy it there, then keep only its record.
                DesktopState::Deleting | DesktopState::Failed if d.host_id.is_some() => self.run(
                    d,
                    HostCommand::Destroy {
                        desktop: d.name.clone(),
                    },
                    None,
                    DesktopState::Deleting,
                ),
                DesktopState::Resetting => self.run(
                    d,
                    HostCommand::Reset {
                        desktop: d.name.clone(),
                        spec: spec.clone(),
                    },
                    Some(DesktopState::Resetting),
                    DesktopState::Ready,
                ),
                // A floating desktop left disconnected past its timeout goes back.
                DesktopState::Disconnected
                    if pool.assignment == Assignment::Floating
                        && now - d.state_changed_ms > pool.disconnect_timeout_s * 1000 =>
                {
                    self.store.release_desktop(&d.id, true).await?;
                }
                DesktopState::Provisioning => self.run(
                    d,
                    HostCommand::Create {
                        desktop: d.name.clone(),
                        spec: spec.clone(),
                    },
                    Some(DesktopState::Provisioning),
                    DesktopState::Ready,
                ),
                _ => {}
            }
        }

        let live_count = in_pool.iter().filter(live).count() as i64;
        let spare = in_pool
            .iter()
            .filter(|d| matches!(d.state, DesktopState::Ready | DesktopState::Provisioning))
            .count() as i64;
        let missing = (pool.min_ready - spare).min(pool.max_size - live_count);
        for _ in 0..missing.max(0) {
            let Some(host) = self.place(hosts, all) else {
                tracing::debug!(pool = pool.name, "no host with free capacity");
                break;
            };
            let name = format!(
                "{}-{}",
                pool.name,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let d = self
                .store
                .create_desktop(&pool.id, Some(&host.id), &name, DesktopState::Provisioning)
                .await?;
            self.run(
                &d,
                HostCommand::Create {
                    desktop: d.name.clone(),
                    spec: spec.clone(),
                },
                Some(DesktopState::Provisioning),
                DesktopState::Ready,
            );
        }
        Ok(())
    }

    /// The up, connected host with the most free capacity.
    fn place<'a>(&self, hosts: &'a [Host], all: &[Desktop]) -> Option<&'a Host> {
        hosts
            .iter()
            .filter(|h| h.state == HostState::Up && self.link.is_connected(&h.id))
            .map(|h| {
                let used = all
                    .iter()
                    .filter(|d| d.host_id.as_deref() == Some(&h.id))
                    .filter(|d| !matches!(d.state, DesktopState::Failed | DesktopState::Deleting))
                    .count() as i64;
                (h, h.capacity - used)
            })
            .filter(|(_, free)| *free > 0)
            .max_by_key(|(_, free)| *free)
            .map(|(h, _)| h)
    }

    /// Sends `command` for desktop `d` in the background; on success moves it from
    /// `from` to `to` (to `Deleting`: detaches it from its host). Skips desktops already
    /// busy or backing off.
    fn run(
        self: &Arc<Self>,
        d: &Desktop,
        command: HostCommand,
        from: Option<DesktopState>,
        to: DesktopState,
    ) {
        let Some(host_id) = d.host_id.clone() else {
            return;
        };
        if !self.link.is_connected(&host_id) {
            return;
        }
        if let Some((until, _)) = crate::lock(&self.backoff).get(&d.id) {
            if Instant::now() < *until {
                return;
            }
        }
        if !crate::lock(&self.busy).insert(d.id.clone()) {
            return;
        }
        let me = self.clone();
        let id = d.id.clone();
        tokio::spawn(async move {
            let result = me.link.command(&host_id, command).await;
            match result {
                Ok(()) => {
                    crate::lock(&me.backoff).remove(&id);
                    let updated = if to == DesktopState::Deleting {
                        me.store.detach_desktop(&id).await.map(|_| true)
                    } else {
                        me.store.set_desktop_state(&id, from, to).await
                    };
                    if let Err(e) = updated {
                        tracing::warn!(desktop = id, "state update failed: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!(desktop = id, "host command failed: {e}");
                    let mut b = crate::lock(&me.backoff);
                    let delay = b.get(&id).map_or(Duration::from_secs(1), |(_, d)| {
                        (*d * 2).min(Duration::from_secs(60))
                    });
                    b.insert(id.clone(), (Instant::now() + delay, delay));
                }
            }
            crate::lock(&me.busy).remove(&id);
        });
    }
}
