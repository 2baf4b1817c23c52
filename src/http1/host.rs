//! Where a request says it is going: the `Host` field and an absolute-form or HTTP/2
//! authority, checked against RFC 3986's grammar and settled into one `Host` for everything
//! downstream (routing logs, `X-Forwarded-Host`, the task).

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Uri};

use super::request::RequestError;

/// Where the request says it is going, one rule for both listeners (HTTP/1 here, h2c in the
/// server): a request-target with an authority (absolute form, or HTTP/2's `:authority`)
/// replaces any `Host` (RFC 9112 section 3.2.2; HAProxy answers 400 instead, we follow the
/// RFC so a forward-proxy style client still works); that authority must be `http` or
/// `https`, name no userinfo (RFC 9110 section 4.2.4) and be a valid `uri-host [":" port]`,
/// and so must a `Host` otherwise (RFC 9112 section 3.2: 400). More than one `Host` is
/// refused, and so is none when `required` (HTTP/1.1 without an authority in the target).
///
/// Why the authority is copied into `Host` and not just preferred: everything after this
/// (routing logs, `X-Forwarded-Host`, the upstream) reads `Host`, and must all read the same.
pub fn settle_host(
    uri: &Uri,
    headers: &mut HeaderMap,
    hosts: Hosts,
    required: bool,
) -> Result<(), RequestError> {
    if hosts.count > 1 {
        return Err(RequestError::DuplicateHost);
    }
    if let Some(authority) = uri.authority() {
        let http = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
        if !http || !valid_host(authority.as_str().as_bytes()) {
            return Err(RequestError::InvalidHost);
        }
        let value =
            HeaderValue::from_str(authority.as_str()).map_err(|_| RequestError::InvalidHost)?;
        headers.insert(HOST, value);
        return Ok(());
    }
    match hosts {
        Hosts { valid: false, .. } => Err(RequestError::InvalidHost),
        Hosts { count: 0, .. } if required => Err(RequestError::MissingHost),
        Hosts { .. } => Ok(()),
    }
}

/// The `Host` fields of a request: how many, and whether each is a valid `uri-host [":"
/// port]`. Why noted apart from the map: the HTTP/1 parser sees every field once anyway, and
/// a second lookup cost more than the check itself (~80 instructions per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hosts {
    pub count: usize,
    pub valid: bool,
}

impl Hosts {
    pub fn note(&mut self, value: &[u8]) {
        self.count += 1;
        self.valid &= valid_host(value);
    }

    /// The `Host` fields of a map (HTTP/2, where hyper built the map).
    pub fn of(headers: &HeaderMap) -> Self {
        let mut hosts = Self::default();
        for value in headers.get_all(HOST) {
            hosts.note(value.as_bytes());
        }
        hosts
    }
}

impl Default for Hosts {
    fn default() -> Self {
        Self {
            count: 0,
            valid: true,
        }
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 section 3.2.2): an IP literal in brackets, or a reg-name
/// (unreserved, sub-delims and percent-encoded bytes; an IPv4 address is one too), then
/// optionally a colon and digits. Empty is valid (RFC 9110 section 7.2: a target without
/// an authority). No userinfo, no spaces, nothing outside ASCII.
pub fn valid_host(host: &[u8]) -> bool {
    let (name_ok, port) = if let Some(literal) = host.strip_prefix(b"[") {
        let Some(close) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &literal[..close];
        let ok = !inside.is_empty()
            && inside
                .iter()
                .all(|&b| HOST_BYTES[usize::from(b)] & LITERAL != 0);
        let port = match &literal[close + 1..] {
            [] => &[][..],
            [b':', port @ ..] => port,
            _ => return false,
        };
        (ok, port)
    } else {
        let (name, port) = match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon + 1..]),
            None => (host, &[][..]),
        };
        (valid_reg_name(name), port)
    };
    name_ok && port.iter().all(u8::is_ascii_digit)
}

fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        if HOST_BYTES[usize::from(b)] & REG_NAME != 0 {
            i += 1;
        } else if b == b'%' {
            match name.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            return false;
        }
    }
    true
}

/// What a byte may be in a Host: `REG_NAME` for unreserved and sub-delims (RFC 3986 2.2, 2.3),
/// `LITERAL` for those and `:` inside brackets. Why a table: every request's Host is checked,
/// and testing each byte against the two small sets one by one cost ~230 instructions for
/// "127.0.0.1:18090"; with the table the whole check is ~180 (callgrind; a single pass that
/// also counts colons, and a separate fast path, both measured slower).
const REG_NAME: u8 = 1;
const LITERAL: u8 = 2;
static HOST_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let unreserved = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(
            c,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        );
        if unreserved || sub_delim {
            table[b] = REG_NAME | LITERAL;
        } else if c == b':' {
            table[b] = LITERAL;
        }
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::http1::request::tests::{head, refused};

    #[test]
    fn host_must_be_a_uri_host_with_an_optional_port() {
        for ok in [
            "gw",
            "gw:8090",
            "gw:",
            "10.0.1.5:3000",
            "[::1]:8090",
            "[2001:db8::1]",
            "[v1.fe80::a+en1]",
            "a-b.c_d~e",
            "%41pi.example",
            "!$&'()*+,;=",
            "",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok:?} refused");
            let req = format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n");
            assert_eq!(head(req.as_bytes()).parts.headers["host"], ok);
        }
        for bad in [
            &b"a b"[..],
            b"\xffa@evil",
            b"user@gw",
            b"user:pw@gw",
            b"gw:80a",
            b"gw:80:80",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"[::1]:8x",
            b"gw/path",
            b"gw?q",
            b"%4",
            b"%zz",
            b"g\"w",
        ] {
            assert!(
                !valid_host(bad),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        let mut req = b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec();
        assert_eq!(refused(&req), RequestError::InvalidHost);
        req = b"GET / HTTP/1.1\r\nHost: \xffa@evil\r\n\r\n".to_vec();
        let e = refused(&req);
        assert_eq!(e, RequestError::InvalidHost);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        // HTTP/1.0 may leave Host out, but one it sends is checked.
        assert_eq!(
            refused(b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n"),
            RequestError::InvalidHost
        );
    }

    #[test]
    fn an_absolute_form_authority_replaces_host() {
        let h = head(b"GET http://evil.example/api/icalink/l HTTP/1.1\r\nHost: probe\r\n\r\n");
        assert_eq!(
            h.parts.headers.get_all("host").iter().collect::<Vec<_>>(),
            ["evil.example"]
        );
        assert_eq!(h.parts.uri.path(), "/api/icalink/l");
        let h = head(b"GET HTTPS://gw:8443/x?q=1 HTTP/1.1\r\n\r\n");
        assert_eq!(h.parts.headers["host"], "gw:8443");
        for bad in [
            &b"GET http://user:pw@gw/x HTTP/1.1\r\nHost: gw\r\n\r\n"[..],
            b"GET http://user@gw/x HTTP/1.1\r\n\r\n",
            b"GET ftp://gw/x HTTP/1.1\r\nHost: gw\r\n\r\n",
        ] {
            assert_eq!(
                refused(bad),
                RequestError::InvalidHost,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Several Host headers stay a 400 whatever the target says.
        assert_eq!(
            refused(b"GET http://gw/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            RequestError::DuplicateHost
        );
    }

    #[test]
    fn the_host_byte_table_is_rfc_3986s_sets() {
        for b in 0..=255u8 {
            let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            let sub_delim = b"!$&'()*+,;=".contains(&b);
            // ":" alone is an empty name with an empty port, which the grammar allows.
            assert_eq!(
                valid_host(&[b]),
                unreserved || sub_delim || b == b':',
                "{b:#x} as a name"
            );
            assert_eq!(
                valid_host(&[b'[', b, b']']),
                unreserved || sub_delim || b == b':',
                "{b:#x} in brackets"
            );
        }
    }
}
