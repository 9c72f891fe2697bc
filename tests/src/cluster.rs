//! Several `oriel-broker` processes on one private PostgreSQL server, sharing a
//! cluster key, with display servers linked to them: what a multi-broker estate runs.

use std::path::PathBuf;
use std::sync::Arc;

use oriel::launcher::Login;
use oriel_broker::store::{Role, Store};
use oriel_broker::temp_postgres::TempPostgres;
use oriel_display_server::agent::{self, AgentConfig};
use oriel_display_server::DisplayServer;

pub use oriel::local::BrokerProcess;

pub struct Cluster {
    pub dir: PathBuf,
    pub postgres: TempPostgres,
    pub database: String,
    /// The test's own connection to the shared store.
    pub store: Store,
    pub brokers: Vec<BrokerProcess>,
    pub hosts: Vec<(Arc<DisplayServer>, tokio::task::JoinHandle<()>)>,
    pub join_token: String,
}

impl Cluster {
    /// `n` brokers on one new PostgreSQL database, started one after another (the
    /// first one's keys become the cluster's).
    pub async fn start(tag: &str, n: usize) -> Cluster {
        let dir = crate::temp_dir(tag);
        let postgres = TempPostgres::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
        let database = postgres.create_database("oriel").await.unwrap();
        let key = dir.join("cluster.key");
        oriel_broker::cluster_key::ClusterKey::create(&key).unwrap();
        let args: [&std::ffi::OsStr; 6] = [
            "--restart-grace".as_ref(),
            "0s".as_ref(),
            "--database".as_ref(),
            database.as_ref(),
            "--cluster-key".as_ref(),
            key.as_os_str(),
        ];
        let binary = crate::workspace_binary("oriel-broker");
        let n = u32::try_from(n).unwrap();
        let brokers = BrokerProcess::start_all(&binary, &dir, n, &args)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let join_token = brokers[0].join_token().unwrap();
        let store = Store::open(&database).await.unwrap();
        Cluster {
            dir,
            postgres,
            database,
            store,
            brokers,
            hosts: Vec::new(),
            join_token,
        }
    }

    /// A display server that joins the cluster, linking first to broker `first` and
    /// failing over to the others in turn.
    pub fn add_host(&mut self, name: &str, capacity: u32, first: usize) -> Arc<DisplayServer> {
        let server = crate::broker::host_server();
        let n = self.brokers.len();
        let brokers = (0..n)
            .map(|i| self.brokers[(first + i) % n].host_addr)
            .collect();
        let agent = tokio::spawn(agent::run(
            server.clone(),
            AgentConfig {
                brokers,
                broker_fingerprint: self.brokers[0].fingerprint,
                join_token: Some(self.join_token.clone()),
                name: name.into(),
                display_address: server.local_addr().unwrap().to_string(),
                web_address: server.web_local_addr().map(|a| a.to_string()),
                capacity,
                data_dir: self.dir.join(name),
            },
        ));
        self.hosts.push((server.clone(), agent));
        server
    }

    /// Which broker holds the reconcile lease now.
    pub async fn leader(&self) -> Option<usize> {
        let (holder, _) = self.store.lease_holder("reconcile").await.ok()??;
        self.brokers.iter().position(|b| b.id == holder)
    }

    /// Kills broker `i` with SIGKILL: no goodbye to its hosts, its lease or its store.
    pub async fn kill(&mut self, i: usize) {
        self.brokers[i].kill().await;
    }

    /// A pinned HTTPS client (the cluster's one certificate).
    pub fn http(&self) -> reqwest::Client {
        let tls = oriel_transport::tls::pinned_tls_client_config(
            self.brokers[0].fingerprint,
            &[b"http/1.1"],
        )
        .unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap()
    }

    /// An account with `role`, logged in at broker `at` (the token is made in the store:
    /// argon2 is not what these tests are about).
    pub async fn login(&self, name: &str, role: Role, at: usize) -> Login {
        crate::broker::create_account(&self.store, name, role).await;
        let broker = &self.brokers[at];
        crate::broker::login_in_store(&self.store, name, &broker.url, broker.fingerprint).await
    }

    pub async fn shutdown(mut self) {
        for (server, agent) in &self.hosts {
            agent.abort();
            server.shutdown().await;
        }
        for i in 0..self.brokers.len() {
            self.kill(i).await;
        }
        self.store.close().await;
    }
}
