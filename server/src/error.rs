//! The one place that maps errors to HTTP responses.
//!
//! Every handler returns `Result<Response, ApiError>`; [`ApiError::response`]
//! turns the error into a status and the JSON body
//! `{"error":{"code","message"}}`. Messages say what was wrong with the
//! *request*; internal failures (store, I/O) are logged here and answered
//! with a generic `internal` error, never with their details.

use std::time::Duration;

use http::{HeaderValue, StatusCode};

use crate::response::{json_response, Resp};
use crate::store::StoreError;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message (never internals).
    pub message: String,
    /// `Retry-After` to send, if any.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 413.
    pub fn too_large(what: &str, max: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{what} is larger than the {max} bytes allowed"),
        )
    }

    /// 500, logging `detail` but never sending it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; see its log",
        )
    }

    /// The response.
    pub fn response(&self) -> Resp {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut resp = json_response(self.status, &body);
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::SerialNotGreater {
                target,
                serial,
                highest,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "serial_not_greater",
                format!(
                    "serial {serial} is not above {highest}, the highest ever published for \
                     {target}; publish a bundle with a higher serial"
                ),
            ),
            StoreError::TooManyPending { mac, max } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_pending",
                format!("{mac} already has {max} pending uploads; an admin must review them first"),
            )
            .retry_after(Duration::from_secs(3600)),
            StoreError::QuarantineFull { .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "quarantine_full",
                "the upload quarantine is full; an admin must review it first",
            ),
            StoreError::Unavailable { retry_after_secs } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the server's store is unreachable, so nothing was written; try again later",
            )
            .retry_after(Duration::from_secs(retry_after_secs)),
            StoreError::Backend(detail) => ApiError::internal(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn internals_never_reach_the_body() {
        let e: ApiError = StoreError::Backend("/var/lib/secret/path: EIO".into()).into();
        let resp = e.response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret"), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["code"], "internal");
    }

    #[test]
    fn an_unreachable_store_is_a_503_with_retry_after() {
        let e: ApiError = StoreError::Unavailable {
            retry_after_secs: 7,
        }
        .into();
        let r = e.response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "7");
    }

    #[test]
    fn retry_after_is_sent_in_whole_seconds() {
        let r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
            .retry_after(Duration::from_millis(100))
            .response();
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "1");
    }
}
