//! The admin console in a real browser (Debian's chromium, headless) against a real
//! broker and display server on loopback: sign-in, the live dashboard, an action, CSRF,
//! roles, sign-out and expired sessions; a connected client's session with its live
//! figures and screen, logged off from the console; a pool deleted. Screenshots go to
//! `target/screenshots/`.

use std::time::Duration;

use oriel::ClientError;
use oriel_broker::store::{Assignment, DesktopState, HostState, Role};
use oriel_e2e::broker::{connect_in_background, wait_for, Harness};
use oriel_e2e::browser::Browser;
use serde_json::json;

const IDLE: &str = r#"{"workload":"idle","width":640,"height":480}"#;
const PASSWORD: &str = "a-long-password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_run_the_estate_from_the_console_live() {
    let mut h = Harness::start("console").await;
    h.pool("office", Assignment::Floating, 1, 4, IDLE).await;
    h.add_host("host-1", 8);
    h.ready("office", 1).await;
    for (name, role) in [
        ("root", Role::Admin),
        ("audrey", Role::Auditor),
        ("alice", Role::User),
    ] {
        h.user_with_password(name, PASSWORD, role, None).await;
    }
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;

    // No session: the console sends you to sign in.
    browser.goto(&format!("{base}/admin/")).await;
    browser.wait_for("form.signin").await;
    browser.screenshot("console-sign-in").await;

    // An administrator signs in and sees the estate, live.
    browser.sign_in(&base, "root", PASSWORD).await;
    browser.wait_for("#live[data-state=on]").await;
    browser.wait_for("tr[data-host=host-1]").await;
    browser.wait_for("tr[data-pool=office]").await;
    // A pool made meanwhile (through the store, as the API would) shows up with its
    // spare desktops without a reload: the marker set on this page stays.
    browser
        .client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    h.pool("lab", Assignment::Floating, 2, 4, IDLE).await;
    browser
        .wait_for("tr[data-pool=lab] td[data-ready='2']")
        .await;
    let same_page = browser
        .client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "the dashboard updated in place");
    browser.screenshot("console-dashboard").await;

    // A forged form (right session, wrong CSRF token) is refused.
    let host_id = h.store().list_hosts().await.unwrap()[0].id.clone();
    let forged = browser
        .post_form(
            &format!("/admin/hosts/{host_id}/state"),
            json!({"state": "maintenance", "csrf": "0".repeat(64)}),
        )
        .await;
    assert_eq!(forged, 403);
    assert_eq!(
        h.store().list_hosts().await.unwrap()[0].state,
        HostState::Up
    );

    // A pool made with the form (the fields of its kind, not JSON) fills its spares.
    browser.goto(&format!("{base}/admin/pools")).await;
    browser.fill("#pool-name", "kiosk").await;
    browser.fill("#pool-min", "1").await;
    browser.fill("#synthetic-workload", "idle").await;
    browser.fill("#synthetic-width", "640").await;
    browser.fill("#synthetic-height", "480").await;
    assert!(
        !browser
            .wait_for("#x11-width")
            .await
            .is_displayed()
            .await
            .unwrap(),
        "only the chosen kind's fields show"
    );
    browser.click("form[action='/admin/pools'] button").await;
    browser.wait_for_text("pool kiosk created").await;
    assert!(browser.text().await.contains("pool kiosk created"));
    let kiosk = h.store().pool_by_name("kiosk").await.unwrap().unwrap();
    assert_eq!(
        kiosk.source_params,
        r#"{"height":480,"width":640,"workload":"idle"}"#
    );
    // Entitle alice to it, with the server's refusal shown for a name that is not there.
    browser.fill("#ent-pool", "kiosk").await;
    browser.fill("#ent-name", "nobody").await;
    browser
        .click("form[action='/admin/entitlements'] button")
        .await;
    browser.wait_for_text("no user").await;
    assert!(
        browser.text().await.contains("no user"),
        "{}",
        browser.text().await
    );
    browser.fill("#ent-pool", "kiosk").await;
    browser.fill("#ent-name", "alice").await;
    browser
        .click("form[action='/admin/entitlements'] button")
        .await;
    browser
        .wait_for_text("user alice entitled to pool kiosk")
        .await;
    browser.wait_for("tr[data-pool=kiosk] .tag").await;
    browser.screenshot("console-pools").await;
    browser.goto(&format!("{base}/admin/")).await;
    browser
        .wait_for("tr[data-pool=kiosk] td[data-ready='1']")
        .await;
    // Its settings page, filled with what it has: two spares now.
    browser.goto(&format!("{base}/admin/pools/kiosk")).await;
    let width = browser.wait_for("#synthetic-width").await;
    assert_eq!(width.prop("value").await.unwrap().as_deref(), Some("640"));
    browser.fill("#pool-min", "2").await;
    browser
        .click("form[action='/admin/pools/kiosk'] button")
        .await;
    browser.wait_for_text("pool kiosk changed").await;
    let kiosk = h.store().pool_by_name("kiosk").await.unwrap().unwrap();
    assert_eq!(kiosk.min_ready, 2);
    assert_eq!(
        kiosk.source_params,
        r#"{"height":480,"width":640,"workload":"idle"}"#
    );
    browser.goto(&format!("{base}/admin/")).await;
    browser
        .wait_for("tr[data-pool=kiosk] td[data-ready='2']")
        .await;

    // Accounts: an operator made with the form, then made an auditor.
    browser.goto(&format!("{base}/admin/users")).await;
    browser.fill("#user-name", "oscar").await;
    browser.fill("#user-password", PASSWORD).await;
    browser
        .client
        .execute(
            "document.getElementById('user-role').value = 'operator';",
            vec![],
        )
        .await
        .unwrap();
    browser.click("form[action='/admin/users'] button").await;
    browser.wait_for_text("operator oscar created").await;
    let oscar = h.store().user_by_name("oscar").await.unwrap().unwrap();
    assert_eq!(oscar.role, Role::Operator);
    browser
        .client
        .execute(
            "document.getElementById('role-oscar').value = 'auditor';",
            vec![],
        )
        .await
        .unwrap();
    browser.click("tr[data-user=oscar] select ~ button").await;
    browser.wait_for_text("oscar is now auditor").await;
    let oscar = h.store().user_by_name("oscar").await.unwrap().unwrap();
    assert_eq!(oscar.role, Role::Auditor);
    // A new password, a group, and oscar in it.
    browser.fill("#pw-user", "oscar").await;
    browser.fill("#pw-new", "another-long-password").await;
    browser
        .click("form[action='/admin/passwords'] button")
        .await;
    browser.wait_for_text("oscar's password set").await;
    let rehashed = h.store().user_by_name("oscar").await.unwrap().unwrap();
    assert_ne!(rehashed.password_hash, oscar.password_hash);
    browser.fill("#group-name", "night-shift").await;
    browser.click("form[action='/admin/groups'] button").await;
    browser.wait_for_text("group night-shift created").await;
    browser.fill("#member-user", "oscar").await;
    browser
        .click("form[action='/admin/groups/members'] button")
        .await;
    browser
        .wait_for_text("oscar added to group night-shift")
        .await;
    browser.wait_for("tr[data-user=oscar] .tag").await;
    browser.screenshot("console-users").await;
    browser.goto(&format!("{base}/admin/")).await;

    // Drain the host with its button: the store changes and the page says so.
    browser.click("tr[data-host=host-1] button").await;
    browser.wait_for_text("host drained").await;
    assert!(browser.text().await.contains("host drained"));
    wait_for("the host drained", || async {
        h.store().list_hosts().await.unwrap()[0].state == HostState::Maintenance
    })
    .await;
    browser.screenshot("console-drained").await;

    // Signing out ends the session: its token is gone, the console asks again.
    browser.sign_out().await;
    browser.goto(&format!("{base}/admin/")).await;
    browser.wait_for("form.signin").await;

    // An auditor sees the estate but no action, and cannot act by posting either.
    browser.sign_in(&base, "audrey", PASSWORD).await;
    browser.wait_for("tr[data-host=host-1]").await;
    assert!(
        browser
            .client
            .find_all(fantoccini::Locator::Css("tr[data-host] button"))
            .await
            .unwrap()
            .is_empty(),
        "an auditor is offered no drain button"
    );
    let csrf = browser.csrf().await;
    let refused = browser
        .post_form(
            &format!("/admin/hosts/{host_id}/state"),
            json!({"state": "up", "csrf": csrf}),
        )
        .await;
    assert_eq!(refused, 403, "an auditor cannot undrain");
    assert_eq!(
        h.store().list_hosts().await.unwrap()[0].state,
        HostState::Maintenance
    );

    // Sessions end when their tokens expire.
    h.store().delete_expired_api_tokens(i64::MAX).await.unwrap();
    browser.goto(&format!("{base}/admin/")).await;
    browser.wait_for("form.signin").await;

    // A user who is not staff gets a clear 403 page.
    browser.sign_in(&base, "alice", PASSWORD).await;
    wait_for("the 403 page", || async {
        browser.text().await.contains("this console is for staff")
    })
    .await;
    assert!(browser.text().await.contains("403"));
    browser.screenshot("console-not-staff").await;

    browser.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_desktops_and_audit_pages_show_and_act() {
    let mut h = Harness::start("console-estate").await;
    h.pool("office", Assignment::Floating, 2, 4, IDLE).await;
    h.add_host("host-1", 8);
    h.ready("office", 2).await;
    h.user_with_password("root", PASSWORD, Role::Admin, None)
        .await;
    h.user_with_password("hank", PASSWORD, Role::Helpdesk, None)
        .await;
    for i in 0..60 {
        h.store()
            .audit("robot", "probe", &format!("probe {i}"))
            .await
            .unwrap();
    }
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    // A wrong password is refused on the page, and counted on the dashboard.
    browser.sign_in(&base, "root", "not-the-password").await;
    browser.wait_for_text("wrong user name or password").await;
    browser.sign_in(&base, "root", PASSWORD).await;
    browser.wait_for("#live").await;
    browser
        .wait_for_text("Refused logins, connects, tickets: 1 ")
        .await;
    assert_eq!(
        browser
            .client
            .find_all(fantoccini::Locator::Css("#activity svg.bars"))
            .await
            .unwrap()
            .len(),
        3
    );
    browser.screenshot("console-dashboard-activity").await;

    // Hosts: the host with its desktops, and how to add another.
    browser.goto(&format!("{base}/admin/hosts")).await;
    browser.wait_for("tr[data-host=host-1] .tag").await;
    let command = browser.wait_for("pre.command").await.text().await.unwrap();
    assert!(
        command.contains(&h.broker.fingerprint.to_string()) && command.contains("--join-token"),
        "{command}"
    );
    browser.screenshot("console-hosts").await;

    // Desktops: reset one, delete another after the confirmation page.
    let desktops = h.store().list_desktops(None).await.unwrap();
    browser
        .goto(&format!("{base}/admin/desktops?pool=office"))
        .await;
    browser
        .click(&format!(
            "tr[data-desktop='{}'] form button",
            desktops[0].name
        ))
        .await;
    browser.wait_for_text("resetting the desktop").await;
    browser
        .click(&format!(
            "tr[data-desktop='{}'] a[href$='/delete']",
            desktops[1].name
        ))
        .await;
    browser.wait_for("button.danger").await;
    browser.screenshot("console-delete").await;
    browser.click("button.danger").await;
    browser.wait_for_text("deleting the desktop").await;
    let deleting = h
        .store()
        .desktop_by_id(&desktops[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleting.state, DesktopState::Deleting);
    browser.screenshot("console-desktops").await;

    // Audit: filtered by event, and paged.
    browser
        .goto(&format!("{base}/admin/audit?event=admin_change"))
        .await;
    let text = browser.text().await;
    assert!(
        text.contains("reset") && text.contains("delete") && !text.contains("probe 59"),
        "{text}"
    );
    browser
        .goto(&format!("{base}/admin/audit?actor=robot"))
        .await;
    assert!(browser.text().await.contains("probe 59"));
    assert!(!browser.text().await.contains("probe 9\n"));
    browser.click("a[rel=next]").await;
    browser.wait_for("a[rel=prev]").await;
    let older = browser.text().await;
    assert!(
        older.contains("probe 9") && !older.contains("probe 59"),
        "{older}"
    );
    browser.screenshot("console-audit").await;

    // Helpdesk resets but is offered no deletion, and cannot delete by posting.
    browser.sign_out().await;
    browser.sign_in(&base, "hank", PASSWORD).await;
    browser.goto(&format!("{base}/admin/desktops")).await;
    browser.wait_for("div.actions form button").await;
    assert!(browser
        .client
        .find_all(fantoccini::Locator::Css("div.actions a[href$='/delete']"))
        .await
        .unwrap()
        .is_empty());
    let csrf = browser.csrf().await;
    let refused = browser
        .post_form(
            &format!("/admin/desktops/{}/delete", desktops[0].id),
            json!({ "csrf": csrf }),
        )
        .await;
    assert_eq!(refused, 403);
    browser.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_session_is_seen_live_and_logged_off_and_a_pool_deleted() {
    const TYPING: &str = r#"{"workload":"typing","width":640,"height":480}"#;
    let mut h = Harness::start("console-sessions").await;
    h.pool("office", Assignment::Floating, 1, 2, TYPING).await;
    h.pool("lab", Assignment::Floating, 1, 2, IDLE).await;
    let host = h.add_host("host-1", 8);
    h.ready("office", 1).await;
    h.ready("lab", 1).await;
    let alice = h.user("alice", "office").await;
    h.user_with_password("hank", PASSWORD, Role::Helpdesk, None)
        .await;
    h.user_with_password("root", PASSWORD, Role::Admin, None)
        .await;
    h.user_with_password("olga", PASSWORD, Role::Operator, None)
        .await;

    // Alice is connected with the real client.
    let (run, _) = connect_in_background(&alice, "office").await;
    wait_for("her session", || async {
        h.store().list_sessions(true).await.unwrap().len() == 1
    })
    .await;
    let session = h.store().list_sessions(true).await.unwrap().remove(0);
    let session_desktop = h
        .store()
        .desktop_by_id(&session.desktop_id)
        .await
        .unwrap()
        .unwrap()
        .name;
    let from = session
        .client_address
        .clone()
        .expect("the client's address");
    assert!(from.starts_with("127.0.0.1:"), "{from}");

    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    browser.sign_in(&base, "hank", PASSWORD).await;

    // The hosts page shows what the host reports of its CPU and memory.
    browser.goto(&format!("{base}/admin/hosts")).await;
    browser.wait_for("tr[data-host=host-1] td[data-cpu]").await;
    assert!(browser.text().await.contains(" GiB"));

    // The sessions page: who, where, from which address, and the figures the host
    // reports: the typing desktop sends frames.
    browser.goto(&format!("{base}/admin/sessions")).await;
    let row = format!("tr[data-session='{}']", session.id);
    browser.wait_for(&row).await;
    assert!(browser.text().await.contains(&from));
    let sending = format!("{row} td[data-fps]:not([data-fps='0'])");
    browser.wait_for(&sending).await;
    browser.screenshot("console-sessions").await;

    // The desktop's page: its screen as a thumbnail, refreshed, and the same session.
    // The typing desktop types on while the thumbnail (up to two seconds old: the host
    // and the broker each reuse one for a second) travels, so it is compared with the
    // screens of the last few seconds, sampled ten times a second.
    let desktop = host.desktop(&session_desktop).unwrap();
    let recent = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let sampler = {
        let (desktop, recent) = (desktop.clone(), recent.clone());
        tokio::spawn(async move {
            loop {
                let screen = small_screen(&desktop);
                {
                    let mut recent = recent.lock().unwrap();
                    recent.push_back(screen);
                    if recent.len() > 150 {
                        recent.pop_front();
                    }
                }
                // Often enough that the state the thumbnail caught is among the samples
                // even when the machine is busy.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    browser
        .click(&format!("{row} a[href^='/admin/desktops/']"))
        .await;
    browser.wait_for("img#thumbnail[data-loaded]").await;
    let size = browser
        .client
        .execute(
            "const i = document.getElementById('thumbnail'); return [i.naturalWidth, i.naturalHeight];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(size, json!([400, 300]), "640x480 fit into 480x300");
    let first = browser
        .client
        .execute(
            "return document.getElementById('thumbnail').dataset.loaded;",
            vec![],
        )
        .await
        .unwrap();
    wait_for("the thumbnail refreshed", || async {
        browser
            .client
            .execute(
                "return document.getElementById('thumbnail').dataset.loaded;",
                vec![],
            )
            .await
            .unwrap()
            != first
    })
    .await;
    // What it shows is the desktop's screen: both scaled to 100x75, they differ by a few
    // levels at most.
    let shown = browser
        .client
        .execute(
            "const i = document.getElementById('thumbnail');
             const c = document.createElement('canvas'); c.width = 100; c.height = 75;
             const g = c.getContext('2d'); g.imageSmoothingQuality = 'high';
             g.drawImage(i, 0, 0, 100, 75);
             return Array.from(g.getImageData(0, 0, 100, 75).data);",
            vec![],
        )
        .await
        .unwrap();
    sampler.abort();
    let shown: Vec<u8> = serde_json::from_value(shown).unwrap();
    let shown_rgb: Vec<u8> = shown.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    let recent = recent.lock().unwrap().clone();
    let mean = recent
        .iter()
        .map(|screen| {
            let diff: u64 = shown_rgb
                .iter()
                .zip(screen.as_raw())
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            diff as f64 / screen.as_raw().len() as f64
        })
        .fold(f64::INFINITY, f64::min);
    assert!(
        mean < 8.0,
        "the thumbnail differs from each screen of the last {} samples by {mean:.1} levels or more",
        recent.len()
    );
    let expected = recent.back().unwrap();
    let black: u64 = expected.as_raw().iter().map(|b| u64::from(*b)).sum();
    assert!(
        black as f64 / expected.as_raw().len() as f64 > 40.0,
        "the screen is not blank"
    );
    browser.wait_for(&format!("#session {row}")).await;
    browser.screenshot("console-desktop").await;

    // Helpdesk logs her off from there: the client ends, saying why.
    browser.click(&format!("{row} button")).await;
    browser.wait_for_text("session ended").await;
    match tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
    {
        Err(ClientError::DesktopGone(reason)) => {
            assert!(reason.contains("logged off"), "{reason}")
        }
        other => panic!("{:?}", other.err()),
    }
    browser.wait_for("p#session").await;
    assert!(h.store().list_sessions(true).await.unwrap().is_empty());

    // Helpdesk may not delete a pool, nor create an account; an administrator may
    // delete the pool, after a confirmation.
    let csrf = browser.csrf().await;
    let refused = browser
        .post_form(
            "/admin/users",
            json!({ "csrf": csrf, "name": "mallory", "password": PASSWORD, "role": "admin" }),
        )
        .await;
    assert_eq!(refused, 403);
    assert!(h.store().user_by_name("mallory").await.unwrap().is_none());
    let csrf = browser.csrf().await;
    let refused = browser
        .post_form("/admin/pools/lab/delete", json!({ "csrf": csrf }))
        .await;
    assert_eq!(refused, 403);
    browser.sign_out().await;
    browser.sign_in(&base, "root", PASSWORD).await;
    browser.goto(&format!("{base}/admin/pools/lab")).await;
    browser.click("a[href$='/delete']").await;
    browser.wait_for("button.danger").await;
    browser.screenshot("console-delete-pool").await;
    browser.click("button.danger").await;
    browser.wait_for_text("pool lab deleted").await;
    assert!(h.store().pool_by_name("lab").await.unwrap().is_none());
    wait_for("its desktop destroyed on the host", || async {
        host.desktops()
            .list()
            .iter()
            .all(|d| d.name().starts_with("office-"))
    })
    .await;

    // An operator acts on the estate but cannot create accounts either.
    browser.sign_out().await;
    browser.sign_in(&base, "olga", PASSWORD).await;
    browser.wait_for("#live").await;
    let csrf = browser.csrf().await;
    let refused = browser
        .post_form(
            "/admin/users",
            json!({ "csrf": csrf, "name": "mallory", "password": PASSWORD, "role": "user" }),
        )
        .await;
    assert_eq!(refused, 403);
    assert!(h.store().user_by_name("mallory").await.unwrap().is_none());
    browser.close().await;
    h.shutdown().await;
}

/// The desktop's screen now, scaled to 100x75 as a thumbnail would be.
fn small_screen(desktop: &std::sync::Arc<oriel_display_server::Desktop>) -> image::RgbImage {
    let screen = oriel_e2e::server_screen(desktop);
    let rgb: Vec<u8> = screen
        .pixels()
        .iter()
        .flat_map(|p| oriel_protocol::rgb_bytes(*p))
        .collect();
    let screen = image::RgbImage::from_raw(screen.width(), screen.height(), rgb).unwrap();
    image::imageops::resize(&screen, 100, 75, image::imageops::FilterType::Triangle)
}
