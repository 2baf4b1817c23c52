//! The access log: one line per proxied request, written when its response body has been sent
//! (or abandoned), so that duration and bytes are the real ones.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::proxy::body::{BoxError, ResponseBody};
use crate::upstream::retry::{Attempts, ServedBy};

/// What is known of a request by the time its response starts.
#[derive(Debug)]
pub struct AccessRecord {
    pub start: Instant,
    pub method: Method,
    /// Without the query string (it may carry personal data).
    pub path: String,
    pub request_id: HeaderValue,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub status: u16,
    pub endpoint: Option<String>,
    pub attempts: u32,
}

impl AccessRecord {
    pub fn new(start: Instant, method: Method, path: &str, request_id: HeaderValue) -> Self {
        Self {
            start,
            method,
            path: path.to_owned(),
            request_id,
            route: None,
            upstream: None,
            status: 0,
            endpoint: None,
            attempts: 0,
        }
    }

    fn emit(&self, bytes: u64, outcome: &'static str) {
        let duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            target: "access",
            method = %self.method,
            path = %self.path,
            status = self.status,
            route = self.route.as_deref().unwrap_or(""),
            upstream = self.upstream.as_deref().unwrap_or(""),
            endpoint = self.endpoint.as_deref().unwrap_or(""),
            attempts = self.attempts,
            duration_ms,
            request_id = self.request_id.to_str().unwrap_or(""),
            bytes,
            outcome,
            "request"
        );
    }

    /// Wraps `resp` so that the line is written once its body is done.
    pub fn attach(mut self, resp: Response<ResponseBody>) -> Response<ResponseBody> {
        self.status = resp.status().as_u16();
        if let Some(ServedBy(a)) = resp.extensions().get::<ServedBy>() {
            self.endpoint = Some(a.to_string());
        }
        if let Some(Attempts(n)) = resp.extensions().get::<Attempts>() {
            self.attempts = *n;
        }
        resp.map(|inner| {
            AccessLogBody {
                inner,
                bytes: 0,
                record: Some(Box::new(self)),
            }
            .boxed_unsync()
        })
    }
}

pin_project_lite::pin_project! {
    struct AccessLogBody {
        #[pin]
        inner: ResponseBody,
        bytes: u64,
        record: Option<Box<AccessRecord>>,
    }

    impl PinnedDrop for AccessLogBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(r) = this.record.take() {
                // hyper may stop polling a sized body once it is complete.
                let outcome = if this.inner.is_end_stream() { "complete" } else { "aborted" };
                r.emit(*this.bytes, outcome);
            }
        }
    }
}

impl Body for AccessLogBody {
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
                    r.emit(*this.bytes, "error");
                }
            }
            Poll::Ready(None) => {
                if let Some(r) = this.record.take() {
                    r.emit(*this.bytes, "complete");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
