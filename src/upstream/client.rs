//! The pooled HTTP/1.1 client every upstream sends through.

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::UpstreamConfig;
use crate::proxy::body::RequestBody;

pub type HttpClient = Client<HttpConnector, RequestBody>;

pub fn build(cfg: &UpstreamConfig) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(cfg.connect_timeout));
    Client::builder(TokioExecutor::new())
        // Without a timer the idle timeout is silently ignored, and a socket the backend closed
        // at its own keep-alive limit is reused: "connection closed before message completed".
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .build(connector)
}
