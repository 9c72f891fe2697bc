//! kill -9 of a process in the middle of writing loses nothing committed and corrupts nothing.
//!
//! The parent test re-runs this test binary as a child (`kill9_child_writer` with
//! `ORIEL_KILL_TEST_DB` set), which writes in a loop and prints `committed N` after each
//! committed step; the parent SIGKILLs it mid-way, reopens the file and checks every
//! acknowledged step is there, whole.

// Tests print the figures they measure (never asserted).
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use oriel_broker::store::{Assignment, DesktopState, NewPool, Role, Store, StoreError};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const DB_ENV: &str = "ORIEL_KILL_TEST_DB";

async fn open_with_pool(
    path: &Path,
) -> Result<(Store, String), Box<dyn std::error::Error + Send + Sync>> {
    let store = Store::open_sqlite(path).await?;
    let pool = NewPool {
        name: "k".into(),
        source_kind: "synthetic".into(),
        source_params: "{}".into(),
        assignment: Assignment::Floating,
        min_ready: 0,
        max_size: oriel_broker::store::MAX_POOL_SIZE,
        idle_timeout_s: 0,
        disconnect_timeout_s: 0,
    };
    let pool = match store.create_pool(&pool).await {
        Ok(pool) => pool,
        Err(StoreError::Conflict(_)) => store.pool_by_name("k").await?.ok_or("pool k missing")?,
        Err(e) => return Err(e.into()),
    };
    Ok((store, pool.id))
}

/// The child: does nothing unless started by `kill9_loses_nothing_committed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_child_writer() -> TestResult {
    let Some(path) = std::env::var_os(DB_ENV) else {
        return Ok(());
    };
    let (store, pool_id) = open_with_pool(Path::new(&path)).await?;
    let start = store.list_users().await?.len();
    for i in start..start + 50_000 {
        let user = store.create_user(&format!("u{i}"), "h", Role::User).await?;
        store
            .create_desktop(&pool_id, None, &format!("d{i}"), DesktopState::Ready)
            .await?;
        let desktop = store.assign_desktop(&pool_id, &user.id, false).await?;
        store.start_session(&user.id, &desktop.id).await?;
        store.audit(&user.name, "connect", &desktop.name).await?;
        println!("committed {i}");
    }
    Ok(())
}

#[test]
fn kill9_loses_nothing_committed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kill.db");
    let exe = std::env::current_exe()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut acknowledged: Option<usize> = None;
    // Every step any child acknowledged. A step cut off by a kill is not acknowledged and
    // the next child starts after it, so the numbers have gaps.
    let mut acked: Vec<usize> = Vec::new();

    for (round, steps) in [150usize, 40, 300].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill9_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DB_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < steps {
            let line = lines.next().ok_or("child stopped before being killed")??;
            if let Some(n) = line.strip_prefix("committed ") {
                let n: usize = n.trim().parse()?;
                (acknowledged, seen) = (Some(n), seen + 1);
                acked.push(n);
            }
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        // Whatever the child printed before it died was committed too.
        for line in lines {
            if let Some(n) = line?.strip_prefix("committed ") {
                let n: usize = n.trim().parse()?;
                acknowledged = Some(n);
                acked.push(n);
            }
        }
        let last = acknowledged.ok_or("nothing acknowledged")?;

        runtime.block_on(async {
            let (store, pool_id) = open_with_pool(&path).await?;
            store.integrity_check().await?;
            let users = store.list_users().await?;
            let desktops = store.list_desktops(Some(&pool_id)).await?;
            let sessions = store.list_sessions(true).await?;
            // Every acknowledged step is there in full: the user holds an assigned desktop
            // with an active session on it.
            for &i in &acked {
                let user = store
                    .user_by_name(&format!("u{i}"))
                    .await?
                    .ok_or_else(|| format!("round {round}: user u{i} lost"))?;
                let desktop = desktops
                    .iter()
                    .find(|d| d.assigned_user_id.as_deref() == Some(user.id.as_str()))
                    .ok_or_else(|| format!("round {round}: u{i}'s desktop lost"))?;
                assert_eq!(desktop.state, DesktopState::Assigned);
                assert!(
                    sessions
                        .iter()
                        .any(|s| s.desktop_id == desktop.id && s.user_id == user.id),
                    "round {round}: u{i}'s session lost"
                );
            }
            // Each kill leaves at most one step unacknowledged (partly committed, or
            // committed and not yet printed), and no desktop is ever assigned twice.
            assert!(
                users.len() <= last + 2 + round,
                "round {round}: {} users for {last}",
                users.len()
            );
            let mut owners: Vec<_> = desktops
                .iter()
                .filter_map(|d| d.assigned_user_id.clone())
                .collect();
            let n = owners.len();
            owners.sort();
            owners.dedup();
            assert_eq!(owners.len(), n, "round {round}: a user holds two desktops");
            assert!(store.list_audit(1_000_000).await?.len() >= acked.len());
            store.close().await;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })?;
    }
    Ok(())
}
