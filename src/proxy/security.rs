//! The security headers the old gateway's helmet set on every response (HSTS, nosniff,
//! frame options, referrer policy and the cross-origin ones; its CSP and COEP were off),
//! from `[security_headers]`. A header the upstream set itself is left as it is.
//!
//! Why not tower-http's `SetResponseHeaderLayer::if_not_present`: it looks in the response's
//! map, and a proxied response's fields are not there (they ride as the upstream wrote them,
//! `http1::RawHeaders`), so it would add HSTS beside the upstream's own. Moving the fields into
//! the map first is what the raw fast path exists to avoid (a sixth of the gateway's
//! instructions per request). Here the headers are one shared block, added by reference when
//! the upstream set none of them (the usual case), and the response's fields are read once,
//! through the header view every consumer uses.

use http::{HeaderName, HeaderValue};

use crate::config::SecurityHeadersConfig;
use crate::http1::{Block, FieldBlock, HeaderViewMut};

#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    block: FieldBlock,
    /// Bit `n` is set when one of the names is `n` bytes long: most fields of a response are
    /// ruled out by their length alone.
    lengths: u64,
}

impl SecurityHeaders {
    /// `None` when nothing is to be sent (disabled, or every header left out).
    pub fn new(cfg: &SecurityHeadersConfig) -> Option<Self> {
        if !cfg.enabled {
            return None;
        }
        let block: Vec<(HeaderName, HeaderValue)> = cfg
            .entries()
            .into_iter()
            .filter(|(_, _, value)| !value.is_empty())
            .filter_map(|(_, name, value)| {
                // Validation checked the values; a refusal here leaves the header out.
                Some((
                    HeaderName::from_static(name),
                    HeaderValue::from_str(value).ok()?,
                ))
            })
            .collect();
        if block.is_empty() {
            return None;
        }
        let lengths = block
            .iter()
            .fold(0u64, |m, (n, _)| m | 1u64 << n.as_str().len().min(63));
        Some(Self {
            block: Block::new(block),
            lengths,
        })
    }

    fn is_ours(&self, name: &[u8]) -> bool {
        self.lengths & (1u64 << name.len().min(63)) != 0
            && self
                .block
                .iter()
                .any(|(n, _)| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
    }

    /// Adds the headers the response does not carry already.
    pub fn apply(&self, fields: &mut HeaderViewMut<'_>) {
        let mut any = false;
        fields
            .view()
            .for_each(|name, _| any = any || self.is_ours(name));
        if !any {
            fields.append_block(&self.block);
            return;
        }
        for (name, value) in self.block.iter() {
            if !fields.view().contains(name) {
                fields.append(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::response::Parts;

    use crate::http1::{HeaderView, RawHeaders};

    use super::*;

    fn written(parts: &Parts) -> Vec<(String, String)> {
        let mut out = Vec::new();
        HeaderView::of(parts).for_each(|n, v| {
            out.push((
                String::from_utf8_lossy(n).to_ascii_lowercase(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        });
        out
    }

    fn proxied(head: &str) -> Parts {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.extensions.insert(RawHeaders::from_head(head));
        parts
    }

    #[test]
    fn helmets_defaults_go_on_every_response() {
        let s = SecurityHeaders::new(&SecurityHeadersConfig::default()).unwrap();
        let mut up =
            proxied("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n");
        s.apply(&mut HeaderViewMut::of(&mut up));
        let (mut ours, ()) = http::Response::new(()).into_parts();
        s.apply(&mut HeaderViewMut::of(&mut ours));
        for parts in [&up, &ours] {
            let h = written(parts);
            for (name, value) in [
                (
                    "strict-transport-security",
                    "max-age=31536000; includeSubDomains; preload",
                ),
                ("x-content-type-options", "nosniff"),
                ("x-frame-options", "SAMEORIGIN"),
                ("referrer-policy", "no-referrer"),
                ("cross-origin-opener-policy", "same-origin"),
                ("cross-origin-resource-policy", "same-origin"),
                ("origin-agent-cluster", "?1"),
                ("x-dns-prefetch-control", "off"),
                ("x-download-options", "noopen"),
                ("x-permitted-cross-domain-policies", "none"),
            ] {
                assert_eq!(
                    h.iter().filter(|(n, _)| n == name).collect::<Vec<_>>(),
                    [&(name.to_owned(), value.to_owned())],
                    "{name}"
                );
            }
            assert!(!h.iter().any(|(n, _)| n == "content-security-policy"));
        }
        assert_eq!(ours.headers.len(), 10);
    }

    #[test]
    fn what_the_upstream_set_is_left_alone() {
        let s = SecurityHeaders::new(&SecurityHeadersConfig::default()).unwrap();
        let mut up = proxied(
            "HTTP/1.1 200 OK\r\nX-Frame-Options: DENY\r\nstrict-transport-security: max-age=60\r\nContent-Length: 0\r\n\r\n",
        );
        s.apply(&mut HeaderViewMut::of(&mut up));
        let h = written(&up);
        let frame: Vec<_> = h.iter().filter(|(n, _)| n == "x-frame-options").collect();
        assert_eq!(frame, [&("x-frame-options".to_owned(), "DENY".to_owned())]);
        let hsts: Vec<_> = h
            .iter()
            .filter(|(n, _)| n == "strict-transport-security")
            .collect();
        assert_eq!(hsts.len(), 1);
        assert_eq!(hsts[0].1, "max-age=60");
        assert!(h.iter().any(|(n, _)| n == "x-content-type-options"));
    }

    #[test]
    fn each_can_be_changed_or_left_out_and_all_switched_off() {
        let cfg = SecurityHeadersConfig {
            x_frame_options: "DENY".into(),
            strict_transport_security: String::new(),
            ..SecurityHeadersConfig::default()
        };
        let s = SecurityHeaders::new(&cfg).unwrap();
        let (mut ours, ()) = http::Response::new(()).into_parts();
        s.apply(&mut HeaderViewMut::of(&mut ours));
        assert_eq!(ours.headers["x-frame-options"], "DENY");
        assert!(!ours.headers.contains_key("strict-transport-security"));
        assert_eq!(ours.headers.len(), 9);
        let off = SecurityHeadersConfig {
            enabled: false,
            ..SecurityHeadersConfig::default()
        };
        assert!(SecurityHeaders::new(&off).is_none());
    }
}
