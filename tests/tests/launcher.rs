//! The `oriel` launcher as a user runs it after `oriel login`: with no arguments it takes
//! the only pool (and lists them when there are several), `oriel oriel://BROKER/POOL`
//! opens a link, and `oriel register` installs the link handler.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use oriel_broker::store::{Assignment, DesktopState};
use oriel_e2e::broker::{config_with_login, wait_for, Harness};
use oriel_e2e::*;

/// Runs `oriel` with `args` as the user whose login is saved under `config`.
fn oriel(config: &Path, args: &[&str]) -> Output {
    Command::new(workspace_binary("oriel"))
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("XDG_DATA_HOME", config.join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("oriel runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_connects_to_the_only_pool_a_link_or_lists_them() {
    let mut h = Harness::start("launcher").await;
    h.pool(
        "office",
        Assignment::Floating,
        1,
        2,
        r#"{"workload":"idle"}"#,
    )
    .await;
    let _host = h.add_host("host-l", 4);
    let alice = h.user("alice", "office").await;
    let config = config_with_login("launcher-config", &alice);
    let view = ["--headless", "--duration", "1s", "--wait", "60s"];

    // The only pool: no questions. The spare may still be starting: the launcher waits.
    let out = tokio::task::spawn_blocking({
        let config = config.clone();
        move || oriel(&config, &view)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("of pool 'office'"), "{}", text(&out));
    assert!(text(&out).contains("frames in"), "{}", text(&out));

    // A link to that broker's pool.
    let link = format!(
        "{}/office",
        h.broker.url().replacen("https://", "oriel://", 1)
    );
    let mut args = vec![link.as_str()];
    args.extend(view);
    let out = tokio::task::spawn_blocking({
        let (config, args): (_, Vec<String>) =
            (config.clone(), args.iter().map(|s| s.to_string()).collect());
        move || {
            oriel(
                &config,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("frames in"), "{}", text(&out));

    // A link to another broker is refused with what to do.
    let out = oriel(
        &config,
        &["oriel://elsewhere.example:8443/office", "--headless"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("oriel login --broker https://elsewhere.example:8443"));
    let out = oriel(&config, &["oriel://bad host/office"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not a valid oriel://BROKER/POOL link"));

    // Several pools and no terminal to ask on: the list, and how to pick.
    h.pool("lab", Assignment::Dedicated, 0, 1, "{}").await;
    h.store().entitle_user("lab", "alice").await.unwrap();
    wait_for("office has its spare back", || async {
        h.count("office", DesktopState::Ready).await >= 1
    })
    .await;
    let out = tokio::task::spawn_blocking({
        let config = config.clone();
        move || oriel(&config, &["--headless"])
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let listing = text(&out);
    assert!(
        listing.contains("oriel connect POOL")
            && listing.contains("office")
            && listing.contains("lab"),
        "{listing}"
    );
    h.shutdown().await;
}

#[test]
fn register_installs_the_oriel_link_handler() {
    let config = temp_dir("launcher-register");
    let out = oriel(&config, &["register"]);
    assert!(out.status.success(), "{}", text(&out));
    let entry = std::fs::read_to_string(config.join("data/applications/oriel.desktop")).unwrap();
    assert!(entry.contains("MimeType=x-scheme-handler/oriel;"));
    assert!(entry.contains(&format!(
        "Exec=\"{}\" %u",
        workspace_binary("oriel").display()
    )));
}
