//! The pools' suspend policy: a dedicated kvm desktop its user left (disconnected, or
//! logged off and still theirs) for longer than its pool's disconnect timeout is
//! suspended to disk, so that it costs its host no RAM until its user is back.

use std::sync::Arc;

use super::Reconciler;

/// Suspensions one pass starts at most (each runs in the background).
const MAX_PER_PASS: i64 = 4;

impl Reconciler {
    pub(super) async fn suspend_idle_desktops(self: &Arc<Self>) -> anyhow::Result<()> {
        for desktop in self.store.desktops_to_suspend(MAX_PER_PASS).await? {
            if self.backing_off(&desktop.id)
                || !crate::lock(&self.suspending).insert(desktop.id.clone())
            {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                match me.suspender.suspend(&desktop.id).await {
                    Ok(_) => {
                        let what =
                            format!("desktop {} (unused past its pool's timeout)", desktop.name);
                        if let Err(e) = me.store.audit("broker", "desktop_suspended", &what).await {
                            tracing::warn!("audit: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(desktop = desktop.name, "suspending an unused desktop: {e}");
                        me.back_off(&desktop.id);
                    }
                }
                crate::lock(&me.suspending).remove(&desktop.id);
            });
        }
        Ok(())
    }
}
