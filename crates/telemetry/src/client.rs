//! The HTTP client the OTLP exporters post with: HTTP/1.1 over a plain
//! TCP connection, blocking, on the exporter's own thread, every step
//! bounded by the export timeout. The connection is kept between posts
//! while the collector keeps it (as collectors do: an exporter posts a
//! batch every few milliseconds under load, and a connection each time
//! cost both ends a handshake, an accept and a close per batch).
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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// The most of a collector's answer that is read (its status line,
/// headers and body); the rest is dropped with the connection.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// A blocking HTTP/1.1 client, one POST at a time, keeping its
/// connection between them. A clone starts without one.
#[derive(Debug)]
pub(crate) struct Client {
    timeout: Duration,
    /// The connection the last answer left open, and the host and port it
    /// goes to.
    kept: Mutex<Option<Kept>>,
}

#[derive(Debug)]
struct Kept {
    to: (String, u16),
    conn: BufReader<TcpStream>,
}

impl Clone for Client {
    fn clone(&self) -> Client {
        Client::new(self.timeout)
    }
}

/// How one exchange on a connection went wrong.
enum Failed {
    /// Before any byte of an answer came: on a kept connection, the
    /// collector had closed it while it was idle, and the post is made
    /// again on a new one.
    Unanswered(HttpError),
    /// After the answer began, or on a new connection: the export failed.
    Other(HttpError),
}

impl<E: Into<HttpError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed::Other(e.into())
    }
}

impl Client {
    pub(crate) fn new(timeout: Duration) -> Client {
        Client {
            timeout,
            kept: Mutex::new(None),
        }
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
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let head = request_head(method, path, authority, headers, body.len());
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let to = (host.to_string(), port);
        let reused = kept
            .take()
            .filter(|k| k.to == to && still_open(&k.conn))
            .map(|k| k.conn);
        if let Some(mut conn) = reused {
            match exchange(&mut conn, &head, body, deadline) {
                Ok((response, keep)) => {
                    *kept = keep.then_some(Kept { to, conn });
                    return Ok(response);
                }
                Err(Failed::Unanswered(_)) => {}
                Err(Failed::Other(e)) => return Err(e),
            }
        }
        let mut conn = BufReader::new(connect(host, port, deadline)?);
        match exchange(&mut conn, &head, body, deadline) {
            Ok((response, keep)) => {
                *kept = keep.then_some(Kept { to, conn });
                Ok(response)
            }
            Err(Failed::Unanswered(e) | Failed::Other(e)) => Err(e),
        }
    }
}

/// A connection to the first of `host`'s addresses that answers.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, HttpError> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, wait) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => e.into(),
        None => "the endpoint's host has no address".into(),
    })
}

/// Whether a kept connection can carry another request: nothing came on
/// it since its last answer (neither bytes nor the collector's close).
fn still_open(conn: &BufReader<TcpStream>) -> bool {
    let s = conn.get_ref();
    if !conn.buffer().is_empty() || s.set_nonblocking(true).is_err() {
        return false;
    }
    let open =
        matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).is_ok() && open
}

fn request_head(
    method: &http::Method,
    path: &str,
    authority: &str,
    headers: &http::HeaderMap,
    length: usize,
) -> String {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-length: {length}\r\n");
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
    head
}

/// Send one request on `conn` and read its answer: the response, and
/// whether the connection can be kept (the collector did not close it,
/// and the answer, a success, was read to its end).
fn exchange(
    conn: &mut BufReader<TcpStream>,
    head: &str,
    body: &[u8],
    deadline: Instant,
) -> Result<(Response<Bytes>, bool), Failed> {
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    // A connection the collector closed fails at once with one of these;
    // a slow collector (a timeout) is not tried again.
    let unanswered = |e: std::io::Error| {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        if matches!(
            e.kind(),
            BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
        ) {
            Failed::Unanswered(e.into())
        } else {
            Failed::Other(e.into())
        }
    };
    let stream = conn.get_mut();
    stream.set_write_timeout(Some(left()))?;
    stream.write_all(head.as_bytes()).map_err(unanswered)?;
    stream.write_all(body).map_err(unanswered)?;
    stream.flush().map_err(unanswered)?;
    stream.set_read_timeout(Some(left()))?;
    let mut reader = conn.take(MAX_RESPONSE as u64);
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).map_err(unanswered)? == 0 {
        return Err(Failed::Unanswered(
            "the collector closed the connection without an answer".into(),
        ));
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", status_line.trim_end()))?;
    let mut keep = status_line.starts_with("HTTP/1.1 ") && (200..300).contains(&status);
    let mut response = Response::builder().status(status);
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            keep = false;
            break;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                keep = false;
            }
            response = response.header(name, value);
        }
    }
    // The body says why a collector refused; it is read when its length
    // is given, up to the bound, and otherwise left (with the
    // connection).
    let mut body = Vec::new();
    match length {
        Some(n) => {
            let mut part = (&mut reader).take(n as u64);
            let _ = part.read_to_end(&mut body);
            keep &= body.len() == n;
        }
        None => keep = false,
    }
    Ok((response.body(Bytes::from(body))?, keep))
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
    use std::net::{TcpListener, TcpStream};

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

    /// A collector on loopback for `conns` connections: each request's
    /// body is read and answered with `answer`; after `per_conn` answers
    /// it closes the connection. What it saw: one list of request heads
    /// per connection.
    fn collector(
        conns: usize,
        per_conn: usize,
        answer: &'static str,
    ) -> (String, std::thread::JoinHandle<Vec<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..conns {
                let (s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s);
                let mut heads = Vec::new();
                for _ in 0..per_conn {
                    let mut head = String::new();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap() == 0 {
                            break;
                        }
                        if let Some(v) = line.strip_prefix("content-length: ") {
                            length = v.trim().parse().unwrap();
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if head.is_empty() {
                        break;
                    }
                    let mut body = vec![0u8; length];
                    r.read_exact(&mut body).unwrap();
                    r.get_mut().write_all(answer.as_bytes()).unwrap();
                    heads.push(head);
                }
                seen.push(heads);
            }
            seen
        });
        (url, server)
    }

    fn post_to(client: &Client, url: &str, body: &'static [u8]) -> u16 {
        let req = Request::post(url).body(Bytes::from_static(body)).unwrap();
        client.post(req).unwrap().status().as_u16()
    }

    #[test]
    fn posts_share_a_connection_the_collector_keeps() {
        let (url, server) = collector(1, 3, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let client = Client::new(Duration::from_secs(5));
        for body in [&b"one"[..], b"two", b"three"] {
            assert_eq!(post_to(&client, &url, body), 200);
        }
        drop(client);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].len(), 3, "{seen:?}");
        assert!(!seen[0][0].contains("connection: close"), "{seen:?}");
    }

    #[test]
    fn a_connection_the_collector_closes_is_not_kept() {
        // Twin of the above: told `connection: close`, the client opens a
        // new connection for each post.
        let (url, server) = collector(
            2,
            1,
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        );
        let client = Client::new(Duration::from_secs(5));
        assert_eq!(post_to(&client, &url, b"one"), 200);
        assert_eq!(post_to(&client, &url, b"two"), 200);
        let seen = server.join().unwrap();
        assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
    }

    #[test]
    fn a_connection_closed_while_idle_is_replaced() {
        // The collector closes after one answer without saying so (an idle
        // timeout): the next post goes on a new connection and succeeds.
        let (url, server) = collector(2, 1, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let client = Client::new(Duration::from_secs(5));
        assert_eq!(post_to(&client, &url, b"one"), 200);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(post_to(&client, &url, b"two"), 200);
        let seen = server.join().unwrap();
        assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
    }

    /// Read one request (head and body) from `r`: its body.
    fn read_request(r: &mut BufReader<TcpStream>) -> Vec<u8> {
        let mut length = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if let Some(v) = line.strip_prefix("content-length: ") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut body = vec![0u8; length];
        r.read_exact(&mut body).unwrap();
        body
    }

    #[test]
    fn a_post_the_collector_drops_unanswered_is_made_again_once() {
        // The collector takes the kept connection's second request and
        // closes it without an answer (an idle close racing the post): the
        // post is made again on a new connection.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s);
            assert_eq!(read_request(&mut r), b"one");
            r.get_mut().write_all(OK).unwrap();
            assert_eq!(read_request(&mut r), b"two");
            drop(r);
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s);
            let again = read_request(&mut r);
            r.get_mut().write_all(OK).unwrap();
            again
        });
        let client = Client::new(Duration::from_secs(5));
        assert_eq!(post_to(&client, &url, b"one"), 200);
        assert_eq!(post_to(&client, &url, b"two"), 200);
        assert_eq!(server.join().unwrap(), b"two");
    }

    #[test]
    fn a_new_connection_closed_unanswered_is_an_error() {
        // Twin of the above: on a connection just made, the same silence
        // fails the export (the exporter's own retry decides what next).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s);
            read_request(&mut r);
            drop(r);
            listener.set_nonblocking(true).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            listener.accept().is_ok()
        });
        let req = Request::post(&url).body(Bytes::from_static(b"x")).unwrap();
        let err = Client::new(Duration::from_secs(5)).post(req).unwrap_err();
        assert!(err.to_string().contains("without an answer"), "{err}");
        assert!(!server.join().unwrap(), "the post was made again");
    }

    #[test]
    fn a_refusal_is_read_and_its_connection_not_kept() {
        let (url, server) = collector(
            2,
            1,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy",
        );
        let client = Client::new(Duration::from_secs(5));
        assert_eq!(post_to(&client, &url, b"one"), 503);
        assert_eq!(post_to(&client, &url, b"two"), 503);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 2);
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
