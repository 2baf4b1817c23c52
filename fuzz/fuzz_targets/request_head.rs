//! The listener's request-head parser: a head read in pieces parses as it does whole, and a
//! head it accepts is one the proxy can trust (one valid Host, framing that cannot be read
//! two ways, no expectation forwarded, the size and field-count limits kept).
#![no_main]

use bytes::BytesMut;
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use libfuzzer_sys::fuzz_target;
use stratix_gateway::http1::MAX_HEADERS;
use stratix_gateway::http1::{BodyFraming, RequestError, RequestHead, parse_request_head};
use stratix_gateway_fuzz::{
    line_ends, reference_codings, reference_content_lengths, reference_valid_host,
};

/// Small enough that the fuzzer reaches it.
const MAX_HEAD: usize = 2048;

type Parsed = Result<Option<(RequestHead, usize)>, RequestError>;

fn parse(bytes: &[u8]) -> Parsed {
    let mut buf = BytesMut::from(bytes);
    let got = parse_request_head(&mut buf, MAX_HEAD, &mut Vec::new())?;
    let consumed = bytes.len() - buf.len();
    match got {
        None => {
            assert_eq!(consumed, 0, "an incomplete head consumed bytes");
            Ok(None)
        }
        Some(head) => Ok(Some((head, consumed))),
    }
}

fn same(a: &RequestHead, b: &RequestHead) -> bool {
    a.parts.method == b.parts.method
        && a.parts.uri == b.parts.uri
        && a.parts.version == b.parts.version
        && a.parts.headers == b.parts.headers
        && a.framing == b.framing
        && a.keep_alive == b.keep_alive
        && a.expect_continue == b.expect_continue
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    // The listener parses again after each read that brought a line end.
    for end in line_ends(data) {
        match (parse(&data[..end]), &whole) {
            (Ok(None), Ok(Some((_, len)))) => assert!(end < *len, "whole at {end}, not before"),
            (Ok(None), Err(_) | Ok(None)) => {}
            (Ok(Some((part, len))), Ok(Some((head, whole_len)))) => {
                assert_eq!(len, *whole_len);
                assert!(same(&part, head), "a prefix parsed differently");
            }
            (Ok(Some(_)), other) => panic!("a prefix parsed, the whole did not: {other:?}"),
            (Err(_), Err(_)) => {}
            (Err(e), Ok(None)) => panic!("a prefix refused ({e:?}), the whole incomplete"),
            (Err(e), Ok(Some((_, len)))) => {
                panic!("a prefix of {end} refused ({e:?}), a head of {len} accepted")
            }
        }
    }
    let Ok(Some((head, len))) = whole else {
        return;
    };
    assert!(len <= MAX_HEAD, "a head of {len} bytes accepted");
    let h = &head.parts.headers;
    assert!(h.len() <= MAX_HEADERS + 1, "{} fields", h.len());
    let hosts: Vec<_> = h.get_all(HOST).iter().collect();
    assert!(hosts.len() <= 1, "{hosts:?}");
    if let Some(host) = hosts.first() {
        assert!(reference_valid_host(host.as_bytes()), "Host {host:?}");
    }
    assert!(!h.contains_key(EXPECT));
    if head.parts.version == http::Version::HTTP_10 {
        assert!(!head.expect_continue);
    }
    let lengths: Vec<_> = h.get_all(CONTENT_LENGTH).iter().collect();
    let codings: Vec<&[u8]> = h
        .get_all(TRANSFER_ENCODING)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    match head.framing {
        BodyFraming::Chunked => {
            assert!(lengths.is_empty(), "chunked with a length");
            let codings = reference_codings(&codings);
            assert_eq!(
                codings,
                [b"chunked".to_vec()],
                "chunked framing from {codings:?}"
            );
        }
        BodyFraming::Length(n) => {
            assert!(codings.is_empty());
            assert_eq!(lengths.len(), 1);
            assert_eq!(
                lengths[0].to_str().ok().and_then(|v| v.parse().ok()),
                Some(n)
            );
        }
        BodyFraming::Empty => {
            assert!(codings.is_empty());
            // "0", or any spelling of it ("000"): a body of none.
            let zero = |v: &&http::HeaderValue| {
                reference_content_lengths(v.as_bytes())
                    .iter()
                    .all(|n| *n == Some(0))
            };
            assert!(lengths.iter().all(zero), "{lengths:?}");
        }
    }
});
