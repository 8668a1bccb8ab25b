//! Real network peers on loopback for the policy tests: a TCP server that
//! answers a line or an HTTP request, a UDP echo server, and a DNS server
//! serving records the test controls. Each runs on its own thread in a
//! bounded loop and stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

/// How long any peer thread lives at most.
const LIFETIME: Duration = Duration::from_secs(120);

struct Stopper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server: a line gets `peer PORT got LINE`, an HTTP GET gets a 200
/// with body `hello from PORT`. Counts the connections it accepted.
pub struct TcpPeer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<String>>>,
    _stop: Stopper,
}

impl TcpPeer {
    pub fn start(ip: &str) -> TcpPeer {
        Self::on(&format!("{ip}:0"))
    }

    pub fn on(addr: &str) -> TcpPeer {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, a, r) = (stop.clone(), accepted.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + LIFETIME;
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        let _ = serve(conn, addr.port(), &r);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TcpPeer {
            addr,
            accepted,
            requests,
            _stop: Stopper {
                stop,
                thread: Some(thread),
            },
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn serve(
    conn: std::net::TcpStream,
    port: u16,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut out = conn;
    if line.starts_with("GET ") {
        let mut host = String::new();
        let mut trace = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("host:") {
                host = v.trim().to_string();
            }
            // A propagated trace context, said when there is one.
            if let Some(v) = lower.strip_prefix("traceparent:") {
                trace = format!(" traceparent={}", v.trim());
            }
        }
        requests
            .lock()
            .unwrap()
            .push(format!("{} host={host}{trace}", line.trim_end()));
        let body = format!("hello from {port}");
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
    } else {
        requests.lock().unwrap().push(line.trim_end().to_string());
        writeln!(out, "peer {port} got {}", line.trim_end())?;
    }
    out.flush()
}

/// A UDP server answering each datagram with `pong`, counting them.
pub struct UdpPeer {
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
    _stop: Stopper,
}

impl UdpPeer {
    pub fn start(ip: &str) -> UdpPeer {
        let sock = UdpSocket::bind(format!("{ip}:0")).unwrap();
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let (s, r) = (stop.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + LIFETIME;
            let mut buf = [0u8; 512];
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = sock.send_to(b"pong", from);
                }
            }
        });
        UdpPeer {
            addr,
            received,
            _stop: Stopper {
                stop,
                thread: Some(thread),
            },
        }
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

/// What a name answers: the Nth A query gets `answers[min(N, last)]`.
#[derive(Clone)]
pub struct Zone {
    pub answers: Vec<Vec<IpAddr>>,
    pub ttl: u32,
}

/// A DNS server on 127.0.0.1 (UDP) serving the test's records: A and AAAA
/// from [`Zone`]s, NXDOMAIN for other names. Counts A queries per name.
pub struct Dns {
    pub addr: SocketAddr,
    a_queries: Arc<Mutex<HashMap<String, usize>>>,
    _stop: Stopper,
}

impl Dns {
    pub fn start(zones: &[(&str, Zone)]) -> Dns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let zones: HashMap<String, Zone> = zones
            .iter()
            .map(|(n, z)| (n.to_string(), z.clone()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let a_queries = Arc::new(Mutex::new(HashMap::new()));
        let (s, counts) = (stop.clone(), a_queries.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + LIFETIME;
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                // A garbage packet is ignored, as a real server would.
                let Ok(query) = Message::from_bytes(&buf[..n]) else {
                    continue;
                };
                if let Some(reply) = answer(&query, &zones, &counts) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        Dns {
            addr,
            a_queries,
            _stop: Stopper {
                stop,
                thread: Some(thread),
            },
        }
    }

    /// How many A queries `name` got.
    pub fn a_queries(&self, name: &str) -> usize {
        self.a_queries
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

fn answer(
    query: &Message,
    zones: &HashMap<String, Zone>,
    counts: &Mutex<HashMap<String, usize>>,
) -> Option<Vec<u8>> {
    let q = query.queries().first()?.clone();
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_query(q.clone());
    match zones.get(&name) {
        None => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Some(zone) => {
            let n = {
                let mut c = counts.lock().unwrap();
                let e = c.entry(name.clone()).or_insert(0);
                if q.query_type() == RecordType::A {
                    *e += 1;
                }
                e.saturating_sub(1)
            };
            let ips = &zone.answers[n.min(zone.answers.len() - 1)];
            for ip in ips {
                let rdata = match (ip, q.query_type()) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                    _ => continue,
                };
                reply.add_answer(Record::from_rdata(q.name().clone(), zone.ttl, rdata));
            }
        }
    }
    reply.to_bytes().ok()
}
