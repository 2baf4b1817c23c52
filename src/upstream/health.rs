//! Active health checks: the threshold policy (plain code) and the HTTP probe.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Uri, header};
use http_body_util::BodyExt as _;

use super::client::{Client, IdlePool, Origin};
use crate::body::RequestBody;
use crate::config::HealthConfig;
use crate::error::ErrorChain;

/// Consecutive-result counting, as Envoy's unhealthy/healthy thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    healthy: bool,
    streak: u32,
}

impl HealthState {
    pub fn new(healthy: bool) -> Self {
        Self { healthy, streak: 0 }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records one probe result; returns the new health when it changed.
    pub fn record(
        &mut self,
        ok: bool,
        unhealthy_threshold: u32,
        healthy_threshold: u32,
    ) -> Option<bool> {
        if ok == self.healthy {
            // A result agreeing with the current state breaks any opposite streak.
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy {
            unhealthy_threshold
        } else {
            healthy_threshold
        };
        if self.streak >= needed.max(1) {
            self.healthy = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// Something that can tell whether an endpoint is up; the controller is tested with fakes.
pub trait Probe: Send + Sync + 'static {
    fn probe(&self, endpoint: &Authority) -> impl Future<Output = Result<(), String>> + Send;
}

/// `GET <path>` on a fresh connection, answered with a 2xx whose whole body arrives within
/// `timeout`: passes. A fresh connection each time, so that no pooled socket can make a dead
/// task look alive.
///
/// Why the proxy's own client and not hyper's: a probe must judge the task by the rules its
/// traffic is forwarded by. hyper's client is more lenient (whitespace in chunk lines, for
/// one) and a probe that stops at the status never reads the body at all, so a task whose
/// answers the proxy refuses (502) could still probe healthy and keep receiving requests.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    path: PathAndQuery,
    timeout: Duration,
    client: Client,
}

/// The most of a health answer's body a probe reads; a longer one passes on its head and the
/// bytes read so far (a health page is small, and the timeout bounds the rest anyway).
const MAX_PROBE_BODY: usize = 64 * 1024;

/// A task as one probe sees it: its address, and a pool of its own that is dropped with the
/// probe, so the connection is never reused.
#[derive(Debug)]
struct Fresh {
    authority: Authority,
    pool: IdlePool,
}

impl Origin for Fresh {
    fn authority(&self) -> &Authority {
        &self.authority
    }

    fn pool(&self) -> &IdlePool {
        &self.pool
    }
}

impl HttpProbe {
    pub fn new(cfg: &HealthConfig) -> Result<Self, String> {
        let path = cfg
            .path
            .parse()
            .map_err(|_| format!("health path {:?} is not a valid path", cfg.path))?;
        Ok(Self {
            path,
            timeout: cfg.timeout,
            // The probe's own timeout bounds the connect too; nothing is kept idle.
            client: Client::with_timeouts(cfg.timeout, Duration::ZERO),
        })
    }

    async fn exchange(&self, endpoint: &Authority) -> Result<(), String> {
        let task = Arc::new(Fresh {
            authority: endpoint.clone(),
            pool: IdlePool::default(),
        });
        let req = Request::get(Uri::from(self.path.clone()))
            .header(header::HOST, endpoint.as_str())
            .header(
                header::USER_AGENT,
                concat!("stratix-gateway/", env!("STRATIX_BUILD_VERSION"), " health"),
            )
            .header(header::CONNECTION, "close")
            .body(RequestBody::empty())
            .map_err(|e| format!("request: {e}"))?;
        let (head, mut body) = req.into_parts();
        let resp = self
            .client
            .send(&task, &head, &mut body, None)
            .await
            .map_err(|e| ErrorChain(&e).to_string())?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut read = 0;
        while read <= MAX_PROBE_BODY
            && let Some(frame) = body.frame().await
        {
            let frame = frame.map_err(|e| format!("body: {}", ErrorChain(&e)))?;
            read += frame.data_ref().map_or(0, Bytes::len);
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {}", status.as_u16()))
        }
    }
}

impl Probe for HttpProbe {
    async fn probe(&self, endpoint: &Authority) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.exchange(endpoint)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// The next probe delay: `interval` minus up to 10 % jitter, so the probes of many gateway
/// replicas and endpoints do not fall into lock-step.
pub fn jittered(interval: Duration) -> Duration {
    let jitter = interval.mul_f64(0.1 * fastrand::f64());
    interval.saturating_sub(jitter)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A task on loopback that answers every connection's request with `answer`, then closes;
    /// `None` never answers. Returns its address and what the first request looked like.
    async fn task(
        answer: Option<&'static [u8]>,
    ) -> (Authority, tokio::sync::oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut seen_tx = Some(seen_tx);
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 1024];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                if let Some(tx) = seen_tx.take() {
                    let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                }
                match answer {
                    Some(answer) => {
                        let _ = stream.write_all(answer).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
        });
        (addr.to_string().parse().unwrap(), seen)
    }

    fn probe(timeout: Duration) -> HttpProbe {
        HttpProbe::new(&HealthConfig {
            path: "/health?deep=1".into(),
            timeout,
            ..HealthConfig::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_2xx_with_a_whole_body_passes_and_the_request_is_a_plain_get() {
        let (task, seen) = task(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
        assert_eq!(probe(Duration::from_secs(5)).probe(&task).await, Ok(()));
        let request = seen.await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("get /health?deep=1 http/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains(&format!("host: {task}\r\n")), "{request}");
        assert!(request.contains("connection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn a_failure_status_fails() {
        let (task, _) = task(Some(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        assert_eq!(
            probe(Duration::from_secs(5)).probe(&task).await,
            Err("status 503".to_owned())
        );
    }

    #[tokio::test]
    async fn an_answer_the_proxy_would_refuse_fails_even_with_a_2xx() {
        // Whitespace after a chunk size: hyper's client reads past it, ours (the proxy's)
        // refuses it, so this task's traffic would get 502s: it must not probe healthy.
        let (lax, _) = task(Some(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n",
        ))
        .await;
        let err = probe(Duration::from_secs(5)).probe(&lax).await.unwrap_err();
        assert!(err.contains("chunk"), "{err}");
        // And a body cut short by the close is no answer either.
        let (cut, _) = task(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")).await;
        assert!(probe(Duration::from_secs(5)).probe(&cut).await.is_err());
    }

    #[tokio::test]
    async fn no_listener_and_no_answer_fail() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let err = probe(Duration::from_secs(5))
            .probe(&closed)
            .await
            .unwrap_err();
        assert!(err.contains("connect"), "{err}");
        let (silent, _) = task(None).await;
        let err = probe(Duration::from_millis(200))
            .probe(&silent)
            .await
            .unwrap_err();
        assert!(err.starts_with("no answer within"), "{err}");
    }

    #[test]
    fn leaves_after_the_unhealthy_threshold_and_returns_after_the_healthy_one() {
        let mut s = HealthState::new(true);
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(s.record(false, 2, 3), Some(false));
        assert!(!s.is_healthy());
        assert_eq!(s.record(true, 2, 3), None);
        assert_eq!(s.record(true, 2, 3), None);
        assert_eq!(s.record(true, 2, 3), Some(true));
    }

    #[test]
    fn a_contrary_result_breaks_the_streak() {
        let mut s = HealthState::new(true);
        assert_eq!(s.record(false, 2, 1), None);
        assert_eq!(s.record(true, 2, 1), None);
        assert_eq!(s.record(false, 2, 1), None);
        assert!(s.is_healthy());
    }

    #[test]
    fn new_endpoints_enter_on_their_first_passing_probe() {
        let mut s = HealthState::new(false);
        assert_eq!(s.record(true, 2, 1), Some(true));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(5));
            assert!(
                d <= Duration::from_secs(5) && d >= Duration::from_millis(4500),
                "{d:?}"
            );
        }
    }
}
