//! The user's pages, served by the broker: `/` to sign in and pick a desktop, and
//! `/desktop` showing it in the tab. The page speaks the display protocol itself, over
//! WebTransport to the display server, decoding into a canvas: plain JavaScript
//! modules compiled into the binary, no build step (see `assets/vendor/README.md` for
//! the two vendored npm files).

use axum::extract::{Path, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Every file the pages load, by name.
const ASSETS: &[(&str, &str, &str)] = &[
    ("portal.js", JS, include_str!("assets/portal.js")),
    ("desktop.js", JS, include_str!("assets/desktop.js")),
    ("session.js", JS, include_str!("assets/session.js")),
    ("video.js", JS, include_str!("assets/video.js")),
    ("keys.js", JS, include_str!("assets/keys.js")),
    ("wire.js", JS, include_str!("assets/wire.js")),
    ("bincode.js", JS, include_str!("assets/bincode.js")),
    ("decoder.js", JS, include_str!("assets/decoder.js")),
    ("audio.js", JS, include_str!("assets/audio.js")),
    (
        "audio-worklet.js",
        JS,
        include_str!("assets/audio-worklet.js"),
    ),
    ("clipboard.js", JS, include_str!("assets/clipboard.js")),
    ("web.css", CSS, include_str!("assets/web.css")),
    (
        "vendor/fzstd-0.1.1-oriel.mjs",
        JS,
        include_str!("assets/vendor/fzstd-0.1.1-oriel.mjs"),
    ),
    (
        "vendor/xxhash3.mjs",
        JS,
        include_str!("assets/vendor/xxhash3.mjs"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The pages' routes (merged into the API's router).
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page(include_str!("assets/index.html")) }),
        )
        .route(
            "/desktop",
            get(|| async { page(include_str!("assets/desktop.html")) }),
        )
        .route("/web/{*file}", get(asset))
        .layer(axum::middleware::from_fn(secure_headers))
}

fn page(html: &'static str) -> Response {
    ([(header::CONTENT_TYPE, HTML)], html).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// Pages run only our scripts (and the zstd and hash code's WebAssembly), talk only to
/// the broker and, over WebTransport (an `https:` URL), to display servers; never framed.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    crate::console::page_headers(
        &mut response,
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data: blob:; connect-src 'self' https:; frame-ancestors 'none'; \
         form-action 'self'; base-uri 'none'",
    );
    response
}
