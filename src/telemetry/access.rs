//! Per-request telemetry: the request metrics and the access log, both written when the
//! response body has been sent (or abandoned), so that duration and bytes are the real ones.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::metrics::Metrics;
use crate::body::ResponseBody;
use crate::error::BoxError;
use crate::shard::WorkerRef;

/// Status logged for a request whose client left before the response started (as nginx).
const CLIENT_CLOSED: u16 = 499;

/// One request, from its arrival to the end of its response. Counted in flight while alive;
/// dropped without a response (the client left first) it is logged as 499 and kept out of the
/// request metrics, so that clients hanging up do not count against the 4xx target.
#[derive(Debug)]
pub struct RequestRecord {
    inner: Option<Box<Inner>>,
}

#[derive(Debug)]
struct Inner {
    metrics: Arc<WorkerRef<Metrics>>,
    start: Instant,
    method: Method,
    route: usize,
    status: u16,
    /// What the log says happened, when the answer alone does not tell (a 408 for a stalled
    /// upload is complete as a response; its request was not).
    outcome: Option<&'static str>,
    log: Option<LogFields>,
}

#[derive(Debug)]
struct LogFields {
    /// Without the query string (it may carry personal data).
    path: String,
    request_id: HeaderValue,
    route: Option<Arc<str>>,
    upstream: Option<Arc<str>>,
    // Why the authority and not its text: cloning it shares its bytes, formatting it
    // allocated a string on every logged request.
    endpoint: Option<Authority>,
    attempts: u32,
}

impl RequestRecord {
    /// `log`: the path and request id, when the access log is on.
    pub fn new(
        metrics: Arc<WorkerRef<Metrics>>,
        start: Instant,
        method: &Method,
        log: Option<(&str, HeaderValue)>,
    ) -> Self {
        metrics.request_started();
        let route = metrics.unrouted();
        Self {
            inner: Some(Box::new(Inner {
                metrics,
                start,
                method: method.clone(),
                route,
                status: 0,
                outcome: None,
                log: log.map(|(path, request_id)| LogFields {
                    path: path.to_owned(),
                    request_id,
                    route: None,
                    upstream: None,
                    endpoint: None,
                    attempts: 0,
                }),
            })),
        }
    }

    /// The request matched a route, whose series are in slot `index` (`Metrics::register_routes`).
    pub fn routed(&mut self, index: usize, route: &Arc<str>, upstream: &Arc<str>) {
        if let Some(inner) = &mut self.inner {
            inner.route = index;
            if let Some(log) = &mut inner.log {
                log.route = Some(route.clone());
                log.upstream = Some(upstream.clone());
            }
        }
    }

    /// How the upstream exchange went: which task answered, after how many attempts.
    pub fn traced(&mut self, served_by: Option<&Authority>, attempts: u32) {
        if let Some(log) = self.inner.as_mut().and_then(|i| i.log.as_mut()) {
            log.endpoint = served_by.cloned();
            log.attempts = attempts;
        }
    }

    /// The access log's `outcome` for this request, whatever its response's body does.
    pub fn outcome(&mut self, outcome: &'static str) {
        if let Some(inner) = &mut self.inner {
            inner.outcome = Some(outcome);
        }
    }

    /// Wraps `resp` so that the record is written once its body is done.
    pub fn attach<B>(mut self, resp: Response<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(mut inner) = self.inner.take() else {
            return resp.map(|b| b.map_err(Into::into).boxed_unsync());
        };
        inner.status = resp.status().as_u16();
        resp.map(|body| {
            RecordedBody {
                inner: body,
                bytes: 0,
                record: Some(inner),
            }
            .boxed_unsync()
        })
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if let Some(mut inner) = self.inner.take() {
            inner.status = CLIENT_CLOSED;
            inner.finish(0, "aborted");
        }
    }
}

impl Inner {
    fn finish(self, bytes: u64, outcome: &'static str) {
        let outcome = self.outcome.unwrap_or(outcome);
        let elapsed = crate::clock::now().saturating_duration_since(self.start);
        self.metrics.request_ended();
        if self.status != CLIENT_CLOSED {
            self.metrics
                .record_request(self.route, &self.method, self.status, elapsed);
        }
        let Some(log) = self.log else {
            return;
        };
        tracing::info!(
            target: "access",
            method = %self.method,
            path = %log.path,
            status = self.status,
            route = log.route.as_deref().unwrap_or(""),
            upstream = log.upstream.as_deref().unwrap_or(""),
            endpoint = log.endpoint.as_ref().map_or("", Authority::as_str),
            attempts = log.attempts,
            // Microsecond precision, written without a float's noise (`0.582`, not
            // `0.5820489999999999`).
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            request_id = log.request_id.to_str().unwrap_or(""),
            bytes,
            outcome,
            "request"
        );
    }
}

pin_project_lite::pin_project! {
    struct RecordedBody<B: Body> {
        #[pin]
        inner: B,
        bytes: u64,
        record: Option<Box<Inner>>,
    }

    impl<B: Body> PinnedDrop for RecordedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(r) = this.record.take() {
                // hyper may stop polling a sized body once it is complete.
                let outcome = if this.inner.is_end_stream() { "complete" } else { "aborted" };
                r.finish(*this.bytes, outcome);
            }
        }
    }
}

impl<B> Body for RecordedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                *this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(r) = this.record.take() {
                    r.finish(*this.bytes, "error");
                }
            }
            Poll::Ready(None) => {
                if let Some(r) = this.record.take() {
                    r.finish(*this.bytes, "complete");
                }
            }
            Poll::Pending => {}
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
