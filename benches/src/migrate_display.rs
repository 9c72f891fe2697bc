//! `oriel-bench migrate`'s display figure: two display servers on loopback (tickets
//! signed by a key of the benchmark's, as a broker's are), a kvm desktop of the tiny
//! guest on one, a viewer (`run_resuming`, no broker to fall back on) on it while keys
//! go in 50 times a second, and the desktop moved back and forth with the hosts'
//! `MigrateOut` command. The display gap is the largest interval between frames the
//! viewer showed around each move.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use oriel::{resume, ConnectOptions, InputSender, Session, Shown, StopWhen};
use oriel_display_server::agent::execute;
use oriel_display_server::{DisplayServer, ServerConfig};
use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::host_link::{CommandOutput, HostCommand};
use oriel_protocol::migration_ticket::{sign_migration_ticket, MigrationClaims};
use oriel_protocol::ticket::{sign_ticket, TicketClaims};
use oriel_protocol::InputEvent;
use serde_json::json;

const DESKTOP: &str = "vm";

fn now_unix() -> u64 {
    oriel_transport::unix_micros() / 1_000_000
}

fn nonce() -> [u8; 16] {
    oriel_broker::keys::nonce()
}

fn connect_ticket(key: &SigningKey) -> Vec<u8> {
    let now = now_unix();
    sign_ticket(
        &TicketClaims {
            user: "bench".into(),
            desktop: DESKTOP.into(),
            issued_unix: now,
            expires_unix: now + 60,
            nonce: nonce(),
            generation: 1,
        },
        key,
    )
}

/// Runs `moves` migrations of a `width` x `height` tiny-guest desktop between two
/// display servers with a viewer watching; one JSON line.
pub(crate) async fn run(moves: u32, (width, height): (u32, u32)) -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&nonce());
    seed[16..].copy_from_slice(&nonce());
    let key = SigningKey::from_bytes(&seed);
    let servers: Vec<Arc<DisplayServer>> = (0..2)
        .map(|i| {
            let identity = oriel_transport::Identity::generate(&["localhost".into()])?;
            let server = DisplayServer::start(
                ServerConfig {
                    listen: "127.0.0.1:0".parse()?,
                    require_tickets: true,
                    ..Default::default()
                },
                &identity,
                vec![],
            )?;
            server.set_ticket_key(key.verifying_key());
            server.set_host_id(&format!("host-{i}"));
            anyhow::Ok(Arc::new(server))
        })
        .collect::<Result<_, _>>()?;
    let spec = DesktopSpec::parse(
        "kvm",
        &format!(r#"{{"image":"tiny","width":{width},"height":{height}}}"#),
    )?;
    let create = HostCommand::Create {
        desktop: DESKTOP.into(),
        spec: spec.clone(),
        generation: 1,
    };
    let first = servers[0].clone();
    tokio::task::spawn_blocking(move || execute(&first, create)).await??;
    let desktop = servers[0].desktop(DESKTOP).context("the desktop started")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !desktop
        .source()
        .console_log(4096)
        .is_some_and(|c| c.contains("ready"))
    {
        if Instant::now() > deadline {
            bail!("the tiny guest did not start");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(desktop);

    let mut opts = ConnectOptions::new(servers[0].local_addr()?, servers[0].fingerprint());
    opts.desktop = DESKTOP.into();
    opts.ticket = connect_ticket(&key);
    let session = Session::connect(&opts).await?;
    // Frames shown (time), sessions connected, and the current session's keyboard.
    let shown: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let input: Arc<Mutex<Option<InputSender>>> = Arc::default();
    let sessions = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let viewer = {
        let (shown, input, sessions) = (shown.clone(), input.clone(), sessions.clone());
        tokio::spawn(resume::run_resuming(
            session,
            StopWhen::default(),
            None,
            move |s, _| {
                if matches!(s, Shown::Frame { .. }) {
                    shown.lock().unwrap().push(Instant::now());
                }
            },
            move |e| {
                if let resume::Event::Connected(s) = e {
                    *input.lock().unwrap() = Some(s.input());
                    sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            },
        ))
    };
    let typing = {
        let input = input.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                let sender = input.lock().unwrap().clone();
                if let Some(sender) = sender {
                    for down in [true, false] {
                        let _ = sender.send(InputEvent::Key { code: 30, down }).await;
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut gaps = Vec::new();
    let mut downtimes = Vec::new();
    for i in 0..moves {
        let (from, to) = (
            servers[i as usize % 2].clone(),
            servers[(i as usize + 1) % 2].clone(),
        );
        let now = now_unix();
        let claims = MigrationClaims {
            desktop: DESKTOP.into(),
            spec: spec.clone(),
            generation: 1,
            to_host: format!("host-{}", (i + 1) % 2),
            from_fingerprint: from.fingerprint().0,
            issued_unix: now,
            expires_unix: now + 30,
            nonce: nonce(),
        };
        let command = HostCommand::MigrateOut {
            desktop: DESKTOP.into(),
            to: to.local_addr()?.to_string(),
            fingerprint: to.fingerprint().0,
            ticket: sign_migration_ticket(&claims, &key),
            viewer_ticket: Some(connect_ticket(&key)),
        };
        let before = sessions.load(std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || execute(&from, command)).await??;
        let Some(CommandOutput::Migrated(figures)) = output else {
            bail!("the host did not say it migrated");
        };
        downtimes.push(figures.downtime_us as f64 / 1e3);
        // The viewer follows, then shows frames for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        while sessions.load(std::sync::atomic::Ordering::Relaxed) == before {
            if Instant::now() > deadline || viewer.is_finished() {
                bail!("the viewer did not follow the desktop");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let frames = shown.lock().unwrap().clone();
        let around: Vec<Instant> = frames
            .into_iter()
            .filter(|t| *t + Duration::from_millis(300) >= started)
            .collect();
        let gap = around
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        eprintln!(
            "  move {}: downtime {:.1} ms, display gap {:.1} ms",
            i + 1,
            figures.downtime_us as f64 / 1e3,
            gap.as_secs_f64() * 1e3
        );
        gaps.push(gap.as_secs_f64() * 1e3);
    }
    typing.abort();
    viewer.abort();
    for server in &servers {
        server.shutdown().await;
    }
    Ok(json!({
        "workload": "migrate-display",
        "migrations": moves,
        "screen": format!("{width}x{height}"),
        "keys_per_s": 50,
        "display_gap_ms_p50": crate::migrate_bench::quantile(&gaps, 0.5),
        "display_gap_ms_p99": crate::migrate_bench::quantile(&gaps, 0.99),
        "downtime_ms_p50": crate::migrate_bench::quantile(&downtimes, 0.5),
        "downtime_ms_p99": crate::migrate_bench::quantile(&downtimes, 0.99),
    })
    .to_string())
}
