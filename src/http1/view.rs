//! One view of a response's header fields, wherever they are. A proxied response carries
//! its upstream's fields as received ([`RawHeaders`], in the extensions, the fast path), and
//! the gateway's own answers carry theirs in the map; every reader and editor of response
//! headers goes through [`HeaderView`] / [`HeaderViewMut`], so none of them can look in one
//! place and miss the other.
//!
//! A layer that needs the `http` crate's map itself (hyper's h2c server, a tower-http
//! middleware) calls [`HeaderViewMut::materialize`] first: the upstream's fields move into
//! the map once, and the map is the whole truth from then on.
//!
//! Why the raw fields are kept at all: building a map for every response was a sixth of the
//! gateway's instructions per request (see [`RawHeaders`]); measured again when this view was
//! introduced, see BENCHMARKS.md.

use http::header::CONNECTION;
use http::response::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::RawHeaders;
use super::raw::FieldBlock;

/// A response's header fields, read: the map's, then the upstream's as received.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<'a> {
    map: &'a HeaderMap,
    raw: Option<&'a RawHeaders>,
}

impl<'a> HeaderView<'a> {
    pub fn of(parts: &'a Parts) -> Self {
        Self {
            map: &parts.headers,
            raw: parts.extensions.get::<RawHeaders>(),
        }
    }

    /// Every field, names as they will be written: the map's (lower case), then the
    /// upstream's (as it spelled them) and what was added beside them.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let map = self
            .map
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
        map.chain(self.raw.into_iter().flat_map(RawHeaders::iter))
    }

    /// Calls `f` with every field, in [`HeaderView::iter`]'s order. Why beside `iter`: the
    /// listener writes every response's fields, and two plain loops cost less than stepping
    /// a chained iterator (callgrind: ~300 instructions a response less).
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(&'a [u8], &'a [u8])) {
        for (name, value) in self.map {
            f(name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some(raw) = self.raw {
            raw.for_each(f);
        }
    }

    /// [`HeaderView::for_each`] for the writer: a block of fields comes as its wire form.
    #[inline]
    pub fn for_each_wire(
        &self,
        mut field: impl FnMut(&'a [u8], &'a [u8]),
        block: impl FnOnce(&'a [u8]),
    ) {
        for (name, value) in self.map {
            field(name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some(raw) = self.raw {
            raw.for_each_wire(field, block);
        }
    }

    /// The values of the `Connection` fields. Why a method of its own: asked of every
    /// response the listener writes, and the raw fields answer it without a scan.
    pub fn connection(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let map = self
            .map
            .get_all(CONNECTION)
            .into_iter()
            .map(HeaderValue::as_bytes);
        map.chain(self.raw.into_iter().flat_map(RawHeaders::connection))
    }

    /// The values of every field named `name`, in order.
    pub fn values(&self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        let wanted = name.as_str().as_bytes();
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v)
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.map.contains_key(name) || self.raw.is_some_and(|r| r.contains(name.as_str()))
    }

    /// The body length the upstream announced, for an answer that has no body to measure
    /// (HEAD); our own answers put theirs in the map, where [`HeaderView::iter`] finds it.
    pub fn announced_length(&self) -> Option<u64> {
        self.raw.and_then(RawHeaders::content_length)
    }
}

/// A response's header fields, edited.
#[derive(Debug)]
pub struct HeaderViewMut<'a> {
    map: &'a mut HeaderMap,
    raw: Option<&'a mut RawHeaders>,
}

impl<'a> HeaderViewMut<'a> {
    pub fn of(parts: &'a mut Parts) -> Self {
        Self {
            map: &mut parts.headers,
            raw: parts.extensions.get_mut::<RawHeaders>(),
        }
    }

    pub fn view(&self) -> HeaderView<'_> {
        HeaderView {
            map: self.map,
            raw: self.raw.as_deref(),
        }
    }

    /// Adds a field after the ones present.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        match &mut self.raw {
            Some(raw) => raw.add(name, value),
            None => {
                self.map.append(name, value);
            }
        }
    }

    /// Adds a block of fields after the ones present: shared by reference among an upstream's
    /// fields, copied into a map.
    pub fn append_block(&mut self, block: &FieldBlock) {
        match &mut self.raw {
            Some(raw) => raw.add_block(block.clone()),
            None => {
                for (name, value) in block.iter() {
                    self.map.append(name.clone(), value.clone());
                }
            }
        }
    }

    /// Keeps the fields for which `keep(name, value)` holds (names compared without case).
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        if let Some(raw) = &mut self.raw {
            raw.retain(&mut keep);
        }
        // A map has no retain: names whose every value goes are removed, the others (rare:
        // a name with values kept and dropped) are rebuilt.
        let mut drop: Vec<HeaderName> = Vec::new();
        for name in self.map.keys() {
            if self
                .map
                .get_all(name)
                .iter()
                .any(|v| !keep(name.as_str().as_bytes(), v.as_bytes()))
            {
                drop.push(name.clone());
            }
        }
        for name in drop {
            let kept: Vec<HeaderValue> = self
                .map
                .get_all(&name)
                .iter()
                .filter(|v| keep(name.as_str().as_bytes(), v.as_bytes()))
                .cloned()
                .collect();
            self.map.remove(&name);
            for v in kept {
                self.map.append(name.clone(), v);
            }
        }
    }

    /// Removes the body's length wherever it is: the body is about to change (compression),
    /// and the listener frames the new one itself.
    pub fn remove_length(&mut self) {
        self.map.remove(http::header::CONTENT_LENGTH);
        if let Some(raw) = &mut self.raw {
            raw.forget_length();
        }
    }

    /// Moves the upstream's fields into the map, for code that reads only the map.
    pub fn materialize(self) {
        if let Some(raw) = self.raw {
            let raw = std::mem::take(raw);
            raw.append_to(self.map);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};

    use super::*;

    fn proxied(head: &str) -> Parts {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.extensions.insert(RawHeaders::from_head(head));
        parts
    }

    fn names(v: HeaderView<'_>) -> Vec<String> {
        v.iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn both_places_are_read_map_first() {
        let mut parts =
            proxied("HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: x-a\r\nContent-Length: 7\r\n\r\n");
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let v = HeaderView::of(&parts);
        assert_eq!(names(v), ["content-type", "X-A", "Connection"]);
        assert!(v.contains(&CONNECTION) && v.contains(&CONTENT_TYPE));
        assert!(
            !v.contains(&CONTENT_LENGTH),
            "the length is kept as a number"
        );
        assert_eq!(v.announced_length(), Some(7));
        assert_eq!(v.values(&CONNECTION).collect::<Vec<_>>(), [b"x-a"]);
        let ours = http::Response::new(()).into_parts().0;
        assert_eq!(HeaderView::of(&ours).iter().count(), 0);
        assert_eq!(HeaderView::of(&ours).announced_length(), None);
    }

    #[test]
    fn edits_land_where_the_fields_are() {
        let mut parts = proxied("HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\n\r\n");
        parts.headers.append("x-c", HeaderValue::from_static("4"));
        parts.headers.append("x-a", HeaderValue::from_static("5"));
        parts.headers.append("x-a", HeaderValue::from_static("6"));
        let mut h = HeaderViewMut::of(&mut parts);
        h.retain(|n, v| !(n.eq_ignore_ascii_case(b"x-a") && (v == b"1" || v == b"5")));
        h.append(
            HeaderName::from_static("x-id"),
            HeaderValue::from_static("r"),
        );
        let got: Vec<(String, String)> = h
            .view()
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let want = [
            ("x-c", "4"),
            ("x-a", "6"),
            ("X-B", "2"),
            ("X-A", "3"),
            ("x-id", "r"),
        ];
        assert_eq!(
            got,
            want.map(|(n, v)| (n.to_owned(), v.to_owned())).to_vec()
        );
        // Ours alone: an appended field goes to the map.
        let (mut ours, ()) = http::Response::new(()).into_parts();
        HeaderViewMut::of(&mut ours).append(
            HeaderName::from_static("x-id"),
            HeaderValue::from_static("r"),
        );
        assert_eq!(ours.headers["x-id"], "r");
    }

    #[test]
    fn materialized_the_map_is_the_whole_truth() {
        let mut parts = proxied("HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n");
        let mut h = HeaderViewMut::of(&mut parts);
        h.append(
            HeaderName::from_static("x-id"),
            HeaderValue::from_static("r"),
        );
        h.materialize();
        assert_eq!(parts.headers["x-a"], "1");
        assert_eq!(parts.headers["x-id"], "r");
        assert_eq!(parts.headers[CONTENT_LENGTH], "2");
        // Nothing is read twice: the raw fields are gone from the view.
        assert_eq!(HeaderView::of(&parts).iter().count(), 3);
        assert_eq!(HeaderView::of(&parts).announced_length(), None);
    }
}
