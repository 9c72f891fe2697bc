//! `oriel-bench console`: the admin console against a large estate. A broker on SQLite
//! holds `--hosts` hosts with `--desktops-per-host` desktops each and `--sessions`
//! active sessions; the figures are the dashboard's time to first byte and to the whole
//! page, the delay from a change in the store to the open page's live update, and the
//! broker's connect throughput with no console open and with `--consoles` open.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use oriel::percentile;
use oriel_broker::password::{new_token, token_hash};
use oriel_broker::store::{now_ms, DesktopState, Role, Store};
use oriel_protocol::api::{ConnectRequest, ConnectResponse};
use oriel_transport::api_client::ApiClient;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub(crate) struct ConsoleArgs {
    /// Hosts in the estate.
    #[arg(long, default_value_t = 1_000)]
    hosts: u32,
    /// Desktops on each host.
    #[arg(long, default_value_t = 10)]
    desktops_per_host: u32,
    /// Active sessions.
    #[arg(long, default_value_t = 500)]
    sessions: u32,
    /// Dashboard loads measured.
    #[arg(long, default_value_t = 30)]
    pages: u32,
    /// Live updates measured.
    #[arg(long, default_value_t = 30)]
    updates: u32,
    /// Consoles open during the second connect storm.
    #[arg(long, default_value_t = 10)]
    consoles: u32,
    /// Seconds of each connect storm.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

pub(crate) fn run(args: ConsoleArgs) -> anyhow::Result<String> {
    crate::broker_bench::on_two_threads(bench(args))
}

/// The session cookie the console sets at sign-in.
const SESSION_COOKIE: &str = "__Host-oriel-console";

async fn bench(args: ConsoleArgs) -> anyhow::Result<String> {
    // The hosts are records, not display servers: none of them is counted down.
    let grace = Duration::from_secs(24 * 3600);
    let (broker, dir) = crate::broker_bench::in_process_broker("console", grace).await?;
    let store = broker.store.clone();
    let users = populate(&store, &args).await?;
    let admin_token = token_for(&store, "console-admin", Role::Admin).await?;

    let tls = oriel_transport::tls::pinned_tls_client_config(broker.fingerprint, &[b"http/1.1"])?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()?;
    let cookie = format!("{SESSION_COOKIE}={admin_token}");
    let dashboard = format!("{}/admin/", broker.url());

    eprintln!("oriel-bench: {} dashboard loads ...", args.pages);
    let (mut first_byte_us, mut page_us, mut page_bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..args.pages {
        let t = Instant::now();
        let resp = http
            .get(&dashboard)
            .header("cookie", &cookie)
            .send()
            .await?
            .error_for_status()?;
        first_byte_us.push(micros(t));
        page_bytes = resp.bytes().await?.len();
        page_us.push(micros(t));
    }

    eprintln!("oriel-bench: {} live updates ...", args.updates);
    let mut events = open_events(&http, &broker.url(), &cookie).await?;
    events.wait_for("\"audit\"").await?;
    let mut update_us = Vec::new();
    for i in 0..args.updates {
        // Apart: the broker reads the estate at most twice a second, so a change
        // right after another waits for that; a lone change is what this measures.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let marker = format!("console-probe-{i}");
        let t = Instant::now();
        store.audit("bench", "probe", &marker).await?;
        events.wait_for(&marker).await?;
        update_us.push(micros(t));
    }
    drop(events);

    eprintln!("oriel-bench: connect storms of {} s ...", args.seconds);
    let api = ApiClient::new(&broker.url(), Some(broker.fingerprint))?;
    let alone = connect_storm(&api, &users, args.seconds).await?;
    let mut consoles = Vec::new();
    for _ in 0..args.consoles {
        let mut events = open_events(&http, &broker.url(), &cookie).await?;
        consoles.push(tokio::spawn(
            async move { while events.next().await.is_ok() {} },
        ));
    }
    // A change every second keeps the open consoles busy re-rendering.
    let churn = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let _ = store.audit("bench", "churn", &format!("churn {i}")).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let watched = connect_storm(&api, &users, args.seconds).await?;
    churn.abort();
    for console in consoles {
        console.abort();
    }
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |us: &[u32], q| f64::from(percentile(us, q)) / 1000.0;
    Ok(json!({
        "workload": "console",
        "hosts": args.hosts,
        "desktops": args.hosts * args.desktops_per_host,
        "sessions": args.sessions,
        "page_first_byte_ms_p50": ms(&first_byte_us, 0.5),
        "page_first_byte_ms_p99": ms(&first_byte_us, 0.99),
        "page_ms_p50": ms(&page_us, 0.5),
        "page_ms_p99": ms(&page_us, 0.99),
        "page_bytes": page_bytes,
        "update_ms_p50": ms(&update_us, 0.5),
        "update_ms_p99": ms(&update_us, 0.99),
        "consoles": args.consoles,
        "connects_per_s_no_console": alone,
        "connects_per_s_with_consoles": watched,
        "connect_ratio_with_consoles": watched / alone.max(f64::MIN_POSITIVE),
    })
    .to_string())
}

fn micros(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// Hosts, a pool with their desktops, users entitled to it (their tokens returned),
/// and active sessions for the first `--sessions` of them.
async fn populate(store: &Store, args: &ConsoleArgs) -> anyhow::Result<Vec<String>> {
    let desktops = args.hosts * args.desktops_per_host;
    eprintln!(
        "oriel-bench: creating {} hosts, {desktops} desktops, {} sessions ...",
        args.hosts, args.sessions
    );
    let pool = crate::broker_bench::bench_pool(store, desktops).await?;
    let mut desktop_ids = Vec::new();
    for h in 0..args.hosts {
        let host = store
            .register_host(
                &format!("host-{h}"),
                &format!("10.0.{}.{}:4433", h / 250, h % 250),
                &"0".repeat(64),
                i64::from(args.desktops_per_host),
                &token_hash(&new_token()),
            )
            .await?;
        // Hosts of a busy estate, each loaded differently.
        let load = oriel_protocol::host_link::HostLoad {
            cpu_permille: h * 37 % 1000,
            cpus: 32,
            memory_used: (64 + u64::from(h % 128)) << 30,
            memory_total: 256 << 30,
        };
        store
            .record_heartbeat(&host.id, now_ms(), i64::from(args.desktops_per_host), &load)
            .await?;
        for d in 0..args.desktops_per_host {
            let desktop = store
                .create_desktop(
                    &pool.id,
                    Some(&host.id),
                    &format!("bench-{h}-{d}"),
                    DesktopState::Ready,
                )
                .await?;
            desktop_ids.push(desktop.id);
        }
    }
    store.create_group("everyone").await?;
    store.entitle_group("bench", "everyone").await?;
    let mut tokens = Vec::new();
    // Those with sessions, then 200 who connect in the storms.
    for i in 0..args.sessions + 200 {
        let name = format!("user{i}");
        let token = token_for(store, &name, Role::User).await?;
        store.add_group_member("everyone", &name).await?;
        if i < args.sessions {
            let user = store.user_by_name(&name).await?.context("user")?;
            let desktop = desktop_ids
                .get(usize::try_from(i).unwrap_or(usize::MAX))
                .context("fewer desktops than sessions")?;
            store.start_session(&user.id, desktop).await?;
        } else {
            tokens.push(token);
        }
    }
    Ok(tokens)
}

/// A new account with `role` and a live login token for it.
async fn token_for(store: &Store, name: &str, role: Role) -> anyhow::Result<String> {
    let user = store.create_user(name, "$argon2id$unused", role).await?;
    let token = new_token();
    store
        .insert_api_token(&token_hash(&token), &user.id, now_ms() + 3_600_000)
        .await?;
    Ok(token)
}

/// Connects per second over `seconds`, 16 clients at once, users taken in turn.
async fn connect_storm(api: &ApiClient, tokens: &[String], seconds: u64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let tokens = Arc::new(tokens.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (api, next, done, tokens) =
                (api.clone(), next.clone(), done.clone(), tokens.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let i = usize::try_from(next.fetch_add(1, Relaxed) % tokens.len() as u64)
                        .unwrap_or(0);
                    let client = api.clone().with_token(tokens[i].clone());
                    let request = ConnectRequest {
                        pool: "bench".into(),
                    };
                    let answer: Result<ConnectResponse, _> =
                        client.post("/connect", &request).await;
                    if answer.is_ok() {
                        done.fetch_add(1, Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    Ok(done.load(Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// The dashboard's event stream, read as text.
struct Events {
    response: reqwest::Response,
    seen: String,
}

async fn open_events(http: &reqwest::Client, base: &str, cookie: &str) -> anyhow::Result<Events> {
    let response = http
        .get(format!("{base}/admin/events"))
        .header("cookie", cookie)
        .send()
        .await?
        .error_for_status()?;
    Ok(Events {
        response,
        seen: String::new(),
    })
}

impl Events {
    /// The next piece of the stream.
    async fn next(&mut self) -> anyhow::Result<()> {
        let chunk = self
            .response
            .chunk()
            .await?
            .context("the event stream ended")?;
        self.seen.push_str(&String::from_utf8_lossy(&chunk));
        Ok(())
    }

    /// Reads until `text` has come (within 30 s), then forgets what came before it.
    async fn wait_for(&mut self, text: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = self.seen.find(text) {
                self.seen.drain(..at + text.len());
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, self.next())
                .await
                .with_context(|| format!("{text:?} did not come within 30 s"))??;
        }
    }
}
