//! Errors the gateway answers itself, all in the old gateway's JSON shape:
//! `{"error":"Bad Gateway","message":"...","service":"app-icalink","timestamp":"<RFC 3339>"}`.

use http::{HeaderValue, Response, StatusCode};

use crate::auth::AuthError;
use crate::body::ResponseBody;
use crate::reply::json_error;
use crate::routing::PathError;
use crate::upstream::UpstreamError;

/// Everything that makes the gateway answer instead of the upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request not authenticated: {0}")]
    Unauthorized(#[source] AuthError),
    #[error("no route for {method} {path}")]
    NoRoute { method: http::Method, path: String },
    #[error("invalid request path: {0}")]
    BadPath(#[from] PathError),
    #[error("rewritten request target is not a valid URI")]
    BadUri,
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("client went away while sending the request body")]
    ClientBody,
    #[error("the request body did not arrive within {0:?}")]
    ClientTimeout(std::time::Duration),
    #[error("upstream {service} failed")]
    Upstream {
        service: std::sync::Arc<str>,
        #[source]
        source: UpstreamError,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::BadPath(_) | Self::BadUri | Self::ClientBody => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Upstream { source, .. } => match source {
                UpstreamError::NoEndpoints | UpstreamError::CircuitOpen { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The client-facing message: says what happened without leaking internals.
    fn message(&self) -> String {
        match self {
            // The old gateway's words, which clients match on.
            Self::Unauthorized(e) => e.to_string(),
            Self::NoRoute { method, path } => format!("Route {method}:{path} not found"),
            Self::BadPath(e) => format!("Invalid request path: {e}"),
            Self::BadUri => "Invalid request target".to_owned(),
            Self::PayloadTooLarge { limit } => {
                format!("Request body is larger than {limit} bytes")
            }
            Self::ClientBody => "Request body could not be read".to_owned(),
            Self::ClientTimeout(_) => "Request body not received in time".to_owned(),
            Self::Upstream { source, .. } => match source {
                UpstreamError::NoEndpoints => "No healthy task available",
                // The old gateway's texts for these two, which clients may already show.
                UpstreamError::CircuitOpen { .. } => "服务暂时不可用，请稍后再试",
                UpstreamError::Timeout(_) => "请求超时",
                _ => "Upstream service unavailable",
            }
            .to_owned(),
        }
    }

    fn service(&self) -> Option<&str> {
        match self {
            Self::Upstream { service, .. } => Some(service),
            _ => None,
        }
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let mut resp = json_error(self.status(), &self.message(), self.service());
        if let Self::Upstream {
            source: UpstreamError::CircuitOpen { retry_after },
            ..
        } = &self
        {
            // Whole seconds, rounded up: a client retrying at once would only be rejected again.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if matches!(self, Self::PayloadTooLarge { .. } | Self::ClientTimeout(_)) {
            // The unread body is still on the wire; close rather than read megabytes of it.
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use http::header::CONTENT_TYPE;
    use http_body_util::BodyExt;

    use super::*;

    async fn body_json(resp: Response<ResponseBody>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn bad_gateway_has_the_old_shape() {
        let http_err = http::Request::builder()
            .uri("bad uri")
            .body(())
            .unwrap_err();
        let err = ProxyError::Upstream {
            service: "app-icalink".into(),
            source: UpstreamError::Uri(http_err),
        };
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            resp.headers()[CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        let v = body_json(resp).await;
        assert_eq!(v["error"], "Bad Gateway");
        assert_eq!(v["message"], "Upstream service unavailable");
        assert_eq!(v["service"], "app-icalink");
        let ts = v["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
    }

    #[tokio::test]
    async fn no_healthy_task_is_503() {
        let err = ProxyError::Upstream {
            service: "app-icalink".into(),
            source: UpstreamError::NoEndpoints,
        };
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let v = body_json(resp).await;
        assert_eq!(v["error"], "Service Unavailable");
        assert_eq!(v["message"], "No healthy task available");
        assert_eq!(v["service"], "app-icalink");
    }

    #[tokio::test]
    async fn open_circuit_is_503_with_retry_after() {
        let err = ProxyError::Upstream {
            service: "app-icalink".into(),
            source: UpstreamError::CircuitOpen {
                retry_after: std::time::Duration::from_millis(7200),
            },
        };
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[http::header::RETRY_AFTER], "8");
        let v = body_json(resp).await;
        assert_eq!(v["service"], "app-icalink");
        assert_eq!(v["message"], "服务暂时不可用，请稍后再试");
    }

    #[tokio::test]
    async fn deadline_is_504() {
        let err = ProxyError::Upstream {
            service: "app-icalink".into(),
            source: UpstreamError::Timeout(std::time::Duration::from_secs(15)),
        };
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(body_json(resp).await["error"], "Gateway Timeout");
    }

    #[tokio::test]
    async fn not_found_has_no_service() {
        let err = ProxyError::NoRoute {
            method: http::Method::GET,
            path: "/nope".into(),
        };
        let v = body_json(err.into_response()).await;
        assert_eq!(v["error"], "Not Found");
        assert_eq!(v["message"], "Route GET:/nope not found");
        assert!(v.get("service").is_none());
    }
}
