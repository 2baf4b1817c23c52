//! CORS from `[cors]`, as the old gateway's @fastify/cors answered browsers: preflights for an
//! allowed origin are answered here (204) and never reach a task; answers to an allowed origin
//! carry `Access-Control-Allow-Origin` (the origin itself, never `*`: credentials are allowed),
//! `-Credentials` and `Vary: Origin`; a disallowed origin gets no `Access-Control-Allow-*`
//! header at all. A request without `Origin` is not a CORS request and costs nothing here.
//!
//! Why not tower-http's `CorsLayer` (read at tower-http 0.6/0.7, `cors/mod.rs`): it treats
//! every `OPTIONS` as a preflight, so an `OPTIONS` without `Origin` would never reach the API;
//! it answers preflights 200, not 204; it adds `-Credentials`, `-Methods`, `-Headers` and
//! `-Max-Age` whatever the origin, so a disallowed origin still gets `Access-Control-Allow-*`
//! headers; and it writes into the response's map, which a proxied response's fields are not
//! in (`http1::view`). The policy is small and plain: this module.

use std::collections::HashSet;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use http::request::Parts as RequestParts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty};

use crate::body::ResponseBody;
use crate::config::CorsConfig;
use crate::http1::HeaderViewMut;

#[derive(Debug)]
pub struct Cors {
    /// `None`: any origin (`"*"`, reflected).
    origins: Option<HashSet<Box<[u8]>>>,
    credentials: bool,
    methods: HeaderValue,
    headers: HeaderValue,
    max_age: Option<HeaderValue>,
}

/// What a request is to CORS.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No `Origin`: not a CORS request.
    None,
    /// A preflight: answered by the gateway.
    Preflight { allowed: Option<HeaderValue> },
    /// An actual request; `allowed` is the origin to name in the answer, if it may.
    Actual { allowed: Option<HeaderValue> },
}

impl Cors {
    pub fn new(cfg: &CorsConfig) -> Result<Self, String> {
        let list = |items: &[String]| {
            HeaderValue::from_str(&items.join(", ")).map_err(|e| format!("cors: {e}"))
        };
        let origins = (!cfg.allow_origins.iter().any(|o| o == "*")).then(|| {
            cfg.allow_origins
                .iter()
                .map(|o| o.as_bytes().into())
                .collect()
        });
        Ok(Self {
            origins,
            credentials: cfg.allow_credentials,
            methods: list(&cfg.allow_methods)?,
            headers: list(&cfg.allow_headers)?,
            max_age: cfg.max_age.map(|d| HeaderValue::from(d.as_secs())),
        })
    }

    pub fn verdict(&self, req: &RequestParts) -> Verdict {
        let Some(origin) = req.headers.get(ORIGIN) else {
            return Verdict::None;
        };
        let allowed = match &self.origins {
            None => Some(origin.clone()),
            Some(list) => list.contains(origin.as_bytes()).then(|| origin.clone()),
        };
        if req.method == Method::OPTIONS && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            Verdict::Preflight { allowed }
        } else {
            Verdict::Actual { allowed }
        }
    }

    /// The gateway's answer to a preflight: 204, with the grants only for an allowed origin.
    pub fn preflight(&self, allowed: Option<HeaderValue>) -> Response<ResponseBody> {
        let mut resp = Response::new(Empty::new().map_err(|e| match e {}).boxed_unsync());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        if let Some(origin) = allowed {
            self.grant(h, origin);
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
            if let Some(age) = &self.max_age {
                h.insert(ACCESS_CONTROL_MAX_AGE, age.clone());
            }
        }
        resp
    }

    fn grant(&self, h: &mut HeaderMap, origin: HeaderValue) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// An actual request's answer: the grants for an allowed origin (replacing any the task
    /// sent: the gateway decides), `Vary: Origin` either way.
    pub fn decorate(&self, fields: &mut HeaderViewMut<'_>, allowed: Option<HeaderValue>) {
        let mut theirs = false;
        fields.view().for_each(|n, _| {
            theirs =
                theirs || n.len() > 21 && n[..21].eq_ignore_ascii_case(b"access-control-allow-");
        });
        if theirs {
            fields.retain(|n, _| {
                !(n.len() > 21 && n[..21].eq_ignore_ascii_case(b"access-control-allow-"))
            });
        }
        fields.append(VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = allowed {
            fields.append(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            if self.credentials {
                fields.append(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(&CorsConfig {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_credentials: true,
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["Content-Type".into(), "Authorization".into()],
            max_age: Some(Duration::from_secs(600)),
        })
        .unwrap()
    }

    fn req(method: Method, headers: &[(&str, &str)]) -> RequestParts {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/api/icalink/x");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    const APP: &str = "https://app.example.edu";

    #[test]
    fn verdicts() {
        let c = cors(&[APP]);
        let app = Some(HeaderValue::from_static(APP));
        assert_eq!(c.verdict(&req(Method::GET, &[])), Verdict::None);
        assert_eq!(
            c.verdict(&req(Method::OPTIONS, &[])),
            Verdict::None,
            "plain OPTIONS is proxied"
        );
        assert_eq!(
            c.verdict(&req(
                Method::OPTIONS,
                &[("origin", APP), ("access-control-request-method", "POST")]
            )),
            Verdict::Preflight {
                allowed: app.clone()
            }
        );
        assert_eq!(
            c.verdict(&req(Method::OPTIONS, &[("origin", APP)])),
            Verdict::Actual {
                allowed: app.clone()
            },
            "OPTIONS without a requested method is an actual request"
        );
        assert_eq!(
            c.verdict(&req(Method::POST, &[("origin", "https://evil.example")])),
            Verdict::Actual { allowed: None }
        );
        assert_eq!(
            cors(&["*"]).verdict(&req(Method::GET, &[("origin", "https://any.example")])),
            Verdict::Actual {
                allowed: Some(HeaderValue::from_static("https://any.example"))
            }
        );
    }

    #[test]
    fn a_preflight_grants_only_an_allowed_origin() {
        let c = cors(&[APP]);
        let ok = c.preflight(Some(HeaderValue::from_static(APP)));
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        let h = ok.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(
            h[ACCESS_CONTROL_ALLOW_HEADERS],
            "Content-Type, Authorization"
        );
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        let no = c.preflight(None);
        assert_eq!(no.status(), StatusCode::NO_CONTENT);
        assert!(
            !no.headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-"))
        );
        assert!(no.headers().contains_key(VARY));
    }

    #[test]
    fn an_answer_names_the_origin_and_replaces_the_tasks_grants() {
        let c = cors(&[APP]);
        let (mut head, ()) = http::Response::new(()).into_parts();
        head.extensions.insert(crate::http1::RawHeaders::from_head(
            "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n",
        ));
        c.decorate(
            &mut HeaderViewMut::of(&mut head),
            Some(HeaderValue::from_static(APP)),
        );
        let mut got = Vec::new();
        crate::http1::HeaderView::of(&head).for_each(|n, v| {
            got.push(format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            ));
        });
        assert_eq!(
            got,
            [
                "X-A: 1",
                "vary: Origin",
                "access-control-allow-origin: https://app.example.edu",
                "access-control-allow-credentials: true"
            ]
        );
        let (mut denied, ()) = http::Response::new(()).into_parts();
        c.decorate(&mut HeaderViewMut::of(&mut denied), None);
        assert_eq!(denied.headers.len(), 1, "{:?}", denied.headers);
        assert_eq!(denied.headers[VARY], "Origin");
    }
}
