//! HTTP plumbing shared by the routes: a streamed body over bytes already
//! in memory, counted in the metrics, and bounded body reads. The response
//! type itself is [`crate::response`]'s (re-exported here), which neither
//! errors nor metrics need this module for.
//!
//! Invariant: every request body is read through [`read_body`], which
//! refuses a declared or actual length above the route's limit (413) and a
//! body slower than the configured timeout (408).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::error::ApiError;
use crate::metrics::Metrics;
pub use crate::response::{empty, full, json_response, Resp, RespBody};

/// Size of each frame of a streamed bundle or upload, in bytes.
pub const STREAM_CHUNK_BYTES: usize = 16 * 1024;

/// A body that hands out `data` in [`STREAM_CHUNK_BYTES`] frames and counts
/// what it sent in the metrics.
#[derive(Debug)]
pub struct Streamed {
    data: Bytes,
    metrics: Option<Arc<Metrics>>,
}

impl Streamed {
    /// Streams `data`, counting into `metrics` if given.
    pub fn new(data: Bytes, metrics: Option<Arc<Metrics>>) -> Self {
        Streamed { data, metrics }
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = this.data.len().min(STREAM_CHUNK_BYTES);
        let chunk = this.data.split_to(n);
        if let Some(m) = &this.metrics {
            m.add_bytes_served(n as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

/// Reads a request body of at most `max` bytes within `timeout`.
///
/// A body over `max` (declared or sent) is refused with 413 at once, and
/// up to `drain` more of its bytes are read and discarded behind the
/// answer, within `timeout` ("lingering close"): a connection closed with
/// unread bytes is reset, and a client still sending would see the reset
/// instead of the 413. A declared length beyond `max + drain` is not
/// waited for: that connection closes at once.
pub async fn read_body(
    req: http::Request<Incoming>,
    what: &str,
    max: u64,
    timeout: Duration,
    drain: u64,
) -> Result<Bytes, ApiError> {
    if let Some(len) = req.headers().get(http::header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("bad_header", "invalid Content-Length"))?;
        if len > max {
            if len <= max.saturating_add(drain) {
                drain_refused(req.into_body(), drain, timeout);
            }
            return Err(ApiError::too_large(what, max));
        }
    }
    let mut body = req.into_body();
    let mut got = Vec::new();
    let read = tokio::time::timeout(timeout, async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                ApiError::bad_request("bad_body", "the request body could not be read")
            })?;
            if let Some(data) = frame.data_ref() {
                if got.len() as u64 + data.len() as u64 > max {
                    return Err(ApiError::too_large(what, max));
                }
                got.extend_from_slice(data);
            }
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => Ok(Bytes::from(got)),
        Ok(Err(e)) => {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                drain_refused(body, drain, timeout);
            }
            Err(e)
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body was not received within {timeout:?}"),
        )),
    }
}

/// Reads and discards up to `max` bytes of a refused body within `timeout`,
/// on a task of its own, then drops it (which closes the connection if the
/// body was not over by then).
fn drain_refused(mut body: Incoming, max: u64, timeout: Duration) {
    if max == 0 {
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > max {
                    break;
                }
            }
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streamed_body_yields_everything_in_bounded_frames() {
        let data = Bytes::from(vec![7u8; STREAM_CHUNK_BYTES * 2 + 5]);
        let metrics = Arc::new(Metrics::default());
        let mut body = Streamed::new(data.clone(), Some(metrics.clone()));
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let mut got = Vec::new();
        while let Some(f) = body.frame().await {
            let d = f.expect("frame").into_data().expect("data");
            assert!(d.len() <= STREAM_CHUNK_BYTES);
            got.extend_from_slice(&d);
        }
        assert_eq!(got, data);
        assert!(body.is_end_stream());
        assert!(metrics
            .render()
            .contains(&format!("satchel_bytes_served_total {}", data.len())));
    }
}
