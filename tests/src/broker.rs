//! A broker on loopback with display servers joined to it, for the broker tests.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oriel::launcher::Login;
use oriel_broker::password::{new_token, token_hash};
use oriel_broker::store::{now_ms, Assignment, DesktopState, NewPool, Role, Store};
use oriel_broker::temp_postgres::TempPostgres;
use oriel_broker::{Broker, BrokerConfig};
use oriel_display_server::agent::{self, AgentConfig};
use oriel_display_server::{DisplayServer, ServerConfig};

pub struct Harness {
    pub dir: PathBuf,
    pub broker: Broker,
    pub hosts: Vec<(Arc<DisplayServer>, tokio::task::JoinHandle<()>)>,
    /// The private PostgreSQL server the broker's store is on, if not SQLite.
    pub postgres: Option<TempPostgres>,
}

impl Harness {
    /// A broker on SQLite that judges silent hosts at once (no restart grace); on a
    /// private PostgreSQL server instead when `ORIEL_TEST_STORE=postgres`.
    pub async fn start(tag: &str) -> Harness {
        if std::env::var("ORIEL_TEST_STORE").is_ok_and(|s| s == "postgres") {
            return Self::start_on_postgres(tag).await;
        }
        Self::start_on_sqlite(tag).await
    }

    /// A broker on its SQLite file, whatever `ORIEL_TEST_STORE` says (for tests of
    /// that file).
    pub async fn start_on_sqlite(tag: &str) -> Harness {
        let dir = crate::temp_dir(tag);
        let broker = start_broker(&dir.join("broker"), None, Duration::ZERO).await;
        Harness {
            dir,
            broker,
            hosts: Vec::new(),
            postgres: None,
        }
    }

    /// The same on a private PostgreSQL server.
    pub async fn start_on_postgres(tag: &str) -> Harness {
        let dir = crate::temp_dir(tag);
        let postgres = TempPostgres::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
        let url = postgres.create_database("oriel").await.unwrap();
        let config = BrokerConfig {
            database: Some(url),
            ..broker_config(&dir.join("broker"), None, Duration::ZERO)
        };
        let broker = Broker::start(config).await.expect("broker starts");
        Harness {
            dir,
            broker,
            hosts: Vec::new(),
            postgres: Some(postgres),
        }
    }

    /// A pinned HTTPS client of the broker's API, connecting from `from` (any
    /// loopback address: 127.0.0.2 is another client than 127.0.0.1).
    pub fn http_from(&self, from: Option<std::net::IpAddr>) -> reqwest::Client {
        let tls =
            oriel_transport::tls::pinned_tls_client_config(self.broker.fingerprint, &[b"http/1.1"])
                .unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .local_address(from)
            .build()
            .unwrap()
    }

    /// The URL of an API path, e.g. `/login`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.broker.url())
    }

    /// The value of a metric line of `/metrics` (the first that starts with `series`).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http_from(None)
            .get(format!("{}/metrics", self.broker.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {series} in:\n{text}"))
    }

    /// Waits until the reconcile loop has made `n` more passes.
    pub async fn passes(&self, n: u64) {
        let target = self.broker.reconcile_passes() + n;
        wait_for(&format!("{n} reconcile passes"), || async {
            self.broker.reconcile_passes() >= target
        })
        .await;
    }

    pub fn store(&self) -> &Store {
        &self.broker.store
    }

    /// Starts a display server that joins the broker with the join token.
    pub fn add_host(&mut self, name: &str, capacity: u32) -> Arc<DisplayServer> {
        let server = host_server();
        let address = server.local_addr().unwrap();
        self.join(&server, name, capacity, address);
        server
    }

    /// Like [`Harness::add_host`], but clients reach the host through a relay the test
    /// can cut (a network outage between clients and host).
    pub async fn add_host_behind_relay(
        &mut self,
        name: &str,
        capacity: u32,
    ) -> (Arc<DisplayServer>, oriel_netem::Relay) {
        let server = host_server();
        let relay = oriel_netem::Relay::start(server.local_addr().unwrap(), Default::default())
            .await
            .expect("relay starts");
        self.join(&server, name, capacity, relay.addr());
        (server, relay)
    }

    /// Like [`Harness::add_host_behind_relay`], for browsers: the relay fronts the
    /// host's WebTransport endpoint.
    pub async fn add_host_behind_web_relay(
        &mut self,
        name: &str,
        capacity: u32,
    ) -> (Arc<DisplayServer>, oriel_netem::Relay) {
        let server = host_server();
        let web = server.web_local_addr().expect("the host takes browsers");
        let relay = oriel_netem::Relay::start(web, Default::default())
            .await
            .expect("relay starts");
        let address = server.local_addr().unwrap();
        self.join_as(&server, name, capacity, address, Some(relay.addr()));
        (server, relay)
    }

    /// Runs the host agent of `server`, telling the broker clients dial `address`.
    fn join(
        &mut self,
        server: &Arc<DisplayServer>,
        name: &str,
        capacity: u32,
        address: std::net::SocketAddr,
    ) {
        self.join_as(server, name, capacity, address, server.web_local_addr());
    }

    /// [`Harness::join`], with browsers dialling `web` instead of the endpoint itself.
    fn join_as(
        &mut self,
        server: &Arc<DisplayServer>,
        name: &str,
        capacity: u32,
        address: std::net::SocketAddr,
        web: Option<std::net::SocketAddr>,
    ) {
        let agent = tokio::spawn(agent::run(
            server.clone(),
            AgentConfig {
                brokers: vec![self.broker.host_addr],
                broker_fingerprint: self.broker.fingerprint,
                join_token: Some(self.broker.join_token.clone()),
                name: name.into(),
                display_address: address.to_string(),
                web_address: web.map(|a| a.to_string()),
                capacity,
                data_dir: self.dir.join(name),
            },
        ));
        self.hosts.push((server.clone(), agent));
    }

    /// Creates a pool of synthetic desktops (`params` as the source takes them).
    pub async fn pool(
        &self,
        name: &str,
        assignment: Assignment,
        min_ready: i64,
        max_size: i64,
        params: &str,
    ) {
        self.pool_of("synthetic", name, assignment, min_ready, max_size, params)
            .await
    }

    /// Creates a pool of `kind` desktops.
    pub async fn pool_of(
        &self,
        kind: &str,
        name: &str,
        assignment: Assignment,
        min_ready: i64,
        max_size: i64,
        params: &str,
    ) {
        create_pool(
            self.store(),
            kind,
            name,
            assignment,
            (min_ready, max_size),
            params,
        )
        .await
    }

    /// A user entitled to `pool`, logged in (token made directly in the store, to keep
    /// argon2 out of tests about something else).
    pub async fn user(&self, name: &str, pool: &str) -> Login {
        self.account(name, Role::User).await;
        self.store().entitle_user(pool, name).await.unwrap();
        self.login_of(name).await
    }

    /// A user with a real password (argon2), entitled to `pool`, not logged in.
    pub async fn user_with_password(
        &self,
        name: &str,
        password: &str,
        role: Role,
        pool: Option<&str>,
    ) {
        let hash = oriel_broker::password::hash_password(password).unwrap();
        self.store().create_user(name, &hash, role).await.unwrap();
        if let Some(pool) = pool {
            self.store().entitle_user(pool, name).await.unwrap();
        }
    }

    /// An administrator, logged in.
    pub async fn admin(&self, name: &str) -> Login {
        self.staff(name, Role::Admin).await
    }

    /// An account with `role`, logged in.
    pub async fn staff(&self, name: &str, role: Role) -> Login {
        self.account(name, role).await;
        self.login_of(name).await
    }

    async fn account(&self, name: &str, role: Role) {
        create_account(self.store(), name, role).await
    }

    /// A session token for `name`, as a login would give.
    async fn login_of(&self, name: &str) -> Login {
        login_in_store(
            self.store(),
            name,
            &self.broker.url(),
            self.broker.fingerprint,
        )
        .await
    }

    /// Waits until `pool` has `n` ready desktops.
    pub async fn ready(&self, pool: &str, n: usize) {
        wait_for(&format!("{n} ready desktops in pool {pool}"), || async {
            self.count(pool, DesktopState::Ready).await == n
        })
        .await;
    }

    /// Desktops of `pool` in `state`.
    pub async fn count(&self, pool: &str, state: DesktopState) -> usize {
        let pool = self.store().pool_by_name(pool).await.unwrap().unwrap();
        self.store()
            .list_desktops(Some(&pool.id))
            .await
            .unwrap()
            .iter()
            .filter(|d| d.state == state)
            .count()
    }

    pub async fn shutdown(self) {
        for (server, agent) in &self.hosts {
            agent.abort();
            server.shutdown().await;
        }
        self.broker.shutdown().await;
    }
}

/// Creates a pool of `kind` desktops with `(min_ready, max_size)` in `store`.
pub async fn create_pool(
    store: &Store,
    kind: &str,
    name: &str,
    assignment: Assignment,
    (min_ready, max_size): (i64, i64),
    params: &str,
) {
    store
        .create_pool(&NewPool {
            name: name.into(),
            source_kind: kind.into(),
            source_params: params.into(),
            assignment,
            min_ready,
            max_size,
            idle_timeout_s: 3600,
            disconnect_timeout_s: 900,
        })
        .await
        .unwrap();
}

/// An account with `role` whose password nobody knows (argon2 stays out of tests about
/// something else).
pub async fn create_account(store: &Store, name: &str, role: Role) {
    store
        .create_user(
            name,
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
            role,
        )
        .await
        .unwrap();
}

/// A session token for `name` made directly in `store`, as a login at the broker at
/// `url` would give.
pub async fn login_in_store(
    store: &Store,
    name: &str,
    url: &str,
    fingerprint: oriel_transport::Fingerprint,
) -> Login {
    let token = new_token();
    let user = store.user_by_name(name).await.unwrap().unwrap();
    store
        .insert_api_token(&token_hash(&token), &user.id, now_ms() + 3_600_000)
        .await
        .unwrap();
    Login {
        broker: url.to_string(),
        fallbacks: Vec::new(),
        fingerprint: Some(fingerprint.to_string()),
        user: name.into(),
        token,
        expires_unix: u64::MAX,
    }
}

/// A broker on `data_dir`, listening on loopback (`ports`: the API's and the host
/// link's, for a restart on the same addresses; `None`: any free ones).
pub async fn start_broker(
    data_dir: &std::path::Path,
    ports: Option<(u16, u16)>,
    restart_grace: Duration,
) -> Broker {
    let config = broker_config(data_dir, ports, restart_grace);
    // A restart on the same ports may find them held a moment longer by the sockets
    // of the broker that just stopped.
    for _ in 0..100 {
        match Broker::start(config.clone()).await {
            Ok(broker) => return broker,
            Err(e) if ports.is_some() && format!("{e:#}").contains("in use") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("broker starts: {e:#}"),
        }
    }
    panic!("the broker's ports stayed in use");
}

/// A broker's configuration on loopback, with its store in `data_dir`.
fn broker_config(
    data_dir: &std::path::Path,
    ports: Option<(u16, u16)>,
    restart_grace: Duration,
) -> BrokerConfig {
    let (api, hosts) = ports.unwrap_or((0, 0));
    BrokerConfig {
        data_dir: data_dir.to_path_buf(),
        api_listen: ([127, 0, 0, 1], api).into(),
        host_listen: ([127, 0, 0, 1], hosts).into(),
        database: None,
        insecure_http: false,
        restart_grace,
        cluster_key: None,
    }
}

/// Polls `check` every 50 ms for up to 30 s; panics naming `what` if it never holds.
pub async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_up_to(Duration::from_secs(30), what, check).await
}

/// Polls `check` every 50 ms for up to `limit`; panics naming `what` if it never holds.
pub async fn wait_up_to<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A display server as broker hosts run: no desktops of its own, tickets required,
/// browsers taken.
pub fn host_server() -> Arc<DisplayServer> {
    let identity = oriel_transport::Identity::generate(&[]).unwrap();
    Arc::new(
        DisplayServer::start(
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                web_listen: Some("127.0.0.1:0".parse().unwrap()),
                require_tickets: true,
                // Each host its own, as on separate machines.
                suspend_dir: crate::temp_dir(&format!("suspended-{}", identity.fingerprint())),
                ..Default::default()
            },
            &identity,
            vec![],
        )
        .unwrap(),
    )
}

/// A config directory (for `XDG_CONFIG_HOME`) holding `login` where `oriel login` saves
/// it, so the `oriel` binary runs as that user.
pub fn config_with_login(tag: &str, login: &Login) -> PathBuf {
    let config = crate::temp_dir(tag);
    let saved = config.join("oriel/login.json");
    std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
    std::fs::write(&saved, serde_json::to_string(login).unwrap()).unwrap();
    config
}

/// `login` connected to a desktop of `pool` with the real client, in the background
/// until its session ends; and what the broker answered.
pub async fn connect_in_background(
    login: &Login,
    pool: &str,
) -> (
    tokio::task::JoinHandle<Result<oriel::Outcome, oriel::ClientError>>,
    oriel_protocol::api::ConnectResponse,
) {
    let (opts, reply) = oriel::launcher::connect_options(login, pool).await.unwrap();
    let session = oriel::Session::connect(&opts).await.unwrap();
    let run = tokio::spawn(session.run(oriel::StopWhen::default(), None));
    (run, reply)
}
