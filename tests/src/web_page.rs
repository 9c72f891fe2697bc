//! The broker's browser client driven in a real browser: sign in at `/`, open a pool's
//! desktop, read `window.oriel` and the page's canvas back. Shared by the browser
//! client's tests and `oriel-bench browser`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use oriel_display_server::desktop::Desktop;
use oriel_display_server::source::synthetic::SyntheticSource;
use oriel_protocol::{Framebuffer, Size};
use serde_json::{json, Value};

use crate::broker::wait_up_to;
use crate::browser::Browser;

/// Signs in at the portal as `user` (once per browser).
pub async fn sign_in(browser: &Browser, base: &str, user: &str, password: &str) {
    browser.goto(&format!("{base}/")).await;
    browser.fill("#sign-in input[name=user]", user).await;
    browser
        .fill("#sign-in input[name=password]", password)
        .await;
    browser.click("#sign-in button").await;
    browser.wait_for("#pools:not([hidden])").await;
}

/// Opens `pool`'s desktop from the portal and waits until the session runs; returns
/// the desktop's name.
pub async fn open(browser: &Browser, base: &str, pool: &str) -> String {
    browser.goto(&format!("{base}/")).await;
    browser
        .click(&format!("li[data-pool='{pool}'] a.connect"))
        .await;
    wait_up_to(Duration::from_secs(30), "the desktop page runs", || async {
        script(browser, "return window.oriel && window.oriel.phase;").await == json!("running")
    })
    .await;
    let name = script(browser, "return window.oriel.session.contact.desktop;").await;
    name.as_str().expect("a desktop name").to_string()
}

/// What `body` (a function body) returns in the page; null if it throws.
pub async fn script(browser: &Browser, body: &str) -> Value {
    browser
        .client
        .execute(body, vec![])
        .await
        .unwrap_or(Value::Null)
}

/// A page function `grab(x, y, w, h)` that returns a canvas area as base64 RGBA.
pub const GRAB: &str = "const grab = (x, y, w, h) => { \
       const d = document.getElementById('screen').getContext('2d') \
         .getImageData(x, y, w, h).data; \
       let s = ''; for (let i = 0; i < d.length; i += 0x8000) \
         s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000)); \
       return btoa(s); };";

/// Canvas bytes (base64 RGBA) as the desktop's pixels (0x00RRGGBB).
pub fn pixels_of(base64_rgba: &Value) -> Vec<u32> {
    let rgba = base64::engine::general_purpose::STANDARD
        .decode(base64_rgba.as_str().expect("base64 pixels"))
        .expect("valid base64");
    rgba.chunks_exact(4)
        .map(|c| u32::from_be_bytes([0, c[0], c[1], c[2]]))
        .collect()
}

/// The page's canvas, as the desktop's pixels.
pub async fn canvas(browser: &Browser) -> Framebuffer {
    let body = format!(
        "{GRAB} const c = document.getElementById('screen'); \
         return [c.width, c.height, grab(0, 0, c.width, c.height)];"
    );
    let got = script(browser, &body).await;
    let width = u32::try_from(got[0].as_u64().expect("a width")).expect("a canvas width");
    let height = u32::try_from(got[1].as_u64().expect("a height")).expect("a canvas height");
    let mut fb = Framebuffer::new(Size::new(width, height));
    fb.pixels_mut().copy_from_slice(&pixels_of(&got[2]));
    fb
}

/// Waits until the desktop stopped changing and the page shows its last state, exactly.
pub async fn settled(browser: &Browser, desktop: &Arc<Desktop>) {
    wait_until_settled(desktop, "the page", || async {
        // With no video region open: its area shows the lossless state, not pictures.
        let body = "const o = window.oriel; \
                    return o.session && o.session.regions.size === 0 ? o.sourceSeq : null;";
        script(browser, body).await.as_u64()
    })
    .await;
}

/// Waits until `desktop` stopped changing (a synthetic one: its script ended) and
/// `shown` (the source sequence a client shows) is its last state.
pub async fn wait_until_settled<F, Fut>(desktop: &Arc<Desktop>, client: &str, shown: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    // A quiet moment is not the end: an idle desktop changes once in a while.
    let ended = || {
        let source = desktop.source();
        source
            .as_any()
            .downcast_ref::<SyntheticSource>()
            .is_none_or(|s| !s.script_running())
    };
    let sequence = || desktop.source().sequence();
    wait_up_to(
        Duration::from_secs(120),
        &format!("{client} shows the desktop's final state"),
        || async {
            let before = sequence();
            tokio::time::sleep(Duration::from_millis(300)).await;
            ended() && before == sequence() && shown().await == Some(before)
        },
    )
    .await;
}
