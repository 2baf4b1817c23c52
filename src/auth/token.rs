//! Where a request's token is, in the old gateway's order: `Authorization: Bearer <jwt>`
//! first, else the signed cookie. A bad bearer token is not rescued by a good cookie; a cookie
//! whose signature does not verify counts as no token at all (what @fastify/cookie's
//! `unsignCookie` gives the old gateway).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use percent_encoding::percent_decode_str;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A token found in a request, still unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    /// From `Authorization: Bearer `: exactly that scheme, capital B and one space.
    Bearer(&'a [u8]),
    /// From the signed cookie, its signature verified.
    Cookie(String),
    None,
}

/// Where a request's token is, before the cookie's signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located<'a> {
    Bearer(&'a [u8]),
    /// The cookie's value, URL-decoded: `<jwt>.<signature>`, not yet verified.
    Signed(String),
    None,
}

/// Finds the request's token: the bearer token, else the cookie `cookie_name` signed with
/// `secret`.
pub fn find<'a>(headers: &'a HeaderMap, cookie_name: &str, secret: &[u8]) -> Found<'a> {
    match locate(headers, cookie_name) {
        Located::Bearer(t) => Found::Bearer(t),
        Located::Signed(value) => match unsign(&value, secret) {
            Some(jwt) => Found::Cookie(jwt),
            None => Found::None,
        },
        Located::None => Found::None,
    }
}

/// [`find`] without checking the cookie's signature (the caller does, unless it has seen the
/// same signed value verified before).
pub fn locate<'a>(headers: &'a HeaderMap, cookie_name: &str) -> Located<'a> {
    // Node keeps the first of repeated Authorization fields; so do we.
    if let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .filter(|t| !t.is_empty())
    {
        return Located::Bearer(token);
    }
    // HTTP/2 clients may split cookies over several fields (RFC 9113 section 8.2.3).
    let value = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| cookie_value(v, cookie_name));
    value.map_or(Located::None, Located::Signed)
}

/// The value of cookie `name` in a `Cookie` field, as the `cookie` package parses it: pairs
/// split at `;`, name and value trimmed, the first pair of a name wins, a quoted value loses
/// its quotes, and a value with `%` is URL-decoded (kept as it is when that fails).
fn cookie_value(field: &str, name: &str) -> Option<String> {
    for pair in field.split(';') {
        let Some((n, v)) = pair.split_once('=') else {
            continue;
        };
        if n.trim() != name {
            continue;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        if !v.contains('%') {
            return Some(v.to_owned());
        }
        return Some(
            percent_decode_str(v)
                .decode_utf8()
                .map_or_else(|_| v.to_owned(), |d| d.into_owned()),
        );
    }
    None
}

/// `cookie-signature`'s unsign: the value is `<jwt>.<base64(HMAC-SHA256(jwt, secret))>`
/// without padding, split at the last `.`; the whole value is compared with the one we would
/// sign, in constant time.
pub fn unsign(value: &str, secret: &[u8]) -> Option<String> {
    let (jwt, _) = value.rsplit_once('.')?;
    let expected = sign(jwt, secret)?;
    let same: bool = expected.as_bytes().ct_eq(value.as_bytes()).into();
    same.then(|| jwt.to_owned())
}

/// `<value>.<signature>`, as the old gateway's cookies are signed.
pub fn sign(value: &str, secret: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(value.as_bytes());
    let signature = STANDARD_NO_PAD.encode(mac.finalize().into_bytes());
    Some(format!("{value}.{signature}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use http::HeaderValue;

    use super::*;

    const SECRET: &[u8] = b"s3cret";

    /// A header map of `(name, value)` pairs (shared with other modules' tests).
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_comes_first_and_only_with_its_exact_scheme() {
        let signed = sign("a.b.c", SECRET).unwrap();
        let cookie = format!("wps_jwt_token={signed}");
        let both = headers(&[("authorization", "Bearer x.y.z"), ("cookie", &cookie)]);
        assert_eq!(
            find(&both, "wps_jwt_token", SECRET),
            Found::Bearer(b"x.y.z")
        );
        for scheme in ["bearer x.y.z", "Bearer ", "Basic dTpw", "Bearerx.y.z"] {
            let h = headers(&[("authorization", scheme), ("cookie", &cookie)]);
            assert_eq!(
                find(&h, "wps_jwt_token", SECRET),
                Found::Cookie("a.b.c".into()),
                "{scheme:?} is not a bearer token"
            );
        }
        // "Bearer  " has a token: a space. Verified (and refused) as a bearer token.
        let h = headers(&[("authorization", "Bearer  x")]);
        assert_eq!(find(&h, "wps_jwt_token", SECRET), Found::Bearer(b" x"));
    }

    #[test]
    fn the_cookie_is_found_decoded_and_unsigned() {
        let signed = sign("a.b.c", SECRET).unwrap();
        let encoded: String =
            percent_encoding::utf8_percent_encode(&signed, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        for field in [
            format!("theme=dark; wps_jwt_token={signed}; other=1"),
            format!("wps_jwt_token={encoded}"),
            format!("wps_jwt_token=\"{signed}\""),
            format!(" wps_jwt_token = {signed} ;x=1"),
            format!("wps_jwt_token={signed}; wps_jwt_token=garbage"),
        ] {
            let h = headers(&[("cookie", &field)]);
            assert_eq!(
                find(&h, "wps_jwt_token", SECRET),
                Found::Cookie("a.b.c".into()),
                "{field}"
            );
        }
        // Split over two fields (HTTP/2).
        let h = headers(&[
            ("cookie", "theme=dark"),
            ("cookie", &format!("wps_jwt_token={signed}")),
        ]);
        assert_eq!(
            find(&h, "wps_jwt_token", SECRET),
            Found::Cookie("a.b.c".into())
        );
    }

    #[test]
    fn a_cookie_that_does_not_verify_is_no_token() {
        let signed = sign("a.b.c", SECRET).unwrap();
        let other = sign("a.b.c", b"other").unwrap();
        for field in [
            "wps_jwt_token=a.b.c".to_owned(),
            format!("wps_jwt_token={other}"),
            format!("wps_jwt_token={signed}x"),
            format!("wps_jwt_token={}", &signed[..signed.len() - 1]),
            format!("wps_jwt_token={signed}="),
            "wps_jwt_token=".to_owned(),
            "wps_jwt_token=nodot".to_owned(),
            format!("wps_jwt_tokenx={signed}"),
            format!("other={signed}"),
        ] {
            let h = headers(&[("cookie", &field)]);
            assert_eq!(find(&h, "wps_jwt_token", SECRET), Found::None, "{field}");
        }
    }

    #[test]
    fn the_signature_is_base64_of_hmac_sha256_without_padding() {
        // cookie-signature's own example: sign('hello', 'tobiiscool').
        assert_eq!(
            sign("hello", b"tobiiscool").unwrap(),
            "hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
        );
    }
}
