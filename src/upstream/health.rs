//! Active health checks: the threshold policy (plain code) and the HTTP probe.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::HealthConfig;

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

/// `GET <path>` on a fresh connection, 2xx within `timeout` passes. A fresh connection each
/// time, so that no pooled socket can make a dead task look alive.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    path: PathAndQuery,
    timeout: Duration,
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
        })
    }

    async fn exchange(&self, endpoint: &Authority) -> Result<(), String> {
        let stream = TcpStream::connect(endpoint.as_str())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = Request::get(self.path.clone())
            .header(header::HOST, endpoint.as_str())
            .header(
                header::USER_AGENT,
                concat!("stratix-gateway/", env!("CARGO_PKG_VERSION"), " health"),
            )
            .header(header::CONNECTION, "close")
            .body(Empty::new())
            .map_err(|e| format!("request: {e}"))?;
        let result = send.send_request(req).await;
        conn.abort();
        let resp = result.map_err(|e| format!("request: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("status {}", resp.status().as_u16()))
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
    use super::*;

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
