//! The leaf service: choose an endpoint and send the request to it over the pooled client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use tower::Service;

use super::UpstreamError;
use super::client::HttpClient;
use crate::proxy::body::RequestBody;

/// Round-robin over a static endpoint list.
#[derive(Clone)]
pub struct Forward {
    client: HttpClient,
    endpoints: Arc<[Authority]>,
    next: Arc<AtomicUsize>,
}

impl Forward {
    pub fn new(client: HttpClient, endpoints: Vec<Authority>) -> Self {
        Self {
            client,
            endpoints: endpoints.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn pick(&self) -> Option<&Authority> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(i)
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, UpstreamError>> + Send>>;

impl Service<Request<RequestBody>> for Forward {
    type Response = Response<Incoming>;
    type Error = UpstreamError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let Some(endpoint) = self.pick().cloned() else {
            return Box::pin(std::future::ready(Err(UpstreamError::NoEndpoints)));
        };
        let (mut head, body) = req.into_parts();
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(endpoint.clone())
            .path_and_query(
                head.uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            )
            .build();
        head.uri = match uri {
            Ok(uri) => uri,
            Err(e) => return Box::pin(std::future::ready(Err(UpstreamError::Uri(e)))),
        };
        let fut = self.client.request(Request::from_parts(head, body));
        Box::pin(async move {
            fut.await.map_err(|source| {
                if source.is_connect() {
                    UpstreamError::Connect { endpoint, source }
                } else {
                    UpstreamError::Request { endpoint, source }
                }
            })
        })
    }
}
