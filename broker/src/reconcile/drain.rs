//! Draining a host by live migration: the desktops in use on a host in maintenance move
//! to other hosts instead of waiting for their users to log off.

use std::sync::Arc;

use super::{HostsById, Reconciler};
use crate::store::{HostState, Pool, HELD};

impl Reconciler {
    /// Draining a host live-migrates its desktops in use (kvm ones; the others wait
    /// for their users to log off): one at a time per host, in the background, to the
    /// least loaded other host.
    pub(super) async fn move_off_drained_hosts(
        self: &Arc<Self>,
        hosts: &HostsById<'_>,
        pools: &[Pool],
    ) -> anyhow::Result<()> {
        for host in hosts.values().filter(|h| h.state == HostState::Maintenance) {
            if crate::lock(&self.moving_off).contains(&host.id) {
                continue;
            }
            let next = self
                .store
                .desktops_on_host(&host.id)
                .await?
                .into_iter()
                .find(|d| {
                    HELD.contains(&d.state)
                        && d.migrating_to.is_none()
                        && d.suspended_ms.is_none()
                        && !self.backing_off(&d.id)
                        && pools
                            .iter()
                            .any(|p| p.id == d.pool_id && p.source_kind == "kvm")
                });
            let Some(desktop) = next else { continue };
            crate::lock(&self.moving_off).insert(host.id.clone());
            let (me, host) = (self.clone(), (*host).clone());
            tokio::spawn(async move {
                match me.mover.migrate(&desktop.id, None).await {
                    Ok(moved) => {
                        let what = format!(
                            "moved desktop {} off {} (draining) to {} ({:.1} ms downtime)",
                            desktop.name,
                            host.name,
                            moved.to.name,
                            moved.figures.downtime_us as f64 / 1e3
                        );
                        if let Err(e) = me.store.audit("broker", "migration", &what).await {
                            tracing::warn!("audit: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(desktop = desktop.name, "draining {}: {e}", host.name);
                        me.back_off(&desktop.id);
                    }
                }
                crate::lock(&me.moving_off).remove(&host.id);
            });
        }
        Ok(())
    }
}
