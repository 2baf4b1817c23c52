//! The request headers the edge reads by hand: the `Cookie` field the signed token hides in,
//! and `Accept-Encoding`. Never a panic, whatever the bytes; and a cookie counts as a token
//! only when its value is exactly the signed form of what it yields.
//!
//! Input: a `Cookie` field value, then after a NUL byte an `Accept-Encoding` value.

#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use stratix_gateway::auth::token::{self, Found, Located};
use stratix_gateway::proxy::compress::Compressor;

const SECRET: &[u8] = b"fuzz-secret";
const NAME: &str = "wps_jwt_token";

fuzz_target!(|data: &[u8]| {
    let (cookie, accept) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        h.insert("cookie", v);
    }
    if let Ok(v) = HeaderValue::from_bytes(accept) {
        h.insert("accept-encoding", v);
    }
    let _ = Compressor::accepts(&h);
    match token::find(&h, NAME, SECRET) {
        Found::Cookie(jwt) => {
            let Located::Signed(value) = token::locate(&h, NAME) else {
                panic!("a cookie token without a cookie");
            };
            assert_eq!(token::sign(&jwt, SECRET).as_deref(), Some(value.as_str()));
        }
        Found::Bearer(_) => panic!("no Authorization field was sent"),
        Found::None => {}
    }
    // Whatever ASCII a signed value holds (`;`, quotes and `%` aside, which the cookie syntax
    // itself gives meaning), it comes back out. (A Cookie field with bytes beyond ASCII is not
    // read at all: a JWT is base64url, and such a field holds none.)
    if let Ok(text) = std::str::from_utf8(cookie)
        && text.is_ascii()
        && !text.contains([';', '"', '%'])
        && text == text.trim()
        && let Some(signed) = token::sign(text, SECRET)
        && let Ok(v) = HeaderValue::from_str(&format!("{NAME}={signed}"))
    {
        let mut h = HeaderMap::new();
        h.insert("cookie", v);
        assert_eq!(
            token::find(&h, NAME, SECRET),
            Found::Cookie(text.to_owned())
        );
    }
});
