//! Brokers as an operator runs them, for the benchmarks: `oriel-broker serve` processes
//! (the binary built beside this one) on their SQLite file or on a private PostgreSQL
//! server, sharing a cluster key when there are several; and the benchmark's own
//! connection to their store, to create pools and watch what they do.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use oriel::local::{sibling_binary, BrokerProcess};
use oriel_broker::store::Store;
use oriel_broker::temp_postgres::TempPostgres;
use oriel_transport::Fingerprint;

use crate::scrape::{MetricsScraper, Samples};

pub(crate) struct BrokerProcesses {
    /// Kept until the run ends (dropping it stops the server).
    postgres: Option<TempPostgres>,
    pub brokers: Vec<BrokerProcess>,
    scrapers: Vec<MetricsScraper>,
    pub store: Store,
    dir: PathBuf,
}

impl BrokerProcesses {
    /// `n` brokers on `store` (`sqlite`: one, on its own file; `postgres`: a private
    /// server), started one after another so that the first one's keys become the
    /// cluster's.
    pub(crate) async fn start(tag: &str, n: u32, store: &str) -> anyhow::Result<Self> {
        if n == 0 {
            bail!("--brokers must be positive");
        }
        if n > 1 && store != "postgres" {
            bail!("--brokers {n} needs --store postgres: a cluster shares one PostgreSQL database");
        }
        let binary = sibling_binary("oriel-broker")?;
        let dir = std::env::temp_dir().join(format!("oriel-bench-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (postgres, database) = crate::hosts_bench::database_for(store).await?;
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(database) = &database {
            args.extend(["--database".into(), database.into()]);
        }
        if n > 1 {
            let key = dir.join("cluster.key");
            oriel_broker::cluster_key::ClusterKey::create(&key)?;
            args.extend(["--cluster-key".into(), key.into()]);
        }
        let brokers = BrokerProcess::start_all(&binary, &dir, n, &args).await?;
        let url = match database {
            Some(url) => url,
            None => oriel_broker::server::database_url(&brokers[0].dir, None)?,
        };
        let store = Store::open(&url).await?;
        let scrapers = brokers
            .iter()
            .map(|b| MetricsScraper::new(&b.url, b.fingerprint))
            .collect::<anyhow::Result<_>>()?;
        Ok(BrokerProcesses {
            postgres,
            brokers,
            scrapers,
            store,
            dir,
        })
    }

    pub(crate) fn host_addrs(&self) -> Vec<SocketAddr> {
        self.brokers.iter().map(|b| b.host_addr).collect()
    }

    /// The certificate every broker of the cluster serves.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.brokers[0].fingerprint
    }

    /// Broker `i`'s metrics now; empty once it is gone.
    pub(crate) async fn scrape(&self, i: usize) -> Samples {
        if self.brokers[i].child.is_none() {
            return Samples::new();
        }
        self.scrapers[i].scrape().await.unwrap_or_default()
    }

    /// Every broker's metrics now, in order.
    pub(crate) async fn scrape_all(&self) -> Vec<Samples> {
        let mut all = Vec::new();
        for i in 0..self.brokers.len() {
            all.push(self.scrape(i).await);
        }
        all
    }

    /// The broker holding the reconcile lease, as the store says.
    pub(crate) async fn leader(&self) -> Option<usize> {
        let (holder, _) = self.store.lease_holder("reconcile").await.ok()??;
        self.brokers.iter().position(|b| b.id == holder)
    }

    /// Hosts linked to a running broker, as the store says.
    pub(crate) async fn linked_hosts(&self) -> usize {
        let live: Vec<&str> = self
            .brokers
            .iter()
            .filter(|b| b.child.is_some())
            .map(|b| b.id.as_str())
            .collect();
        self.store.list_hosts().await.map_or(0, |hosts| {
            hosts
                .iter()
                .filter(|h| h.linked_by.as_deref().is_some_and(|b| live.contains(&b)))
                .count()
        })
    }

    /// CPU seconds the running brokers used so far.
    pub(crate) fn cpu_s(&self) -> f64 {
        self.brokers
            .iter()
            .filter_map(|b| b.child.as_ref()?.id())
            .map(crate::x11_bench::process_cpu_s)
            .sum()
    }

    pub(crate) async fn stop(mut self) {
        for broker in &mut self.brokers {
            broker.stop().await;
        }
        self.store.close().await;
        drop(self.postgres.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
