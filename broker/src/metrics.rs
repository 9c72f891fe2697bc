//! Prometheus metrics of the broker.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Figures other parts of the broker keep, rendered with the metrics.
pub struct Figures {
    pub password_checks: u64,
    pub host_registrations: u64,
    pub audit_suppressed: u64,
    /// Desktops per state, when the store could count them.
    pub desktops_by_state: Option<Vec<(String, usize)>>,
}

#[derive(Default)]
pub struct Metrics {
    logins: AtomicU64,
    login_us: AtomicU64,
    connects: AtomicU64,
    connect_us: AtomicU64,
    logins_throttled: AtomicU64,
    logins_busy: AtomicU64,
}

impl Metrics {
    pub fn observe_login(&self, took: Duration) {
        self.logins.fetch_add(1, Relaxed);
        self.login_us.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// A login refused before its password was checked: over the rate limit
    /// (`throttled`), or the hasher's queue was full (`busy`).
    pub fn login_refused(&self, throttled: bool) {
        let counter = if throttled {
            &self.logins_throttled
        } else {
            &self.logins_busy
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn observe_connect(&self, took: Duration) {
        self.connects.fetch_add(1, Relaxed);
        self.connect_us.fetch_add(took.as_micros() as u64, Relaxed);
    }
}

/// The Prometheus text exposition of the broker's metrics.
pub fn render(m: &Metrics, figures: &Figures) -> String {
    let mut out = String::new();
    for (name, help, value) in [
        (
            "oriel_broker_logins_total",
            "Successful logins",
            m.logins.load(Relaxed),
        ),
        (
            "oriel_broker_connects_total",
            "Tickets issued",
            m.connects.load(Relaxed),
        ),
        (
            "oriel_broker_password_checks_total",
            "argon2 computations (password checks and new hashes)",
            figures.password_checks,
        ),
        (
            "oriel_broker_host_registrations_total",
            "Host links registered (a host whose link dropped registers again)",
            figures.host_registrations,
        ),
        (
            "oriel_broker_audit_suppressed_total",
            "Audit events of unauthenticated sources over their rate, not written",
            figures.audit_suppressed,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    for (name, help, value) in [
        (
            "oriel_broker_login_seconds_total",
            "Time spent in successful logins",
            m.login_us.load(Relaxed),
        ),
        (
            "oriel_broker_connect_seconds_total",
            "Time spent issuing tickets",
            m.connect_us.load(Relaxed),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value as f64 / 1e6
        );
    }
    let _ = writeln!(
        out,
        "# HELP oriel_broker_logins_refused_total Logins refused before the password was checked\n\
         # TYPE oriel_broker_logins_refused_total counter\n\
         oriel_broker_logins_refused_total{{reason=\"throttled\"}} {}\n\
         oriel_broker_logins_refused_total{{reason=\"busy\"}} {}",
        m.logins_throttled.load(Relaxed),
        m.logins_busy.load(Relaxed)
    );
    if let Some(desktops) = &figures.desktops_by_state {
        let _ = writeln!(
            out,
            "# HELP oriel_broker_desktops Desktops by state\n# TYPE oriel_broker_desktops gauge"
        );
        for (state, n) in desktops {
            let _ = writeln!(out, "oriel_broker_desktops{{state=\"{state}\"}} {n}");
        }
    }
    out
}
