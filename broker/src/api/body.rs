//! Every request body is read whole, up to [`MAX_BODY`], before any handler runs.
//!
//! A handler that answers early (401, 403, 429) drops the body unread; hyper then
//! closes the connection after the answer unless the body happened to be in already,
//! and it does so without a `Connection: close`, so the client pools a connection that
//! is about to go and its next request on it fails (schemathesis saw a TLS EOF in CI).
//! Read first, the connection stays usable whatever the handler answers. The few
//! answers given before the body is complete do say `Connection: close`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::ApiErr;

/// Requests larger than this are refused with 413.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// The middleware (`axum::middleware::from_fn`).
pub(super) async fn read_whole(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return closing(too_large());
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => {
            let body = Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => closing(too_large()),
        Err(e) => closing(ApiErr::bad_request(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

fn too_large() -> ApiErr {
    ApiErr::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request bodies are limited to {MAX_BODY} bytes"),
    )
}

/// The rest of the body is not read: the connection ends with this answer.
fn closing(err: ApiErr) -> Response {
    let mut response = err.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
