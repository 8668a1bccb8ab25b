//! `serve`'s Prometheus metrics (prometheus-client), and the listener
//! that exposes them with a liveness endpoint: `GET /metrics` (the text
//! exposition format) and `GET /healthz` (`ok` while the server runs).
//! With OpenTelemetry export on, every measurement also goes to the same
//! instruments on an OpenTelemetry meter (`Otel`), plus the bytes each app
//! takes in and sends, and HTTP's `http.server.request.duration`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
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
struct Otel {
    requests: otm::Counter<u64>,
    latency: otm::Histogram<f64>,
    http_duration: otm::Histogram<f64>,
    /// Read from the Prometheus gauges when the meter collects, rather
    /// than counted twice per request.
    _in_flight: otm::ObservableUpDownCounter<i64>,
    _connections: otm::ObservableUpDownCounter<i64>,
    created: otm::Counter<u64>,
    reused: otm::Counter<u64>,
    denials: otm::Counter<u64>,
    tls: otm::Counter<u64>,
    cut: otm::Counter<u64>,
    bytes_in: otm::Counter<u64>,
    bytes_out: otm::Counter<u64>,
}

impl Otel {
    fn new(meter: &otm::Meter, in_flight: &Gauge, connections: &Gauge) -> Otel {
        let (in_flight, connections) = (in_flight.clone(), connections.clone());
        Otel {
            requests: meter
                .u64_counter("warden.requests")
                .with_description("HTTP requests answered, by app and status")
                .build(),
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
            created: meter
                .u64_counter("warden.instances_created")
                .with_description("Guest instances created")
                .build(),
            reused: meter
                .u64_counter("warden.instances_reused")
                .with_description("Requests served by a reused instance")
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
            bytes_in: meter
                .u64_counter("warden.bytes_in")
                .with_unit("By")
                .with_description("Request body bytes each app took in")
                .build(),
            bytes_out: meter
                .u64_counter("warden.bytes_out")
                .with_unit("By")
                .with_description("Response body bytes each app sent")
                .build(),
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
    /// on.
    pub(crate) fn new(meter: Option<otm::Meter>) -> Metrics {
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
            .map(|m| Otel::new(m, &in_flight, &connections));
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

    /// The body bytes a request of `app` took in and its response sent
    /// (OpenTelemetry only).
    pub(crate) fn bytes(&self, app: &str, bytes_in: u64, bytes_out: u64) {
        if let Some(o) = &self.otel {
            o.bytes_in.add(bytes_in, &[app_kv(app)]);
            o.bytes_out.add(bytes_out, &[app_kv(app)]);
        }
    }

    /// The HTTP convention's request duration (OpenTelemetry only).
    pub(crate) fn http_duration(
        &self,
        method: &str,
        route: Option<&opentelemetry::StringValue>,
        status: u16,
        seconds: f64,
    ) {
        if let Some(o) = &self.otel {
            let method = KeyValue::new("http.request.method", crate::traces::method_value(method));
            let status = KeyValue::new("http.response.status_code", i64::from(status));
            match route {
                Some(r) => o.http_duration.record(
                    seconds,
                    &[method, status, KeyValue::new("http.route", r.clone())],
                ),
                None => o.http_duration.record(seconds, &[method, status]),
            }
        }
    }

    pub(crate) fn answered(&self, app: &str, status: u16, seconds: f64) {
        if let Some(o) = &self.otel {
            let app = app_kv(app);
            o.latency.record(seconds, std::slice::from_ref(&app));
            o.requests.add(
                1,
                &[
                    app,
                    KeyValue::new("http.response.status_code", i64::from(status)),
                ],
            );
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
        if let Some(o) = &self.otel {
            o.created.add(1, &[app_kv(app)]);
        }
        self.created
            .get_or_create(&AppLabel { app: app.into() })
            .inc();
    }

    pub(crate) fn instance_reused(&self, app: &str) {
        if let Some(o) = &self.otel {
            o.reused.add(1, &[app_kv(app)]);
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
