//! A real OTLP/HTTP collector for the tests: it accepts POSTs on
//! `/v1/traces`, `/v1/metrics` and `/v1/logs`, decodes their protobuf
//! bodies with the official definitions (opentelemetry-proto), keeps them,
//! and answers 200. It can also be told to never answer (a collector that
//! hangs). Its loop is bounded and it listens on loopback only.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

/// How long a collector lives at most.
const LIFETIME: Duration = Duration::from_secs(120);

/// What the collector received.
#[derive(Default)]
pub struct Got {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
    /// Requests it could not take (wrong path, content type or body).
    pub bad: Vec<String>,
}

pub struct Collector {
    pub addr: SocketAddr,
    got: Arc<Mutex<Got>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Collector {
    /// A collector that answers.
    pub fn start() -> Collector {
        Self::start_with(false)
    }

    /// A collector that accepts connections and never answers them.
    pub fn hanging() -> Collector {
        Self::start_with(true)
    }

    fn start_with(hang: bool) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Got::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + LIFETIME;
            let mut held = Vec::new();
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) if hang => held.push(conn),
                    Ok((conn, _)) => {
                        let g = g.clone();
                        std::thread::spawn(move || {
                            let _ = take(conn, &g);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Collector { addr, got, stop }
    }

    /// Its base URL, as `--otlp-endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn got(&self) -> std::sync::MutexGuard<'_, Got> {
        self.got.lock().unwrap()
    }

    /// Every span received, flattened.
    pub fn spans(&self) -> Vec<Span> {
        let got = self.got();
        let mut out = Vec::new();
        for req in &got.traces {
            for rs in &req.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attrs(&r.attributes))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(Span {
                            name: s.name.clone(),
                            kind: s.kind,
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent: hex(&s.parent_span_id),
                            attrs: attrs(&s.attributes),
                            events: s
                                .events
                                .iter()
                                .map(|e| (e.name.clone(), attrs(&e.attributes)))
                                .collect(),
                            error: s.status.as_ref().is_some_and(|st| st.code == 2),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Wait until `f` holds of what was received, within `limit`.
    pub fn wait_for(&self, limit: Duration, f: impl Fn(&Got) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if f(&self.got()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// One span as the tests look at it.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    /// OTLP's SpanKind: 1 internal, 2 server, 3 client.
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub attrs: HashMap<String, String>,
    pub events: Vec<(String, HashMap<String, String>)>,
    pub error: bool,
    pub resource: HashMap<String, String>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(value).unwrap_or_default(),
            )
        })
        .collect()
}

pub fn value(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn take(conn: std::net::TcpStream, got: &Mutex<Got>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let (mut length, mut content_type) = (0usize, String::new());
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "content-type" => content_type = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut g = got.lock().unwrap();
    let ok = content_type == "application/x-protobuf"
        && match path.as_str() {
            "/v1/traces" => ExportTraceServiceRequest::decode(&body[..])
                .map(|r| g.traces.push(r))
                .is_ok(),
            "/v1/metrics" => ExportMetricsServiceRequest::decode(&body[..])
                .map(|r| g.metrics.push(r))
                .is_ok(),
            "/v1/logs" => ExportLogsServiceRequest::decode(&body[..])
                .map(|r| g.logs.push(r))
                .is_ok(),
            _ => false,
        };
    if !ok {
        g.bad.push(format!("{path} {content_type} {length} bytes"));
    }
    drop(g);
    let mut out = conn;
    let status = if ok { "200 OK" } else { "400 Bad Request" };
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    out.flush()
}
