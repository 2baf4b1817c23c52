//! The floor under the gateway: a proxy of nothing but hyper's HTTP/1 server and one upstream
//! connection per client connection, to measure what the HTTP machinery alone costs (see
//! BENCHMARKS.md, "Where the gap is"). Not a gateway: no routing, no health, no retries, GET
//! only, tiny responses with `Content-Length` only.
//!
//! ```sh
//! cargo build --release --example floor
//! target/release/examples/floor hyper  127.0.0.1:18300   # upstream exchange via hyper's client
//! target/release/examples/floor inline 127.0.0.1:18300   # written inline in the request's task
//! ```
//!
//! Upstreams: 127.0.0.2-4:3000 (the load script's tasks), one per client connection in turn.

use std::cell::RefCell;
use std::convert::Infallible;
use std::error::Error;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn bad_gateway(e: &dyn std::fmt::Display) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(format!("{e}\n"))));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

/// One exchange on `conn` without a second task: write the head, parse the answer.
async fn inline(
    conn: &mut (TcpStream, BytesMut),
    req: &Request<Incoming>,
) -> Result<Response<Body>, BoxError> {
    let (stream, buf) = conn;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (k, v) in req.headers() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out).await?;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = parsed.parse(buf)? {
            let mut resp = Response::builder().status(parsed.code.unwrap_or(502));
            let mut body_len = 0usize;
            for h in parsed.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    body_len = std::str::from_utf8(h.value)?.trim().parse()?;
                }
                resp = resp.header(h.name, h.value);
            }
            while buf.len() < head_len + body_len {
                buf.reserve(4096);
                if stream.read_buf(buf).await? == 0 {
                    return Err("upstream closed mid-body".into());
                }
            }
            drop(buf.split_to(head_len));
            let body = buf.split_to(body_len).freeze();
            return Ok(resp.body(full(body))?);
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err("upstream closed before answering".into());
        }
    }
}

async fn via_hyper(
    tx: &mut SendRequest<Incoming>,
    req: Request<Incoming>,
) -> Result<Response<Body>, BoxError> {
    let (mut parts, body) = req.into_parts();
    parts.uri = Uri::from(parts.uri.path_and_query().cloned().ok_or("no path")?);
    tx.ready().await?;
    let resp = tx.send_request(Request::from_parts(parts, body)).await?;
    Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync()))
}

async fn serve(client: TcpStream, upstream: String, inline_mode: bool) -> Result<(), BoxError> {
    let up = TcpStream::connect(&upstream).await?;
    up.set_nodelay(true)?;
    let io = TokioIo::new(client);
    let server = hyper::server::conn::http1::Builder::new();
    if inline_mode {
        let conn = Rc::new(RefCell::new(Some((up, BytesMut::with_capacity(8192)))));
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let conn = conn.clone();
            async move {
                // One request at a time per HTTP/1 connection: the slot is always filled here.
                let Some(mut c) = conn.borrow_mut().take() else {
                    return Ok::<_, Infallible>(bad_gateway(&"busy"));
                };
                let resp = inline(&mut c, &req)
                    .await
                    .unwrap_or_else(|e| bad_gateway(&e));
                *conn.borrow_mut() = Some(c);
                Ok(resp)
            }
        });
        server.serve_connection(io, svc).await?;
    } else {
        let (tx, conn) =
            hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(up)).await?;
        tokio::task::spawn_local(conn);
        let tx = Rc::new(RefCell::new(Some(tx)));
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let tx = tx.clone();
            async move {
                let Some(mut s) = tx.borrow_mut().take() else {
                    return Ok::<_, Infallible>(bad_gateway(&"busy"));
                };
                let resp = via_hyper(&mut s, req)
                    .await
                    .unwrap_or_else(|e| bad_gateway(&e));
                *tx.borrow_mut() = Some(s);
                Ok(resp)
            }
        });
        server.serve_connection(io, svc).await?;
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let inline_mode = match args.next().as_deref() {
        Some("inline") => true,
        Some("hyper") => false,
        _ => return Err("usage: floor hyper|inline [LISTEN]".into()),
    };
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18300".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(&listen).await?;
        for n in 0usize.. {
            let (client, _) = listener.accept().await?;
            client.set_nodelay(true)?;
            let upstream = format!("127.0.0.{}:3000", 2 + n % 3);
            tokio::task::spawn_local(async move {
                if let Err(e) = serve(client, upstream, inline_mode).await {
                    eprintln!("connection: {e}");
                }
            });
        }
        Ok(())
    })
}
