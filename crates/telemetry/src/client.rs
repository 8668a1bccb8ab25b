//! The HTTP client the OTLP exporters post with: HTTP/1.1 over a plain
//! TCP connection, blocking, on the exporter's own thread, every step
//! bounded by the export timeout.
//!
//! Why not a crate's client: the exporters run on threads of their own
//! with a blocking executor (no tokio runtime there), reqwest's rustls
//! brings a second crypto provider that makes rustls's default ambiguous
//! (see `notes/next-features.md` §5), and an OTLP export is one POST
//! whose answer is read and dropped. A collector beside Warden (an agent
//! or sidecar, the usual deployment) is reached over plain HTTP; an
//! `https://` endpoint is refused when the configuration is read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// The most of a collector's answer that is read (its status line,
/// headers and body); the rest is dropped with the connection.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// A blocking HTTP/1.1 client for one POST per connection.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    timeout: Duration,
}

impl Client {
    pub(crate) fn new(timeout: Duration) -> Client {
        Client { timeout }
    }

    fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.send(
            request.method(),
            request.uri(),
            request.headers(),
            request.body(),
        )
    }

    /// POST `body` to `uri` with `headers`: the collector's answer.
    pub(crate) fn post_bytes(
        &self,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Response<Bytes>, HttpError> {
        self.send(&http::Method::POST, uri, headers, body)
    }

    fn send(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Response<Bytes>, HttpError> {
        let deadline = Instant::now() + self.timeout;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{uri}: only http:// endpoints are supported").into());
        }
        let host = uri.host().ok_or("the endpoint names no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut last = None;
        let mut stream = None;
        for addr in (host, port).to_socket_addrs()? {
            let wait = left();
            if wait.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, wait) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(e.into()),
            (None, None) => return Err("the endpoint's host has no address".into()),
        };
        let _ = stream.set_nodelay(true);
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            if name == http::header::HOST
                || name == http::header::CONTENT_LENGTH
                || name == http::header::CONNECTION
            {
                continue;
            }
            let Ok(value) = value.to_str() else { continue };
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.set_write_timeout(Some(left().max(Duration::from_millis(1))))?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;
        stream.set_read_timeout(Some(left().max(Duration::from_millis(1))))?;
        let mut reader = BufReader::new(stream.take(MAX_RESPONSE as u64));
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {:?}", status_line.trim_end()))?;
        let mut response = Response::builder().status(status);
        let mut length = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim(), value.trim());
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                }
                response = response.header(name, value);
            }
        }
        // The body says why a collector refused; it is read when its length
        // is given, up to the bound, and otherwise left.
        let mut body = Vec::new();
        if let Some(n) = length {
            let mut part = reader.take(n.min(MAX_RESPONSE) as u64);
            let _ = part.read_to_end(&mut body);
        }
        Ok(response.body(Bytes::from(body))?)
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The exporters call this from their own thread under a blocking
        // executor: blocking here holds up no guest and no request.
        self.post(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn posts_and_reads_the_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = vec![0u8; 4096];
            let mut n = 0;
            while !got[..n].windows(5).any(|w| w == b"hello") {
                n += s.read(&mut got[n..]).unwrap();
            }
            s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad")
                .unwrap();
            String::from_utf8_lossy(&got[..n]).into_owned()
        });
        let req = Request::post(format!("http://{addr}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(Bytes::from_static(b"hello"))
            .unwrap();
        let resp = Client::new(Duration::from_secs(5)).post(req).unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(&resp.body()[..], b"bad");
        let seen = server.join().unwrap();
        assert!(seen.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.contains("content-type: application/x-protobuf\r\n"),
            "{seen}"
        );
        assert!(seen.contains("content-length: 5\r\n"), "{seen}");
    }

    #[test]
    fn a_collector_that_never_answers_costs_the_timeout_and_no_more() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let req = Request::post(format!("http://{addr}/v1/traces"))
            .body(Bytes::from_static(b"x"))
            .unwrap();
        let t0 = Instant::now();
        let err = Client::new(Duration::from_millis(300)).post(req);
        assert!(err.is_err());
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        drop(listener);
    }

    #[test]
    fn https_is_refused_plainly() {
        let req = Request::post("https://127.0.0.1:1/v1/traces")
            .body(Bytes::new())
            .unwrap();
        let err = Client::new(Duration::from_secs(1)).post(req).unwrap_err();
        assert!(err.to_string().contains("only http://"), "{err}");
    }
}
