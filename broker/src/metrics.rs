//! Prometheus metrics of the broker.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;

use crate::api::AppState;

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

pub async fn render(
    State(state): State<Arc<AppState>>,
) -> ([(&'static str, &'static str); 1], String) {
    let m = &state.metrics;
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
            state.hasher.computed(),
        ),
        (
            "oriel_broker_host_registrations_total",
            "Host links registered (a host whose link dropped registers again)",
            state.link.registrations(),
        ),
        (
            "oriel_broker_audit_suppressed_total",
            "Audit events of unauthenticated sources over their rate, not written",
            state.audit.suppressed(),
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
    if let Ok(desktops) = state.store.list_desktops(None).await {
        let _ = writeln!(
            out,
            "# HELP oriel_broker_desktops Desktops by state\n# TYPE oriel_broker_desktops gauge"
        );
        for s in crate::store::DesktopState::ALL {
            let n = desktops.iter().filter(|d| d.state == *s).count();
            let _ = writeln!(out, "oriel_broker_desktops{{state=\"{s}\"}} {n}");
        }
    }
    ([("content-type", "text/plain; version=0.0.4")], out)
}
