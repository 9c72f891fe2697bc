//! The admin console in a real browser (Debian's chromium, headless) against a real
//! broker and display server on loopback: sign-in, the live dashboard, an action, CSRF,
//! roles, sign-out and expired sessions. Screenshots go to `target/screenshots/`.

use oriel_broker::store::{Assignment, HostState, Role};
use oriel_e2e::broker::{wait_for, Harness};
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

    // Drain the host with its button: the store changes and the page says so.
    browser.click("tr[data-host=host-1] button").await;
    browser.wait_for(".flash.ok").await;
    assert!(browser.text().await.contains("host drained"));
    wait_for("the host drained", || async {
        h.store().list_hosts().await.unwrap()[0].state == HostState::Maintenance
    })
    .await;
    browser.screenshot("console-drained").await;

    // Signing out ends the session: its token is gone, the console asks again.
    browser.click("header form button").await;
    browser.wait_for("form.signin").await;
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
    let csrf = browser
        .wait_for("header form input[name=csrf]")
        .await
        .attr("value")
        .await
        .unwrap()
        .unwrap();
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
