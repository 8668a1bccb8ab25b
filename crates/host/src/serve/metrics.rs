//! `serve`'s Prometheus metrics (prometheus-client), and the listener
//! that exposes them with a liveness endpoint: `GET /metrics` (the text
//! exposition format) and `GET /healthz` (`ok` while the server runs).
//! With OpenTelemetry export on, every measurement also goes to the same
//! instruments on an OpenTelemetry meter (`Otel`; the per-request
//! counters counted per app and observed when the meter collects), plus
//! the bytes each app takes in and sends, and HTTP's
//! `http.server.request.duration`.

use std::convert::Infallible;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use opentelemetry::KeyValue;
use opentelemetry::metrics as otm;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use warden_net::{Action, Observer};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppStatus {
    app: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabel {
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CutLabel {
    app: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabel {
    direction: String,
    result: String,
}

/// Every metric `serve` keeps.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<AppStatus, Counter>,
    latency: Family<AppLabel, Histogram>,
    in_flight: Gauge,
    connections: Gauge,
    created: Family<AppLabel, Counter>,
    reused: Family<AppLabel, Counter>,
    denials: Family<ActionLabel, Counter>,
    tls: Family<TlsLabel, Counter>,
    cut: Family<CutLabel, Counter>,
    otel: Option<Otel>,
}

/// The same instruments on an OpenTelemetry meter.
///
/// The per-request counters of the apps served (requests by status,
/// instances created and reused, body bytes in and out) are counted in
/// [`AppCounts`], one atomic add each, and observed when the meter
/// collects: through the SDK's instruments every update is an attribute
/// lookup under a shared lock, and those six updates a request cost
/// about 4% of a traced server's throughput (measured with and without
/// them). The histograms, which have no observable form, and the rare
/// counts (denials, handshakes, cuts) are recorded directly.
struct Otel {
    latency: otm::Histogram<f64>,
    http_duration: otm::Histogram<f64>,
    /// Read from the Prometheus gauges and the apps' counts when the
    /// meter collects.
    _observed: Vec<otm::ObservableCounter<u64>>,
    _in_flight: otm::ObservableUpDownCounter<i64>,
    _connections: otm::ObservableUpDownCounter<i64>,
    denials: otm::Counter<u64>,
    tls: otm::Counter<u64>,
    cut: otm::Counter<u64>,
    /// The apps served, by name, and `-` for what no app answers: fixed
    /// when the server starts, so read without a lock.
    apps: Arc<AppTable>,
}

/// The apps' counts by name.
type AppTable = std::collections::HashMap<String, AppCounts, BuildHasherDefault<Fnv>>;

/// FNV-1a, for [`AppTable`]: its keys are the apps' names, the operator's
/// and fixed when the server starts, so SipHash's defence against keys
/// chosen to collide buys nothing there, and it cost more than the count
/// it found (three lookups a traced request; seen in the profile).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The app name of what no app answers (a 404, a 400 before routing).
pub(crate) const UNROUTED: &str = "-";

/// The lowest HTTP status counted per app.
const FIRST_STATUS: u16 = 100;

/// How many statuses are counted per app: 100 to 999, every status HTTP
/// can carry.
const STATUSES: usize = 900;

/// One app's per-request counts, for OpenTelemetry (see [`Otel`]).
struct AppCounts {
    /// Its name as the histograms' attribute: made once and kept (the
    /// apps served are fixed for the life of the process), so a request
    /// measured copies nothing.
    app: &'static str,
    by_status: [AtomicU64; STATUSES],
    created: AtomicU64,
    reused: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl AppCounts {
    fn new(app: &str) -> AppCounts {
        AppCounts {
            app: Box::leak(app.into()),
            by_status: [const { AtomicU64::new(0) }; STATUSES],
            created: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    fn status(&self, status: u16) -> Option<&AtomicU64> {
        self.by_status
            .get(usize::from(status.checked_sub(FIRST_STATUS)?))
    }
}

/// Observe one counter of every app (`field`), as a counter named `name`.
fn observed(
    meter: &otm::Meter,
    apps: &Arc<AppTable>,
    name: &'static str,
    unit: Option<&'static str>,
    description: &'static str,
    field: fn(&AppCounts) -> &AtomicU64,
) -> otm::ObservableCounter<u64> {
    let apps = apps.clone();
    let b = meter
        .u64_observable_counter(name)
        .with_description(description)
        .with_callback(move |o| {
            for (name, c) in apps.iter() {
                o.observe(field(c).load(Ordering::Relaxed), &[app_kv(name)]);
            }
        });
    match unit {
        Some(u) => b.with_unit(u).build(),
        None => b.build(),
    }
}

impl Otel {
    fn new(meter: &otm::Meter, in_flight: &Gauge, connections: &Gauge, apps: &[&str]) -> Otel {
        let (in_flight, connections) = (in_flight.clone(), connections.clone());
        let apps: Arc<AppTable> = Arc::new(
            apps.iter()
                .chain(&[UNROUTED])
                .map(|a| (a.to_string(), AppCounts::new(a)))
                .collect(),
        );
        let requests_seen = apps.clone();
        let observed_counters = vec![
            meter
                .u64_observable_counter("warden.requests")
                .with_description("HTTP requests answered, by app and status")
                .with_callback(move |o| {
                    for (name, c) in requests_seen.iter() {
                        for (i, n) in c.by_status.iter().enumerate() {
                            let n = n.load(Ordering::Relaxed);
                            if n > 0 {
                                o.observe(
                                    n,
                                    &[
                                        app_kv(name),
                                        KeyValue::new(
                                            "http.response.status_code",
                                            i64::from(FIRST_STATUS) + i as i64,
                                        ),
                                    ],
                                );
                            }
                        }
                    }
                })
                .build(),
            observed(
                meter,
                &apps,
                "warden.instances_created",
                None,
                "Guest instances created",
                |c| &c.created,
            ),
            observed(
                meter,
                &apps,
                "warden.instances_reused",
                None,
                "Requests served by a reused instance",
                |c| &c.reused,
            ),
            observed(
                meter,
                &apps,
                "warden.bytes_in",
                Some("By"),
                "Request body bytes each app took in",
                |c| &c.bytes_in,
            ),
            observed(
                meter,
                &apps,
                "warden.bytes_out",
                Some("By"),
                "Response body bytes each app sent",
                |c| &c.bytes_out,
            ),
        ];
        Otel {
            latency: meter
                .f64_histogram("warden.request.duration")
                .with_unit("s")
                .with_description("Time from a request's arrival to its response's headers")
                .build(),
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests")
                .build(),
            _observed: observed_counters,
            _in_flight: meter
                .i64_observable_up_down_counter("warden.requests_in_flight")
                .with_callback(move |o| o.observe(in_flight.get(), &[]))
                .with_description("Requests being handled")
                .build(),
            _connections: meter
                .i64_observable_up_down_counter("warden.connections_open")
                .with_callback(move |o| o.observe(connections.get(), &[]))
                .with_description("Client connections open")
                .build(),
            denials: meter
                .u64_counter("warden.denials")
                .with_description("Network actions the policy denied, by action")
                .build(),
            tls: meter
                .u64_counter("warden.tls_handshakes")
                .with_description("TLS handshakes, by direction and result")
                .build(),
            cut: meter
                .u64_counter("warden.responses_cut")
                .with_description("Responses cut short after their headers were sent")
                .build(),
            apps,
        }
    }
}

fn app_kv(app: &str) -> KeyValue {
    KeyValue::new("warden.app", app.to_string())
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

impl Metrics {
    /// The metrics, also recorded on `meter` when OpenTelemetry export is
    /// on, for a server of `apps` (their names).
    pub(crate) fn new(meter: Option<otm::Meter>, apps: &[&str]) -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let requests = Family::<AppStatus, Counter>::default();
        let latency =
            Family::<AppLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let in_flight = Gauge::default();
        let connections = Gauge::default();
        let created = Family::<AppLabel, Counter>::default();
        let reused = Family::<AppLabel, Counter>::default();
        let denials = Family::<ActionLabel, Counter>::default();
        let tls = Family::<TlsLabel, Counter>::default();
        let cut = Family::<CutLabel, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by app and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response's headers",
            latency.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open",
            connections.clone(),
        );
        registry.register(
            "instances_created",
            "Guest instances created",
            created.clone(),
        );
        registry.register(
            "instances_reused",
            "Requests served by a reused instance",
            reused.clone(),
        );
        registry.register(
            "denials",
            "Network actions the policy denied, by action",
            denials.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes, by direction and result",
            tls.clone(),
        );
        registry.register(
            "responses_cut",
            "Responses whose body was cut short after their headers were sent, by app and reason (timeout, write-timeout, trap, body-error, body-limit, closed)",
            cut.clone(),
        );
        let otel = meter
            .as_ref()
            .map(|m| Otel::new(m, &in_flight, &connections, apps));
        Metrics {
            registry,
            requests,
            latency,
            in_flight,
            connections,
            created,
            reused,
            denials,
            tls,
            cut,
            otel,
        }
    }

    /// `app`'s counts for OpenTelemetry, when export is on. Every app the
    /// server was started with has them (and [`UNROUTED`]).
    fn counts(&self, app: &str) -> Option<&AppCounts> {
        let c = self.otel.as_ref()?.apps.get(app);
        debug_assert!(c.is_some(), "no counts for app {app:?}");
        c
    }

    /// The body bytes a request of `app` took in and its response sent
    /// (OpenTelemetry only).
    pub(crate) fn bytes(&self, app: &str, bytes_in: u64, bytes_out: u64) {
        if let Some(c) = self.counts(app) {
            c.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
            c.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        }
    }

    /// The HTTP convention's request duration (OpenTelemetry only).
    pub(crate) fn http_duration(
        &self,
        method: &str,
        route: Option<&'static str>,
        status: u16,
        seconds: f64,
    ) {
        if let Some(o) = &self.otel {
            let method = KeyValue::new("http.request.method", crate::traces::method_value(method));
            let status = KeyValue::new("http.response.status_code", i64::from(status));
            match route {
                Some(r) => o
                    .http_duration
                    .record(seconds, &[method, status, KeyValue::new("http.route", r)]),
                None => o.http_duration.record(seconds, &[method, status]),
            }
        }
    }

    pub(crate) fn answered(&self, app: &str, status: u16, seconds: f64) {
        if let (Some(o), Some(c)) = (&self.otel, self.counts(app)) {
            o.latency
                .record(seconds, &[KeyValue::new("warden.app", c.app)]);
            if let Some(n) = c.status(status) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
        let app = app.to_string();
        self.requests
            .get_or_create(&AppStatus {
                app: app.clone(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&AppLabel { app })
            .observe(seconds);
    }

    /// A response cut short after its headers went out, and why.
    pub(crate) fn response_cut(&self, app: &str, reason: &str) {
        if let Some(o) = &self.otel {
            o.cut.add(
                1,
                &[
                    app_kv(app),
                    KeyValue::new("warden.reason", reason.to_string()),
                ],
            );
        }
        self.cut
            .get_or_create(&CutLabel {
                app: app.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub(crate) fn request_started(&self) {
        self.in_flight.inc();
    }

    pub(crate) fn request_ended(&self) {
        self.in_flight.dec();
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.dec();
    }

    pub(crate) fn instance_created(&self, app: &str) {
        if let Some(c) = self.counts(app) {
            c.created.fetch_add(1, Ordering::Relaxed);
        }
        self.created
            .get_or_create(&AppLabel { app: app.into() })
            .inc();
    }

    pub(crate) fn instance_reused(&self, app: &str) {
        if let Some(c) = self.counts(app) {
            c.reused.fetch_add(1, Ordering::Relaxed);
        }
        self.reused
            .get_or_create(&AppLabel { app: app.into() })
            .inc();
    }

    /// The server's own TLS handshake with a client.
    pub(crate) fn client_handshake(&self, ok: bool) {
        self.tls_handshake("in", ok);
    }

    fn tls_handshake(&self, direction: &str, ok: bool) {
        if let Some(o) = &self.otel {
            o.tls.add(
                1,
                &[
                    KeyValue::new("warden.direction", direction.to_string()),
                    KeyValue::new("warden.result", if ok { "ok" } else { "failed" }),
                ],
            );
        }
        self.tls
            .get_or_create(&TlsLabel {
                direction: direction.into(),
                result: if ok { "ok" } else { "failed" }.into(),
            })
            .inc();
    }

    /// The exposition text.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Observer for Metrics {
    fn decision(&self, action: Action, allowed: bool) {
        if !allowed {
            if let Some(o) = &self.otel {
                o.denials
                    .add(1, &[KeyValue::new("warden.action", action.as_str())]);
            }
            self.denials
                .get_or_create(&ActionLabel {
                    action: action.as_str().into(),
                })
                .inc();
        }
    }

    fn tls(&self, action: Action, ok: bool) {
        let direction = if action == Action::Accept {
            "in"
        } else {
            "out"
        };
        self.tls_handshake(direction, ok);
    }
}

/// Serve `/metrics` and `/healthz` on `listener` until `stop` says so.
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let (status, body) = match req.uri().path() {
                            "/metrics" => (200, metrics.encode()),
                            "/healthz" => (200, "ok\n".to_string()),
                            _ => (404, "not found: try /metrics or /healthz\n".to_string()),
                        };
                        let response = http::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a valid response");
                        Ok::<_, Infallible>(response)
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

/// Bind the metrics listener.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = warden_net::socket::bind_listener(addr)?;
    tokio::net::TcpListener::from_std(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher as _, Hasher as _};

    #[test]
    fn fnv_is_fnv_1a() {
        // The published 64-bit FNV-1a values of "" and "a".
        assert_eq!(Fnv::default().finish(), 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let b = BuildHasherDefault::<Fnv>::default();
        assert_ne!(b.hash_one("api"), b.hash_one("apj"));
    }

    #[test]
    fn every_app_and_the_unrouted_have_counts_and_others_none() {
        let m = Metrics::new(Some(opentelemetry::global::meter("test")), &["api", "web"]);
        for app in ["api", "web", UNROUTED] {
            m.answered(app, 200, 0.001);
            assert_eq!(m.counts(app).unwrap().app, app);
            assert_eq!(
                m.counts(app)
                    .unwrap()
                    .status(200)
                    .unwrap()
                    .load(Ordering::Relaxed),
                1
            );
        }
        assert!(m.otel.as_ref().unwrap().apps.get("nope").is_none());
    }
}
