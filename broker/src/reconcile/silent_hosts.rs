//! Hosts whose heartbeats stopped are marked down and their desktops failed (the pools
//! get replacements elsewhere), judged only on heartbeats the brokers could have
//! recorded (see [`super::judging`] and `Store::hosts_missing_heartbeat`).

use std::time::Instant;

use super::{Reconciler, HOST_TIMEOUT, WRITER_GRACE};
use crate::store::{now_ms, DesktopState, HostState};

impl Reconciler {
    /// Marks down the hosts whose heartbeats stopped, and fails their desktops: only
    /// when [`super::judging::Judging`] allows it, and only on a read that no stall or
    /// change of the lease spanned.
    pub(super) async fn mark_silent_hosts_down(&self) -> anyhow::Result<()> {
        let asked = Instant::now();
        let Some(judgement) = crate::lock(&self.judging).may_judge(asked) else {
            return Ok(());
        };
        let token = self.fence.token();
        let timeout_ms = i64::try_from(HOST_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
        let grace_ms = i64::try_from(WRITER_GRACE.as_millis()).unwrap_or(i64::MAX);
        let silent = self
            .store
            .hosts_missing_heartbeat(now_ms(), timeout_ms, grace_ms)
            .await?;
        // The query may have waited out a database outage or stall, during which no
        // broker could record heartbeats; or this broker lost or retook the lease
        // meanwhile. Then the hosts' silence says nothing about them.
        let fresh = {
            let mut judging = crate::lock(&self.judging);
            judging.answered(asked, Instant::now());
            judging.still(judgement)
        };
        if self.fence.token() != token || !fresh {
            tracing::info!(
                "the database stalled or the lease changed hands while reading heartbeats; \
                 hosts judged later"
            );
            return Ok(());
        }
        for host in silent {
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
                    let reason = format!("its host {} stopped sending heartbeats", host.name);
                    self.store.fail_desktop(&d.id, None, &reason).await?;
                }
            }
            tracing::warn!(host = host.name, "host down; its desktops are failed");
        }
        Ok(())
    }
}
