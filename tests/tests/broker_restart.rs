//! The broker killed with SIGKILL in the middle of work and restarted on the same data
//! directory loses nothing: users, pools, desktops and assignments are intact, the
//! display server re-registers with its credential, and clients connect again.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oriel::launcher;
use oriel_e2e::broker::wait_for;
use oriel_e2e::*;
use oriel_protocol::api::{LoginRequest, LoginResponse};
use oriel_transport::api_client::ApiClient;
use oriel_transport::Fingerprint;
use serde_json::json;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running broker binary, its API and host-link ports, and its certificate pin.
struct Served {
    proc: Proc,
    api: u16,
    hosts: u16,
    fingerprint: Fingerprint,
}

/// Starts the broker on `ports` (`None`: ports the system picks; a restart passes the
/// ones the first run was given, so the host finds it again) and reads its banner.
fn serve(dir: &std::path::Path, ports: Option<(u16, u16)>) -> Served {
    let (api, hosts) = ports.unwrap_or((0, 0));
    let mut child = Command::new(workspace_binary("oriel-broker"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--host-listen",
        ])
        .arg(format!("127.0.0.1:{hosts}"))
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = |prefix: &str| {
        lines
            .by_ref()
            .map(|l| l.unwrap())
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("broker banner lacks {prefix:?}"))
    };
    let port = |addr: String| addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let api = port(banner("oriel-broker: API on "));
    let hosts = port(banner("oriel-broker: host link on "));
    let fingerprint = banner("oriel-broker: certificate SHA-256 fingerprint: ")
        .parse()
        .unwrap();
    Served {
        proc: Proc(child),
        api,
        hosts,
        fingerprint,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_broker_restarts_with_everything_intact() {
    let dir = temp_dir("broker-kill");
    let data = dir.join("broker");
    let mut init = Command::new(workspace_binary("oriel-broker"))
        .args(["init", "--admin", "admin", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    init.stdin
        .take()
        .unwrap()
        .write_all(b"admin-password\n")
        .unwrap();
    assert!(init.wait().unwrap().success());

    let broker = serve(&data, None);
    let (api_port, host_port, fingerprint) = (broker.api, broker.hosts, broker.fingerprint);
    let url = format!("https://127.0.0.1:{api_port}");
    let join_token = std::fs::read_to_string(data.join("join-token")).unwrap();
    let _server = Proc(
        Command::new(workspace_binary("oriel-display-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
                "--name",
                "h1",
            ])
            .args(["--broker", &format!("127.0.0.1:{host_port}")])
            .args([
                "--broker-fingerprint",
                &fingerprint.to_string(),
                "--join-token",
                join_token.trim(),
            ])
            .arg("--data-dir")
            .arg(dir.join("host"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let api = ApiClient::new(&url, Some(fingerprint)).unwrap();
    let login: LoginResponse = api
        .post(
            "/login",
            &LoginRequest {
                user: "admin".into(),
                password: "admin-password".into(),
            },
        )
        .await
        .unwrap();
    let admin = api.clone().with_token(login.token);
    let _: serde_json::Value = admin
        .post(
            "/admin/users",
            &json!({"name": "alice", "password": "alice-password"}),
        )
        .await
        .unwrap();
    let _: serde_json::Value = admin
        .post("/admin/pools", &json!({"name": "p", "assignment": "dedicated", "min_ready": 1, "max_size": 2,
                                      "source_params": {"workload": "idle", "width": 640, "height": 480}}))
        .await
        .unwrap();
    admin
        .post_no_reply(
            "/admin/entitlements",
            &json!({"pool": "p", "user": "alice"}),
        )
        .await
        .unwrap();
    let alice = launcher::login(&url, Some(fingerprint), "alice", "alice-password")
        .await
        .unwrap();
    wait_for("a desktop for alice", || {
        let alice = alice.clone();
        async move { launcher::connect_options(&alice, "p").await.is_ok() }
    })
    .await;
    let (_, assigned) = launcher::connect_options(&alice, "p").await.unwrap();
    let first = Some(assigned.desktop);

    // SIGKILL: no shutdown path runs.
    drop(broker.proc);
    let again = serve(&data, Some((api_port, host_port)));
    assert_eq!(
        again.fingerprint, fingerprint,
        "same identity after restart"
    );

    // Alice's token, her dedicated desktop and the host all survived; the host comes
    // back with its credential and the client connects and sees its desktop.
    let (opts, reply) = launcher::connect_options(&alice, "p")
        .await
        .expect("connect after restart");
    assert_eq!(Some(reply.desktop.clone()), first);
    let mut session = None;
    for _ in 0..200 {
        let (opts, _) = launcher::connect_options(&alice, "p").await.unwrap();
        match oriel::Session::connect(&opts).await {
            Ok(s) => {
                session = Some(s);
                break;
            }
            // The display server learns the restarted broker's key when it re-registers.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let session = session.expect("a client connects after the restart");
    assert_eq!(session.welcome().desktop_size.width, 640);
    drop(opts);
    let audit: serde_json::Value = ApiClient::new(&url, Some(fingerprint))
        .unwrap()
        .with_token(alice.token.clone())
        .get::<serde_json::Value>("/pools")
        .await
        .unwrap();
    assert_eq!(audit[0]["desktop"], json!(reply.desktop));
}
