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
//! `--timeout` (504), and it bounds the whole exchange: a response body
//! still streaming at the deadline is cut (HTTP/1: the connection closes
//! without the body's end; HTTP/2: the stream is reset), and its instance
//! stopped. A response the client stops reading is cut once it has made no
//! progress for the write timeout; either way its request slot is freed
//! at once. A connection told to close (idle, no request head in time,
//! shutdown) that is still open [`CLOSE_GRACE`] later (or the shutdown
//! grace) is dropped, whatever the peer does. A `Host` (or `:authority`)
//! that is not exactly `host[:port]` is a 400 before any routing.

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

/// Time a response may make no progress (the client reads none of it) before
/// it is cut, by default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection told to close (idle, or no request head in time)
/// may take to do it: HTTP/2's graceful close waits for the peer to answer
/// a PING, and a flush can wait on a peer that reads nothing; past this the
/// connection is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

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
    events: crate::Events,
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
    /// The tracer of what no app answers, when telemetry is on (each app
    /// has its own).
    tracer: Option<warden_net::trace::Tracer>,
}

/// What a connection's requests share: whether it is idle, since when,
/// whether any request came at all, and the responses still streaming.
struct Activity {
    in_flight: AtomicUsize,
    since: Mutex<Instant>,
    requests: AtomicU64,
    responses: Mutex<Vec<std::sync::Weak<Progress>>>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
            requests: AtomicU64::new(0),
            responses: Mutex::new(Vec::new()),
        }
    }

    fn start(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether any request head arrived on the connection.
    fn any_request(&self) -> bool {
        self.requests.load(Ordering::SeqCst) > 0
    }

    fn streaming(&self, progress: &Arc<Progress>) {
        let mut all = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|p| p.strong_count() > 0);
        all.push(Arc::downgrade(progress));
    }

    /// A response that is stuck: still streaming [`STUCK_GRACE`] past its
    /// deadline (so nobody polls its body, or it would have cut itself), or
    /// handed to the connection and not taken for `write_timeout`. It is
    /// marked cut.
    fn cut_stuck(&self, write_timeout: Duration) -> bool {
        let now = Instant::now();
        let all = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        for p in all.iter().filter_map(std::sync::Weak::upgrade) {
            if let Some(why) = p.stuck(now, write_timeout) {
                p.cut(why);
                any = true;
            }
        }
        any
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

/// Why a response was cut short after its headers went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The request's time (`--timeout`) ran out.
    Timeout,
    /// The client read nothing for the write timeout.
    WriteTimeout,
    /// The instance trapped.
    Trap,
    /// The guest's body ended in an error (aborted, or a wrong length).
    BodyError,
    /// The request body grew past the body limit.
    BodyLimit,
    /// The connection went before the body ended.
    Closed,
}

impl Cut {
    fn as_str(self) -> &'static str {
        match self {
            Cut::Timeout => "timeout",
            Cut::WriteTimeout => "write-timeout",
            Cut::Trap => "trap",
            Cut::BodyError => "body-error",
            Cut::BodyLimit => "body-limit",
            Cut::Closed => "closed",
        }
    }
}

/// A streaming response as its connection's watchdog sees it.
struct Progress {
    /// The request's deadline.
    deadline: Instant,
    /// When the connection last took a frame of it (or its head).
    taken: Mutex<Instant>,
    /// Whether the connection waits on the body (the guest's turn): then
    /// no progress is the guest's, which the deadline bounds.
    waiting: AtomicBool,
    /// Why the watchdog cut it, if it did.
    cut: Mutex<Option<Cut>>,
    /// Its body ended (whole or cut): nothing more to watch.
    ended: AtomicBool,
}

/// How often, at most, a connection's watchdog looks at it (its deadlines
/// are met within this).
const WATCH_TICK: Duration = Duration::from_millis(250);

/// How long past its deadline the watchdog leaves a response whose body
/// is still polled to cut itself (an HTTP/2 stream is then reset alone,
/// not its whole connection).
const STUCK_GRACE: Duration = Duration::from_millis(200);

impl Progress {
    fn new(deadline: Instant) -> Progress {
        Progress {
            deadline,
            taken: Mutex::new(Instant::now()),
            waiting: AtomicBool::new(false),
            cut: Mutex::new(None),
            ended: AtomicBool::new(false),
        }
    }

    fn took(&self) {
        *self.taken.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.waiting.store(false, Ordering::SeqCst);
    }

    fn stuck(&self, now: Instant, write_timeout: Duration) -> Option<Cut> {
        if self.ended.load(Ordering::SeqCst) {
            return None;
        }
        if now >= self.deadline + STUCK_GRACE {
            return Some(Cut::Timeout);
        }
        let taken = *self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = self.waiting.load(Ordering::SeqCst);
        (!waiting && now.duration_since(taken) >= write_timeout).then_some(Cut::WriteTimeout)
    }

    fn cut(&self, why: Cut) {
        self.cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
    }

    fn cut_as(&self) -> Option<Cut> {
        *self.cut.lock().unwrap_or_else(|e| e.into_inner())
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
        events: crate::Events,
        limits: ServeLimits,
        tls: Option<Arc<warden_net::tls::ServerSide>>,
        access: Option<Arc<LineLog>>,
        metrics: Arc<Metrics>,
        tracer: Option<warden_net::trace::Tracer>,
    ) -> Server {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Server(Arc::new(Inner {
            apps,
            events,
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
            tracer,
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

    /// Flush the access log, and tell what it could not write.
    pub(crate) fn finish_access_log(&self) {
        if let Some(log) = &self.0.access {
            let summary = log.finish();
            if crate::Event::worth_saying(&summary) {
                (self.0.events)(&crate::Event::AccessLog(&summary));
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
        // Who called, when the client's certificate names a SPIFFE ID:
        // told to the guest in a header of Warden's own.
        let peer_id: Option<Arc<str>> = conn.peer_id().map(Arc::from);
        // The client's address as its requests' spans name it, made once.
        let peer_ip = self
            .0
            .tracer
            .as_ref()
            .map(|_| opentelemetry::StringValue::from(Arc::<str>::from(peer.ip().to_string())));
        let activity = Arc::new(Activity::new());
        let server = self.clone();
        let act = activity.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let server = server.clone();
            let act = act.clone();
            let peer_id = peer_id.clone();
            let peer_ip = peer_ip.clone();
            async move { Ok::<_, Infallible>(server.request(req, via, act, peer_id, peer_ip).await) }
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
        // Once told to close, the connection has until `close_by`; then it
        // is dropped (which cuts whatever it still holds).
        let mut close_by: Option<Instant> = None;
        if *stop.borrow() {
            conn.as_mut().graceful_shutdown();
            close_by = Some(Instant::now() + limits.shutdown_grace);
        }
        let tick = limits
            .idle_timeout
            .min(limits.header_timeout)
            .min(limits.write_timeout)
            .div_f64(4.0)
            .clamp(Duration::from_millis(50), WATCH_TICK);
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                _ = stop.changed(), if close_by.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    close_by = Some(Instant::now() + limits.shutdown_grace);
                }
                _ = tokio::time::sleep(tick) => {
                    // A response nobody reads, or past its time with its
                    // body not polled: cut, by dropping the connection.
                    if activity.cut_stuck(limits.write_timeout) {
                        break;
                    }
                    if let Some(by) = close_by {
                        if Instant::now() >= by {
                            break;
                        }
                        continue;
                    }
                    // Before its first request a connection has the header
                    // timeout (a silent client, or an HTTP/2 preface and
                    // nothing more); then the idle timeout between requests.
                    let limit = if activity.any_request() {
                        limits.idle_timeout
                    } else {
                        limits.header_timeout
                    };
                    if activity.idle_for().is_some_and(|d| d >= limit) {
                        conn.as_mut().graceful_shutdown();
                        close_by = Some(Instant::now() + CLOSE_GRACE);
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

    /// A request's server span: on its app's tracer (the server's when no
    /// app serves it), continuing the trace its `traceparent` names.
    ///
    /// `None` without telemetry (nor a client address, made for each
    /// connection only when telemetry is on).
    fn request_span(
        &self,
        req: &http::Request<Incoming>,
        routed: (Option<&str>, Option<&App>),
        via: Via,
        peer_ip: Option<opentelemetry::StringValue>,
        id: &str,
        arrived: SystemTime,
    ) -> Option<crate::traces::RequestSpan> {
        let (server_tracer, peer_ip) = (self.0.tracer.as_ref()?, peer_ip?);
        let (host, app) = routed;
        let tracer = app
            .and_then(|a| a.core.scope.as_ref())
            .map_or(server_tracer, |s| s.tracer());
        let parent = warden_net::trace::extract(req.headers());
        let path = warden_net::shorten(req.uri().path());
        Some(crate::traces::RequestSpan::start(
            tracer,
            &parent,
            &crate::traces::RequestStart {
                method: req.method(),
                path: &path,
                https: via.https,
                app: app.map(|a| &a.core.labels),
                host,
                local_port: via.local.port(),
                peer: via.peer,
                peer_ip,
                version: req.version(),
                user_agent: req
                    .headers()
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
                request_id: id,
                started: arrived,
            },
        ))
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
        peer_id: Option<Arc<str>>,
        peer_ip: Option<opentelemetry::StringValue>,
    ) -> http::Response<ResponseBody> {
        activity.start();
        let started = Instant::now();
        let arrived = SystemTime::now();
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
            route: None,
            sha256: None,
            started,
            bytes_in: Arc::new(AtomicU64::new(0)),
            span: None,
        };
        // The authority routed on is the one the guest sees: exactly
        // host[:port], or the request is refused before any routing.
        let authority = authority_of(&req);
        let host = match &authority {
            Ok(Some(a)) => Some(host_of(a)),
            _ => None,
        };
        let routed = match &authority {
            Ok(_) => self.route(host.as_deref(), req.uri().path()),
            Err(_) => None,
        };
        record.span =
            self.request_span(&req, (host.as_deref(), routed), via, peer_ip, &id, arrived);
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
        let authority = match authority {
            Ok(a) => a,
            Err(why) => {
                return self.answer(
                    record,
                    400,
                    &format!("bad request: {why}\n"),
                    activity,
                    Some(slot),
                );
            }
        };
        let Some(app) = routed else {
            return self.answer(
                record,
                404,
                "not found: no application serves this path\n",
                activity,
                Some(slot),
            );
        };
        record.app = Some(app.core.spec.name.clone());
        if self.0.tracer.is_some() {
            // For OpenTelemetry's request duration only: nothing to copy
            // when telemetry is off.
            record.route = Some(app.core.labels.route);
        }
        record.sha256 = Some(app.core.sha256.clone());
        let max_body = self.0.limits.max_body;
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return self.answer(
                record.limited(
                    "max_body",
                    "the request's Content-Length is past the body limit",
                ),
                413,
                "request body too large\n",
                activity,
                Some(slot),
            );
        }
        let over = Arc::new(AtomicBool::new(false));
        let rates = app.core.gate().rates();
        let egress = rates.egress.clone();
        let body = BodyLimits {
            max: max_body,
            bytes_in: &record.bytes_in,
            over: &over,
            ingress: rates.ingress.clone(),
            peer_id,
        };
        let guest_req = match guest_request(req, &id, via, authority.as_ref(), body) {
            Ok(r) => r,
            Err(why) => return self.answer(record, 400, &why, activity, Some(slot)),
        };
        self.0.metrics.request_started();
        let deadline = app.deadline();
        let trace = record.span.as_ref().map(|s| s.trace().clone());
        let result = app
            .handle(guest_req, &id, via.https, deadline, trace.as_ref())
            .await;
        self.0.metrics.request_ended();
        match result {
            Ok(answer) if !over.load(Ordering::SeqCst) => {
                let (mut parts, body) = answer.response.into_parts();
                if let Ok(v) = http::HeaderValue::from_str(&id) {
                    parts.headers.insert("x-request-id", v);
                }
                let status = parts.status.as_u16();
                self.0.metrics.answered(
                    record.app.as_deref().unwrap_or(super::metrics::UNROUTED),
                    status,
                    started.elapsed().as_secs_f64(),
                );
                self.0.metrics.http_duration(
                    &record.method,
                    record.route,
                    status,
                    started.elapsed().as_secs_f64(),
                );
                let progress = Arc::new(Progress::new(deadline));
                activity.streaming(&progress);
                let mut body = Tracked::new(
                    body.map_err(|e| Box::new(e) as BoxError),
                    Some(slot),
                    self.finisher(record, status, activity),
                );
                // A body that grows past the limit after the guest
                // answered cuts the response: never a complete success.
                body.cut_when = Some(over);
                body.pace = egress.map(warden_net::Pacer::new);
                body.streaming = Some(Streaming {
                    deadline: Box::pin(tokio::time::sleep_until(deadline.into())),
                    progress,
                    ending: answer.ending,
                });
                http::Response::from_parts(parts, BodyExt::boxed_unsync(body))
            }
            Ok(_) => self.answer(
                record.limited("max_body", "the request body grew past the body limit"),
                413,
                "request body too large\n",
                activity,
                Some(slot),
            ),
            Err(_) if over.load(Ordering::SeqCst) => self.answer(
                record.limited("max_body", "the request body grew past the body limit"),
                413,
                "request body too large\n",
                activity,
                Some(slot),
            ),
            Err(Failure::Timeout) => self.answer(
                record.limited("timeout", "the application did not answer in time"),
                504,
                "the application did not answer in time\n",
                activity,
                Some(slot),
            ),
            Err(Failure::Guest(why) | Failure::Host(why)) => {
                (self.0.events)(&crate::Event::RequestFailed {
                    app: record.app.as_deref().unwrap_or("?"),
                    id: &id,
                    method: &record.method,
                    path: &record.path,
                    why: &why,
                    after_head: false,
                });
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
            record.app.as_deref().unwrap_or(super::metrics::UNROUTED),
            status,
            record.started.elapsed().as_secs_f64(),
        );
        self.0.metrics.http_duration(
            &record.method,
            record.route,
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
    fn finisher(&self, record: Record, status: u16, activity: Arc<Activity>) -> Finisher {
        let server = self.clone();
        Box::new(move |bytes_out, cut| {
            server.0.answered.fetch_add(1, Ordering::Relaxed);
            activity.end();
            let app = record.app.as_deref().unwrap_or(super::metrics::UNROUTED);
            if let Some(cut) = &cut {
                server.0.metrics.response_cut(app, cut.reason.as_str());
                // A guest failure after the headers went out is said as any
                // other is, with the request id.
                if let Some(why) = &cut.why {
                    (server.0.events)(&crate::Event::RequestFailed {
                        app,
                        id: &record.id,
                        method: &record.method,
                        path: &record.path,
                        why,
                        after_head: true,
                    });
                }
            }
            if let Some(span) = &record.span {
                if let Some(c) = &cut {
                    match c.reason {
                        Cut::Timeout => {
                            span.limit("timeout", "the response was cut at the request's time")
                        }
                        Cut::BodyLimit => {
                            span.limit("max_body", "the request body grew past the body limit")
                        }
                        _ => {}
                    }
                }
                span.finish(
                    status,
                    record.bytes_in.load(Ordering::Relaxed),
                    bytes_out,
                    cut.as_ref().map(|c| c.reason.as_str()),
                );
            }
            server
                .0
                .metrics
                .bytes(app, record.bytes_in.load(Ordering::Relaxed), bytes_out);
            if let Some(log) = &server.0.access {
                log.send_json(record.line(status, bytes_out, cut.map(|c| c.reason)));
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
    /// Its app's route, for OpenTelemetry's request duration (set only
    /// when telemetry is on).
    route: Option<&'static str>,
    sha256: Option<String>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    /// Its server span, when telemetry is on.
    span: Option<crate::traces::RequestSpan>,
}

impl Record {
    /// The record, with a limit that fired told to its span.
    fn limited(self, limit: &str, reason: &str) -> Record {
        if let Some(span) = &self.span {
            span.limit(limit, reason);
        }
        self
    }

    fn line(
        &self,
        status: u16,
        bytes_out: u64,
        cut: Option<Cut>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert(
            "ts".into(),
            warden_net::timestamp::rfc3339(SystemTime::now()).into(),
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
        if let Some(cut) = cut {
            // The body was cut short: the status went out, the body did
            // not end as the guest meant.
            m.insert("cut".into(), cut.as_str().into());
        }
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        m.insert(
            "duration_ms".into(),
            ((ms * 1000.0).round() / 1000.0).into(),
        );
        m.insert("app".into(), self.app.clone().into());
        m.insert("module_sha256".into(), self.sha256.clone().into());
        if let Some(span) = &self.span {
            let (trace_id, span_id) = span.trace().ids();
            m.insert("trace_id".into(), trace_id.into());
            m.insert("span_id".into(), span_id.into());
        }
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

/// The authority a request names: its URI's (HTTP/2's `:authority`, or
/// an absolute request target), else its one `Host` header; `None` when
/// it names none (HTTP/1.0). It must be exactly `host[:port]`: userinfo
/// (`evil.test@admin.test`, which a front proxy reads as another host),
/// several `Host` headers, or anything else is refused (400).
fn authority_of<B>(req: &http::Request<B>) -> Result<Option<http::uri::Authority>, String> {
    let authority = match req.uri().authority() {
        Some(a) => a.clone(),
        None => {
            let mut hosts = req.headers().get_all(http::header::HOST).iter();
            let Some(host) = hosts.next() else {
                return Ok(None);
            };
            if hosts.next().is_some() {
                return Err("more than one Host header".into());
            }
            let text = host
                .to_str()
                .map_err(|_| "the Host header is not host[:port]".to_string())?;
            text.parse::<http::uri::Authority>()
                .map_err(|_| "the Host header is not host[:port]".to_string())?
        }
    };
    let plain = !authority.as_str().contains('@')
        && !authority.host().is_empty()
        && authority.as_str().len() <= 255 + 6;
    if plain {
        Ok(Some(authority))
    } else {
        Err("the authority must be host[:port], without userinfo".into())
    }
}

/// The host of `authority`, without the port, in lower case.
fn host_of(authority: &http::uri::Authority) -> String {
    authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
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

/// How a request's body is bounded and counted on its way to the guest.
struct BodyLimits<'a> {
    /// The most bytes it may have.
    max: u64,
    /// Where the bytes that came are counted.
    bytes_in: &'a Arc<AtomicU64>,
    /// Set when it grew past `max`.
    over: &'a Arc<AtomicBool>,
    /// The app's ingress limit.
    ingress: Option<Arc<warden_net::Bucket>>,
    /// The SPIFFE ID of the client's verified certificate, if any.
    peer_id: Option<Arc<str>>,
}

/// The header that tells the guest the SPIFFE ID of the client's verified
/// certificate; a client's own is removed first.
pub const PEER_ID_HEADER: &str = "x-warden-peer-id";

/// The request as the guest gets it: an absolute URI (the scheme it came
/// by, the authority it was routed on, else the address it reached), its
/// id among its headers (and the client's SPIFFE ID, never the client's
/// own header of that name), its body counted and bounded.
fn guest_request(
    req: http::Request<Incoming>,
    id: &str,
    via: Via,
    authority: Option<&http::uri::Authority>,
    limits: BodyLimits<'_>,
) -> Result<super::app::GuestRequest, String> {
    let (mut parts, body) = req.into_parts();
    let authority = authority.map_or_else(|| via.local.to_string(), |a| a.as_str().to_string());
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
    parts.headers.remove(PEER_ID_HEADER);
    if let Some(v) = limits
        .peer_id
        .as_deref()
        .and_then(|p| http::HeaderValue::from_str(p).ok())
    {
        parts.headers.insert(PEER_ID_HEADER, v);
    }
    let body = Bounded {
        inner: body,
        seen: 0,
        max: limits.max,
        counter: limits.bytes_in.clone(),
        over: limits.over.clone(),
        pace: limits.ingress.map(warden_net::Pacer::new),
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
    /// The app's ingress limit.
    pace: Option<warden_net::Pacer>,
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
        if let Some(p) = &mut self.pace
            && p.poll_ready(cx).is_pending()
        {
            return Poll::Pending;
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Some(p) = &self.pace {
                        p.spend(data.len());
                    }
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

/// A cut, as the finisher hears of it: the reason, and the guest's failure
/// in words when one caused it.
struct CutNote {
    reason: Cut,
    why: Option<String>,
}

impl CutNote {
    fn of(reason: Cut) -> CutNote {
        CutNote { reason, why: None }
    }
}

/// What a response's body does when done: the access log line, the count,
/// the connection's activity. Takes the bytes sent and the cut, if any.
type Finisher = Box<dyn FnOnce(u64, Option<CutNote>) + Send>;

/// What a guest's streaming response carries besides its body: the
/// request's deadline, what the connection's watchdog sees of it, and how
/// its instance ends.
struct Streaming {
    deadline: Pin<Box<tokio::time::Sleep>>,
    progress: Arc<Progress>,
    ending: Arc<super::app::Ending>,
}

impl Streaming {
    /// The cut a failed instance makes of a body that ended.
    fn failed(&self) -> Option<CutNote> {
        self.ending.failure().map(|f| match f {
            Failure::Timeout => CutNote::of(Cut::Timeout),
            Failure::Guest(why) | Failure::Host(why) => CutNote {
                reason: Cut::Trap,
                why: Some(why.clone()),
            },
        })
    }
}

/// A response body that counts what it sends, holds its request's slot,
/// and says when it is done (or dropped). A guest's body is also bounded by
/// the request's deadline, and ends in an error (so the client can tell it
/// was cut) when its instance failed, however cleanly the bytes stopped.
struct Tracked<B> {
    inner: B,
    bytes: u64,
    _slot: Option<OwnedSemaphorePermit>,
    done: Option<Finisher>,
    /// When this is set, the response ends with an error.
    cut_when: Option<Arc<AtomicBool>>,
    streaming: Option<Streaming>,
    /// Warden's own answer, all of it taken.
    whole: bool,
    /// The app's egress limit, for a guest's response.
    pace: Option<warden_net::Pacer>,
}

impl<B> Tracked<B> {
    fn new(inner: B, slot: Option<OwnedSemaphorePermit>, done: Finisher) -> Self {
        Tracked {
            inner,
            bytes: 0,
            _slot: slot,
            done: Some(done),
            cut_when: None,
            streaming: None,
            whole: false,
            pace: None,
        }
    }

    /// Done: said once. A cut response's instance is stopped (nobody reads
    /// what it writes any more).
    fn finish(&mut self, cut: Option<CutNote>) {
        if let Some(done) = self.done.take() {
            if let Some(st) = &self.streaming {
                st.progress.ended.store(true, Ordering::SeqCst);
                if cut.is_some() {
                    st.ending.stop();
                }
            }
            done(self.bytes, cut);
        }
    }

    /// End the body with an error for `cut`.
    fn cut(&mut self, cut: CutNote) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let what = match cut.reason {
            Cut::Timeout => "the request's time ran out",
            Cut::Trap => "the application failed",
            Cut::BodyLimit => "the request body grew past the body limit",
            _ => "the response was cut",
        };
        self.finish(Some(cut));
        Poll::Ready(Some(Err(what.into())))
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if self.done.is_none() {
            return;
        }
        // Warden's own answers are whole once their bytes are taken (the
        // connection need not ask for their end).
        if self.whole {
            self.finish(None);
            return;
        }
        // Dropped before its end: the connection went (the client, or the
        // watchdog, which says why).
        let cut = self
            .streaming
            .as_ref()
            .and_then(|st| st.progress.cut_as())
            .unwrap_or(Cut::Closed);
        self.finish(Some(CutNote::of(cut)));
    }
}

impl<B: Body<Data = Bytes, Error = BoxError> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done.is_none() {
            return Poll::Ready(None);
        }
        if self
            .cut_when
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            return self.cut(CutNote::of(Cut::BodyLimit));
        }
        if let Some(st) = &mut self.streaming
            && st.deadline.as_mut().poll(cx).is_ready()
        {
            return self.cut(CutNote::of(Cut::Timeout));
        }
        if let Some(p) = &mut self.pace
            && p.poll_ready(cx).is_pending()
        {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Some(p), Poll::Ready(Some(Ok(frame)))) = (&self.pace, &polled)
            && let Some(data) = frame.data_ref()
        {
            p.spend(data.len());
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                match &self.streaming {
                    Some(st) => st.progress.took(),
                    None => self.whole = self.inner.is_end_stream(),
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => match self.streaming.as_ref().and_then(Streaming::failed) {
                Some(cut) => self.cut(cut),
                None => {
                    self.finish(None);
                    Poll::Ready(None)
                }
            },
            Poll::Ready(Some(Err(e))) => {
                let cut = self
                    .streaming
                    .as_ref()
                    .and_then(Streaming::failed)
                    .unwrap_or(CutNote {
                        reason: Cut::BodyError,
                        why: Some(format!("its response body failed: {e}")),
                    });
                self.finish(Some(cut));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                if let Some(st) = &self.streaming {
                    st.progress.waiting.store(true, Ordering::SeqCst);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A guest's body ends only once its instance's word is in.
        self.streaming.is_none() && self.inner.is_end_stream()
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
