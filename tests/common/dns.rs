//! A real DNS server (hickory-server over UDP on loopback) whose A records a test controls,
//! standing in for Swarm's embedded DNS at 127.0.0.11.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::UdpSocket;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Answer,
    ServFail,
}

#[derive(Clone, Default)]
struct Zone {
    records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    mode: Arc<Mutex<Option<Mode>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Zone {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let fail = |metadata: Metadata| {
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        };
        let Ok(info) = request.request_info() else {
            let mut m = Metadata::response_from_request(&request.metadata);
            m.response_code = ResponseCode::FormErr;
            return fail(m);
        };
        let mut metadata = Metadata::response_from_request(info.metadata);
        metadata.authoritative = true;
        let builder = MessageResponseBuilder::from_message_request(request);
        let mode = self.mode.lock().unwrap().unwrap_or(Mode::Answer);
        if mode == Mode::ServFail {
            let msg = builder.error_msg(info.metadata, ResponseCode::ServFail);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| fail(metadata));
        }
        let name = info
            .query
            .name()
            .to_string()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ips = self
            .records
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .unwrap_or_default();
        if ips.is_empty() {
            metadata.response_code = ResponseCode::NXDomain;
            let msg = builder.build_no_records(metadata);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| fail(metadata));
        }
        let qname = info.query.name().clone();
        // Swarm answers with a fixed 600 s TTL; so do we, so that a cache would show.
        let records: Vec<Record> = ips
            .iter()
            .map(|ip| Record::from_rdata(qname.clone().into(), 600, RData::A(A(*ip))))
            .collect();
        let msg = builder.build(metadata, records.iter(), [], [], []);
        response
            .send_response(msg)
            .await
            .unwrap_or_else(|_| fail(metadata))
    }
}

pub struct TestDns {
    pub addr: SocketAddr,
    zone: Zone,
    server: Option<Server<Zone>>,
}

impl TestDns {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Zone::default();
        let mut server = Server::new(zone.clone());
        server.register_socket(socket);
        Self {
            addr,
            zone,
            server: Some(server),
        }
    }

    /// Sets the A records of `name` (empty: NXDOMAIN).
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        self.zone
            .records
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), ips.to_vec());
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.zone.mode.lock().unwrap() = Some(mode);
    }

    /// Stops answering for good: the socket is closed.
    pub async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.shutdown_gracefully().await;
        }
    }
}
