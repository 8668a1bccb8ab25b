//! `warden serve` for the tests that are its clients: the command with
//! the shared cache, the test guests (a WASI 0.2 proxy and a 0.3
//! service), raw HTTP/1.1 exchanges, curl, and JSON log lines.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use warden_test_artifacts::{Target, guest};

use super::server::Server;
use super::{Ran, p, shared_cache, warden};

pub fn proxy() -> String {
    p(&guest(Target::P2, "http_proxy")).to_string()
}

pub fn serve_cmd(args: &[&str]) -> Command {
    let mut cmd = warden();
    cmd.arg("serve")
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(args);
    cmd
}

/// `warden serve --addr 127.0.0.1:0 ARGS http_proxy.wasm`, serving.
pub fn serve(args: &[&str]) -> Server {
    let proxy = proxy();
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    all.push(&proxy);
    Server::start_with(serve_cmd(&all))
}

/// `warden serve --addr 127.0.0.1:0 --manifest MANIFEST`, serving.
pub fn serve_manifest(manifest: &Path) -> Server {
    Server::start_with(serve_cmd(&[
        "--addr",
        "127.0.0.1:0",
        "--manifest",
        p(manifest),
    ]))
}

/// Run `f` to its end on a runtime of its own (a test's async client).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

/// Stop a server with SIGTERM; its output.
pub fn stop(server: Server) -> Ran {
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    server.finish()
}

/// A response, from a raw HTTP/1.1 exchange.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send `request` (a whole HTTP/1.1 request) and read the response to
/// the connection's end.
pub fn exchange(port: u16, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    Response {
        status,
        body: if chunked {
            unchunk(body)
        } else {
            body.to_string()
        },
        headers,
    }
}

pub fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn get(port: u16, path: &str) -> Response {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn curl(args: &[&str]) -> (String, String, bool) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl is needed for these tests (apt-get install curl)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

pub fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn service() -> String {
    p(&guest(Target::P3, "p3_service")).to_string()
}

/// An HTTP/2 (h2c, prior knowledge) client connection to 127.0.0.1:`port`,
/// driven on the current runtime.
pub async fn h2_client(
    port: u16,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}
