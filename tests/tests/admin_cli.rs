//! `oriel-broker` as scripts run it: every `admin` subcommand against a running broker
//! (as its local administrator, the data directory from `--config`), wrong invocations
//! refused before anything is sent, and `init` and `serve` reading a config file.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use oriel_broker::store::Assignment;
use oriel_e2e::broker::Harness;
use oriel_e2e::{temp_dir, workspace_binary};
use serde_json::Value;

const IDLE: &str = r#"{"workload":"idle","width":640,"height":480}"#;

/// Runs `oriel-broker ARGS…` with `env` on a thread of its own (the broker under test
/// runs on this runtime).
async fn broker_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        Command::new(workspace_binary("oriel-broker"))
            .args(&args)
            .env_remove("ORIEL_PASSWORD")
            .env_remove("ORIEL_NEW_PASSWORD")
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// `oriel-broker admin --config CONFIG ARGS…`, which must succeed; its JSON output.
async fn admin(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["admin", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = broker_cli(&all, env).await;
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("admin {args:?} printed no JSON ({e}): {out:?}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_subcommands_drive_a_running_broker() {
    let mut h = Harness::start("admin-cli").await;
    h.pool("base", Assignment::Floating, 0, 1, IDLE).await;
    h.add_host("host-1", 4);
    let config = h.dir.join("admin.toml");
    std::fs::write(
        &config,
        format!("data-dir = {:?}\n", h.dir.join("broker").to_str().unwrap()),
    )
    .unwrap();

    // Users and groups.
    let alice = admin(
        &config,
        &["user", "add", "alice"],
        &[("ORIEL_NEW_PASSWORD", "alice-password")],
    )
    .await;
    assert_eq!(alice["name"], "alice", "{alice}");
    admin(
        &config,
        &["user", "add", "root", "--admin"],
        &[("ORIEL_NEW_PASSWORD", "root-password")],
    )
    .await;
    let users = admin(&config, &["user", "list"], &[]).await;
    assert!(names(&users).contains(&"root"), "{users}");
    admin(&config, &["group", "add", "staff"], &[]).await;
    admin(&config, &["group", "member", "staff", "alice"], &[]).await;
    assert!(names(&admin(&config, &["group", "list"], &[]).await).contains(&"staff"));

    // Pools and entitlements.
    let office = admin(
        &config,
        &[
            "pool",
            "create",
            "office",
            "--min-ready",
            "1",
            "--max-size",
            "2",
            "--params",
            r#"{"width":640,"height":480}"#,
            "--workload",
            "idle",
        ],
        &[],
    )
    .await;
    assert_eq!(office["max_size"], 2, "{office}");
    let office = admin(&config, &["pool", "set", "office", "--max-size", "3"], &[]).await;
    assert_eq!(office["max_size"], 3, "{office}");
    assert!(names(&admin(&config, &["pool", "list"], &[]).await).contains(&"office"));
    admin(&config, &["entitle", "office", "--user", "alice"], &[]).await;
    admin(&config, &["entitle", "base", "--group", "staff"], &[]).await;
    let alice_id = h.store().user_by_name("alice").await.unwrap().unwrap().id;
    let mut entitled: Vec<String> = h
        .store()
        .entitled_pools(&alice_id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    entitled.sort();
    assert_eq!(entitled, ["base", "office"]);

    // Hosts, desktops, sessions.
    let hosts = admin(&config, &["host", "list"], &[]).await;
    let host_id = hosts[0]["id"].as_str().unwrap().to_string();
    let drained = admin(&config, &["host", "drain", &host_id], &[]).await;
    assert_eq!(drained["state"], "maintenance");
    let undrained = admin(&config, &["host", "undrain", &host_id], &[]).await;
    assert_eq!(undrained["state"], "up");
    h.ready("office", 1).await;
    let desktops = admin(&config, &["desktop", "list", "--pool", "office"], &[]).await;
    let desktop_id = desktops[0]["id"].as_str().unwrap().to_string();
    let reset = admin(&config, &["desktop", "reset", &desktop_id], &[]).await;
    assert_eq!(reset["done"], "reset");
    assert!(admin(&config, &["session", "list"], &[]).await.is_array());
    let disabled = admin(&config, &["user", "disable", "alice"], &[]).await;
    assert_eq!(disabled["enabled"], false);
    admin(&config, &["user", "enable", "alice"], &[]).await;
    let audit = admin(&config, &["audit", "--limit", "3"], &[]).await;
    assert_eq!(audit.as_array().map(Vec::len), Some(3), "{audit}");

    // Logged in as an administrator instead of the local one, the flags over the file.
    let url = h.broker.url();
    let fingerprint = h.broker.fingerprint.to_string();
    let pools = admin(
        &config,
        &[
            "--broker",
            &url,
            "--fingerprint",
            &fingerprint,
            "--user",
            "root",
            "pool",
            "list",
        ],
        &[("ORIEL_PASSWORD", "root-password")],
    )
    .await;
    assert!(names(&pools).contains(&"office"));

    // Wrong invocations: usage errors (exit status 2) before anything is sent.
    for args in [
        &["user", "add"][..],
        &["user", "remove", "alice"],
        &["entitle", "office"],
        &["entitle", "office", "--user", "alice", "--group", "staff"],
        &["pool", "set", "office"],
        &["pool", "create", "x", "--kind", "vnc"],
        &["host", "drain"],
    ] {
        let mut all = vec!["admin", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = broker_cli(&all, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains("--help"),
            "{args:?}: {err}"
        );
    }
    h.shutdown().await;
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `oriel-broker serve ARGS…` and returns it with the text after `API on `.
fn serve(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(workspace_binary("oriel-broker"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let url = BufReader::new(stdout)
        .lines()
        .map(|l| l.unwrap())
        .find_map(|l| l.strip_prefix("oriel-broker: API on ").map(str::to_string))
        .expect("the broker's banner");
    (proc, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_and_serve_read_the_config_file() {
    let dir = temp_dir("broker-config");
    let data = dir.join("data");
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\nlisten = \"127.0.0.1:0\"\nhost-listen = \"127.0.0.1:0\"\n\
             restart-grace = \"1s\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let file = config.to_str().unwrap();

    let mut init = Command::new(workspace_binary("oriel-broker"))
        .args(["init", "--admin", "root", "--config", file])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    init.stdin
        .take()
        .unwrap()
        .write_all(b"root-password\n")
        .unwrap();
    assert!(init.wait().unwrap().success());
    assert!(
        data.join("broker.db").exists(),
        "init used the file's data-dir"
    );

    let (broker, url) = serve(&["--config", file]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // The local admin file is written before the banner.
    assert!(data.join("local-admin.json").exists());
    let users = admin(&config, &["user", "list"], &[]).await;
    assert!(names(&users).contains(&"root"), "{users}");
    drop(broker);

    // A flag wins over the file.
    let (broker, url) = serve(&["--config", file, "--insecure-http"]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    drop(broker);

    // A key the broker does not know: the file, the line and the key are named.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:0\"\nlisten-addr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = broker_cli(&["serve", "--config", bad.to_str().unwrap()], &[]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 2") && err.contains("listen-addr"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
