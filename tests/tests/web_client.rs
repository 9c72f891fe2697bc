//! The browser client in a real browser (Debian's chromium, headless, driven over
//! WebDriver) against a real broker and display server on loopback: sign in at `/`,
//! connect, and the page's canvas (read back with `getImageData`) equals the desktop's
//! own screen pixel for pixel; keys typed in the page reach the desktop; a wrong
//! certificate hash and a replayed ticket are refused. Screenshots go to
//! `target/screenshots/`.

// Tests print the figures they measure (never asserted).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use oriel_broker::store::{Assignment, Role};
use oriel_display_server::desktop::Desktop;
use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource, Workload};
use oriel_display_server::DisplayServer;
use oriel_e2e::broker::{wait_up_to, Harness};
use oriel_e2e::browser::Browser;
use oriel_e2e::web_page::{self, canvas, open, pixels_of, settled, GRAB};
use oriel_e2e::{diff_pixels, server_screen, Replayer};
use oriel_media::luma_psnr;
use oriel_protocol::{InputEvent, Rect, Size};
use serde_json::json;

const PASSWORD: &str = "a-long-password";

/// A synthetic desktop that plays `workload` for `ticks` frames at 30 fps, then stays.
fn params(workload: &str, ticks: u32) -> String {
    format!(r#"{{"workload":"{workload}","width":640,"height":480,"ticks":{ticks}}}"#)
}

async fn sign_in(browser: &Browser, base: &str, user: &str) {
    web_page::sign_in(browser, base, user, PASSWORD).await;
}

fn desktop_on(hosts: &[Arc<DisplayServer>], name: &str) -> Arc<Desktop> {
    hosts
        .iter()
        .find_map(|h| h.desktop(name))
        .unwrap_or_else(|| panic!("no host runs {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lossless_workload_is_pixel_exact_in_the_page() {
    let mut h = Harness::start("web-exact").await;
    let workloads = ["idle", "typing", "scroll", "drag", "mixed"];
    for w in workloads {
        h.pool(w, Assignment::Floating, 1, 2, &params(w, 150)).await;
    }
    let host = h.add_host("host-1", 16);
    h.user_with_password("wendy", PASSWORD, Role::User, None)
        .await;
    for w in workloads {
        h.store().entitle_user(w, "wendy").await.unwrap();
        h.ready(w, 1).await;
    }
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    sign_in(&browser, &base, "wendy").await;
    browser.screenshot("web-portal").await;
    for w in workloads {
        let name = open(&browser, &base, w).await;
        let desktop = desktop_on(std::slice::from_ref(&host), &name);
        settled(&browser, &desktop).await;
        let shown = canvas(&browser).await;
        let truth = server_screen(&desktop);
        browser.screenshot(&format!("web-{w}")).await;
        assert_eq!(
            shown.size(),
            truth.size(),
            "{w}: the canvas has the desktop's size"
        );
        assert_eq!(
            diff_pixels(&shown, &truth),
            0,
            "{w}: the page's canvas differs from the desktop's screen"
        );
        let frames = web_page::script(&browser, "return window.oriel.framesShown;").await;
        assert!(frames.as_u64().unwrap_or(0) > 0, "{w}: frames were shown");
    }
    browser.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_typed_in_the_page_reach_the_desktop() {
    let mut h = Harness::start("web-keys").await;
    h.pool("office", Assignment::Floating, 1, 2, &params("typing", 30))
        .await;
    let host = h.add_host("host-1", 4);
    h.user_with_password("kim", PASSWORD, Role::User, Some("office"))
        .await;
    h.ready("office", 1).await;
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    sign_in(&browser, &base, "kim").await;
    let name = open(&browser, &base, "office").await;
    let desktop = desktop_on(std::slice::from_ref(&host), &name);
    browser
        .wait_for("#screen")
        .await
        .send_keys("hi")
        .await
        .unwrap();
    let recorded = || {
        let source = desktop.source();
        let synthetic = source
            .as_any()
            .downcast_ref::<SyntheticSource>()
            .expect("a synthetic desktop");
        synthetic.recorded_input().to_vec()
    };
    // KEY_H and KEY_I, each pressed and released: physical codes, as the native viewer.
    let expected = [35u16, 23]
        .iter()
        .flat_map(|&code| {
            [
                InputEvent::Key { code, down: true },
                InputEvent::Key { code, down: false },
            ]
        })
        .collect::<Vec<_>>();
    wait_up_to(
        Duration::from_secs(20),
        "the keys reach the desktop",
        || {
            let keys: Vec<_> = recorded()
                .into_iter()
                .filter(|e| matches!(e, InputEvent::Key { .. }))
                .collect();
            let reached = keys == expected;
            async move { reached }
        },
    )
    .await;
    browser.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_certificate_hash_and_a_replayed_ticket_are_refused() {
    let mut h = Harness::start("web-refused").await;
    h.pool("office", Assignment::Floating, 1, 2, &params("idle", 1))
        .await;
    h.add_host("host-1", 4);
    h.user_with_password("rita", PASSWORD, Role::User, Some("office"))
        .await;
    h.ready("office", 1).await;
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    sign_in(&browser, &base, "rita").await;
    // From the portal page: its own modules, its own token.
    let script = r#"
        const done = arguments[arguments.length - 1];
        (async () => {
          const { Session } = await import('/web/session.js');
          const token = sessionStorage.getItem('oriel.token');
          const ask = async () => (await fetch('/api/v1/connect', {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            body: JSON.stringify({ pool: 'office' }),
          })).json();
          const view = { welcome() {}, frame() {}, cursor() {} };
          const outcome = async (contact) => {
            try {
              const session = new Session(contact, view, { width: 640, height: 480 });
              await session.start();
              session.close();
              return 'connected';
            }
            catch (e) { return `refused: ${e.message}`; }
          };
          const wrongHash = await ask();
          wrongHash.web.fingerprints = ['00'.repeat(32)];
          const replayed = await ask();
          const first = await outcome(replayed);
          const second = await outcome(replayed);
          return { wrongHash: await outcome(wrongHash), first, second };
        })().then(done, (e) => done({ error: String(e) }));
    "#;
    let got = browser.client.execute_async(script, vec![]).await.unwrap();
    assert!(
        got["wrongHash"]
            .as_str()
            .unwrap_or("")
            .starts_with("refused"),
        "a certificate with another hash is not trusted: {got}"
    );
    assert_eq!(got["first"], json!("connected"), "{got}");
    let second = got["second"].as_str().unwrap_or("");
    assert!(
        second.starts_with("refused") && second.contains("ticket"),
        "a ticket is good once: {got}"
    );
    browser.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_plays_through_webcodecs_and_ends_pixel_exact() {
    let ticks = 240;
    let mut h = Harness::start("web-video").await;
    let host = h.add_host("host-1", 4);
    h.user_with_password("vic", PASSWORD, Role::User, None)
        .await;
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    sign_in(&browser, &base, "vic").await;
    // The desktop plays from its start, watched or not: the pool is made once the
    // browser is ready, so the page sees most of the video even on a busy machine.
    h.pool(
        "cinema",
        Assignment::Floating,
        1,
        2,
        &params("video", ticks),
    )
    .await;
    h.store().entitle_user("cinema", "vic").await.unwrap();
    h.ready("cinema", 1).await;
    let name = open(&browser, &base, "cinema").await;
    // Samples every fourth picture as the page paints it (at most 40).
    let script = format!(
        "{GRAB} window.oriel.samples = window.oriel.samples || []; \
         if (!window.oriel.onPicture) window.oriel.onPicture = (r, seq) => {{ \
           if (window.oriel.picturesShown % 4 === 1 && window.oriel.samples.length < 40) \
             window.oriel.samples.push([seq, r.x, r.y, r.width, r.height, \
               grab(r.x, r.y, r.width, r.height)]); }}; \
         return true;"
    );
    web_page::script(&browser, &script).await;
    let desktop = desktop_on(std::slice::from_ref(&host), &name);
    settled(&browser, &desktop).await;
    browser.screenshot("web-video").await;
    let pictures = web_page::script(&browser, "return window.oriel.picturesShown;").await;
    let pictures = pictures.as_u64().unwrap_or(0);
    assert!(pictures >= 30, "the page showed {pictures} video pictures");

    let samples = web_page::script(&browser, "return window.oriel.samples;").await;
    let samples = samples.as_array().expect("samples");
    assert!(!samples.is_empty(), "no picture was sampled");
    let config = SyntheticConfig {
        workload: Workload::Video,
        size: Size::new(640, 480),
        fps: 30,
        max_ticks: Some(ticks.into()),
    };
    let mut replay = Replayer::new(&config);
    let mut worst = f64::INFINITY;
    for sample in samples {
        let n = |i: usize| u32::try_from(sample[i].as_u64().expect("a number")).unwrap();
        let seq = sample[0].as_u64().expect("the picture's source sequence");
        let rect = Rect::new(n(1), n(2), n(3), n(4));
        let mut truth = Vec::new();
        replay.at(seq).read_rect(&rect, &mut truth);
        let psnr = luma_psnr(&truth, &pixels_of(&sample[5]));
        assert!(psnr >= 35.0, "the picture of sequence {seq}: {psnr:.1} dB");
        worst = worst.min(psnr);
    }
    println!(
        "{pictures} pictures shown, {} sampled, PSNR min {worst:.1} dB",
        samples.len()
    );
    let shown = canvas(&browser).await;
    assert_eq!(
        diff_pixels(&shown, &server_screen(&desktop)),
        0,
        "after the video the canvas equals the desktop's screen"
    );
    browser.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_after_an_outage() {
    let mut h = Harness::start("web-outage").await;
    h.pool(
        "office",
        Assignment::Floating,
        1,
        2,
        &params("typing", 1_000_000),
    )
    .await;
    let (_host, relay) = h.add_host_behind_web_relay("host-1", 4).await;
    h.user_with_password("omar", PASSWORD, Role::User, Some("office"))
        .await;
    h.ready("office", 1).await;
    let base = h.broker.url();
    let browser = Browser::start(&h.dir).await;
    sign_in(&browser, &base, "omar").await;
    let first = open(&browser, &base, "office").await;
    let frames = || async {
        web_page::script(&browser, "return window.oriel.framesShown;")
            .await
            .as_u64()
    };
    wait_up_to(Duration::from_secs(20), "frames flow", || async {
        frames().await > Some(10)
    })
    .await;

    // The path to the host goes dark: the page notices within the idle timeout.
    relay.set_cut(true);
    wait_up_to(
        Duration::from_secs(60),
        "the page notices the outage",
        || async {
            web_page::script(&browser, "return window.oriel.phase;").await == json!("reconnecting")
        },
    )
    .await;
    browser.screenshot("web-reconnecting").await;
    let before = frames().await.unwrap_or(0);
    relay.set_cut(false);
    wait_up_to(Duration::from_secs(90), "the page runs again", || async {
        web_page::script(&browser, "return window.oriel.phase;").await == json!("running")
            && frames().await > Some(before + 10)
    })
    .await;
    let again = web_page::script(&browser, "return window.oriel.session.contact.desktop;").await;
    assert_eq!(again, json!(first), "the same desktop after the outage");
    browser.screenshot("web-reconnected").await;
    browser.close().await;
    h.shutdown().await;
}
