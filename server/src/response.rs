//! The response type of every route and the constructors of in-memory
//! responses. It uses nothing else of the crate, so the error mapping and
//! the metrics build responses without depending on the routes' plumbing.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// The response body of every route.
pub type RespBody = BoxBody<Bytes, Infallible>;
/// A response.
pub type Resp = Response<RespBody>;

/// A response with a full in-memory body.
pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    full(status, "application/json", body)
}

/// An empty response.
pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}
