//! The reconcile loop (desired vs actual, kube-rs style): every tick it compares the
//! pools' desired state with the desktops and hosts in the store and issues the
//! commands that close the gap. Commands run concurrently; one that did not reach its
//! host is retried on a later tick with backoff, since the store still shows the gap.
//! One the host refused (a desktop it cannot create) fails its desktop with the host's
//! reason, and the pool waits longer and longer before it tries a new one.
//!
//! Placement never puts more desktops on a host than its capacity, counting those
//! placed earlier in the same tick. After the broker starts, hosts get
//! [`RESTART_GRACE`] to link again before missing heartbeats count against them: a
//! host is judged only on heartbeats the brokers could have received and recorded
//! (see [`judging`]).
//!
//! With several brokers on one database exactly one runs the loop: the holder of the
//! `reconcile` lease, renewed every tick by a task of its own. Its store is fenced by
//! the lease's token, so once another broker has taken the lease over (the holder died,
//! hung or lost the database for longer than [`LEASE_TTL`]) none of the old holder's
//! writes go through.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::host_link::HostCommand;

use crate::hostlink::{CommandError, HostLink};
use crate::logoff::generation;
use crate::store::{
    now_ms, Assignment, Desktop, DesktopState, Fence, Host, HostState, Pool, Store,
};

mod drain;
pub mod judging;
mod silent_hosts;
mod suspend_idle;

use judging::Judging;

pub const TICK: Duration = Duration::from_millis(500);
/// How long the reconcile lease lasts unless renewed: a dead leader's successor takes
/// over within this (plus a tick).
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// The lease the reconcile loop runs under.
pub const LEASE: &str = "reconcile";
/// A host that has not sent a heartbeat for this long is marked down.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(10);
/// A host whose broker wrote no heartbeats since the host's last beat plus
/// [`HOST_TIMEOUT`] is not judged, for at most this much longer: that broker's database
/// connection stalled. After it, the broker counts as cut off, and its hosts as silent.
pub const WRITER_GRACE: Duration = Duration::from_secs(20);
/// After the broker starts, how long hosts have to link again before silence counts, by
/// default: longer than a host agent's longest reconnect back-off (10 s) plus a heartbeat.
pub const RESTART_GRACE: Duration = Duration::from_secs(30);
/// Passes between sweeps of expired login tokens (a minute).
const TOKEN_SWEEP_PASSES: u64 = 120;
/// New desktops one pool starts at most per tick, so a huge `min_ready` ramps up.
const MAX_NEW_PER_TICK: usize = 32;
/// Longest wait of a pool whose desktops keep failing to be created.
const MAX_POOL_BACKOFF: Duration = Duration::from_secs(300);

pub struct Reconciler {
    /// Fenced by [`Reconciler::fence`]: writes fail once another broker leads.
    store: Store,
    fence: Arc<Fence>,
    link: Arc<HostLink>,
    /// When hosts may be judged on missed heartbeats: after the restart grace when it
    /// first leads; at least [`HOST_TIMEOUT`] after it leads again, and after the
    /// database was out of reach or stalled (no broker could record heartbeats then).
    judging: Mutex<Judging>,
    /// The database failed a lease call since this broker last began to lead.
    troubled: std::sync::atomic::AtomicBool,
    restart_grace: Duration,
    /// Desktops with a command in flight, so a tick does not repeat it.
    busy: Mutex<HashSet<String>>,
    /// Ticks begun so far.
    epoch: std::sync::atomic::AtomicU64,
    /// Desktop → the tick during which its command finished. That tick read the desktop
    /// before, so it must not send the command again (a Reset repeated after the
    /// desktop was handed to a user would reset it under them).
    settled: Mutex<HashMap<String, u64>>,
    /// Desktop → when it may be retried after a command did not reach its host.
    backoff: Mutex<HashMap<String, (Instant, Duration)>>,
    /// Pool id → (consecutive desktops its hosts refused to create, no new one before).
    pool_backoff: Mutex<HashMap<String, (u32, Instant)>>,
    /// Where this broker says whether it leads.
    metrics: Arc<crate::metrics::Metrics>,
    /// Passes completed, so that tests can wait for the loop instead of for time.
    passes: std::sync::atomic::AtomicU64,
    /// Moves desktops off hosts being drained, one at a time per host.
    mover: Arc<crate::moves::Mover>,
    /// Drained hosts a desktop is being moved off now.
    moving_off: Mutex<HashSet<String>>,
    /// Suspends unused desktops of the pools whose policy says so.
    suspender: Arc<crate::suspend::Suspender>,
    /// Desktops being suspended now.
    suspending: Mutex<HashSet<String>>,
}

impl Reconciler {
    pub fn new(
        store: Store,
        link: Arc<HostLink>,
        restart_grace: Duration,
        metrics: Arc<crate::metrics::Metrics>,
        ticket_key: ed25519_dalek::SigningKey,
    ) -> Arc<Self> {
        let fence = Fence::new(LEASE, link.broker_id());
        let store = store.fenced(fence.clone());
        Arc::new(Self {
            mover: Arc::new(crate::moves::Mover::new(
                store.clone(),
                link.clone(),
                ticket_key,
                metrics.clone(),
            )),
            moving_off: Mutex::new(HashSet::new()),
            suspender: Arc::new(crate::suspend::Suspender::new(
                store.clone(),
                link.clone(),
                metrics.clone(),
            )),
            suspending: Mutex::new(HashSet::new()),
            metrics,
            store,
            fence,
            link,
            judging: Mutex::new(Judging::new(Instant::now(), restart_grace)),
            troubled: std::sync::atomic::AtomicBool::new(false),
            restart_grace,
            busy: Mutex::new(HashSet::new()),
            epoch: std::sync::atomic::AtomicU64::new(0),
            settled: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            pool_backoff: Mutex::new(HashMap::new()),
            passes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Passes over hosts and pools completed so far (as leader).
    pub fn passes(&self) -> u64 {
        self.passes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The lease token this broker leads with, if it leads.
    pub fn leading(&self) -> Option<i64> {
        self.fence.token()
    }

    /// Runs the loop: one task keeps the lease (taken or renewed every [`TICK`], however
    /// long a pass takes: a pass that starts 3,200 desktops can outlast the lease),
    /// another runs a pass every [`TICK`] while this broker leads.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let me = self.clone();
        let lease = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                me.lead().await;
            }
        });
        let me = self.clone();
        let passes = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if me.fence.token().is_none() {
                    continue;
                }
                let started = Instant::now();
                if let Err(e) = me.tick().await {
                    tracing::warn!("reconcile: {e:#}");
                }
                me.metrics.observe_reconcile(started.elapsed());
                me.passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        vec![lease, passes]
    }

    /// Takes or renews the lease; whether this broker leads now.
    async fn lead(&self) -> bool {
        let was = self.fence.token();
        let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        let asked = Instant::now();
        let leads = match self.store.acquire_lease(&self.fence, ttl).await {
            Ok(leads) => {
                crate::lock(&self.judging).answered(asked, Instant::now());
                leads
            }
            Err(e) => {
                // Cut off from the database: the lease runs out, another broker leads.
                tracing::warn!("reconcile lease: {e}");
                crate::lock(&self.judging).failed(Instant::now());
                self.troubled
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.fence.lose();
                false
            }
        };
        self.metrics.set_leading(leads);
        match (was, self.fence.token()) {
            (None, Some(token)) => {
                tracing::info!(
                    broker = self.link.broker_id(),
                    token,
                    "leading the reconcile loop"
                );
                let troubled = self
                    .troubled
                    .swap(false, std::sync::atomic::Ordering::Relaxed);
                let grace = if self.passes() == 0 && !troubled {
                    self.restart_grace
                } else {
                    self.restart_grace.max(HOST_TIMEOUT)
                };
                crate::lock(&self.judging).hold(Instant::now(), grace);
            }
            (Some(_), None) => {
                tracing::warn!(
                    broker = self.link.broker_id(),
                    "no longer leading the reconcile loop"
                )
            }
            _ => {}
        }
        leads
    }

    /// Gives the lease up so another broker leads at once (a clean shutdown).
    pub async fn resign(&self) {
        if let Err(e) = self.store.release_lease(&self.fence).await {
            tracing::warn!("reconcile lease: {e}");
        }
    }

    /// One pass over hosts and pools.
    pub async fn tick(self: &Arc<Self>) -> anyhow::Result<()> {
        // What this tick reads shows every command settled before now.
        let epoch = self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        crate::lock(&self.settled).retain(|_, settled| *settled >= epoch);
        self.mark_silent_hosts_down().await?;
        // Expired login tokens go, now and then (every login adds one).
        if self.passes().is_multiple_of(TOKEN_SWEEP_PASSES) {
            self.store.delete_expired_api_tokens(now_ms()).await?;
            // Relayed commands whose callers died waiting.
            self.store.sweep_host_commands(now_ms() - 3_600_000).await?;
            // Login failures quiet for an hour (the longest back-off is 15 minutes).
            self.store
                .sweep_login_failures(now_ms() - 3_600_000)
                .await?;
        }
        let hosts = self.store.list_hosts().await?;
        let hosts: HashMap<&str, &Host> = hosts.iter().map(|h| (h.id.as_str(), h)).collect();
        // Only desktops with work to do are read; the rest are counted.
        let working = self.store.desktops_needing_work().await?;
        let mut load = self.store.host_loads().await?;
        let mut counts: HashMap<String, PoolCounts> = HashMap::new();
        for (pool, state, n) in self.store.desktop_counts_by_pool().await? {
            counts.entry(pool).or_default().add(state, n);
        }
        let mut by_pool: HashMap<&str, Vec<&Desktop>> = HashMap::new();
        for d in &working {
            by_pool.entry(d.pool_id.as_str()).or_default().push(d);
        }
        let pools = self.store.list_pools().await?;
        for pool in &pools {
            let in_pool = by_pool.remove(pool.id.as_str()).unwrap_or_default();
            let counted = counts.get(&pool.id).copied().unwrap_or_default();
            self.reconcile_pool(pool, &in_pool, counted, &hosts, &mut load)
                .await?;
        }
        self.move_off_drained_hosts(&hosts, &pools).await?;
        self.suspend_idle_desktops().await?;
        // What is left belongs to deleted pools: destroyed on their hosts.
        for d in by_pool.into_values().flatten() {
            if d.state == DesktopState::Deleting && d.host_id.is_some() {
                let command = HostCommand::Destroy {
                    desktop: d.name.clone(),
                };
                self.run(&hosts, d, command, None, DesktopState::Deleting);
            }
        }
        Ok(())
    }

    /// Acts on the desktops of `pool` that need work (`in_pool`) and starts new ones
    /// until it has `min_ready` spares, as `counted` (all its desktops) says.
    async fn reconcile_pool(
        self: &Arc<Self>,
        pool: &Pool,
        in_pool: &[&Desktop],
        counted: PoolCounts,
        hosts: &HostsById<'_>,
        load: &mut HashMap<String, i64>,
    ) -> anyhow::Result<()> {
        // Checked on every write; a store edited by hand (or written by a version that
        // checked less) is left alone until an administrator fixes the pool.
        let spec = match DesktopSpec::parse(&pool.source_kind, &pool.source_params) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(pool = pool.name, "pool left alone: {e}");
                return Ok(());
            }
        };
        let now = now_ms();

        for d in in_pool.iter() {
            let draining = d
                .host_id
                .as_deref()
                .and_then(|id| hosts.get(id))
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
                    hosts,
                    d,
                    HostCommand::Destroy {
                        desktop: d.name.clone(),
                    },
                    None,
                    DesktopState::Deleting,
                ),
                DesktopState::Resetting => self.run(
                    hosts,
                    d,
                    HostCommand::Reset {
                        desktop: d.name.clone(),
                        spec: spec.clone(),
                        generation: generation(d),
                    },
                    Some(DesktopState::Resetting),
                    DesktopState::Ready,
                ),
                // A floating desktop left disconnected past its timeout goes back.
                DesktopState::Disconnected
                    if pool.assignment == Assignment::Floating
                        && now - d.state_changed_ms > pool.disconnect_timeout_s * 1000 =>
                {
                    // Only if it is still disconnected: its user may be back.
                    self.store
                        .release_desktop_from(&d.id, true, &[DesktopState::Disconnected])
                        .await?;
                }
                DesktopState::Provisioning => self.run(
                    hosts,
                    d,
                    HostCommand::Create {
                        desktop: d.name.clone(),
                        spec: spec.clone(),
                        generation: generation(d),
                    },
                    Some(DesktopState::Provisioning),
                    DesktopState::Ready,
                ),
                _ => {}
            }
        }

        let missing = (pool.min_ready - counted.spare).min(pool.max_size - counted.live);
        let missing = usize::try_from(missing).unwrap_or(0).min(MAX_NEW_PER_TICK);
        if missing > 0 && self.pool_waiting(&pool.id) {
            return Ok(());
        }
        for _ in 0..missing {
            let Some(host) = self.place(hosts, load) else {
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
            *load.entry(host.id.clone()).or_default() += 1;
            self.run(
                hosts,
                &d,
                HostCommand::Create {
                    desktop: d.name.clone(),
                    spec: spec.clone(),
                    generation: generation(&d),
                },
                Some(DesktopState::Provisioning),
                DesktopState::Ready,
            );
        }
        Ok(())
    }

    /// The up, connected host with the most free capacity, counting `load` (desktops
    /// on each host, including those placed earlier in this tick); of equals, the one
    /// whose name sorts last, so placement does not depend on the map's order.
    fn place<'a>(&self, hosts: &HostsById<'a>, load: &HashMap<String, i64>) -> Option<&'a Host> {
        hosts
            .values()
            .copied()
            .filter(|h| h.state == HostState::Up && self.link.reachable(h))
            .map(|h| (h, h.capacity - load.get(&h.id).copied().unwrap_or(0)))
            .filter(|(_, free)| *free > 0)
            .max_by_key(|(h, free)| (*free, h.name.as_str()))
            .map(|(h, _)| h)
    }

    /// Whether a pool whose hosts keep refusing its desktops still waits.
    fn pool_waiting(&self, pool_id: &str) -> bool {
        crate::lock(&self.pool_backoff)
            .get(pool_id)
            .is_some_and(|(_, until)| Instant::now() < *until)
    }

    /// A host refused a desktop of the pool (or accepted one): the pool waits 1 s,
    /// 2 s, 4 s … up to [`MAX_POOL_BACKOFF`] before its next new desktop.
    fn pool_outcome(&self, pool_id: &str, refused: bool) {
        let mut b = crate::lock(&self.pool_backoff);
        if !refused {
            b.remove(pool_id);
            return;
        }
        let failures = b.get(pool_id).map_or(0, |(n, _)| *n).saturating_add(1);
        let delay =
            Duration::from_secs(1 << failures.min(9).saturating_sub(1)).min(MAX_POOL_BACKOFF);
        b.insert(pool_id.to_string(), (failures, Instant::now() + delay));
    }

    /// Sends `command` for desktop `d` in the background; on success moves it from
    /// `from` to `to` (to `Deleting`: detaches it from its host). Skips desktops already
    /// busy, backing off, or whose command finished after this tick read them.
    fn run(
        self: &Arc<Self>,
        hosts: &HostsById<'_>,
        d: &Desktop,
        command: HostCommand,
        from: Option<DesktopState>,
        to: DesktopState,
    ) {
        let Some(host_id) = d.host_id.clone() else {
            return;
        };
        if !hosts
            .get(host_id.as_str())
            .is_some_and(|h| self.link.reachable(h))
        {
            return;
        }
        if self.backing_off(&d.id) {
            return;
        }
        if !crate::lock(&self.busy).insert(d.id.clone()) {
            return;
        }
        // Checked once busy: a command that finished meanwhile noted it before it let go.
        let epoch = self.epoch.load(std::sync::atomic::Ordering::SeqCst);
        if crate::lock(&self.settled).get(&d.id) == Some(&epoch) {
            crate::lock(&self.busy).remove(&d.id);
            return;
        }
        let me = self.clone();
        let id = d.id.clone();
        let pool_id = d.pool_id.clone();
        let creates = matches!(
            command,
            HostCommand::Create { .. } | HostCommand::Reset { .. }
        );
        tokio::spawn(async move {
            let result = me.link.command(&host_id, command).await;
            match result {
                Ok(()) => {
                    crate::lock(&me.backoff).remove(&id);
                    if creates {
                        me.pool_outcome(&pool_id, false);
                    }
                    let updated = if to == DesktopState::Deleting {
                        me.store.detach_desktop(&id).await.map(|_| true)
                    } else {
                        me.store.set_desktop_state(&id, from, to).await
                    };
                    if let Err(e) = updated {
                        tracing::warn!(desktop = id, "state update failed: {e}");
                    }
                }
                // The host could not make the desktop: retrying the same will not help.
                // It fails with the host's reason (admins see it), and the pool waits.
                Err(CommandError::Host(reason)) if creates => {
                    tracing::warn!(desktop = id, "the host could not create it: {reason}");
                    me.pool_outcome(&pool_id, true);
                    if let Err(e) = me.store.fail_desktop(&id, from, &reason).await {
                        tracing::warn!(desktop = id, "state update failed: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!(desktop = id, "host command failed: {e}");
                    me.back_off(&id);
                }
            }
            let epoch = me.epoch.load(std::sync::atomic::Ordering::SeqCst);
            crate::lock(&me.settled).insert(id.clone(), epoch);
            crate::lock(&me.busy).remove(&id);
        });
    }
}

impl Reconciler {
    /// Whether desktop `id` waits before it is tried again.
    fn backing_off(&self, id: &str) -> bool {
        crate::lock(&self.backoff)
            .get(id)
            .is_some_and(|(until, _)| Instant::now() < *until)
    }

    /// Desktop `id` is tried again after 1 s, then twice as long each time, up to 60 s.
    fn back_off(&self, id: &str) {
        let mut b = crate::lock(&self.backoff);
        let delay = b.get(id).map_or(Duration::from_secs(1), |(_, d)| {
            (*d * 2).min(Duration::from_secs(60))
        });
        b.insert(id.to_string(), (Instant::now() + delay, delay));
    }
}

/// The hosts of one tick, by id.
pub(super) type HostsById<'a> = HashMap<&'a str, &'a Host>;

/// What a pool has, counted over all its desktops.
#[derive(Debug, Clone, Copy, Default)]
struct PoolCounts {
    /// Not failed and not being deleted: what `max_size` caps.
    live: i64,
    /// Ready or being created: what `min_ready` asks for.
    spare: i64,
}

impl PoolCounts {
    fn add(&mut self, state: DesktopState, n: i64) {
        if !matches!(state, DesktopState::Failed | DesktopState::Deleting) {
            self.live += n;
        }
        if matches!(state, DesktopState::Ready | DesktopState::Provisioning) {
            self.spare += n;
        }
    }
}
