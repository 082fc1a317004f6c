//! A tiny authoritative DNS server on 127.0.0.1 (UDP) whose answers a test changes
//! while the proxy resolves through it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the server answers for a name.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A records with a TTL (seconds).
    A(Vec<Ipv4Addr>, u32),
    /// SRV records (priority, weight, port, target) with a TTL.
    Srv(Vec<(u16, u16, u16, String)>, u32),
    /// SERVFAIL.
    Fail,
}

/// The server; stops when dropped.
pub struct TestDns {
    pub addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    queries: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestDns {
    /// Starts answering on an ephemeral UDP port.
    pub async fn start() -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let queries = Arc::new(AtomicU64::new(0));
        let (table, counter) = (Arc::clone(&answers), Arc::clone(&queries));
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let reply = respond(&request, &table.lock());
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        TestDns {
            addr,
            answers,
            queries,
            task,
        }
    }

    /// Sets what `name` answers from now on.
    pub fn set(&self, name: &str, answer: Answer) {
        self.answers
            .lock()
            .insert(name.trim_end_matches('.').to_ascii_lowercase(), answer);
    }

    /// Forgets `name`: it answers NXDOMAIN from now on.
    pub fn remove(&self, name: &str) {
        self.answers
            .lock()
            .remove(&name.trim_end_matches('.').to_ascii_lowercase());
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

fn respond(request: &Message, answers: &HashMap<String, Answer>) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.add_queries(request.queries.iter().cloned());
    let Some(query) = request.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    let name = query.name().to_ascii();
    let key = name.trim_end_matches('.').to_ascii_lowercase();
    let owner = query.name().clone();
    match (answers.get(&key), query.query_type()) {
        (None, _) => reply.metadata.response_code = ResponseCode::NXDomain,
        (Some(Answer::Fail), _) => reply.metadata.response_code = ResponseCode::ServFail,
        (Some(Answer::A(ips, ttl)), RecordType::A) => {
            for ip in ips {
                reply.add_answer(Record::from_rdata(owner.clone(), *ttl, RData::A(A(*ip))));
            }
        }
        (Some(Answer::Srv(targets, ttl)), RecordType::SRV) => {
            for (priority, weight, port, target) in targets {
                let target =
                    Name::from_ascii(format!("{}.", target.trim_end_matches('.'))).unwrap();
                reply.add_answer(Record::from_rdata(
                    owner.clone(),
                    *ttl,
                    RData::SRV(SRV::new(*priority, *weight, *port, target)),
                ));
            }
        }
        // The name exists but has no records of this type (e.g. AAAA): NODATA.
        _ => {}
    }
    reply
}
