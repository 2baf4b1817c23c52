//! The answers the gateway gives itself, in the old gateway's JSON shape:
//! `{"error":"Bad Gateway","message":"...","service":"app-icalink","timestamp":"<RFC 3339>"}`.
//! Errors of the proxy, of the listeners (a malformed request) and of the admin pages all
//! come from here, so clients see one shape whoever refused them.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use crate::body::ResponseBody;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    timestamp: String,
}

/// A JSON error response in the old gateway's shape.
pub fn json_error(
    status: StatusCode,
    message: &str,
    service: Option<&str>,
) -> Response<ResponseBody> {
    let body = ErrorBody {
        error: status.canonical_reason().unwrap_or("Error"),
        message,
        service,
        #[allow(clippy::disallowed_methods)] // wall-clock text, on the error path
        timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    };
    // Serializing a struct of strings cannot fail; an empty object is still valid JSON.
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    json_response(status, bytes)
}

/// A small JSON response owned by the gateway (errors, /health, admin pages).
pub fn json_response(status: StatusCode, bytes: Vec<u8>) -> Response<ResponseBody> {
    let len = bytes.len();
    let mut resp = Response::new(
        Full::new(Bytes::from(bytes))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
