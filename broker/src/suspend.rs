//! Suspend to disk and resume, as an operator or a pool's policy orders it: the
//! desktop's host saves the whole VM to a file and ends it (it costs no RAM), and
//! resumes it from there when its user connects or an operator asks. The store marks
//! the desktop suspended before its host is told, so that the host no longer reporting
//! it is not taken for losing it.

use std::sync::Arc;

use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::host_link::HostCommand;

use crate::hostlink::HostLink;
use crate::metrics::Metrics;
use crate::store::{Desktop, Store, HELD};

/// Why a suspend or resume did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SuspendError {
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The desktop cannot be suspended or resumed now.
    #[error("{0}")]
    Refused(String),
    /// Its host failed to do it; the desktop is as it was.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn refused(why: impl Into<String>) -> SuspendError {
    SuspendError::Refused(why.into())
}

/// Orders suspends and resumes.
pub struct Suspender {
    store: Store,
    link: Arc<HostLink>,
    metrics: Arc<Metrics>,
}

impl Suspender {
    pub fn new(store: Store, link: Arc<HostLink>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            link,
            metrics,
        }
    }

    /// Suspends desktop `id` (a kvm desktop someone holds) to disk on its host; its
    /// session, if any, ends. Returns the desktop as it is now.
    pub async fn suspend(&self, id: &str) -> Result<Desktop, SuspendError> {
        let desktop = self.desktop(id).await?;
        if desktop.suspended_ms.is_some() {
            return Err(refused("the desktop is suspended already"));
        }
        if !HELD.contains(&desktop.state) {
            return Err(refused(format!(
                "a {} desktop is not suspended; only desktops assigned to a user are",
                desktop.state
            )));
        }
        if desktop.migrating_to.is_some() {
            return Err(refused("the desktop is moving to another host"));
        }
        self.spec(&desktop).await?;
        let host = desktop
            .host_id
            .clone()
            .ok_or_else(|| refused("the desktop is on no host"))?;
        if !self
            .store
            .mark_suspended(&desktop.id, desktop.generation, &HELD)
            .await?
        {
            return Err(refused("the desktop changed meanwhile; try again"));
        }
        let command = HostCommand::Suspend {
            desktop: desktop.name.clone(),
        };
        let sent = self.link.command(&host, command).await;
        self.metrics.observe_suspension("suspend", sent.is_ok());
        if let Err(e) = sent {
            self.store.clear_suspended(&desktop.id).await?;
            return Err(SuspendError::Failed(format!("host {host}: {e}")));
        }
        self.desktop(id).await
    }

    /// Resumes suspended desktop `desktop` on its host, at its generation.
    pub async fn resume(&self, desktop: &Desktop) -> Result<(), SuspendError> {
        if desktop.suspended_ms.is_none() {
            return Err(refused("the desktop is not suspended"));
        }
        let spec = self.spec(desktop).await?;
        let host = desktop
            .host_id
            .clone()
            .ok_or_else(|| refused("the desktop is on no host"))?;
        let command = HostCommand::Resume {
            desktop: desktop.name.clone(),
            spec,
            generation: crate::logoff::generation(desktop),
        };
        let sent = self.link.command(&host, command).await;
        self.metrics.observe_suspension("resume", sent.is_ok());
        sent.map_err(|e| SuspendError::Failed(format!("host {host}: {e}")))?;
        self.store.clear_suspended(&desktop.id).await?;
        Ok(())
    }

    async fn desktop(&self, id: &str) -> Result<Desktop, SuspendError> {
        self.store
            .desktop_by_id(id)
            .await?
            .ok_or(SuspendError::NotFound("desktop"))
    }

    /// The desktop's spec; only kvm desktops suspend.
    async fn spec(&self, desktop: &Desktop) -> Result<DesktopSpec, SuspendError> {
        let pool = self
            .store
            .pool_by_id(&desktop.pool_id)
            .await?
            .ok_or(SuspendError::NotFound("pool"))?;
        if pool.source_kind != "kvm" {
            return Err(refused(format!(
                "a {} desktop is not suspended; only kvm desktops are",
                pool.source_kind
            )));
        }
        DesktopSpec::parse(&pool.source_kind, &pool.source_params)
            .map_err(|e| refused(format!("the pool's desktop spec: {e}")))
    }
}
