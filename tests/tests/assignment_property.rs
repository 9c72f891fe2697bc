//! A property of the whole system, tried on random interleavings of what users do (and
//! what attackers do with tickets they kept): connect, fetch a ticket and keep it, log
//! off, reconnect, present a kept ticket, replay a used one, close a viewer, and an
//! administrator resetting a desktop, against a real broker and display server:
//!
//! a session only ever shows the desktop its ticket's user is assigned to, at that
//! moment. Concretely: a ticket is admitted only while the broker has its desktop
//! assigned to its user; a used ticket is never admitted again; and a session whose user
//! lost the desktop ends.

use std::sync::Arc;
use std::time::Duration;

use oriel::launcher::{self, Login};
use oriel::{ClientError, ConnectOptions, Outcome, Session, StopWhen};
use oriel_broker::store::Assignment;
use oriel_e2e::broker::{wait_for, Harness};
use proptest::prelude::*;

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const POOL: &str = "f";

#[derive(Debug, Clone)]
enum Op {
    /// Fetch a ticket and connect with it at once.
    Connect(usize),
    /// Fetch a ticket and keep it.
    Keep(usize),
    /// Present the k-th kept ticket (whoever's it is).
    Present(usize),
    /// Present a ticket that was already used.
    Replay(usize),
    Logoff(usize),
    /// Close the k-th live viewer without logging off.
    Close(usize),
    /// An administrator resets the k-th desktop.
    Reset(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..USERS.len()).prop_map(Op::Connect),
        2 => (0..USERS.len()).prop_map(Op::Keep),
        3 => (0..8usize).prop_map(Op::Present),
        1 => (0..8usize).prop_map(Op::Replay),
        3 => (0..USERS.len()).prop_map(Op::Logoff),
        1 => (0..8usize).prop_map(Op::Close),
        1 => (0..2usize).prop_map(Op::Reset),
    ]
}

type Run = tokio::task::JoinHandle<Result<Outcome, ClientError>>;

struct Viewer {
    user: usize,
    desktop: String,
    run: Run,
    stop: Arc<tokio::sync::Notify>,
}

struct World {
    h: Harness,
    logins: Vec<Login>,
    user_ids: Vec<String>,
    kept: Vec<(usize, ConnectOptions)>,
    used: Vec<ConnectOptions>,
    viewers: Vec<Viewer>,
}

impl World {
    async fn new() -> World {
        let mut h = Harness::start("assignment-property").await;
        h.pool(
            POOL,
            Assignment::Floating,
            2,
            2,
            r#"{"workload":"idle","width":640,"height":480}"#,
        )
        .await;
        let mut logins = Vec::new();
        let mut user_ids = Vec::new();
        for name in USERS {
            logins.push(h.user(name, POOL).await);
            user_ids.push(h.store().user_by_name(name).await.unwrap().unwrap().id);
        }
        h.add_host("host-1", 4);
        h.ready(POOL, 2).await;
        World {
            h,
            logins,
            user_ids,
            kept: Vec::new(),
            used: Vec::new(),
            viewers: Vec::new(),
        }
    }

    /// Whom the broker has `desktop` assigned to, now.
    async fn holder(&self, desktop: &str) -> Option<usize> {
        let desktops = self.h.store().list_desktops(None).await.unwrap();
        let d = desktops.iter().find(|d| d.name == desktop)?;
        let holder = d.assigned_user_id.as_deref()?;
        self.user_ids.iter().position(|id| id == holder)
    }

    /// Presents a ticket of `user`; checks the admission against the broker's state.
    async fn present(&mut self, user: usize, opts: ConnectOptions) {
        let result = Session::connect(&opts).await;
        self.used.push(opts.clone());
        match result {
            Ok(session) => {
                let holder = self.holder(&opts.desktop).await;
                assert_eq!(
                    holder,
                    Some(user),
                    "a ticket of {} was admitted to {} while the broker has it assigned to {:?}",
                    USERS[user],
                    opts.desktop,
                    holder.map(|u| USERS[u])
                );
                let stop = Arc::new(tokio::sync::Notify::new());
                let when = StopWhen {
                    interrupt: Some(stop.clone()),
                    ..Default::default()
                };
                self.viewers.push(Viewer {
                    user,
                    desktop: opts.desktop.clone(),
                    run: tokio::spawn(session.run(when, None)),
                    stop,
                });
            }
            Err(ClientError::Rejected { .. }) => {}
            Err(other) => panic!("presenting a ticket failed otherwise: {other}"),
        }
    }

    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::Connect(u) | Op::Keep(u) => {
                // 409 while no desktop is free (or being reset) is fine.
                let Ok((opts, _)) = launcher::connect_options(&self.logins[u], POOL).await else {
                    return;
                };
                if matches!(op, Op::Connect(_)) {
                    self.present(u, opts).await;
                } else {
                    self.kept.push((u, opts));
                }
            }
            Op::Present(k) if !self.kept.is_empty() => {
                let (u, opts) = self.kept.remove(k % self.kept.len());
                self.present(u, opts).await;
            }
            Op::Replay(k) if !self.used.is_empty() => {
                let opts = self.used[k % self.used.len()].clone();
                match Session::connect(&opts).await {
                    Err(ClientError::Rejected { .. }) => {}
                    Ok(_) => panic!("a used ticket for {} was admitted again", opts.desktop),
                    Err(other) => panic!("replaying a ticket failed otherwise: {other}"),
                }
            }
            Op::Logoff(u) => {
                let _ = launcher::logoff(&self.logins[u], POOL).await;
            }
            Op::Close(k) if !self.viewers.is_empty() => {
                let v = self.viewers.remove(k % self.viewers.len());
                v.stop.notify_one();
                let _ = v.run.await;
            }
            Op::Reset(k) => {
                let desktops = self.h.store().list_desktops(None).await.unwrap();
                if let Some(d) = desktops.get(k % desktops.len().max(1)) {
                    let client = self.h.http_from(None);
                    let admin =
                        oriel_broker::local_admin::read(&self.h.dir.join("broker")).unwrap();
                    let url = self.h.api(&format!("/admin/desktops/{}/reset", d.id));
                    let _ = client.post(url).bearer_auth(admin.token).send().await;
                }
            }
            _ => {}
        }
        self.settle().await;
    }

    /// Every viewer whose user no longer holds its desktop ends (the revocation reaches
    /// the host within the wait).
    async fn settle(&mut self) {
        let world: &World = self;
        for v in &world.viewers {
            let (user, desktop, run) = (v.user, v.desktop.as_str(), &v.run);
            wait_for(
                "a viewer of a desktop its user lost to end",
                || async move { run.is_finished() || world.holder(desktop).await == Some(user) },
            )
            .await;
        }
        self.viewers.retain(|v| !v.run.is_finished());
    }

    async fn end(self) {
        for v in self.viewers {
            v.stop.notify_one();
            let _ = v.run.await;
        }
        self.h.shutdown().await;
    }
}

fn cases() -> u32 {
    std::env::var("ORIEL_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 8, ..ProptestConfig::default() })]

    #[test]
    fn a_session_only_shows_a_desktop_its_user_holds(ops in prop::collection::vec(op(), 10..24)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut world = World::new().await;
            for op in &ops {
                tokio::time::timeout(Duration::from_secs(60), world.apply(op))
                    .await
                    .unwrap_or_else(|_| panic!("{op:?} did not finish"));
            }
            world.end().await;
        });
    }
}
