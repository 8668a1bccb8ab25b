//! A WASI 0.2 wasi:http proxy component (wasi:http/incoming-handler) for
//! `warden serve`'s tests, one behaviour per path (its last segment, so an
//! app mounted at /api answers /api/hello as /hello):
//!
//!   /hello            200 `hello from a proxy`
//!   /info             200: method, scheme, authority, path and query, and
//!                     the x-request-id header, one per line
//!   /echo             200 with the request's body, streamed back
//!   /len              the request body's length, read whole first (400
//!                     if reading it fails)
//!   /big?bytes=N      200 with N bytes
//!   /sleep?ms=N       200 after N ms (waiting on the monotonic clock)
//!   /spin             computes forever
//!   /trap             panics (a trap, with a message on stderr)
//!   /stream           200, then a body that never ends (64 KiB writes)
//!   /traphead         200 and 1000 bytes of body, then panics
//!   /noresponse       returns without setting a response
//!   /fetch?url=URL    an outgoing request to URL: its status and body
//!   /env?name=NAME    the environment variable NAME
//!   /header?name=NAME how many values the request's header NAME has, then
//!                     each on a line
//!   /count            how many requests this instance has handled
//!   /time             the wall clock (SECS.NANOS) and 8 random bytes in hex
//!   anything else     404
//!
//! Built as a binary, it also exports wasi:cli/run, as Rust programs do.
use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasi::http::proxy::export!(Proxy);

struct Proxy;

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"text/plain");
    let resp = OutgoingResponse::new(headers);
    resp.set_status_code(status).unwrap();
    let outgoing = resp.body().unwrap();
    ResponseOutparam::set(out, Ok(resp));
    let mut stream = outgoing.write().unwrap();
    for chunk in body.chunks(4096) {
        stream.write_all(chunk).unwrap();
    }
    stream.flush().unwrap();
    drop(stream);
    OutgoingBody::finish(outgoing, None).unwrap();
}

fn query<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    let (_, q) = path.split_once('?')?;
    q.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn show_scheme(s: Option<Scheme>) -> String {
    match s {
        Some(Scheme::Http) => "http".into(),
        Some(Scheme::Https) => "https".into(),
        Some(Scheme::Other(o)) => o,
        None => "none".into(),
    }
}

/// GET `url`; with `traceparent`, the request carries that trace context
/// of the guest's own.
fn fetch(url: &str, traceparent: Option<&str>) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url.split_once("://").ok_or("expected a URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    if let Some(tp) = traceparent {
        headers
            .append("traceparent", tp.as_bytes())
            .map_err(|e| format!("{e:?}"))?;
    }
    let req = OutgoingRequest::new(headers);
    req.set_method(&Method::Get).unwrap();
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    req.set_scheme(Some(&scheme)).unwrap();
    req.set_authority(Some(authority)).unwrap();
    req.set_path_with_query(Some(path)).unwrap();
    let fut = wasi::http::outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    fut.subscribe().block();
    let resp = fut
        .get()
        .ok_or("not ready")?
        .map_err(|()| "taken")?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp.consume().map_err(|()| "body taken")?;
    let mut stream = body.stream().map_err(|()| "stream taken")?;
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut bytes);
    Ok((status, bytes))
}

impl wasi::exports::http::incoming_handler::Guest for Proxy {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let route = path.split('?').next().unwrap_or_default();
        let last = format!("/{}", route.rsplit('/').next().unwrap_or_default());
        match last.as_str() {
            "/hello" => respond(out, 200, b"hello from a proxy\n"),
            "/header" => {
                let name = query(&path, "name").unwrap_or_default().to_string();
                let values = request.headers().get(&name);
                let mut text = format!("{} {name}\n", values.len());
                for v in values {
                    text.push_str(&String::from_utf8_lossy(&v));
                    text.push('\n');
                }
                respond(out, 200, text.as_bytes());
            }
            "/info" => {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .first()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let method = match request.method() {
                    Method::Get => "GET".to_string(),
                    Method::Post => "POST".to_string(),
                    other => format!("{other:?}"),
                };
                let text = format!(
                    "method {method}\nscheme {}\nauthority {}\npath {path}\nrequest-id {id}\n",
                    show_scheme(request.scheme()),
                    request.authority().unwrap_or_default(),
                );
                respond(out, 200, text.as_bytes());
            }
            "/echo" => {
                let body = request.consume().unwrap();
                let mut input = body.stream().unwrap();
                let resp = OutgoingResponse::new(Fields::new());
                let outgoing = resp.body().unwrap();
                ResponseOutparam::set(out, Ok(resp));
                let mut output = outgoing.write().unwrap();
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match std::io::Read::read(&mut input, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => output.write_all(&buf[..n]).unwrap(),
                        // A body Warden cut (too large): stop echoing.
                        Err(_) => break,
                    }
                }
                output.flush().unwrap();
                drop(output);
                OutgoingBody::finish(outgoing, None).unwrap();
            }
            "/len" => {
                let body = request.consume().unwrap();
                let mut input = body.stream().unwrap();
                let mut all = Vec::new();
                match std::io::Read::read_to_end(&mut input, &mut all) {
                    Ok(_) => respond(out, 200, format!("{}\n", all.len()).as_bytes()),
                    Err(e) => respond(out, 400, format!("reading the body failed: {e}\n").as_bytes()),
                }
            }
            "/big" => {
                let n: usize = query(&path, "bytes").and_then(|v| v.parse().ok()).unwrap_or(0);
                respond(out, 200, &vec![b'x'; n]);
            }
            "/sleep" => {
                let ms: u64 = query(&path, "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                respond(out, 200, b"slept\n");
            }
            "/spin" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "/trap" => panic!("the handler panicked on purpose"),
            "/stream" | "/traphead" => {
                let headers = Fields::new();
                let _ = headers.append("content-type", b"application/octet-stream");
                let resp = OutgoingResponse::new(headers);
                let outgoing = resp.body().unwrap();
                ResponseOutparam::set(out, Ok(resp));
                let stream = outgoing.write().unwrap();
                if last == "/traphead" {
                    stream.blocking_write_and_flush(&[b'x'; 1000]).unwrap();
                    panic!("the handler panicked after its response began");
                }
                let chunk = vec![b'x'; 65536];
                // Until the host stops it: a write into a body nobody
                // reads any more fails, and then it keeps computing.
                loop {
                    for part in chunk.chunks(4096) {
                        if stream.blocking_write_and_flush(part).is_err() {
                            loop {
                                std::hint::black_box(0u64);
                            }
                        }
                    }
                }
            }
            "/noresponse" => {}
            "/fetch" => match query(&path, "url").map(|u| fetch(u, query(&path, "traceparent"))) {
                Some(Ok((status, body))) => {
                    let mut text = format!("fetched {status}\n").into_bytes();
                    text.extend(body);
                    respond(out, 200, &text);
                }
                Some(Err(e)) => respond(out, 502, format!("fetch failed: {e}\n").as_bytes()),
                None => respond(out, 400, b"fetch needs ?url=\n"),
            },
            "/env" => {
                let name = query(&path, "name").unwrap_or_default().to_string();
                let value = std::env::var(name).unwrap_or_default();
                respond(out, 200, format!("{value}\n").as_bytes());
            }
            "/time" => {
                // The wall clock and 8 random bytes: what an app's
                // wall_clock and random_seed set.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let random: String = wasi::random::random::get_random_bytes(8)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let body = format!("{}.{:09} {random}\n", now.as_secs(), now.subsec_nanos());
                respond(out, 200, body.as_bytes());
            }
            "/count" => {
                static HANDLED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = HANDLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                respond(out, 200, format!("{n}\n").as_bytes());
            }
            _ => respond(out, 404, b"no such path\n"),
        }
    }
}

fn main() {}
