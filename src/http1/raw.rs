//! An upstream's response header fields as they arrived: the head's bytes and where each
//! field lies in them, carried in the response's extensions.
//!
//! Why not a `HeaderMap`: building one for every response (each name parsed and hashed, each
//! value checked and sliced, each field appended) was a sixth of all the instructions the
//! gateway spent on a request, only to write the same bytes out again a moment later. The
//! proxy asks few questions of a response's headers (which are hop-by-hop, whether a request
//! id is there) and answers them from these bytes; our HTTP/1 listener writes the fields as
//! they came, name case included (as nginx and HAProxy do). hyper's listener (h2c) gets a
//! map built from them: [`RawHeaders::append_to`].
//!
//! Why the bytes need no second check: httparse accepts only token characters in a name and
//! only HTAB, SP, VCHAR and obs-text in a value, the very sets `HeaderName` and `HeaderValue`
//! accept (tested below over every byte), so a field can neither split the head we write
//! nor fail to become a map entry.

use std::ops::Range;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// Where one field's name and value lie in the head (a head is at most 64 KiB, so `u32`
/// offsets: 16 bytes a field, a typical response's fields fit inline).
#[derive(Debug, Clone)]
pub struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

impl Field {
    pub fn new(name: Range<usize>, value: Range<usize>) -> Self {
        let at = |r: Range<usize>| {
            (
                u32::try_from(r.start).unwrap_or(u32::MAX),
                u32::try_from(r.end).unwrap_or(u32::MAX),
            )
        };
        Self {
            name: at(name),
            value: at(value),
        }
    }

    pub fn name(&self) -> Range<usize> {
        self.name.0 as usize..self.name.1 as usize
    }

    pub fn value(&self) -> Range<usize> {
        self.value.0 as usize..self.value.1 as usize
    }
}

/// Why inline: these live in the response's extensions, which already cost allocations; a
/// vector of fields would be one more per response.
pub type Fields = SmallVec<[Field; 12]>;

/// Fields shared by many responses, built once and referenced by each, with their wire form
/// rendered once too: the listener writes the block with one copy instead of four per field
/// (callgrind: ~300 instructions a response for the ten security headers).
#[derive(Debug)]
pub struct Block {
    fields: Box<[(HeaderName, HeaderValue)]>,
    wire: Box<[u8]>,
}

pub type FieldBlock = std::sync::Arc<Block>;

impl Block {
    /// A block of `fields`. Fields that frame a message (`Connection`, `Content-Length`,
    /// `Transfer-Encoding`) or that the listener writes itself (`Date`) are not for a block:
    /// they are left out.
    pub fn new(fields: Vec<(HeaderName, HeaderValue)>) -> FieldBlock {
        let fields: Box<[_]> = fields
            .into_iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "connection" | "content-length" | "transfer-encoding" | "date"
                )
            })
            .collect();
        let mut wire = Vec::new();
        for (name, value) in &fields {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        std::sync::Arc::new(Self {
            fields,
            wire: wire.into(),
        })
    }

    pub fn iter(&self) -> std::slice::Iter<'_, (HeaderName, HeaderValue)> {
        self.fields.iter()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `name: value\r\n` for each field, as the listener writes them.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }
}

/// Response header fields as received, minus the ones that frame the message: the
/// listener frames the body itself, and `Content-Length` is kept as a number
/// ([`RawHeaders::content_length`]) for answers without a body (HEAD, 204, 304).
#[derive(Debug, Clone, Default)]
pub struct RawHeaders {
    head: Bytes,
    fields: Fields,
    content_length: Option<u64>,
    /// Fields the gateway adds (the request id), after the upstream's. Why here and not in
    /// the response's (otherwise empty) map: a map's first insert allocates twice and hashes.
    added: SmallVec<[(HeaderName, HeaderValue); 1]>,
    /// A block of fields the gateway adds to many responses alike (the security headers),
    /// after `added`: one reference count per response instead of a field copied each.
    block: Option<FieldBlock>,
    /// Some field is named `Connection`. Why kept apart: the listener asks every response
    /// whether it says `close`, and the answer is nearly always "there is no such field";
    /// comparing every name to find that out cost ~100 instructions a response.
    connection: bool,
}

impl RawHeaders {
    /// `connection`: some field is named `Connection` (the parser knows it already).
    pub fn new(head: Bytes, fields: Fields, content_length: Option<u64>, connection: bool) -> Self {
        Self {
            head,
            fields,
            content_length,
            added: SmallVec::new(),
            block: None,
            connection,
        }
    }

    /// The fields: the upstream's in the order received (names as it spelled them), then
    /// the ones [`RawHeaders::add`]ed.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|f| (&self.head[f.name()], &self.head[f.value()]))
            .chain(
                self.added
                    .iter()
                    .chain(self.block.iter().flat_map(|b| b.iter()))
                    .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
            )
    }

    /// Calls `f` with every field, in [`RawHeaders::iter`]'s order.
    #[inline]
    pub fn for_each<'a>(&'a self, mut f: impl FnMut(&'a [u8], &'a [u8])) {
        for field in &self.fields {
            f(&self.head[field.name()], &self.head[field.value()]);
        }
        for (name, value) in &self.added {
            f(name.as_str().as_bytes(), value.as_bytes());
        }
        for (name, value) in self.block.iter().flat_map(|b| b.iter()) {
            f(name.as_str().as_bytes(), value.as_bytes());
        }
    }

    /// [`RawHeaders::for_each`], but a block of fields comes as its wire form, whole.
    #[inline]
    pub fn for_each_wire<'a>(
        &'a self,
        mut field: impl FnMut(&'a [u8], &'a [u8]),
        block: impl FnOnce(&'a [u8]),
    ) {
        for f in &self.fields {
            field(&self.head[f.name()], &self.head[f.value()]);
        }
        for (name, value) in &self.added {
            field(name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some(b) = &self.block {
            block(b.wire());
        }
    }

    /// Adds a block of fields after the others (one block: a second replaces the first).
    pub fn add_block(&mut self, block: FieldBlock) {
        self.block = Some(block);
    }

    /// Adds a field after the upstream's.
    pub fn add(&mut self, name: HeaderName, value: HeaderValue) {
        self.connection |= name == CONNECTION;
        self.added.push((name, value));
    }

    /// The values of the `Connection` fields, in order.
    pub fn connection(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.connection
            .then(|| self.values("connection"))
            .into_iter()
            .flatten()
    }

    pub fn len(&self) -> usize {
        self.fields.len() + self.added.len() + self.block.as_ref().map_or(0, |b| b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a field named `name` (lower case) is present, whatever its case on the wire.
    pub fn contains(&self, name: &str) -> bool {
        self.iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The values of every field named `name` (lower case), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Keeps the upstream's fields for which `keep(name, value)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let head = &self.head;
        self.fields
            .retain(|f| keep(&head[f.name()], &head[f.value()]));
        if self.connection {
            self.connection = self.contains("connection");
        }
    }

    /// The body length the upstream announced (all its `Content-Length` values agreed).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Forgets the announced length (the gateway changes the body: compression).
    pub fn forget_length(&mut self) {
        self.content_length = None;
    }

    /// The fields of a response head, as our client parses them (for tests elsewhere).
    #[cfg(test)]
    pub fn from_head(head: &str) -> Self {
        let mut buf = bytes::BytesMut::from(head);
        match super::response::parse_response_head(&mut buf, &http::Method::GET, &mut Vec::new()) {
            Ok(Some(super::response::Head::Final(p))) => {
                assert!(p.head.headers.is_empty(), "fields belong in RawHeaders");
                p.head.extensions.get::<Self>().cloned().unwrap_or_default()
            }
            other => panic!("not a final head: {head:?}: {other:?}"),
        }
    }

    /// Appends the fields to a map (the values share the head's memory), and the announced
    /// length unless the map has one.
    pub fn append_to(&self, map: &mut HeaderMap) {
        map.reserve(self.len() + 1);
        for f in &self.fields {
            let name = HeaderName::from_bytes(&self.head[f.name()]);
            let value = HeaderValue::from_maybe_shared(self.head.slice(f.value()));
            match (name, value) {
                (Ok(name), Ok(value)) => {
                    map.append(name, value);
                }
                // Cannot happen for what httparse accepted (see the module comment); dropping
                // the field is the safe answer should a parser change ever disagree.
                _ => tracing::debug!("dropped a response header field the http crate refuses"),
            }
        }
        for (name, value) in self
            .added
            .iter()
            .chain(self.block.iter().flat_map(|b| b.iter()))
        {
            map.append(name.clone(), value.clone());
        }
        if let Some(n) = self.content_length
            && !map.contains_key(CONTENT_LENGTH)
        {
            map.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use http::Method;

    use super::*;
    use crate::http1::{Head, parse_response_head};

    fn raw(head: &str) -> RawHeaders {
        RawHeaders::from_head(head)
    }

    #[test]
    fn fields_keep_their_order_case_and_repeats() {
        let r = raw(
            "HTTP/1.1 200 OK\r\nX-Custom: a b\r\nSet-Cookie: a=1\r\ncontent-length: 2\r\nset-cookie: b=2\r\n\r\n",
        );
        let fields: Vec<_> = r.iter().collect();
        assert_eq!(
            fields,
            [
                (&b"X-Custom"[..], &b"a b"[..]),
                (b"Set-Cookie", b"a=1"),
                (b"set-cookie", b"b=2"),
            ]
        );
        assert_eq!(r.content_length(), Some(2));
        assert!(r.contains("x-custom"));
        assert!(!r.contains("x-request-id"));
        assert_eq!(r.values("set-cookie").count(), 2);
    }

    #[test]
    fn retain_drops_only_what_it_is_told() {
        let mut r = raw("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nA: 3\r\ncontent-length: 0\r\n\r\n");
        r.retain(|name, _| !name.eq_ignore_ascii_case(b"a"));
        assert_eq!(r.iter().collect::<Vec<_>>(), [(&b"B"[..], &b"2"[..])]);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn connection_fields_are_known_without_a_scan_and_stay_known() {
        // Used up by the parser when it only says keep-alive or close: none left to find.
        let none = raw("HTTP/1.1 200 OK\r\nConnection: close\r\nA: 1\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(none.connection().count(), 0);
        let mut r = raw(
            "HTTP/1.1 200 OK\r\nconnection: x-a\r\nA: 1\r\nCONNECTION: x-b, close\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(
            r.connection().collect::<Vec<_>>(),
            [&b"x-a"[..], b"x-b, close"]
        );
        r.retain(|name, _| !name.eq_ignore_ascii_case(b"connection"));
        assert_eq!(r.connection().count(), 0);
        r.add(CONNECTION, HeaderValue::from_static("close"));
        assert_eq!(r.connection().collect::<Vec<_>>(), [&b"close"[..]]);
    }

    #[test]
    fn added_fields_come_after_the_upstreams() {
        let mut r = raw("HTTP/1.1 200 OK\r\nA: 1\r\ncontent-length: 0\r\n\r\n");
        r.add(
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_static("id-1"),
        );
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [(&b"A"[..], &b"1"[..]), (b"x-request-id", b"id-1")]
        );
        assert!(r.contains("x-request-id"));
        r.retain(|_, _| false);
        assert_eq!(
            r.len(),
            1,
            "added fields are the gateway's, not the upstream's"
        );
        let mut map = HeaderMap::new();
        r.append_to(&mut map);
        assert_eq!(map["x-request-id"], "id-1");
    }

    #[test]
    fn a_map_gets_every_field_and_the_length() {
        let r = raw(
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-length: 7\r\nETag: \"x\"\r\n\r\n",
        );
        let mut map = HeaderMap::new();
        r.append_to(&mut map);
        assert_eq!(map.get_all("set-cookie").iter().count(), 2);
        assert_eq!(map["etag"], "\"x\"");
        assert_eq!(map["content-length"], "7");
        assert_eq!(map.len(), 4);
    }

    /// The module's claim, byte by byte: whatever httparse lets through in a name or a value,
    /// the http crate takes too. If a parser update breaks this, fields would be dropped on
    /// the h2c path and (worse) written unchecked on the HTTP/1 path: this test fails first.
    #[test]
    fn what_httparse_accepts_the_http_crate_accepts() {
        let mut accepted_values = 0;
        let mut accepted_names = 0;
        for b in 0..=255u8 {
            let mut value = b"HTTP/1.1 200 OK\r\nx-v: a".to_vec();
            value.extend_from_slice(&[b, b'b']);
            value.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            let mut name = b"HTTP/1.1 200 OK\r\nx".to_vec();
            name.extend_from_slice(&[b, b'n']);
            name.extend_from_slice(b": v\r\ncontent-length: 0\r\n\r\n");
            for (wire, count) in [(value, &mut accepted_values), (name, &mut accepted_names)] {
                let mut buf = BytesMut::from(&wire[..]);
                if let Ok(Some(Head::Final(p))) =
                    parse_response_head(&mut buf, &Method::GET, &mut Vec::new())
                {
                    let r = p.head.extensions.get::<RawHeaders>().unwrap();
                    let mut map = HeaderMap::new();
                    r.append_to(&mut map);
                    assert_eq!(map.len(), r.len() + 1, "byte {b:#04x} in {wire:?}");
                    for (name, value) in r.iter() {
                        assert!(HeaderName::from_bytes(name).is_ok(), "byte {b:#04x}");
                        assert!(HeaderValue::from_bytes(value).is_ok(), "byte {b:#04x}");
                    }
                    *count += 1;
                }
            }
        }
        // HTAB, SP..~ and obs-text in values; the 77 token characters in names, and ':' (which
        // ends the name "x" early: a valid field too). The counts show the test saw both sides.
        assert_eq!(accepted_values, 1 + 95 + 128);
        assert_eq!(accepted_names, 77 + 1);
    }
}
