//! The chunked decoder (requests and responses share it) against a whole-message reference:
//! the result is the same however the bytes arrive, never more than the limits are buffered,
//! and it agrees with `reference_dechunk` on accept/reject and on the decoded bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use stratix_gateway::http1::{Chunked, Decoded};
use stratix_gateway_fuzz::{Dechunked, reads, reference_dechunk};

fuzz_target!(|data: &[u8]| {
    let (sizes, message) = reads(data);
    let split = feed(message, &sizes);
    let whole = feed(message, &[message.len().max(1)]);
    assert_eq!(split, whole, "the result depends on how the bytes arrive");
    assert_eq!(
        whole,
        reference_dechunk(message),
        "disagrees with the reference"
    );
});

fn feed(message: &[u8], sizes: &[usize]) -> Dechunked {
    let mut decoder = Chunked::default();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    let mut reads = sizes.iter().cycle();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(data)) => {
                assert!(!data.is_empty(), "an empty data piece");
                body.extend_from_slice(&data);
            }
            Ok(Decoded::Done) => {
                return Dechunked::Done {
                    body,
                    consumed: fed - buf.len(),
                };
            }
            Ok(Decoded::NeedMore) => {
                assert!(
                    buf.len() <= Chunked::MAX_BUFFERED,
                    "{} bytes buffered, more than {}",
                    buf.len(),
                    Chunked::MAX_BUFFERED
                );
                if fed == message.len() {
                    return Dechunked::Incomplete { body };
                }
                let end = (fed + reads.next().copied().unwrap_or(1)).min(message.len());
                buf.extend_from_slice(&message[fed..end]);
                fed = end;
            }
            Err(_) => return Dechunked::Invalid,
        }
    }
}
