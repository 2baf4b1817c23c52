//! The upstream client's response-head parser: a head read in pieces parses as it does
//! whole, every field it keeps is a valid `HeaderName`/`HeaderValue` (none lost on the way to
//! an HTTP/2 client's map), and the framing it reports is the only one the head allows.
#![no_main]

use bytes::BytesMut;
use http::{HeaderMap, Method, StatusCode, Version};
use libfuzzer_sys::fuzz_target;
use stratix_gateway::http1::RawHeaders;
use stratix_gateway::http1::{Framing, Head, parse_response_head};
use stratix_gateway_fuzz::line_ends;

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let method = if first & 1 == 0 {
        Method::GET
    } else {
        Method::HEAD
    };
    let parse = |bytes: &[u8]| {
        let mut buf = BytesMut::from(bytes);
        let got = parse_response_head(&mut buf, &method, &mut Vec::new());
        (got, bytes.len() - buf.len())
    };
    let (whole, consumed) = parse(data);
    for end in line_ends(data) {
        let (part, part_consumed) = parse(&data[..end]);
        match (&part, &whole) {
            (Ok(None), _) => assert_eq!(part_consumed, 0),
            (Ok(Some(_)), Ok(Some(_))) => assert_eq!(part_consumed, consumed),
            (Err(_), Err(_)) => {}
            _ => panic!("a prefix of {end} gave {part:?}, the whole {whole:?}"),
        }
    }
    let Ok(Some(Head::Final(parsed))) = whole else {
        return;
    };
    let Some(raw) = parsed.head.extensions.get::<RawHeaders>() else {
        panic!("a final head without its fields");
    };
    let mut map = HeaderMap::new();
    raw.append_to(&mut map);
    assert_eq!(
        map.len(),
        raw.len() + usize::from(raw.content_length().is_some()),
        "a field was lost on the way to a header map"
    );
    let status = parsed.head.status;
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        assert_eq!(parsed.framing, Framing::Empty);
    }
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        assert_eq!(raw.content_length(), None, "a {status} keeps a length");
    }
    if parsed.framing == Framing::Chunked {
        assert_eq!(raw.content_length(), None, "chunked with a length");
    }
    if let Framing::Length(n) = parsed.framing {
        assert_eq!(raw.content_length(), Some(n));
    }
    if parsed.head.version == Version::HTTP_10 {
        assert!(!parsed.keep_alive);
    }
});
