//! `GET /health`: what Swarm's healthcheck and operators probe, on both listeners.

use http::header::ALLOW;
use http::{HeaderValue, Method, Response, StatusCode};

use super::Lifecycle;
use crate::body::ResponseBody;
use crate::reply::{json_error, json_response};

pub const PATH: &str = "/health";

/// 200 `{"status":"ok"}`, or 503 `{"status":"draining"}` once shutdown has begun so that load
/// balancers in front stop sending before we stop accepting.
pub fn respond(method: &Method, lifecycle: &Lifecycle) -> Response<ResponseBody> {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Use GET or HEAD for /health",
            None,
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if lifecycle.is_draining() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"status":"draining"}"#.to_vec(),
        )
    } else {
        json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(resp: Response<ResponseBody>) -> String {
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn ok_then_draining() {
        let l = Lifecycle::new();
        let r = respond(&Method::GET, &l);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, r#"{"status":"ok"}"#);
        l.begin_drain();
        let r = respond(&Method::GET, &l);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r).await, r#"{"status":"draining"}"#);
    }

    #[test]
    fn only_get_and_head() {
        let l = Lifecycle::new();
        assert_eq!(respond(&Method::HEAD, &l).status(), StatusCode::OK);
        let r = respond(&Method::POST, &l);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }
}
