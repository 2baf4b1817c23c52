//! A request body read off the connection and passed to the proxy piece by piece, with the
//! `100 Continue` that asks for it when the client waits.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use crate::body::{ClientBodyError, Piece};
use crate::http1::{BodyFraming, Chunked, Decoded, make_room};

/// Reads a request body off the connection and passes it to the proxy, piece by piece; why
/// it stopped short, if it did, goes to the proxy too. True once the whole body is read (the
/// connection may carry another request).
pub(super) async fn pump_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    framing: BodyFraming,
    tx: mpsc::Sender<Result<Piece, ClientBodyError>>,
    go_ahead: Option<Arc<Notify>>,
) -> bool {
    match read_body(stream, buf, framing, &tx, go_ahead).await {
        Ok(()) => true,
        Err(e) => {
            // Fails only when the proxy stopped reading, and then nobody needs to know.
            let _ = tx.send(Err(e)).await;
            false
        }
    }
}

async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    framing: BodyFraming,
    tx: &mpsc::Sender<Result<Piece, ClientBodyError>>,
    go_ahead: Option<Arc<Notify>>,
) -> Result<(), ClientBodyError> {
    if let Some(go) = go_ahead {
        go.notified().await;
        // Only when the client is waiting: bytes already here mean it did not wait.
        if buf.is_empty() {
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(ClientBodyError::Io)?;
        }
    }
    let mut remaining = match framing {
        BodyFraming::Length(n) => n,
        _ => 0,
    };
    let mut chunked = Chunked::default();
    loop {
        let piece = match framing {
            BodyFraming::Empty => Some(Piece::End),
            BodyFraming::Length(_) if remaining == 0 => Some(Piece::End),
            BodyFraming::Length(_) if buf.is_empty() => None,
            BodyFraming::Length(_) => {
                let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                remaining -= n as u64;
                Some(Piece::Data(buf.split_to(n).freeze()))
            }
            BodyFraming::Chunked => match chunked.decode(buf) {
                Ok(Decoded::Data(data)) => Some(Piece::Data(data)),
                Ok(Decoded::Done) => Some(Piece::End),
                Ok(Decoded::NeedMore) => None,
                Err(e) => return Err(ClientBodyError::Chunked(e)),
            },
        };
        match piece {
            Some(piece) => {
                let end = matches!(piece, Piece::End);
                tx.send(Ok(piece))
                    .await
                    .map_err(|_| ClientBodyError::Abandoned)?;
                if end {
                    return Ok(());
                }
            }
            None => {
                make_room(buf);
                match stream.read_buf(buf).await {
                    Ok(0) => return Err(ClientBodyError::Closed),
                    Ok(_) => {}
                    Err(e) => return Err(ClientBodyError::Io(e)),
                }
            }
        }
    }
}
