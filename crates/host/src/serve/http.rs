//! `serve`'s HTTP side: accepting (at most `max_connections` open; the
//! rest wait in the kernel's backlog), TLS, HTTP/1.1 and HTTP/2 (h2c with
//! prior knowledge, or ALPN over TLS), routing to an app, the protocol
//! limits, the request id, the access log and the answers Warden gives
//! itself (404, 408, 413, 431, 500, 503, 504).
//!
//! Limits: a request's headers must arrive within the header timeout (a
//! slow client is closed and never holds a request slot: slots are taken
//! only once the headers are in); an idle keep-alive connection is closed
//! after the idle timeout; headers are at most `max_header` bytes (431); a
//! body at most `max_body` bytes (413 when its length says so up front; a
//! body that grows past it while streaming fails the guest's read, and
//! the answer is 413); at most `max_requests` requests run at once (503
//! with `Retry-After` past it); the request's time is the app's
//! `--timeout` (504).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warden_net::LineLog;

use super::app::{App, Failure};
use super::metrics::Metrics;
use super::{Route, ServeLimits};

/// Time to receive a request's headers, by default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Time an idle keep-alive connection stays open, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes of request headers, by default.
pub const DEFAULT_MAX_HEADER: usize = 64 * 1024;

/// Bytes of request body, by default.
pub const DEFAULT_MAX_BODY: u64 = 16 << 20;

/// The smallest header buffer hyper takes.
const MIN_HEADER: usize = 8192;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response Warden sends.
pub(crate) type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The server: shared by its listeners and connections.
#[derive(Clone)]
pub(crate) struct Server(Arc<Inner>);

struct Inner {
    apps: Arc<Vec<App>>,
    limits: ServeLimits,
    tls: Option<Arc<warden_net::tls::ServerSide>>,
    access: Option<Arc<LineLog>>,
    metrics: Arc<Metrics>,
    connections: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    open: AtomicUsize,
    drained: tokio::sync::Notify,
    answered: AtomicU64,
    ids: AtomicU64,
    seed: u64,
}

/// What a connection's requests share: whether it is idle, since when.
struct Activity {
    in_flight: AtomicUsize,
    since: Mutex<Instant>,
}

impl Activity {
    fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(
            self.since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed(),
        )
    }
}

/// Where a request came in.
#[derive(Clone, Copy)]
struct Via {
    peer: SocketAddr,
    local: SocketAddr,
    https: bool,
}

impl Server {
    pub(crate) fn new(
        apps: Arc<Vec<App>>,
        limits: ServeLimits,
        tls: Option<Arc<warden_net::tls::ServerSide>>,
        access: Option<Arc<LineLog>>,
        metrics: Arc<Metrics>,
    ) -> Server {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Server(Arc::new(Inner {
            apps,
            limits,
            tls,
            access,
            metrics,
            connections: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            requests: Arc::new(Semaphore::new(limits.max_requests.max(1))),
            open: AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
            answered: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            seed,
        }))
    }

    /// Requests answered so far.
    pub(crate) fn answered(&self) -> u64 {
        self.0.answered.load(Ordering::Relaxed)
    }

    /// Accept on `listener` until `stop`. A connection is accepted only
    /// when there is room for it.
    pub(crate) async fn accept(
        self,
        listener: tokio::net::TcpListener,
        local: SocketAddr,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let permit = tokio::select! {
                p = self.0.connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of descriptors, or a connection that failed
                    // before it was accepted: try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.0.open.fetch_add(1, Ordering::SeqCst);
            let server = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                server.connection(stream, peer, local, stop).await;
                drop(permit);
                if server.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
                    server.0.drained.notify_waiters();
                }
            });
        }
    }

    /// Wait up to `grace` for every connection to end; how many did not.
    pub(crate) async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.0.drained.notified();
            let open = self.0.open.load(Ordering::SeqCst);
            if open == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.0.open.load(Ordering::SeqCst);
            }
        }
    }

    /// Flush the access log.
    pub(crate) fn finish_access_log(&self) {
        if let Some(log) = &self.0.access {
            let summary = log.finish();
            if summary.dropped > 0 || summary.error.is_some() {
                warden_net::out::line(&format!(
                    "warden: access log: {} lines dropped, {} lost{}",
                    summary.dropped,
                    summary.lost,
                    summary.error.map(|e| format!(" ({e})")).unwrap_or_default()
                ));
            }
        }
    }

    async fn connection(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let metrics = &self.0.metrics;
        metrics.connection_opened();
        let _ = stream.set_nodelay(true);
        let limits = self.0.limits;
        let conn = match &self.0.tls {
            None => warden_net::Connection::plain(stream, None),
            Some(side) => {
                // The handshake is bounded like the headers: a client that
                // stalls it holds nothing but its connection slot.
                let handshake = tokio::time::timeout(limits.header_timeout, side.accept(stream));
                match handshake.await {
                    Ok(Ok((conn, _alpn))) => {
                        metrics.client_handshake(true);
                        conn
                    }
                    _ => {
                        metrics.client_handshake(false);
                        metrics.connection_closed();
                        return;
                    }
                }
            }
        };
        let via = Via {
            peer,
            local,
            https: self.0.tls.is_some(),
        };
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
        });
        let server = self.clone();
        let act = activity.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let server = server.clone();
            let act = act.clone();
            async move { Ok::<_, Infallible>(server.request(req, via, act).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header.max(MIN_HEADER))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header).unwrap_or(u32::MAX))
            .max_concurrent_streams(Some(
                u32::try_from(limits.max_requests)
                    .unwrap_or(u32::MAX)
                    .max(1),
            ));
        let conn = builder.serve_connection(TokioIo::new(conn), service);
        tokio::pin!(conn);
        let mut closing = *stop.borrow();
        if closing {
            conn.as_mut().graceful_shutdown();
        }
        let tick =
            (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                _ = stop.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep(tick), if !closing => {
                    if activity.idle_for().is_some_and(|d| d >= limits.idle_timeout) {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        metrics.connection_closed();
    }

    fn new_id(&self) -> String {
        let n = self.0.ids.fetch_add(1, Ordering::Relaxed);
        // splitmix64: distinct for every n, not guessable from the last.
        let mut z = self
            .0
            .seed
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{:016x}", z ^ (z >> 31))
    }

    fn route(&self, host: Option<&str>, path: &str) -> Option<&App> {
        self.0
            .apps
            .iter()
            .filter(|a| route_matches(&a.core.spec.route, host, path))
            .max_by_key(|a| {
                let r = &a.core.spec.route;
                (r.prefix.len(), r.host.is_some())
            })
    }

    async fn request(
        &self,
        req: http::Request<Incoming>,
        via: Via,
        activity: Arc<Activity>,
    ) -> http::Response<ResponseBody> {
        activity.start();
        let started = Instant::now();
        let id = match req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(v) if valid_id(v) => v.to_string(),
            _ => self.new_id(),
        };
        let mut record = Record {
            id: id.clone(),
            via,
            method: req.method().to_string(),
            path: warden_net::shorten(req.uri().path()).into_owned(),
            version: format!("{:?}", req.version()),
            app: None,
            sha256: None,
            started,
            bytes_in: Arc::new(AtomicU64::new(0)),
        };
        // A place among the requests in flight, or 503 at once.
        let Ok(slot) = self.0.requests.clone().try_acquire_owned() else {
            return self.answer(
                record,
                503,
                "busy: too many requests in flight; retry shortly\n",
                activity,
                None,
            );
        };
        let host = host_of(&req);
        let Some(app) = self.route(host.as_deref(), req.uri().path()) else {
            return self.answer(
                record,
                404,
                "not found: no application serves this path\n",
                activity,
                Some(slot),
            );
        };
        record.app = Some(app.core.spec.name.clone());
        record.sha256 = Some(app.core.sha256.clone());
        let max_body = self.0.limits.max_body;
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return self.answer(
                record,
                413,
                "request body too large\n",
                activity,
                Some(slot),
            );
        }
        let over = Arc::new(AtomicBool::new(false));
        let guest_req = match guest_request(
            req,
            &id,
            via,
            host.as_deref(),
            max_body,
            &record.bytes_in,
            &over,
        ) {
            Ok(r) => r,
            Err(why) => return self.answer(record, 400, &why, activity, Some(slot)),
        };
        self.0.metrics.request_started();
        let result = app.handle(guest_req, &id, via.https).await;
        self.0.metrics.request_ended();
        match result {
            Ok(response) if !over.load(Ordering::SeqCst) => {
                let (mut parts, body) = response.into_parts();
                if let Ok(v) = http::HeaderValue::from_str(&id) {
                    parts.headers.insert("x-request-id", v);
                }
                let status = parts.status.as_u16();
                self.0.metrics.answered(
                    &record.app.clone().unwrap_or_default(),
                    status,
                    started.elapsed().as_secs_f64(),
                );
                let mut body = Tracked::new(
                    body.map_err(|e| Box::new(e) as BoxError),
                    Some(slot),
                    self.finisher(record, status, activity),
                );
                // A body that grows past the limit after the guest
                // answered cuts the response: never a complete success.
                body.cut_when = Some(over);
                http::Response::from_parts(parts, BodyExt::boxed_unsync(body))
            }
            Ok(_) => self.answer(
                record,
                413,
                "request body too large\n",
                activity,
                Some(slot),
            ),
            Err(_) if over.load(Ordering::SeqCst) => self.answer(
                record,
                413,
                "request body too large\n",
                activity,
                Some(slot),
            ),
            Err(Failure::Timeout) => self.answer(
                record,
                504,
                "the application did not answer in time\n",
                activity,
                Some(slot),
            ),
            Err(Failure::Guest(why) | Failure::Host(why)) => {
                warden_net::out::line(&format!(
                    "warden: {} request {id} ({} {}) failed: {why}",
                    record.app.as_deref().unwrap_or("?"),
                    record.method,
                    record.path
                ));
                let body = format!("internal error (request {id})\n");
                self.answer(record, 500, &body, activity, Some(slot))
            }
        }
    }

    /// Warden's own answer.
    fn answer(
        &self,
        record: Record,
        status: u16,
        text: &str,
        activity: Arc<Activity>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> http::Response<ResponseBody> {
        let mut builder = http::Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .header("x-request-id", record.id.as_str());
        if status == 503 {
            builder = builder.header("retry-after", "1");
        }
        self.0.metrics.answered(
            record.app.as_deref().unwrap_or("-"),
            status,
            record.started.elapsed().as_secs_f64(),
        );
        let body = http_body_util::Full::new(Bytes::from(text.to_string()))
            .map_err(|never: Infallible| -> BoxError { match never {} });
        let body = Tracked::new(body, slot, self.finisher(record, status, activity));
        builder
            .body(BodyExt::boxed_unsync(body))
            .expect("a valid response")
    }

    /// What happens when a response's body is done: the access log line,
    /// the count, the connection's activity.
    fn finisher(
        &self,
        record: Record,
        status: u16,
        activity: Arc<Activity>,
    ) -> Box<dyn FnOnce(u64) + Send> {
        let server = self.clone();
        Box::new(move |bytes_out| {
            server.0.answered.fetch_add(1, Ordering::Relaxed);
            activity.end();
            if let Some(log) = &server.0.access {
                log.send_json(record.line(status, bytes_out));
            }
        })
    }
}

/// What the access log says of a request.
struct Record {
    id: String,
    via: Via,
    method: String,
    path: String,
    version: String,
    app: Option<String>,
    sha256: Option<String>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
}

impl Record {
    fn line(&self, status: u16, bytes_out: u64) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert(
            "ts".into(),
            warden_net::audit::rfc3339(SystemTime::now()).into(),
        );
        m.insert("request_id".into(), self.id.clone().into());
        m.insert("remote".into(), self.via.peer.to_string().into());
        m.insert("method".into(), self.method.clone().into());
        m.insert("path".into(), self.path.clone().into());
        m.insert("protocol".into(), self.version.clone().into());
        m.insert("tls".into(), self.via.https.into());
        m.insert("status".into(), status.into());
        m.insert(
            "bytes_in".into(),
            self.bytes_in.load(Ordering::Relaxed).into(),
        );
        m.insert("bytes_out".into(), bytes_out.into());
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        m.insert(
            "duration_ms".into(),
            ((ms * 1000.0).round() / 1000.0).into(),
        );
        m.insert("app".into(), self.app.clone().into());
        m.insert("module_sha256".into(), self.sha256.clone().into());
        m
    }
}

/// An id a client may choose: 1 to 128 letters, digits, `-`, `_`, `.`.
fn valid_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The host a request names (its URI's, else its Host header's), without
/// the port, in lower case.
fn host_of<B>(req: &http::Request<B>) -> Option<String> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })?;
    let host = match authority.parse::<http::uri::Authority>() {
        Ok(a) => a.host().to_string(),
        Err(_) => return None,
    };
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

fn route_matches(route: &Route, host: Option<&str>, path: &str) -> bool {
    if let Some(want) = &route.host
        && !host.is_some_and(|h| h.eq_ignore_ascii_case(want))
    {
        return false;
    }
    let prefix = route.prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The request as the guest gets it: an absolute URI (the scheme it came
/// by, the authority the client named, else the address it reached), its
/// id among its headers, its body counted and bounded.
fn guest_request(
    req: http::Request<Incoming>,
    id: &str,
    via: Via,
    host: Option<&str>,
    max_body: u64,
    bytes_in: &Arc<AtomicU64>,
    over: &Arc<AtomicBool>,
) -> Result<super::app::GuestRequest, String> {
    let (mut parts, body) = req.into_parts();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .filter(|_| host.is_some())
        .unwrap_or_else(|| via.local.to_string());
    let scheme = if via.https { "https" } else { "http" };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str())
        .path_and_query(path.as_str())
        .build()
        .map_err(|e| format!("bad request: {e}\n"))?;
    if let Ok(v) = http::HeaderValue::from_str(id) {
        parts.headers.insert("x-request-id", v);
    }
    let body = Bounded {
        inner: body,
        seen: 0,
        max: max_body,
        counter: bytes_in.clone(),
        over: over.clone(),
    };
    Ok(http::Request::from_parts(
        parts,
        BodyExt::boxed_unsync(body),
    ))
}

/// A request body counted and cut at `max` bytes (the guest's read then
/// fails with `HTTP-request-body-size`).
struct Bounded {
    inner: Incoming,
    seen: u64,
    max: u64,
    counter: Arc<AtomicU64>,
    over: Arc<AtomicBool>,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.seen > self.max {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                Some(self.seen),
            ))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    self.seen += n;
                    self.counter.fetch_add(n, Ordering::Relaxed);
                    if self.seen > self.max {
                        self.over.store(true, Ordering::SeqCst);
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(self.seen)),
                        )));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts what it sends, holds its request's slot,
/// and says when it is done (or dropped).
struct Tracked<B> {
    inner: B,
    bytes: u64,
    _slot: Option<OwnedSemaphorePermit>,
    done: Option<Box<dyn FnOnce(u64) + Send>>,
    /// When this is set, the response ends with an error.
    cut_when: Option<Arc<AtomicBool>>,
}

impl<B> Tracked<B> {
    fn new(
        inner: B,
        slot: Option<OwnedSemaphorePermit>,
        done: Box<dyn FnOnce(u64) + Send>,
    ) -> Self {
        Tracked {
            inner,
            bytes: 0,
            _slot: slot,
            done: Some(done),
            cut_when: None,
        }
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done(self.bytes);
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B: Body<Data = Bytes, Error = BoxError> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self
            .cut_when
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            self.finish();
            return Poll::Ready(Some(Err("the request body grew past --max-body".into())));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_at_segment_boundaries_and_hosts_without_case() {
        let r = |prefix: &str, host: Option<&str>| Route {
            prefix: prefix.into(),
            host: host.map(str::to_string),
        };
        assert!(route_matches(&r("/", None), None, "/anything"));
        assert!(route_matches(&r("/api", None), None, "/api"));
        assert!(route_matches(&r("/api/", None), None, "/api/x"));
        assert!(!route_matches(&r("/api", None), None, "/apix"));
        assert!(route_matches(
            &r("/", Some("Example.com")),
            Some("example.com"),
            "/"
        ));
        assert!(!route_matches(
            &r("/", Some("example.com")),
            Some("other.com"),
            "/"
        ));
        assert!(!route_matches(&r("/", Some("example.com")), None, "/"));
    }

    #[test]
    fn client_ids_are_kept_only_when_plain() {
        assert!(valid_id("abc-123_x.y"));
        assert!(!valid_id(""));
        assert!(!valid_id("has space"));
        assert!(!valid_id(&"a".repeat(129)));
    }
}
