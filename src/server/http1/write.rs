//! A response written to the connection: the head with our framing, the body coalesced
//! into few writes, chunked or close-delimited when its length is unknown.

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Method, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::body::ResponseBody;
use crate::error::ErrorChain;
use crate::http1::{self, ChunkSize, LAST_CHUNK, Persistence, ResponseFraming};

/// Response bytes gathered into one write; a larger body piece is written on its own.
const WRITE_COALESCE: usize = 16 * 1024;

/// Writes a response. True when the connection can carry another request.
pub(super) async fn respond(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    resp: Response<ResponseBody>,
    method: &Method,
    http10: bool,
    mut close: bool,
) -> bool {
    let (parts, mut body) = resp.into_parts();
    close |= http1::asks_to_close(http1::HeaderView::of(&parts));
    let framing = ResponseFraming::of(method, parts.status, body.size_hint().exact(), http10);
    close |= framing == ResponseFraming::Close;
    let persistence = match (close, http10) {
        (true, _) => Persistence::Close,
        (false, true) => Persistence::KeepAliveHttp10,
        (false, false) => Persistence::KeepAlive,
    };
    out.clear();
    http1::encode_response_head(out, &parts, framing, persistence);
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        // Never produced by the proxy (the upstream client refuses upgrades); a handler that
        // tried would leave both sides speaking different protocols.
        return false;
    }
    let written = match framing {
        ResponseFraming::Bodiless => {
            drop(body);
            stream.write_all(out).await.map_err(WriteError::Io)
        }
        ResponseFraming::Length(n) => write_body(stream, out, &mut body, Some(n), false).await,
        ResponseFraming::Chunked => write_body(stream, out, &mut body, None, true).await,
        ResponseFraming::Close => write_body(stream, out, &mut body, None, false).await,
    };
    match written {
        Ok(()) => !close,
        Err(e) => {
            if !matches!(e, WriteError::Io(_)) {
                // What was gathered still goes out: the client sees a response cut short (its
                // framing tells it so), not a connection closed with no answer at all, which
                // a client may take as "never sent" and send again.
                let _ = flush(stream, out).await;
            }
            tracing::debug!(error = %ErrorChain(&e), "response not completed; closing the connection");
            false
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("writing to the client failed")]
    Io(#[source] std::io::Error),
    #[error("the response body failed")]
    Body(#[source] crate::error::BoxError),
    #[error("the response body did not match its length")]
    Length,
}

/// Writes the body after the head already in `out`: small pieces gathered into one write,
/// large ones written as they are; what is gathered goes out before waiting for more, so a
/// slow stream reaches the client piece by piece.
async fn write_body(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    body: &mut ResponseBody,
    length: Option<u64>,
    chunked: bool,
) -> Result<(), WriteError> {
    let mut sent = 0u64;
    loop {
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush(stream, out).await?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(WriteError::Body(e)),
            // Trailers are not forwarded (README).
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if length.is_some_and(|n| sent > n) {
            return Err(WriteError::Length);
        }
        if chunked {
            out.extend_from_slice(ChunkSize::new(data.len()).as_bytes());
        }
        put(stream, out, data).await?;
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if length.is_some_and(|n| sent != n) {
        return Err(WriteError::Length);
    }
    if chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    flush(stream, out).await
}

async fn put(stream: &mut TcpStream, out: &mut Vec<u8>, data: Bytes) -> Result<(), WriteError> {
    if out.len() + data.len() <= WRITE_COALESCE {
        out.extend_from_slice(&data);
        return Ok(());
    }
    flush(stream, out).await?;
    stream.write_all(&data).await.map_err(WriteError::Io)
}

async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> Result<(), WriteError> {
    if !out.is_empty() {
        stream.write_all(out).await.map_err(WriteError::Io)?;
        out.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use http_body_util::{Full, StreamBody};

    /// A connected pair of loopback sockets: (ours, the client's).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (ours, client)
    }

    fn full(text: &'static str) -> ResponseBody {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|e| match e {})
            .boxed_unsync()
    }

    /// A body of unknown length: two pieces, then the end (or an error instead of the end).
    fn streamed(fail: bool) -> ResponseBody {
        let mut frames: Vec<Result<http_body::Frame<Bytes>, crate::error::BoxError>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"hello "))),
            Ok(http_body::Frame::data(Bytes::from_static(b"world"))),
        ];
        if fail {
            frames.push(Err("upstream reset".into()));
        }
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    /// Writes `resp` as the answer to `method` and returns (kept open, what the client read).
    async fn answer(
        resp: Response<ResponseBody>,
        method: Method,
        http10: bool,
        close: bool,
    ) -> (bool, String) {
        let (mut ours, mut client) = pair().await;
        let mut out = Vec::new();
        let kept = respond(&mut ours, &mut out, resp, &method, http10, close).await;
        drop(ours);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        (kept, String::from_utf8(got).unwrap())
    }

    #[tokio::test]
    async fn a_sized_body_goes_out_with_its_length_in_one_piece() {
        let (kept, text) = answer(Response::new(full("{}")), Method::GET, false, false).await;
        assert!(kept);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"), "{text}");
    }

    #[tokio::test]
    async fn an_unsized_body_is_chunked_for_http11_and_close_delimited_for_http10() {
        let (kept, text) = answer(Response::new(streamed(false)), Method::GET, false, false).await;
        assert!(kept);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
            "{text}"
        );

        let (kept, text) = answer(Response::new(streamed(false)), Method::GET, true, false).await;
        assert!(!kept, "the close is what ends the body");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(!text.contains("transfer-encoding") && !text.contains("content-length"));
        assert!(text.ends_with("\r\n\r\nhello world"), "{text}");
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_ends_the_connection_without_a_last_chunk() {
        let (kept, text) = answer(Response::new(streamed(true)), Method::GET, false, false).await;
        assert!(!kept);
        assert!(
            text.ends_with("5\r\nworld\r\n"),
            "no terminating chunk: {text}"
        );
    }

    #[tokio::test]
    async fn head_answers_keep_their_length_and_send_no_body() {
        let resp = Response::builder()
            .header("content-length", "11")
            .body(full("not sent"))
            .unwrap();
        let (kept, text) = answer(resp, Method::HEAD, false, false).await;
        assert!(kept);
        assert!(text.contains("content-length: 11\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[tokio::test]
    async fn close_is_said_when_asked_for_by_either_side() {
        let (kept, text) = answer(Response::new(full("x")), Method::GET, false, true).await;
        assert!(!kept);
        assert!(text.contains("connection: close\r\n"), "{text}");
        let resp = Response::builder()
            .header("connection", "close")
            .body(full("x"))
            .unwrap();
        let (kept, text) = answer(resp, Method::GET, false, false).await;
        assert!(!kept);
        assert_eq!(text.matches("connection").count(), 1, "{text}");
        let (kept, text) = answer(Response::new(full("x")), Method::GET, true, false).await;
        assert!(kept, "an HTTP/1.0 client that asked for keep-alive");
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
    }

    #[tokio::test]
    async fn a_body_longer_or_shorter_than_its_length_ends_the_connection() {
        // A size hint that lies (a broken body type) must not leave the client reading a
        // response that never ends, or the next one mixed into this one.
        struct Lying(Option<Bytes>, u64);
        impl http_body::Body for Lying {
            type Data = Bytes;
            type Error = crate::error::BoxError;
            fn poll_frame(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
                std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
            }
            fn size_hint(&self) -> http_body::SizeHint {
                http_body::SizeHint::with_exact(self.1)
            }
        }
        for (claimed, reaches) in [(3, "content-length: 3\r\n\r\n"), (10, "\r\n\r\nhello")] {
            let body = Lying(Some(Bytes::from_static(b"hello")), claimed).boxed_unsync();
            let (kept, text) = answer(Response::new(body), Method::GET, false, false).await;
            assert!(!kept, "claimed {claimed}, sent 5");
            assert!(text.ends_with(reaches), "never more than announced: {text}");
        }
    }
}
