//! API errors: a status and a JSON `{"error": "..."}` body. Store errors map to 4xx
//! where the caller is at fault; only real failures become 500 (and are logged).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oriel_protocol::api::ApiError;

use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiErr {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (429 and 503).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiErr {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Too many requests, or too busy: come back after `after`.
    pub fn retry(
        status: StatusCode,
        message: impl Into<String>,
        after: std::time::Duration,
    ) -> Self {
        Self {
            retry_after: Some(after),
            ..Self::new(status, message)
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<StoreError> for ApiErr {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::new(StatusCode::NOT_FOUND, what),
            StoreError::Conflict(what) => Self::new(StatusCode::CONFLICT, what),
            StoreError::Invalid(what) => Self::new(StatusCode::BAD_REQUEST, what),
            StoreError::PoolExhausted => {
                Self::new(StatusCode::CONFLICT, "pool exhausted: no desktop is free")
            }
            e if e.is_unavailable() => {
                tracing::warn!("store: {e}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; nothing was changed, try again shortly",
                )
            }
            other => {
                tracing::error!("store: {other}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<anyhow::Error> for ApiErr {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!("{e:#}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ApiError {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: a client that waits that long gets in.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.max(1).into());
        }
        response
    }
}
