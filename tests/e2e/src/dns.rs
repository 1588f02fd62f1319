//! A DNS server on 127.0.0.1 whose answers the test sets, for host names that must resolve to
//! chosen addresses (and change between two lookups, as in DNS rebinding).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

pub struct DnsServer {
    /// `IP:PORT` to give as `HOOKSTREAM_DNS_SERVER`.
    pub address: String,
    records: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("a UDP port on 127.0.0.1");
        let address = socket
            .local_addr()
            .expect("the DNS server's address")
            .to_string();
        let records: Arc<Mutex<HashMap<String, Vec<IpAddr>>>> = Arc::default();
        let shared = Arc::clone(&records);
        let server = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                let Some(answer) = answer(&buffer[..len], &shared) else {
                    continue;
                };
                let _ = socket.send_to(&answer, peer).await;
            }
        });
        Self {
            address,
            records,
            _server: server,
        }
    }

    /// From now on `name` resolves to `addresses` (A and AAAA records, TTL 0).
    pub fn set(&self, name: &str, addresses: &[IpAddr]) {
        self.records.lock().expect("records lock").insert(
            name.trim_end_matches('.').to_ascii_lowercase(),
            addresses.to_vec(),
        );
    }
}

fn answer(query: &[u8], records: &Mutex<HashMap<String, Vec<IpAddr>>>) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    let question = query.queries.first()?.clone();
    let name = question
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let known = records.lock().ok()?.get(&name).cloned();
    match known {
        None => response.metadata.response_code = ResponseCode::NXDomain,
        Some(addresses) => {
            for ip in addresses {
                let rdata = match (ip, question.query_type()) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                    _ => continue,
                };
                response.add_answer(Record::from_rdata(question.name().clone(), 0, rdata));
            }
        }
    }
    response.add_query(question);
    response.to_vec().ok()
}
