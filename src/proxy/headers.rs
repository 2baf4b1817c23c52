//! Header rules applied to every proxied exchange.

use std::net::IpAddr;

use http::header::{
    CONNECTION, HOST, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::http1::HeaderViewMut;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
/// non-standard ones clients still send. Forwarding them would let a client steer our pooled
/// upstream connections (or smuggle an `Upgrade`).
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// A client-supplied request id longer than this is replaced rather than logged and forwarded.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The position of `name` (any case) in [`HOP_BY_HOP`], if it is one.
fn hop_by_hop_index(name: &[u8]) -> Option<usize> {
    // A switch on the length and at most two comparisons: cheaper than comparing against
    // each of the eight names, for every header of every message.
    let candidates: &[(usize, &[u8])] = match name.len() {
        2 => &[(4, b"te")],
        7 => &[(5, b"trailer"), (7, b"upgrade")],
        10 => &[(0, b"connection"), (1, b"keep-alive")],
        16 => &[(2, b"proxy-connection")],
        17 => &[(6, b"transfer-encoding")],
        19 => &[(3, b"proxy-authorization")],
        _ => return None,
    };
    candidates
        .iter()
        .find(|(_, c)| name.eq_ignore_ascii_case(c))
        .map(|&(i, _)| i)
}

/// The tokens of `Connection` values other than `keep-alive` (which names a header removed
/// anyway): the headers they name are hop-by-hop too, except the ones the gateway owns.
fn connection_named<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") && !gateway_owned(t))
}

/// Headers the gateway sets or vouches for: `Host` (the upstream must see what the client
/// asked for, not the task's address), the request id (the client is told it, the task must
/// log it), `X-Forwarded-*`, and the identity it tells backends (`X-User-*`,
/// `X-Request-Timestamp`). A `Connection` header naming one of them is ignored for that
/// name: otherwise a client could remove what the gateway adds after it (RFC 9110 section
/// 7.6.1 lets an intermediary keep a field it must add itself).
fn gateway_owned(name: &[u8]) -> bool {
    const OWNED: [&[u8]; 6] = [
        b"host",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-timestamp",
    ];
    OWNED.iter().any(|o| name.eq_ignore_ascii_case(o)) || is_identity(name)
}

/// Whether a header is identity only the gateway may set: `X-User-*`, `X-Request-Timestamp`.
fn is_identity(name: &[u8]) -> bool {
    name.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"x-user-"))
        || name.eq_ignore_ascii_case(b"x-request-timestamp")
}

/// Removes every identity header a client sent (the old gateway kept them: anyone could be
/// anyone to a backend that trusted them).
pub fn strip_client_identity(headers: &mut HeaderMap) {
    // A pass over the names first: nearly every request carries none, and a removal hashes.
    if !headers.keys().any(|n| is_identity(n.as_str().as_bytes())) {
        return;
    }
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_identity(n.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Removes hop-by-hop headers, including every header that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, false);
}

/// What a request loses on its way to a task: the hop-by-hop headers and every identity
/// header the client sent ([`strip_client_identity`]), found in one pass over the names.
pub fn strip_for_upstream(headers: &mut HeaderMap) {
    strip(headers, true);
}

fn strip(headers: &mut HeaderMap, identity: bool) {
    // Why a scan first: most messages carry none of them, or only `Connection`. A pass over
    // the names is far cheaper than eight hashed removals per message, which the profile
    // showed at 5 % of all work.
    let mut present = [false; 8];
    let mut any = false;
    let mut spoofed = false;
    for name in headers.keys() {
        let name = name.as_str().as_bytes();
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
            any = true;
        }
        spoofed |= identity && is_identity(name);
    }
    if spoofed {
        strip_client_identity(headers);
    }
    if !any {
        return;
    }
    if present[0] {
        let named: Vec<HeaderName> = connection_named(
            headers
                .get_all(CONNECTION)
                .iter()
                .map(HeaderValue::as_bytes),
        )
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// [`strip_hop_by_hop`] for a response, wherever its fields are (see [`HeaderViewMut`]).
pub fn strip_hop_by_hop_response(fields: &mut HeaderViewMut<'_>) {
    let mut any = false;
    let mut connection = false;
    // Every response passes here: plain loops (see `HeaderView::for_each`).
    fields.view().for_each(|name, _| {
        if let Some(i) = hop_by_hop_index(name) {
            any = true;
            connection |= i == 0;
        }
    });
    if !any {
        return;
    }
    // Rare (our client already drops a `Connection` that only says keep-alive or close), so
    // the named tokens are copied out rather than borrowed across the removal.
    let named: Vec<Vec<u8>> = if connection {
        connection_named(fields.view().connection())
            .map(<[u8]>::to_vec)
            .collect()
    } else {
        Vec::new()
    };
    fields.retain(|name, _| {
        hop_by_hop_index(name).is_none() && !named.iter().any(|n| n.eq_ignore_ascii_case(name))
    });
}

/// Gives a response the request id unless it carries one already (an upstream's own is kept).
pub fn answer_request_id(fields: &mut HeaderViewMut<'_>, id: HeaderValue) {
    if !fields.view().contains(&X_REQUEST_ID) {
        fields.append(X_REQUEST_ID, id);
    }
}

/// Sets the `X-Forwarded-*` headers for a request received from `peer`.
///
/// With `trust` (the old gateway's `trustProxy`), values set by a proxy in front of us are kept
/// and `peer` is appended to the chain; without it the client's values are replaced.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    host: Option<HeaderValue>,
    trust: bool,
) {
    use http::header::Entry;
    let peer_value = ip_header_value(peer);
    // Entries: each name is hashed once, whether it is present or not (these are custom
    // names, hashed byte by byte).
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut e) if trust => {
            let mut chain: Vec<u8> = Vec::with_capacity(64);
            for v in e.iter() {
                chain.extend_from_slice(v.as_bytes());
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(peer_value.as_bytes());
            e.insert(HeaderValue::from_bytes(&chain).unwrap_or(peer_value));
        }
        Entry::Occupied(mut e) => {
            e.insert(peer_value);
        }
        Entry::Vacant(e) => {
            e.insert(peer_value);
        }
    }
    match headers.entry(X_FORWARDED_PROTO) {
        Entry::Occupied(_) if trust => {}
        Entry::Occupied(mut e) => {
            e.insert(HeaderValue::from_static("http"));
        }
        Entry::Vacant(e) => {
            e.insert(HeaderValue::from_static("http"));
        }
    }
    match (headers.entry(X_FORWARDED_HOST), host) {
        (Entry::Occupied(_), _) if trust => {}
        (Entry::Occupied(mut e), Some(h)) => {
            e.insert(h);
        }
        (Entry::Occupied(e), None) => {
            e.remove();
        }
        (Entry::Vacant(e), Some(h)) => {
            e.insert(h);
        }
        (Entry::Vacant(_), None) => {}
    }
}

fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        // An IPv6 address prints as hex and colons: always a valid header value.
        IpAddr::V6(v6) => {
            return HeaderValue::from_str(&v6.to_string())
                .unwrap_or(HeaderValue::from_static("unknown"));
        }
    };
    // Every request carries one: digits by hand, as `Display` costs ten times more.
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    small_value(&buf[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Bytes per arena slab for [`small_value`].
const SLAB: usize = 4096;

thread_local! {
    static SLABS: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
}

/// A header value made on every request (request id, forwarded-for), cut from a per-thread
/// slab instead of allocated on its own: one allocation per hundred or so values, where
/// each value was one allocation and one free (measured: ~400 instructions per request).
/// A slab is freed once the last value cut from it is dropped; values live as long as their
/// request.
fn small_value(text: &[u8]) -> Option<HeaderValue> {
    let bytes = SLABS.with(|slabs| {
        let mut slab = slabs.borrow_mut();
        if slab.capacity() < text.len() {
            // The old slab stays alive only through the values still cut from it.
            *slab = bytes::BytesMut::with_capacity(SLAB.max(text.len()));
        }
        slab.extend_from_slice(text);
        slab.split().freeze()
    });
    HeaderValue::from_maybe_shared(bytes).ok()
}

/// The Host the client asked for: the `Host` header (HTTP/1) or the `:authority` (HTTP/2).
pub fn request_host(headers: &HeaderMap, uri: &http::Uri) -> Option<RequestHost> {
    if let Some(h) = headers.get(HOST) {
        return Some(RequestHost {
            value: h.clone(),
            in_headers: true,
        });
    }
    let value = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
    Some(RequestHost {
        value,
        in_headers: false,
    })
}

/// See [`request_host`].
#[derive(Debug)]
pub struct RequestHost {
    pub value: HeaderValue,
    /// It came from a `Host` header; otherwise an HTTP/1.1 upstream needs one added.
    pub in_headers: bool,
}

/// Returns the request id, generating one when the client sent none (or an unusable one), and
/// makes sure the header carries it so the upstream logs the same id.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    let new_id = || {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        // A version 4 UUID from the thread's wyrand generator: request ids must be unique,
        // not unguessable, and this is a tenth of the cost of a ChaCha-based generator.
        let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
        let text = id.hyphenated().encode_lower(&mut buf);
        small_value(text.as_bytes()).unwrap_or(HeaderValue::from_static("invalid"))
    };
    // One lookup (the name is hashed once) whether the client sent an id or not.
    match headers.entry(X_REQUEST_ID) {
        http::header::Entry::Occupied(mut e) => {
            let id = e.get();
            if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN {
                e.insert(new_id());
            }
            e.get().clone()
        }
        http::header::Entry::Vacant(e) => e.insert(new_id()).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{HeaderView, RawHeaders};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn connection_cannot_remove_the_headers_the_gateway_owns() {
        let mut h = map(&[
            (
                "connection",
                "Host, X-Request-Id, x-forwarded-for, X-Forwarded-Proto",
            ),
            (
                "connection",
                "x-forwarded-host, X-User-Id, x-user-roles, X-Request-Timestamp, x-other",
            ),
            ("host", "probe"),
            ("x-request-id", "id-1"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "example"),
            ("x-user-id", "7"),
            ("x-user-roles", "[]"),
            ("x-request-timestamp", "t"),
            ("x-other", "gone"),
            ("x-user", "a prefix too short to be ours"),
        ]);
        strip_hop_by_hop(&mut h);
        for kept in [
            "host",
            "x-request-id",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-user-id",
            "x-user-roles",
            "x-request-timestamp",
            "x-user",
        ] {
            assert!(h.contains_key(kept), "{kept} removed");
        }
        assert!(!h.contains_key("x-other") && !h.contains_key("connection"));

        let mut raw = RawHeaders::from_head(
            "HTTP/1.1 200 OK\r\nConnection: X-Request-Id, x-hop\r\nX-Request-Id: up\r\nX-Hop: 1\r\n\r\n",
        );
        strip_hop_by_hop_raw(&mut raw);
        assert_eq!(raw.values("x-request-id").collect::<Vec<_>>(), [b"up"]);
        assert!(!raw.contains("x-hop"));
    }

    /// The response-side strip, on an upstream's fields alone.
    fn strip_hop_by_hop_raw(raw: &mut RawHeaders) {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.extensions.insert(std::mem::take(raw));
        strip_hop_by_hop_response(&mut HeaderViewMut::of(&mut parts));
        *raw = parts.extensions.remove::<RawHeaders>().unwrap();
    }

    #[test]
    fn a_response_is_stripped_in_the_map_and_the_raw_fields_alike() {
        // A Connection field in the map names a field among the upstream's, and the other
        // way round: the view reads both, so both go.
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.extensions.insert(RawHeaders::from_head(
            "HTTP/1.1 200 OK\r\nConnection: x-ours\r\nX-Theirs: 1\r\nX-Kept: 2\r\n\r\n",
        ));
        parts.headers = map(&[("connection", "x-theirs"), ("x-ours", "3"), ("x-mine", "4")]);
        strip_hop_by_hop_response(&mut HeaderViewMut::of(&mut parts));
        let left: Vec<_> = HeaderView::of(&parts)
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).to_ascii_lowercase())
            .collect();
        assert_eq!(left, ["x-mine", "x-kept"]);
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9v"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-secret-hop", "1"),
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["authorization", "content-type"]);
    }

    #[test]
    fn hop_by_hop_fields_of_an_upstream_are_removed_in_any_case() {
        let mut raw = RawHeaders::from_head(
            "HTTP/1.1 200 OK\r\n\
             Connection: keep-alive, X-Secret-Hop\r\n\
             connection: Upgrade\r\n\
             Keep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\n\
             Proxy-Authorization: Basic Zm9v\r\n\
             TE: trailers\r\n\
             Trailer: x-checksum\r\n\
             Upgrade: websocket\r\n\
             x-secret-hop: 1\r\n\
             Set-Cookie: a=1\r\n\
             Content-Type: application/json\r\n\
             content-length: 0\r\n\r\n",
        );
        strip_hop_by_hop_raw(&mut raw);
        let left: Vec<_> = raw.iter().map(|(n, _)| n).collect();
        assert_eq!(left, [&b"Set-Cookie"[..], b"Content-Type"]);

        let mut plain =
            RawHeaders::from_head("HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n");
        strip_hop_by_hop_raw(&mut plain);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn a_request_id_is_found_in_either_place() {
        // The id a response ends up with, as the client would read it.
        let answered = |raw: Option<&str>, map: &[(&str, &str)]| {
            let mut resp = http::Response::new(());
            *resp.headers_mut() = self::tests::map(map);
            if let Some(raw) = raw {
                resp.extensions_mut().insert(RawHeaders::from_head(raw));
            }
            let (mut parts, ()) = resp.into_parts();
            answer_request_id(
                &mut HeaderViewMut::of(&mut parts),
                HeaderValue::from_static("gw-1"),
            );
            let resp = http::Response::from_parts(parts, ());
            let mut ids: Vec<String> = resp
                .headers()
                .get_all(X_REQUEST_ID)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            if let Some(raw) = resp.extensions().get::<RawHeaders>() {
                ids.extend(
                    raw.values("x-request-id")
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                );
            }
            ids
        };
        let with_id = "HTTP/1.1 200 OK\r\nX-Request-ID: up-1\r\ncontent-length: 0\r\n\r\n";
        let without = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(answered(Some(with_id), &[]), ["up-1"]);
        assert_eq!(answered(Some(without), &[]), ["gw-1"]);
        assert_eq!(answered(None, &[("x-request-id", "ours")]), ["ours"]);
        assert_eq!(answered(None, &[]), ["gw-1"]);
    }

    #[test]
    fn forwarded_for_is_appended_when_trusted() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        set_forwarded(
            &mut h,
            "10.0.0.7".parse().unwrap(),
            Some(HeaderValue::from_static("gw")),
            true,
        );
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.9, 10.0.0.1, 10.0.0.7");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "gw");
    }

    #[test]
    fn trusted_proto_and_host_are_kept() {
        let mut h = map(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "edu.example"),
        ]);
        set_forwarded(
            &mut h,
            "::1".parse().unwrap(),
            Some(HeaderValue::from_static("gw")),
            true,
        );
        assert_eq!(h[X_FORWARDED_FOR], "::1");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "edu.example");
    }

    #[test]
    fn untrusted_client_values_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        set_forwarded(&mut h, "127.0.0.1".parse().unwrap(), None, false);
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert!(!h.contains_key(X_FORWARDED_HOST));
    }

    #[test]
    fn addresses_print_as_their_usual_text() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "255.255.255.255",
            "203.0.113.90",
            "::1",
            "2001:db8::7",
            "::ffff:10.1.2.3",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(parsed), ip);
        }
    }

    #[test]
    fn the_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(
                hop_by_hop_index(name.as_str().as_bytes()),
                Some(i),
                "{name}"
            );
            let upper = name.as_str().to_ascii_uppercase();
            assert_eq!(hop_by_hop_index(upper.as_bytes()), Some(i), "{upper}");
        }
        for other in ["content-type", "tf", "trailers", "connectionx", "x-upgrade"] {
            assert_eq!(hop_by_hop_index(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn connection_options_in_any_case_are_honoured() {
        let mut h = map(&[
            ("connection", "Close, KEEP-ALIVE"),
            ("keep-alive", "timeout=5"),
            ("close", "1"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_left_alone() {
        let mut h = map(&[("content-type", "text/plain"), ("x-a", "1")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        let mut h = map(&[("connection", "keep-alive"), ("x-a", "1")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-a"]);
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        let mut h = map(&[("x-request-id", "abc-123")]);
        assert_eq!(ensure_request_id(&mut h), "abc-123");

        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 36);
        assert_eq!(h[X_REQUEST_ID], id);
        assert_ne!(ensure_request_id(&mut HeaderMap::new()), id);

        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        let mut h = map(&[("x-request-id", &long)]);
        assert_eq!(ensure_request_id(&mut h).len(), 36);
    }

    #[test]
    fn values_cut_from_slabs_stay_intact_across_slab_boundaries() {
        // 300 ids of 36 bytes span three 4 KiB slabs.
        let ids: Vec<HeaderValue> = (0..300)
            .map(|_| ensure_request_id(&mut HeaderMap::new()))
            .collect();
        let texts: std::collections::HashSet<String> = ids
            .iter()
            .map(|id| id.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts.len(), 300, "ids repeat or were overwritten");
        for t in &texts {
            assert!(
                uuid::Uuid::parse_str(t).is_ok_and(|u| u.get_version_num() == 4),
                "{t}"
            );
        }
        let peer = ip_header_value("10.0.0.1".parse().unwrap());
        assert_eq!(peer, "10.0.0.1");
        assert!(ids.iter().all(|id| texts.contains(id.to_str().unwrap())));
    }

    #[test]
    fn host_comes_from_header_or_authority() {
        let h = map(&[("host", "gw.example:8090")]);
        let uri: http::Uri = "/x".parse().unwrap();
        let from_header = request_host(&h, &uri).unwrap();
        assert_eq!(from_header.value, "gw.example:8090");
        assert!(from_header.in_headers);
        let uri: http::Uri = "http://h2.example/x".parse().unwrap();
        let from_authority = request_host(&HeaderMap::new(), &uri).unwrap();
        assert_eq!(from_authority.value, "h2.example");
        assert!(!from_authority.in_headers);
        assert!(request_host(&HeaderMap::new(), &"/x".parse().unwrap()).is_none());
    }
}
