//! The admin listener (`server.admin_listen`): never published by the stack, so it can say more
//! than the public one. Today `/health`; metrics and status pages join it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::proxy::body::ResponseBody;
use crate::proxy::error::json_error;
use crate::server::{Handler, Lifecycle, health};

#[derive(Debug)]
pub struct Admin {
    lifecycle: Lifecycle,
}

impl Admin {
    pub fn new(lifecycle: Lifecycle) -> Self {
        Self { lifecycle }
    }
}

impl Handler for Admin {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static {
        let resp = match req.uri().path() {
            health::PATH => health::respond(req.method(), &self.lifecycle),
            path => json_error(
                StatusCode::NOT_FOUND,
                &format!("Route {}:{path} not found", req.method()),
                None,
            ),
        };
        std::future::ready(resp)
    }
}
