//! Prometheus metrics of the broker, in the OpenMetrics text format of
//! `prometheus-client`. The counters are the metrics themselves: registered once in the
//! API state's registry (see [`Metrics::registry`]) and counted where things happen.
//! Only the desktops per state are a snapshot, set from the store at each scrape.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The HTTP content type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SuspendLabels {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Counters other parts of the broker keep, exported as they are.
pub struct Sources {
    /// argon2 computations (see [`crate::password::Hasher::computed`]).
    pub password_checks: Counter,
    /// Host links registered (see [`crate::hostlink::HostLink::registrations`]).
    pub host_registrations: Counter,
    /// Audit events not written (see [`crate::audit::AuditLimiter::suppressed`]).
    pub audit_suppressed: Counter,
    /// Commands this broker carried out for other brokers of its cluster.
    pub relayed_commands: Counter,
    /// Host heartbeats written (see [`crate::heartbeats::Heartbeats`]).
    pub heartbeats: Counter,
}

/// The figures of the API's handlers.
pub struct Metrics {
    logins: Counter,
    login_seconds: Counter<f64, AtomicU64>,
    connects: Counter,
    connect_seconds: Counter<f64, AtomicU64>,
    logins_refused: Family<RefusedLabels, Counter>,
    desktops: Family<StateLabels, Gauge>,
    leading: Gauge,
    reconcile_passes: Histogram,
    migrations: Family<OutcomeLabels, Counter>,
    migration_downtime: Histogram,
    migration_bytes: Counter,
    suspensions: Family<SuspendLabels, Counter>,
}

/// Upper bounds of the migration downtime histogram, in seconds (the budget is 50 ms).
const DOWNTIME_BUCKETS: [f64; 10] = [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

/// Upper bounds of the reconcile pass histogram, in seconds: fine where a healthy pass
/// lies (the goal is 50 ms at 10,000 desktops), coarse beyond.
const RECONCILE_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 5.0,
];

const THROTTLED: RefusedLabels = RefusedLabels {
    reason: "throttled",
};
const BUSY: RefusedLabels = RefusedLabels { reason: "busy" };

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            logins: Counter::default(),
            login_seconds: Counter::default(),
            connects: Counter::default(),
            connect_seconds: Counter::default(),
            logins_refused: Family::default(),
            desktops: Family::default(),
            leading: Gauge::default(),
            reconcile_passes: Histogram::new(RECONCILE_BUCKETS),
            migrations: Family::default(),
            migration_downtime: Histogram::new(DOWNTIME_BUCKETS),
            migration_bytes: Counter::default(),
            suspensions: Family::default(),
        };
        for action in ["suspend", "resume"] {
            for outcome in ["done", "failed"] {
                metrics
                    .suspensions
                    .get_or_create_owned(&SuspendLabels { action, outcome });
            }
        }
        for outcome in ["done", "failed"] {
            metrics
                .migrations
                .get_or_create_owned(&OutcomeLabels { outcome });
        }
        // Both reasons are exported from the start, at 0.
        for reason in [THROTTLED, BUSY] {
            metrics.logins_refused.get_or_create_owned(&reason);
        }
        metrics
    }
}

impl Metrics {
    pub fn observe_login(&self, took: Duration) {
        self.logins.inc();
        self.login_seconds.inc_by(took.as_secs_f64());
    }

    /// A login refused before its password was checked: over the rate limit
    /// (`throttled`), or the hasher's queue was full (`busy`).
    pub fn login_refused(&self, throttled: bool) {
        let reason = if throttled { THROTTLED } else { BUSY };
        self.logins_refused.get_or_create(&reason).inc();
    }

    pub fn observe_connect(&self, took: Duration) {
        self.connects.inc();
        self.connect_seconds.inc_by(took.as_secs_f64());
    }

    /// Whether this broker runs the reconcile loop now.
    pub fn set_leading(&self, leading: bool) {
        self.leading.set(i64::from(leading));
    }

    /// A pass of the reconcile loop took `took`.
    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_passes.observe(took.as_secs_f64());
    }

    /// A live migration this broker ordered ended: done with its downtime and bytes,
    /// or failed (`None`).
    pub fn observe_migration(&self, done: Option<(Duration, u64)>) {
        let outcome = if done.is_some() { "done" } else { "failed" };
        self.migrations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some((downtime, bytes)) = done {
            self.migration_downtime.observe(downtime.as_secs_f64());
            self.migration_bytes.inc_by(bytes);
        }
    }

    /// A suspend or resume this broker ordered ended.
    pub fn observe_suspension(&self, action: &'static str, done: bool) {
        let outcome = if done { "done" } else { "failed" };
        self.suspensions
            .get_or_create(&SuspendLabels { action, outcome })
            .inc();
    }

    /// Sets the desktops per state to a fresh count from the store; `None` (the store
    /// could not count them) leaves the family without samples rather than stale ones.
    pub fn set_desktops(&self, by_state: Option<Vec<(String, usize)>>) {
        let Some(by_state) = by_state else {
            self.desktops.clear();
            return;
        };
        for (state, n) in by_state {
            self.desktops
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The broker's registry: these metrics and the `sources`, registered once.
    /// Counter names go without `_total`: the encoder appends it.
    pub fn registry(&self, sources: Sources) -> Registry {
        let mut r = Registry::default();
        r.register(
            "oriel_broker_logins",
            "Successful logins",
            self.logins.clone(),
        );
        r.register(
            "oriel_broker_connects",
            "Tickets issued",
            self.connects.clone(),
        );
        r.register(
            "oriel_broker_password_checks",
            "argon2 computations (password checks and new hashes)",
            sources.password_checks,
        );
        r.register(
            "oriel_broker_host_registrations",
            "Host links registered (a host whose link dropped registers again)",
            sources.host_registrations,
        );
        r.register(
            "oriel_broker_audit_suppressed",
            "Audit events of unauthenticated sources over their rate, not written",
            sources.audit_suppressed,
        );
        // With the counts above, the average time of a login and of issuing a ticket.
        r.register(
            "oriel_broker_login_seconds",
            "Time spent in successful logins",
            self.login_seconds.clone(),
        );
        r.register(
            "oriel_broker_connect_seconds",
            "Time spent issuing tickets",
            self.connect_seconds.clone(),
        );
        r.register(
            "oriel_broker_logins_refused",
            "Logins refused before the password was checked",
            self.logins_refused.clone(),
        );
        r.register(
            "oriel_broker_desktops",
            "Desktops by state",
            self.desktops.clone(),
        );
        r.register(
            "oriel_broker_reconcile_leader",
            "1 while this broker holds the reconcile lease (one broker of a cluster does)",
            self.leading.clone(),
        );
        r.register(
            "oriel_broker_relayed_commands",
            "Host commands carried out for other brokers of the cluster",
            sources.relayed_commands,
        );
        r.register(
            "oriel_broker_reconcile_pass_seconds",
            "Duration of the passes of the reconcile loop this broker ran as leader",
            self.reconcile_passes.clone(),
        );
        r.register(
            "oriel_broker_migrations",
            "Live migrations this broker ordered, by outcome",
            self.migrations.clone(),
        );
        r.register(
            "oriel_broker_migration_downtime_seconds",
            "How long migrated desktops ran on no host",
            self.migration_downtime.clone(),
        );
        r.register(
            "oriel_broker_migration_bytes",
            "Bytes the hosts sent for the live migrations this broker ordered",
            self.migration_bytes.clone(),
        );
        r.register(
            "oriel_broker_suspensions",
            "Suspends to disk and resumes this broker ordered, by action and outcome",
            self.suspensions.clone(),
        );
        r.register(
            "oriel_broker_heartbeats",
            "Host heartbeats written to the store (in batches)",
            sources.heartbeats,
        );
        r
    }
}

/// The OpenMetrics text of `registry`, ending in `# EOF`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    text
}

#[cfg(test)]
mod tests {
    use oriel_transport::openmetrics_test::parse;

    use super::*;

    #[test]
    fn figures_round_trip_through_the_exposition() {
        let m = Metrics::default();
        let sources = Sources {
            password_checks: Counter::default(),
            host_registrations: Counter::default(),
            audit_suppressed: Counter::default(),
            relayed_commands: Counter::default(),
            heartbeats: Counter::default(),
        };
        let checks = sources.password_checks.clone();
        let registry = m.registry(sources);
        m.observe_login(Duration::from_millis(1500));
        m.observe_login(Duration::from_millis(500));
        m.login_refused(true);
        m.login_refused(true);
        checks.inc_by(5);
        m.set_desktops(Some(vec![("running".into(), 2), ("stopped".into(), 0)]));
        m.set_leading(true);
        m.observe_reconcile(Duration::from_millis(12));
        m.observe_reconcile(Duration::from_millis(40));

        let (samples, types) = parse(&encode(&registry));
        assert_eq!(samples["oriel_broker_logins_total"], 2.0);
        assert_eq!(samples["oriel_broker_login_seconds_total"], 2.0);
        assert_eq!(samples["oriel_broker_connects_total"], 0.0);
        assert_eq!(samples["oriel_broker_password_checks_total"], 5.0);
        assert_eq!(samples["oriel_broker_host_registrations_total"], 0.0);
        assert_eq!(
            samples["oriel_broker_logins_refused_total{reason=\"throttled\"}"],
            2.0
        );
        assert_eq!(
            samples["oriel_broker_logins_refused_total{reason=\"busy\"}"],
            0.0
        );
        assert_eq!(samples["oriel_broker_desktops{state=\"running\"}"], 2.0);
        assert_eq!(samples["oriel_broker_desktops{state=\"stopped\"}"], 0.0);
        assert_eq!(types["oriel_broker_logins_refused"], "counter");
        assert_eq!(types["oriel_broker_desktops"], "gauge");
        assert_eq!(samples["oriel_broker_reconcile_leader"], 1.0);
        assert_eq!(samples["oriel_broker_relayed_commands_total"], 0.0);
        assert_eq!(types["oriel_broker_reconcile_pass_seconds"], "histogram");
        assert_eq!(samples["oriel_broker_reconcile_pass_seconds_count"], 2.0);
        let le = |bound: &str| {
            samples[&format!("oriel_broker_reconcile_pass_seconds_bucket{{le=\"{bound}\"}}")]
        };
        assert_eq!(le("0.01"), 0.0);
        assert_eq!(le("0.015"), 1.0);
        assert_eq!(le("0.05"), 2.0);
        assert_eq!(le("+Inf"), 2.0);
        assert_eq!(samples["oriel_broker_heartbeats_total"], 0.0);

        // A store that cannot count leaves no stale desktop figures behind.
        m.set_desktops(None);
        let (samples, _) = parse(&encode(&registry));
        assert!(!samples
            .keys()
            .any(|k| k.starts_with("oriel_broker_desktops")));
    }
}
