//! What the gateway adds to a request beside its header map, written by the upstream client
//! after the map's own fields: a [`Block`] shared by many requests (a token's identity) and
//! one short field of this request alone ([`InlineField`]: when it was received).
//!
//! Why beside the map and not in it: an insert hashes a name the client's map has never
//! seen and may grow the map; the identity's eleven fields cost ~1,500 instructions a request
//! that way, its timestamp ~400 (a `HeaderValue` allocated, an insert), against one copy
//! each here (callgrind, BENCHMARKS.md).

use super::fields::{is_field_byte, is_tchar};
use super::raw::FieldBlock;

/// Longest value an [`InlineField`] carries: an ISO-8601 time with milliseconds is 24 bytes.
pub const INLINE_VALUE: usize = 32;

/// One field whose value lives in place: no allocation, copied by value.
#[derive(Clone, Copy)]
pub struct InlineField {
    name: &'static str,
    len: u8,
    value: [u8; INLINE_VALUE],
}

impl InlineField {
    /// `None` unless `name` is a lowercase token and `value` at most [`INLINE_VALUE`] bytes a
    /// field value may hold: what is written can never split the head.
    pub fn new(name: &'static str, value: &[u8]) -> Option<Self> {
        let name_ok =
            !name.is_empty() && name.bytes().all(|b| is_tchar(b) && !b.is_ascii_uppercase());
        if !name_ok || value.len() > INLINE_VALUE || !value.iter().all(|&b| is_field_byte(b)) {
            return None;
        }
        let mut inline = [0; INLINE_VALUE];
        inline[..value.len()].copy_from_slice(value);
        Some(Self {
            name,
            // At most INLINE_VALUE (32), checked above.
            len: value.len() as u8,
            value: inline,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn value(&self) -> &[u8] {
        &self.value[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for InlineField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.name,
            String::from_utf8_lossy(self.value())
        )
    }
}

/// The fields the gateway adds to one request.
#[derive(Debug, Clone)]
pub struct Added {
    pub block: FieldBlock,
    pub inline: Option<InlineField>,
}

impl Added {
    /// `name: value\r\n` for each, block first.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.block.wire());
        if let Some(f) = &self.inline {
            out.extend_from_slice(f.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(f.value());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl From<FieldBlock> for Added {
    fn from(block: FieldBlock) -> Self {
        Self {
            block,
            inline: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;
    use crate::http1::raw::Block;

    #[test]
    fn an_inline_field_takes_only_what_cannot_split_a_head() {
        let f = InlineField::new("x-request-timestamp", b"2026-12-05T15:40:00.123Z").unwrap();
        assert_eq!(f.value(), b"2026-12-05T15:40:00.123Z");
        assert!(InlineField::new("x-a", &[b'a'; INLINE_VALUE]).is_some());
        assert!(InlineField::new("x-a", &[b'a'; INLINE_VALUE + 1]).is_none());
        assert!(InlineField::new("x-a", b"a\r\nx-b: 1").is_none());
        assert!(InlineField::new("x-a", b"a\0").is_none());
        assert!(InlineField::new("x a", b"1").is_none());
        assert!(
            InlineField::new("X-A", b"1").is_none(),
            "names are lowercase"
        );
        assert!(InlineField::new("", b"1").is_none());
    }

    #[test]
    fn the_block_is_written_before_the_inline_field() {
        let block = Block::new(vec![(
            HeaderName::from_static("x-user-id"),
            HeaderValue::from_static("42"),
        )]);
        let added = Added {
            block,
            inline: InlineField::new("x-request-timestamp", b"t"),
        };
        let mut out = Vec::new();
        added.write(&mut out);
        assert_eq!(out, b"x-user-id: 42\r\nx-request-timestamp: t\r\n");
    }
}
