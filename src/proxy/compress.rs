//! gzip for answers to clients that accept it, from `[compression]`, as the old gateway's
//! @fastify/compress did: when the upstream did not encode the body itself, its type is
//! compressible (text, JSON, JavaScript, XML, SVG; never `text/event-stream`), it is not an
//! answer without a body (HEAD, 204, 304) or a range (206), and it is at least `min_size`
//! bytes (or streamed, length unknown). The body is compressed as it streams, each piece
//! flushed (a sync flush) so that a slow stream reaches the client as it comes, never
//! buffered whole. `Content-Encoding: gzip` and `Vary: Accept-Encoding` are added, a strong
//! `ETag` becomes weak (the bytes changed, the resource did not), the length goes (chunked).
//!
//! Why not tower-http's `CompressionLayer`: it wraps a tower `Service`, and the proxy is a
//! handler over the listener's own connection loop (a `Service` there would cost the shared
//! reference count per request the listener avoids: `server::Handler`); and it decides from
//! the response's map, where a proxied response's fields are not (`http1::view`). The decision
//! is read here through the header view, and the encoding is flate2's.

use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, VARY};
use http::response::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::config::CompressionConfig;
use crate::error::BoxError;
use crate::http1::HeaderViewMut;

#[derive(Debug, Clone)]
pub struct Compressor {
    min_size: u64,
    level: Compression,
}

impl Compressor {
    /// `None` when compression is off.
    pub fn new(cfg: &CompressionConfig) -> Option<Self> {
        (cfg.enabled && cfg.algorithms.iter().any(|a| a == "gzip")).then(|| Self {
            min_size: cfg.min_size,
            level: Compression::new(cfg.level),
        })
    }

    /// Whether a request's `Accept-Encoding` takes gzip (`gzip` or `*` with a q above 0).
    pub fn accepts(headers: &HeaderMap) -> bool {
        headers
            .get_all(ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                let q = parts
                    .filter_map(|p| {
                        p.trim()
                            .strip_prefix("q=")
                            .or_else(|| p.trim().strip_prefix("Q="))
                    })
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                q > 0.0 && (coding.eq_ignore_ascii_case("gzip") || coding == "*")
            })
    }

    /// Whether this answer is to be compressed, given the body's known length; if so, the
    /// head is changed for it (encoding, Vary, weak ETag, no length).
    pub fn prepare(&self, method: &Method, head: &mut Parts, length: Option<u64>) -> bool {
        let status = head.status;
        if method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::PARTIAL_CONTENT
            || length.is_some_and(|n| n < self.min_size)
        {
            return false;
        }
        let mut fields = HeaderViewMut::of(head);
        let (mut compressible, mut encoded, mut strong_etag) = (false, false, None);
        fields.view().for_each(|name, value| {
            if name.eq_ignore_ascii_case(b"content-type") {
                compressible = is_compressible(value);
            } else if name.eq_ignore_ascii_case(b"content-encoding")
                || name.eq_ignore_ascii_case(b"content-range")
            {
                encoded = true;
            } else if name.eq_ignore_ascii_case(b"etag") && !value.starts_with(b"W/") {
                strong_etag = Some(value.to_vec());
            }
        });
        if !compressible || encoded {
            return false;
        }
        fields.remove_length();
        if strong_etag.is_some() {
            fields.retain(|name, _| !name.eq_ignore_ascii_case(b"etag"));
        }
        if let Some(etag) = strong_etag {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(&etag);
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                fields.append(ETAG, v);
            }
        }
        fields.append(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        fields.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        true
    }

    pub fn wrap<B>(&self, inner: B) -> Gzip<B> {
        Gzip {
            inner,
            encoder: Some(GzEncoder::new(Vec::with_capacity(4096), self.level)),
        }
    }
}

/// `text/*` (but not an event stream), JSON, JavaScript, XML and SVG, with their `+json` and
/// `+xml` kin.
fn is_compressible(content_type: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(content_type) else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-www-form-urlencoded"
                | "image/svg+xml"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
}

pin_project_lite::pin_project! {
    /// A body gzip-compressed as it streams.
    pub struct Gzip<B> {
        #[pin]
        inner: B,
        // `None` once the trailer went out.
        encoder: Option<GzEncoder<Vec<u8>>>,
    }
}

impl<B> std::fmt::Debug for Gzip<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gzip").finish_non_exhaustive()
    }
}

impl<B> Body for Gzip<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers are not forwarded (the listener drops them anyway).
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    encoder.write_all(&data)?;
                    // A sync flush: what came so far can be decoded by the client now.
                    encoder.flush()?;
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Some(Err(e)) => {
                    *this.encoder = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    let Some(encoder) = this.encoder.take() else {
                        return Poll::Ready(None);
                    };
                    let out = encoder.finish()?;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use http_body_util::{BodyExt, Full, StreamBody};

    use http::header::CONTENT_LENGTH;

    use super::*;
    use crate::auth::token::tests::headers;
    use crate::http1::RawHeaders;

    fn gz() -> Compressor {
        Compressor::new(&CompressionConfig::default()).unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        for (value, ok) in [
            ("gzip", true),
            ("gzip, deflate, br", true),
            ("br;q=1.0, GZIP;q=0.5", true),
            ("*", true),
            ("gzip;q=0", false),
            ("gzip; q=0.0", false),
            ("br", false),
            ("identity", false),
            ("", false),
        ] {
            assert_eq!(
                Compressor::accepts(&headers(&[("accept-encoding", value)])),
                ok,
                "{value:?}"
            );
        }
        assert!(!Compressor::accepts(&HeaderMap::new()));
    }

    fn proxied(head: &str) -> Parts {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = StatusCode::from_bytes(&head.as_bytes()[9..12]).unwrap();
        parts.extensions.insert(RawHeaders::from_head(head));
        parts
    }

    #[test]
    fn only_compressible_unencoded_large_enough_answers_are_compressed() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 5000\r\n\r\n";
        let mut head = proxied(ok);
        assert!(gz().prepare(&Method::GET, &mut head, Some(5000)));
        let mut written = Vec::new();
        crate::http1::HeaderView::of(&head).for_each(|n, v| {
            written.push(format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            ));
        });
        assert!(
            written.contains(&"content-encoding: gzip".to_owned()),
            "{written:?}"
        );
        assert!(
            written.contains(&"vary: Accept-Encoding".to_owned()),
            "{written:?}"
        );
        assert!(
            gz().prepare(&Method::GET, &mut proxied(ok), None),
            "streamed"
        );
        assert!(
            !gz().prepare(&Method::GET, &mut proxied(ok), Some(100)),
            "small"
        );
        assert!(
            !gz().prepare(&Method::HEAD, &mut proxied(ok), Some(5000)),
            "HEAD"
        );
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: br\r\n\r\n",
            "HTTP/1.1 206 Partial Content\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/99\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nContent-Type: text/plain\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
        ] {
            assert!(
                !gz().prepare(&Method::GET, &mut proxied(head), Some(5000)),
                "{head}"
            );
        }
        let mut etag =
            proxied("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"abc\"\r\n\r\n");
        assert!(gz().prepare(&Method::GET, &mut etag, None));
        let mut tags = Vec::new();
        crate::http1::HeaderView::of(&etag).for_each(|n, v| {
            if n.eq_ignore_ascii_case(b"etag") {
                tags.push(String::from_utf8_lossy(v).into_owned());
            }
        });
        assert_eq!(tags, ["W/\"abc\""]);
        // The gateway's own answers carry their length in the map: it goes.
        let (mut ours, ()) = http::Response::new(()).into_parts();
        ours.headers
            .insert("content-type", HeaderValue::from_static("application/json"));
        ours.headers.insert(CONTENT_LENGTH, HeaderValue::from(4096));
        assert!(gz().prepare(&Method::GET, &mut ours, Some(4096)));
        assert!(!ours.headers.contains_key(CONTENT_LENGTH));
        assert_eq!(ours.headers[CONTENT_ENCODING], "gzip");
    }

    #[tokio::test]
    async fn the_body_round_trips_whole_and_piece_by_piece() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"n\":{i}}},").into_bytes())
            .collect();
        let whole = gz()
            .wrap(Full::new(Bytes::from(text.clone())))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert!(
            whole.len() < text.len() / 4,
            "{} of {}",
            whole.len(),
            text.len()
        );
        assert_eq!(gunzip(&whole), text);
        // Streamed in pieces: each piece comes out as soon as it went in.
        let pieces: Vec<Result<Frame<Bytes>, std::io::Error>> = text
            .chunks(1000)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let mut body = gz().wrap(StreamBody::new(futures_util::stream::iter(pieces)));
        let mut out = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(&frame.unwrap().into_data().unwrap());
            frames += 1;
        }
        assert!(
            frames > text.len() / 1000,
            "one frame per piece, and the trailer"
        );
        assert_eq!(gunzip(&out), text);
        // An empty body is still a valid gzip stream.
        let empty = gz()
            .wrap(Full::new(Bytes::new()))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(gunzip(&empty), b"");
    }
}
