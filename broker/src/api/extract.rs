//! Extractors of the API whose refusals are JSON errors like every other answer:
//! axum's own answer a malformed body, path or query in plain text.
//!
//! - [`Body`]: a JSON body; 400 (not JSON), 415 (not `application/json`), 422 (JSON,
//!   but not what the operation takes). A body too large never gets here: 413 comes
//!   from [`super::body`], which reads every body first.
//! - [`Param`]: path parameters; [`Params`]: query parameters; 400 when they do not parse.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiErr;

/// A JSON request body.
pub(super) struct Body<T>(pub T);

/// Path parameters.
pub(super) struct Param<T>(pub T);

/// Query parameters.
pub(super) struct Params<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiErr> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|e: JsonRejection| ApiErr::new(e.status(), e.body_text()))?;
        // Every body of this API is an object; serde would also fill a struct from an
        // array, by position.
        if !value.is_object() {
            return Err(ApiErr::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the body must be a JSON object",
            ));
        }
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| ApiErr::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
    }
}

impl<S, T> FromRequestParts<S> for Param<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiErr> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Param(value))
            .map_err(|e: PathRejection| ApiErr::new(e.status(), e.body_text()))
    }
}

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiErr> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Params(value))
            .map_err(|e: QueryRejection| ApiErr::new(e.status(), e.body_text()))
    }
}
