//! A running broker: store, keys, HTTPS API, host link and reconcile loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use oriel_transport::Fingerprint;

use crate::api::{router, AppState};
use crate::audit::AuditLimiter;
use crate::cluster_key::ClusterKey;
use crate::hostlink::{HostLink, LinkOptions};
use crate::keys::BrokerKeys;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::store::{Backend, Store};

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    /// HTTPS API address (TCP).
    pub api_listen: SocketAddr,
    /// Host-link address (QUIC/UDP).
    pub host_listen: SocketAddr,
    /// Database URL; default: SQLite file `broker.db` in the data dir.
    pub database: Option<String>,
    /// Serve the API over plain HTTP (only allowed on a loopback address).
    pub insecure_http: bool,
    /// After a start, how long hosts have to link again before missed heartbeats
    /// count against them (see [`crate::reconcile::RESTART_GRACE`]).
    pub restart_grace: std::time::Duration,
    /// The cluster key file: brokers given the same one share their ticket key, TLS
    /// identity and join token through the database (see [`crate::cluster_key`]).
    pub cluster_key: Option<PathBuf>,
}

impl BrokerConfig {
    /// The database URL; for the default SQLite file in the data directory, that file
    /// is made owner-only first.
    pub fn database_url(&self) -> anyhow::Result<String> {
        database_url(&self.data_dir, self.database.as_deref())
    }
}

/// `database`, or the SQLite file `broker.db` in `data_dir` (owner-only).
pub fn database_url(data_dir: &std::path::Path, database: Option<&str>) -> anyhow::Result<String> {
    match database {
        Some(url) => Ok(url.to_string()),
        None => {
            let file = data_dir.join("broker.db");
            oriel_transport::files::create_private_dir(data_dir)?;
            crate::store::secure_sqlite_file(&file)?;
            Ok(crate::store::sqlite_url(&file)?)
        }
    }
}

pub struct Broker {
    pub api_addr: SocketAddr,
    pub host_addr: SocketAddr,
    pub fingerprint: Fingerprint,
    pub join_token: String,
    pub store: Store,
    pub insecure_http: bool,
    handle: axum_server::Handle,
    host_endpoint: quinn::Endpoint,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    reconciler: Arc<Reconciler>,
    link: Arc<HostLink>,
}

impl Broker {
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Broker> {
        if config.insecure_http && !config.api_listen.ip().is_loopback() {
            bail!(
                "plain HTTP is only allowed on a loopback address, not {}",
                config.api_listen
            );
        }
        let mut keys = BrokerKeys::load_or_create(&config.data_dir)
            .with_context(|| format!("broker keys in {}", config.data_dir.display()))?;
        let broker_id = crate::keys::broker_id(&config.data_dir)?;
        let url = config.database_url()?;
        let store = Store::open(&url).await?;
        if let Some(path) = &config.cluster_key {
            let key = ClusterKey::read(path)?;
            keys = keys
                .shared(&store, &key, &config.data_dir)
                .await
                .context("the cluster's shared keys")?;
        }
        let audit = Arc::new(AuditLimiter::default());
        let relay_url = (store.backend() == Backend::Postgres).then(|| url.clone());
        let (link, host_endpoint) = HostLink::start(
            config.host_listen,
            &keys.identity,
            store.clone(),
            keys.join_token.clone(),
            keys.ticket_key.verifying_key().to_bytes(),
            audit.clone(),
            LinkOptions {
                broker_id: broker_id.clone(),
                relay_url,
            },
        )?;
        let host_addr = host_endpoint.local_addr()?;
        let metrics = Arc::new(Metrics::default());
        let reconciler = Reconciler::new(
            store.clone(),
            link.clone(),
            config.restart_grace,
            metrics.clone(),
            keys.ticket_key.clone(),
        );
        let mut tasks = reconciler.spawn();
        if store.backend() == Backend::Postgres {
            // The console shows what any broker of the cluster writes.
            tasks.push(store.follow_other_brokers(url.clone()));
        }
        let host_link = link.clone();

        let (local_token, local_hash) = crate::local_admin::new_local_token();
        let state = AppState::new(
            store.clone(),
            link,
            keys.ticket_key.clone(),
            metrics,
            audit,
            local_hash,
            crate::console::Joining {
                host_link: host_addr,
                fingerprint: keys.identity.fingerprint().to_string(),
                token: keys.join_token.clone(),
            },
        );
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let listen = config.api_listen;
        let h = handle.clone();
        // Every connection is closed when it goes quiet, TLS or not (see api::idle).
        let idle = crate::api::IdleAcceptor;
        if config.insecure_http {
            let mut server = axum_server::bind(listen).acceptor(idle).handle(h);
            bound_waits(server.http_builder());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = server.serve(app).await {
                    tracing::error!("API server: {e}");
                }
            }));
        } else {
            let tls = keys.identity.tls_server_config(&[b"http/1.1"])?;
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls).acceptor(idle);
            let mut server = axum_server::bind(listen).acceptor(acceptor).handle(h);
            bound_waits(server.http_builder());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = server.serve(app).await {
                    tracing::error!("API server: {e}");
                }
            }));
        }
        let api_addr = handle
            .listening()
            .await
            .with_context(|| format!("cannot listen for the API on {listen}"))?;
        let scheme = if config.insecure_http {
            "http"
        } else {
            "https"
        };
        let local = crate::local_admin::LocalAdmin {
            url: format!("{scheme}://{api_addr}"),
            fingerprint: keys.identity.fingerprint().to_string(),
            token: local_token,
        };
        crate::local_admin::write(&config.data_dir, &local).with_context(|| {
            format!(
                "cannot write {}",
                crate::local_admin::path(&config.data_dir).display()
            )
        })?;
        Ok(Broker {
            api_addr,
            host_addr,
            fingerprint: keys.identity.fingerprint(),
            join_token: keys.join_token,
            store,
            insecure_http: config.insecure_http,
            handle,
            host_endpoint,
            tasks,
            reconciler,
            link: host_link,
        })
    }

    /// Passes of the reconcile loop completed so far (tests wait on it, not on time).
    pub fn reconcile_passes(&self) -> u64 {
        self.reconciler.passes()
    }

    /// The reconcile lease's token, if this broker runs the reconcile loop now.
    pub fn leading(&self) -> Option<i64> {
        self.reconciler.leading()
    }

    /// This broker's name among the brokers of its cluster.
    pub fn broker_id(&self) -> &str {
        self.link.broker_id()
    }

    /// Host registrations since the start: a host whose link dropped registers again.
    pub fn host_registrations(&self) -> u64 {
        self.link.registrations()
    }

    /// The API base URL clients use.
    pub fn url(&self) -> String {
        let scheme = if self.insecure_http { "http" } else { "https" };
        format!("{scheme}://{}", self.api_addr)
    }

    pub async fn shutdown(&self) {
        self.handle.shutdown();
        self.host_endpoint
            .close(0u32.into(), b"broker shutting down");
        for t in &self.tasks {
            t.abort();
        }
        // Another broker of the cluster leads at once instead of after the lease.
        self.reconciler.resign().await;
        // Hosts hear the close before the socket goes.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.host_endpoint.wait_idle(),
        )
        .await;
        self.store.close().await;
    }
}

/// Once the HTTP version is known, a request's headers must arrive within this (a client
/// dribbling them a byte at a time keeps the connection from going idle). hyper also
/// starts it when a kept-alive connection waits for its next request, and closes the
/// connection (without a TLS close_notify) when it runs out: it must outlast the pauses
/// of ordinary clients, or one that sends its next request just then sees the
/// connection torn down (schemathesis did, after 10 s). Clients should drop pooled
/// connections sooner; ours do after [`oriel_transport::api_client::POOL_IDLE`].
pub const NEXT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn bound_waits(http: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    http.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(NEXT_REQUEST_TIMEOUT);
}
