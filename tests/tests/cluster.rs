//! Three `oriel-broker` processes on one PostgreSQL server (issue 16): one identity,
//! one reconcile leader, commands that reach a host whichever broker holds its link,
//! a connect storm that gives every desktop once, a leader killed with SIGKILL.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use oriel_broker::store::{Assignment, DesktopState, HostState, Role};
use oriel_e2e::broker::{connect_in_background, create_pool, wait_up_to};
use oriel_e2e::cluster::Cluster;

const IDLE: &str = r#"{"workload":"idle","width":640,"height":480}"#;
const TYPING: &str = r#"{"workload":"typing","width":640,"height":480}"#;

async fn pool(c: &Cluster, name: &str, min_ready: i64, max_size: i64, params: &str) {
    let sizes = (min_ready, max_size);
    create_pool(
        &c.store,
        "synthetic",
        name,
        Assignment::Floating,
        sizes,
        params,
    )
    .await
}

async fn count(c: &Cluster, pool: &str, state: DesktopState) -> usize {
    let pool = c.store.pool_by_name(pool).await.unwrap().unwrap();
    let desktops = c.store.list_desktops(Some(&pool.id)).await.unwrap();
    desktops.iter().filter(|d| d.state == state).count()
}

/// Which broker (index) holds each host's link, by host name.
async fn links(c: &Cluster) -> HashMap<String, Option<usize>> {
    let hosts = c.store.list_hosts().await.unwrap();
    hosts
        .into_iter()
        .map(|h| {
            let at = h
                .linked_by
                .and_then(|id| c.brokers.iter().position(|b| b.id == id));
            (h.name, at)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_brokers_are_one_and_a_storm_gets_each_desktop_once() {
    let mut c = Cluster::start("cluster-storm", 3).await;
    let fingerprints: HashSet<_> = c
        .brokers
        .iter()
        .map(|b| b.fingerprint.to_string())
        .collect();
    assert_eq!(fingerprints.len(), 1, "one certificate for the cluster");
    wait_up_to(Duration::from_secs(10), "a leader", || async {
        c.leader().await.is_some()
    })
    .await;
    // Hosts linked to every broker: the leader creates desktops on all of them, most
    // through the other brokers' links.
    for i in 0..4 {
        c.add_host(&format!("h{i}"), 50, i % 3);
    }
    wait_up_to(Duration::from_secs(30), "four linked hosts", || async {
        let l = links(&c).await;
        l.len() == 4 && l.values().all(Option::is_some)
    })
    .await;
    let linked: HashSet<_> = links(&c).await.into_values().flatten().collect();
    assert_eq!(linked.len(), 3, "hosts are linked to all three brokers");
    pool(&c, "storm", 200, 200, IDLE).await;
    wait_up_to(Duration::from_secs(240), "200 ready desktops", || async {
        count(&c, "storm", DesktopState::Ready).await == 200
    })
    .await;
    let leaders: HashSet<_> = c
        .store
        .list_desktops(None)
        .await
        .unwrap()
        .iter()
        .filter_map(|d| d.host_id.clone())
        .collect();
    assert_eq!(leaders.len(), 4, "desktops were placed on every host");

    // 600 users, each its own client (its own TLS connection), spread over the brokers.
    let mut logins = Vec::new();
    for i in 0..600 {
        let login = c.login(&format!("u{i}"), Role::User, i % 3).await;
        c.store.entitle_user("storm", &login.user).await.unwrap();
        logins.push(login);
    }
    let fingerprint = c.brokers[0].fingerprint;
    let storm: Vec<_> = logins
        .iter()
        .map(|login| {
            let (url, token) = (login.broker.clone(), login.token.clone());
            tokio::spawn(async move {
                let tls =
                    oriel_transport::tls::pinned_tls_client_config(fingerprint, &[b"http/1.1"])
                        .unwrap();
                let http = reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .build()
                    .unwrap();
                let answer = http
                    .post(format!("{url}/api/v1/connect"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({"pool": "storm"}))
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                let body: serde_json::Value = answer.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut desktops = Vec::new();
    let mut exhausted = 0;
    for task in storm {
        match task.await.unwrap() {
            (200, body) => desktops.push(body["desktop"].as_str().unwrap().to_string()),
            (409, body) => {
                assert!(
                    body["error"].as_str().unwrap().contains("pool exhausted"),
                    "{body}"
                );
                exhausted += 1;
            }
            (status, body) => panic!("connect answered {status}: {body}"),
        }
    }
    let distinct: HashSet<_> = desktops.iter().collect();
    assert_eq!(desktops.len(), 200);
    assert_eq!(distinct.len(), 200, "no desktop was given twice");
    assert_eq!(exhausted, 400);

    // A ticket from one broker opens a desktop on a host linked to another: the
    // ticket key is the cluster's.
    let links = links(&c).await;
    let hosts = c.store.list_hosts().await.unwrap();
    let mut crossed = None;
    for (i, login) in logins.iter().enumerate().take(30) {
        let user = c.store.user_by_name(&login.user).await.unwrap().unwrap();
        let held = c.store.list_desktops(None).await.unwrap();
        let Some(d) = held
            .iter()
            .find(|d| d.assigned_user_id.as_deref() == Some(&user.id))
        else {
            continue;
        };
        let host = hosts
            .iter()
            .find(|h| Some(&h.id) == d.host_id.as_ref())
            .unwrap();
        if links[&host.name] != Some(i % 3) {
            crossed = Some(login.clone());
            break;
        }
    }
    let login = crossed.expect("some user's desktop is on a host linked to another broker");
    let (run, reply) = connect_in_background(&login, "storm").await;
    let server = c
        .hosts
        .iter()
        .map(|(s, _)| s.clone())
        .find(|s| s.desktop(&reply.desktop).is_some())
        .unwrap();
    wait_up_to(
        Duration::from_secs(30),
        "the session's first frames",
        || async { server.stats().frames_acked.load(Ordering::Relaxed) > 0 },
    )
    .await;
    assert!(
        !run.is_finished(),
        "the host accepted the other broker's ticket"
    );
    run.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_cross_brokers_and_a_killed_leader_is_replaced() {
    let mut c = Cluster::start("cluster-failover", 3).await;
    for i in 0..3 {
        c.add_host(&format!("h{i}"), 6, i);
    }
    wait_up_to(Duration::from_secs(30), "three linked hosts", || async {
        let l = links(&c).await;
        l.len() == 3 && l.values().all(Option::is_some)
    })
    .await;
    pool(&c, "p", 3, 12, TYPING).await;
    wait_up_to(Duration::from_secs(60), "3 ready desktops", || async {
        count(&c, "p", DesktopState::Ready).await == 3
    })
    .await;

    // A user connects; an admin acts on the desktop through a broker that does not
    // hold its host's link.
    let alice = c.login("alice", Role::User, 0).await;
    c.store.entitle_user("p", "alice").await.unwrap();
    let (run, reply) = connect_in_background(&alice, "p").await;
    let desktop = c
        .store
        .list_desktops(None)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.name == reply.desktop)
        .unwrap();
    let host = c
        .store
        .host_by_id(desktop.host_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    let holder = links(&c).await[&host.name].unwrap();
    let other = (holder + 1) % 3;
    let admin = c.login("root", Role::Admin, other).await;
    let http = c.http();
    let api = |path: &str| format!("{}/api/v1{path}", c.brokers[other].url);
    let thumb = http
        .get(api(&format!(
            "/admin/desktops/{}/thumbnail?width=160&height=120",
            desktop.id
        )))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200, "{:?}", thumb.text().await);
    let png = thumb.bytes().await.unwrap();
    let picture = image::load_from_memory(&png).expect("a PNG from the host");
    assert_eq!((picture.width(), picture.height()), (160, 120));

    // Force log-off through the other broker: the host ends the session (once).
    let mut session = None;
    let started = Instant::now();
    while session.is_none() && started.elapsed() < Duration::from_secs(30) {
        let active = c.store.list_sessions(true).await.unwrap();
        session = active
            .into_iter()
            .find(|s| s.desktop_id == desktop.id)
            .map(|s| s.id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let session = session.expect("alice's session in the store");
    let off = http
        .post(api(&format!("/admin/sessions/{session}/logoff")))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert!(off.status().is_success(), "{:?}", off.text().await);
    let ended = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the host ended alice's session");
    assert!(ended.is_ok());
    wait_up_to(
        Duration::from_secs(10),
        "relayed commands cleaned up",
        || async { c.store.host_commands_in_flight().await.unwrap() == 0 },
    )
    .await;

    // Bob watches a desktop while the leader is killed.
    let leader = c.leader().await.expect("a leader");
    let survivor = (leader + 1) % 3;
    let bob = c.login("bob", Role::User, survivor).await;
    c.store.entitle_user("p", "bob").await.unwrap();
    wait_up_to(
        Duration::from_secs(60),
        "a ready desktop for bob",
        || async { count(&c, "p", DesktopState::Ready).await >= 1 },
    )
    .await;
    let (bob_run, bob_reply) = connect_in_background(&bob, "p").await;
    let bob_server = c
        .hosts
        .iter()
        .map(|(s, _)| s.clone())
        .find(|s| s.desktop(&bob_reply.desktop).is_some())
        .unwrap();
    wait_up_to(Duration::from_secs(30), "bob's first frames", || async {
        bob_server.stats().frames_acked.load(Ordering::Relaxed) > 0
    })
    .await;

    let killed_id = c.brokers[leader].id.clone();
    let killed_at = Instant::now();
    c.kill(leader).await;
    wait_up_to(Duration::from_secs(10), "a new leader", || async {
        c.leader().await.is_some_and(|l| l != leader)
    })
    .await;
    let took_over = killed_at.elapsed();
    wait_up_to(
        Duration::from_secs(30),
        "every host linked to a survivor",
        || async {
            links(&c)
                .await
                .values()
                .all(|b| b.is_some_and(|b| b != leader))
        },
    )
    .await;
    let relinked = killed_at.elapsed();
    eprintln!("leader {killed_id} killed: new leader after {took_over:?}, hosts re-linked after {relinked:?}");

    // Bob's display session never went through the broker: it still runs.
    let acked = bob_server.stats().frames_acked.load(Ordering::Relaxed);
    wait_up_to(
        Duration::from_secs(10),
        "bob's frames after the kill",
        || async { bob_server.stats().frames_acked.load(Ordering::Relaxed) > acked + 5 },
    )
    .await;
    assert!(!bob_run.is_finished(), "bob's session kept running");

    // The new leader keeps the pool's spares, and nobody gets a held desktop.
    let mut given = HashSet::from([bob_reply.desktop.clone()]);
    // Carol and Dave logged in at the broker that was killed; their logins know the
    // others, and the launcher fails over to them.
    for name in ["carol", "dave"] {
        let mut login = c.login(name, Role::User, leader).await;
        login.fallbacks = c
            .brokers
            .iter()
            .filter(|b| b.child.is_some())
            .map(|b| b.url.clone())
            .collect();
        c.store.entitle_user("p", name).await.unwrap();
        let (_, reply) =
            oriel::launcher::connect_options_waiting(&login, "p", Duration::from_secs(60), |_| {})
                .await
                .unwrap();
        assert!(given.insert(reply.desktop), "a desktop given twice");
    }
    wait_up_to(Duration::from_secs(60), "the spares refilled", || async {
        count(&c, "p", DesktopState::Ready).await >= 3
    })
    .await;
    bob_run.abort();
    c.shutdown().await;
}

/// Two brokers, host `h0` linked to the first, and pool `p` with 2 ready desktops.
async fn two_brokers_one_host_two_ready(tag: &str) -> Cluster {
    let mut c = Cluster::start(tag, 2).await;
    c.add_host("h0", 8, 0);
    pool(&c, "p", 2, 8, IDLE).await;
    wait_up_to(Duration::from_secs(60), "2 ready desktops", || async {
        count(&c, "p", DesktopState::Ready).await == 2
    })
    .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_is_survived_without_restarting_brokers() {
    let mut c = two_brokers_one_host_two_ready("cluster-pg-restart").await;
    let admin = c.login("root", Role::Admin, 0).await;
    let http = c.http();
    let health = |i: usize| {
        let (http, url) = (http.clone(), c.brokers[i].url.clone());
        async move {
            match http.get(format!("{url}/healthz")).send().await {
                Ok(answer) => answer.status().as_u16(),
                Err(_) => 0,
            }
        }
    };
    assert_eq!(health(0).await, 200);
    assert_eq!(health(1).await, 200);

    // Load: connects and log-offs through both brokers, all along.
    let mut users = Vec::new();
    for i in 0..4 {
        let login = c.login(&format!("u{i}"), Role::User, i % 2).await;
        c.store.entitle_user("p", &login.user).await.unwrap();
        users.push(login);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (http, stop) = (http.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answers: HashMap<u16, usize> = HashMap::new();
            let mut odd = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for login in &users {
                    for op in ["connect", "logoff"] {
                        let answer = http
                            .post(format!("{}/api/v1/{op}", login.broker))
                            .bearer_auth(&login.token)
                            .json(&serde_json::json!({"pool": "p"}))
                            .send()
                            .await
                            .unwrap();
                        let status = answer.status().as_u16();
                        *answers.entry(status).or_default() += 1;
                        if status >= 500 && status != 503 {
                            odd.push(answer.text().await.unwrap_or_default());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (answers, odd)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    c.postgres.stop().unwrap();
    wait_up_to(
        Duration::from_secs(10),
        "both brokers unhealthy",
        || async { health(0).await == 503 && health(1).await == 503 },
    )
    .await;
    let refused = http
        .post(format!("{}/api/v1/admin/pools", c.brokers[1].url))
        .bearer_auth(&admin.token)
        .json(
            &serde_json::json!({"name": "new", "source_kind": "synthetic",
            "min_ready": 0, "max_size": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let text = refused.text().await.unwrap();
    assert!(text.contains("database is unavailable"), "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    c.postgres.resume().unwrap();
    wait_up_to(
        Duration::from_secs(30),
        "both brokers healthy again",
        || async { health(0).await == 200 && health(1).await == 200 },
    )
    .await;
    // The same processes carry on: they lead, place and answer again.
    for b in &mut c.brokers {
        let child = b.child.as_mut().unwrap();
        assert!(child.try_wait().unwrap().is_none(), "{} kept running", b.id);
    }
    wait_up_to(Duration::from_secs(30), "a leader again", || async {
        c.leader().await.is_some()
    })
    .await;
    let late = c.login("late", Role::User, 1).await;
    c.store.entitle_user("p", "late").await.unwrap();
    oriel::launcher::connect_options_waiting(&late, "p", Duration::from_secs(60), |_| {})
        .await
        .expect("a connect after the database came back");
    stop.store(true, Ordering::Relaxed);
    let (answers, odd) = load.await.unwrap();
    eprintln!("answers during the restart: {answers:?}");
    assert!(odd.is_empty(), "errors other than 503: {odd:?}");
    assert!(answers.get(&503).copied().unwrap_or(0) > 0, "{answers:?}");
    assert!(answers.get(&200).copied().unwrap_or(0) > 0, "{answers:?}");
    c.shutdown().await;
}

/// The database stalls (every query waits, connections stay open) for longer than a
/// host may stay silent. No broker could record heartbeats meanwhile, so when it goes
/// on, no host is taken for down and no desktop is failed: the leader waits a host
/// timeout before it judges hosts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_stall_longer_than_the_host_timeout_fails_no_host() {
    let c = two_brokers_one_host_two_ready("cluster-pg-stall").await;
    wait_up_to(Duration::from_secs(30), "a leader", || async {
        c.leader().await.is_some()
    })
    .await;
    c.postgres.freeze().unwrap();
    tokio::time::sleep(oriel_broker::reconcile::HOST_TIMEOUT + Duration::from_secs(4)).await;
    c.postgres.thaw().unwrap();
    // Passes run again at once; heartbeats are written again within a second.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let hosts = c.store.list_hosts().await.unwrap();
    let h0 = hosts
        .iter()
        .find(|h| h.name == "h0")
        .expect("h0 is registered");
    assert_eq!(h0.state, HostState::Up, "the host stayed up");
    assert_eq!(
        count(&c, "p", DesktopState::Failed).await,
        0,
        "no desktop failed"
    );
    assert_eq!(count(&c, "p", DesktopState::Ready).await, 2);
    c.shutdown().await;
}

/// Posts a login for `user` to broker `at`; the HTTP status.
async fn try_login(
    c: &Cluster,
    http: &reqwest::Client,
    at: usize,
    user: &str,
    password: &str,
) -> u16 {
    let url = format!("{}/api/v1/login", c.brokers[at].url);
    let body = serde_json::json!({ "user": user, "password": password });
    let response = http.post(url).json(&body).send().await.unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_count_at_every_broker() {
    let c = Cluster::start("cluster-logins", 2).await;
    let hash = oriel_broker::password::hash_password("right horse").unwrap();
    c.store
        .create_user("carol", &hash, Role::User)
        .await
        .unwrap();
    let http = c.http();
    // Five free failures at broker 0 …
    for _ in 0..5 {
        assert_eq!(try_login(&c, &http, 0, "carol", "wrong").await, 401);
    }
    // … and broker 1 makes the next one wait, even with the right password.
    assert_eq!(try_login(&c, &http, 1, "carol", "right horse").await, 429);
    assert_eq!(try_login(&c, &http, 0, "carol", "right horse").await, 429);
    // After the back-off, a success at broker 1 clears the name at both.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(try_login(&c, &http, 1, "carol", "right horse").await, 200);
    for _ in 0..4 {
        assert_eq!(try_login(&c, &http, 0, "carol", "wrong").await, 401);
    }
    assert_eq!(try_login(&c, &http, 1, "carol", "right horse").await, 200);
    c.shutdown().await;
}
