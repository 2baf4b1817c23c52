//! The field helpers both codecs frame messages with, against references written from the
//! RFC: Content-Length elements, the transfer-coding list, and Host (`uri-host [":" port]`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratix_gateway::http1::valid_host;
use stratix_gateway::http1::{content_lengths, transfer_codings};
use stratix_gateway_fuzz::{reference_codings, reference_content_lengths, reference_valid_host};

fuzz_target!(|data: &[u8]| {
    // Several field values, separated by NUL (which no field value can hold).
    let values: Vec<&[u8]> = data.split(|&b| b == 0).take(8).collect();
    for value in &values {
        assert_eq!(
            content_lengths(value).collect::<Vec<_>>(),
            reference_content_lengths(value),
            "Content-Length {value:?}"
        );
        assert_eq!(
            valid_host(value),
            reference_valid_host(value),
            "Host {value:?}"
        );
    }
    let codings = reference_codings(&values);
    let chunked = codings
        .iter()
        .filter(|c| c.as_slice() == b"chunked")
        .count();
    let last_chunked = codings.last().is_some_and(|c| c.as_slice() == b"chunked");
    let got = transfer_codings(values.iter().copied());
    assert_eq!(got.chunked, chunked == 1 && last_chunked, "{codings:?}");
    assert_eq!(
        got.misplaced,
        chunked > 0 && !(chunked == 1 && last_chunked),
        "{codings:?}"
    );
    assert_eq!(got.other, codings.len() > chunked, "{codings:?}");
});
