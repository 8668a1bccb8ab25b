//! The providers and their processors: finished spans and log records
//! into bounded queues ([`crate::worker`]), metrics read on an interval,
//! each exported by the OTLP crate's encoders over Warden's client.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter as _, LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider,
};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use warden_net::trace::{FinishedSpan, SpanSink, Tracer};

use crate::client::Client;
use crate::otlp::{EncodedSpans, SpanEncoder};
use crate::worker::{Batch, Counts, Worker};
use crate::{
    EXPORT_TIMEOUT, Endpoints, Loss, METRIC_INTERVAL, Notice, Notices, SCOPE, Signal,
    TelemetryError,
};

/// Retries of one export: a collector that is down is not waited for.
const RETRIES: usize = 1;

fn retry() -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::default()
        .with_max_retries(RETRIES)
        .with_initial_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(500))
}

fn built<T>(
    signal: &'static str,
    r: Result<T, impl std::fmt::Display>,
) -> Result<T, TelemetryError> {
    r.map_err(|e| TelemetryError::Exporter {
        signal,
        why: e.to_string(),
    })
}

/// An exporter behind its bounded queue: finished spans or log records
/// go in without waiting, the queue's thread exports them.
pub(crate) struct Queued<E, T> {
    worker: Worker<T>,
    exporter: Arc<Mutex<E>>,
}

impl<E, T> std::fmt::Debug for Queued<E, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("worker", &self.worker)
            .finish()
    }
}

impl<E: Send + 'static, T: Batch> Queued<E, T> {
    /// `exporter` behind a queue of `signal`, its batches sent by `export`.
    fn start(
        signal: Signal,
        exporter: E,
        notices: Notices,
        export: fn(&mut E, &T) -> Result<(), String>,
    ) -> Result<Arc<Self>, TelemetryError> {
        let exporter = Arc::new(Mutex::new(exporter));
        let e = exporter.clone();
        let worker = Worker::start(
            signal,
            &format!("warden-otlp-{}", signal.as_str()),
            notices,
            Box::new(move |batch: &T| {
                export(&mut e.lock().unwrap_or_else(|e| e.into_inner()), batch)
            }),
        )?;
        Ok(Arc::new(Queued { worker, exporter }))
    }

    /// Stop, sending what is queued within `grace`.
    pub(crate) fn finish(&self, grace: Duration) -> Counts {
        self.worker.shutdown(grace)
    }

    fn flush(&self) {
        self.worker.flush(crate::SHUTDOWN_GRACE);
    }

    /// Do `f` to the exporter (give it the provider's resource).
    fn exporter(&self, f: impl FnOnce(&mut E)) {
        f(&mut self.exporter.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Finished spans into a bounded queue.
pub(crate) type Spans = Queued<SpanSender, EncodedSpans>;

/// Sends batches of spans: encoded by [`crate::otlp`] into a buffer kept
/// between batches, posted over Warden's client.
#[derive(Debug)]
pub(crate) struct SpanSender {
    encoder: SpanEncoder,
    client: Client,
    endpoint: http::Uri,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// A collector's answers worth one more try: it is busy or restarting.
const RETRY_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// How long before the one retry.
const RETRY_DELAY: Duration = Duration::from_millis(100);

impl SpanSender {
    fn new(endpoint: &str, headers: http::HeaderMap) -> Result<SpanSender, TelemetryError> {
        Ok(SpanSender {
            encoder: SpanEncoder::default(),
            client: Client::new(EXPORT_TIMEOUT),
            endpoint: built("traces", endpoint.parse::<http::Uri>())?,
            headers,
            body: Vec::new(),
        })
    }

    fn send(&mut self, spans: &EncodedSpans) -> Result<(), String> {
        let start = self.encoder.encode(spans, &mut self.body);
        let mut why = String::new();
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                std::thread::sleep(RETRY_DELAY);
            }
            match self
                .client
                .post_bytes(&self.endpoint, &self.headers, &self.body[start..])
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    why = format!("the collector answered {}", r.status());
                    if !RETRY_STATUSES.contains(&r.status().as_u16()) {
                        break;
                    }
                }
                Err(e) => why = e.to_string(),
            }
        }
        Err(why)
    }
}

/// The headers every trace export carries: protobuf, and what
/// `OTEL_EXPORTER_OTLP_HEADERS` and then `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
/// (which wins for a name both give) list as `key=value,...` with
/// URL-encoded values, as the OTLP exporter specification has them. A
/// pair that is not a valid header is left out.
fn trace_headers(env: impl Fn(&str) -> Option<String>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-protobuf"),
    );
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        for pair in env(var).unwrap_or_default().split(',') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = percent_decoded(v.trim());
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(&v),
            ) && !v.is_empty()
            {
                headers.insert(k, v);
            }
        }
    }
    headers
}

/// `%XX` escapes decoded; text that is not a valid escape is kept as it is.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The tracer's handle on the queue: spans that end go in, until
/// telemetry stops (what ends after that, a request cut off at exit, is
/// not sent and not counted: the totals are told by then).
struct SpanQueue {
    spans: Arc<Spans>,
    stopped: AtomicBool,
}

impl SpanSink for SpanQueue {
    fn finished(&self, span: FinishedSpan) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        // Encoded here, on the thread that made the span, which then frees
        // it (see `otlp::EncodedSpans`).
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|one| {
            one.clear();
            crate::otlp::span_field(one, &span);
            drop(span);
            self.spans.worker.push(one);
        });
    }
}

/// An application's spans: its tracer, and the queue (with the resource
/// its batches name) they go to.
pub(crate) struct Traces {
    queue: Arc<SpanQueue>,
    /// Made once: a tracer keeps its sink for the life of the process.
    tracer: Tracer,
}

impl Traces {
    /// The tracer whose spans go to the queue.
    pub(crate) fn tracer(&self) -> Tracer {
        self.tracer
    }

    /// Stop taking spans, and send what is queued within `grace`.
    pub(crate) fn finish(&self, grace: Duration) -> Counts {
        self.queue.stopped.store(true, Ordering::Relaxed);
        self.queue.spans.finish(grace)
    }
}

pub(crate) fn traces(
    endpoints: &Endpoints,
    resource: &Resource,
    notices: Notices,
) -> Result<Traces, TelemetryError> {
    let mut sender = SpanSender::new(
        endpoints.of(Signal::Traces),
        trace_headers(|k| std::env::var(k).ok()),
    )?;
    sender.encoder.set_resource(resource);
    let spans = Spans::start(Signal::Traces, sender, notices, SpanSender::send)?;
    let queue = Arc::new(SpanQueue {
        spans,
        stopped: AtomicBool::new(false),
    });
    Ok(Traces {
        tracer: Tracer::new(queue.clone()),
        queue,
    })
}

type Record = (SdkLogRecord, InstrumentationScope);

/// Log records into a bounded queue.
pub(crate) type Logs = Queued<opentelemetry_otlp::LogExporter, Vec<Record>>;

#[derive(Debug)]
struct LogsRef(Arc<Logs>);

impl LogProcessor for LogsRef {
    fn emit(&self, data: &mut SdkLogRecord, scope: &InstrumentationScope) {
        self.0.worker.push((data.clone(), scope.clone()));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.flush();
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.exporter(|e| e.set_resource(resource));
    }
}

pub(crate) fn logger_provider(
    endpoints: &Endpoints,
    resource: Resource,
    notices: Notices,
) -> Result<(SdkLoggerProvider, Arc<Logs>), TelemetryError> {
    let exporter = built(
        "logs",
        opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_http_client(Client::new(EXPORT_TIMEOUT))
            .with_endpoint(endpoints.of(Signal::Logs))
            .with_timeout(EXPORT_TIMEOUT)
            .with_retry_policy(retry())
            .build(),
    )?;
    let logs = Logs::start(Signal::Logs, exporter, notices, |e, batch| {
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            batch.iter().map(|(r, s)| (r, s)).collect();
        futures_executor::block_on(e.export(LogBatch::new(&refs))).map_err(|e| e.to_string())
    })?;
    let provider = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_log_processor(LogsRef(logs.clone()))
        .build();
    Ok((provider, logs))
}

/// Audit records as OTLP log records: the record's fields as attributes,
/// its `event` as the body, on the trace its `trace_id` and `span_id`
/// name.
pub(crate) struct AuditLogs {
    logger: SdkLogger,
}

impl AuditLogs {
    pub(crate) fn new(provider: &SdkLoggerProvider) -> AuditLogs {
        AuditLogs {
            logger: provider.logger(SCOPE),
        }
    }
}

impl warden_net::AuditSink for AuditLogs {
    fn record(&self, fields: &serde_json::Map<String, serde_json::Value>) {
        let mut record = self.logger.create_log_record();
        let event = fields
            .get("event")
            .and_then(|v| v.as_str())
            .unwrap_or("audit");
        let denied = fields
            .get("decision")
            .and_then(|v| v.as_str())
            .is_some_and(|d| d != "allow");
        record.set_event_name("warden.audit");
        record.set_severity_number(if denied {
            Severity::Warn
        } else {
            Severity::Info
        });
        record.set_severity_text(if denied { "WARN" } else { "INFO" });
        record.set_body(AnyValue::from(event.to_string()));
        let trace = fields
            .get("trace_id")
            .and_then(|v| v.as_str())
            .and_then(|t| TraceId::from_hex(t).ok());
        let span = fields
            .get("span_id")
            .and_then(|v| v.as_str())
            .and_then(|s| SpanId::from_hex(s).ok());
        if let (Some(t), Some(s)) = (trace, span) {
            record.set_trace_context(t, s, Some(TraceFlags::SAMPLED));
        }
        for (k, v) in fields {
            if matches!(k.as_str(), "trace_id" | "span_id") {
                continue;
            }
            record.add_attribute(format!("warden.{k}"), json_value(v));
        }
        self.logger.emit(record);
    }
}

fn json_value(v: &serde_json::Value) -> AnyValue {
    match v {
        serde_json::Value::Bool(b) => AnyValue::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => AnyValue::String(s.clone().into()),
        other => AnyValue::String(other.to_string().into()),
    }
}

/// The metric exporter, counting what fails.
struct Counted {
    inner: opentelemetry_otlp::MetricExporter,
    failures: Arc<AtomicU64>,
    told: AtomicBool,
    notices: Notices,
}

impl PushMetricExporter for Counted {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let r = self.inner.export(metrics).await;
        if let Err(e) = &r {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if !self.told.swap(true, Ordering::Relaxed) {
                self.notices.tell(&Notice::Lost {
                    signal: Signal::Metrics,
                    loss: Loss::Export(e.to_string()),
                });
            }
        }
        // A failure is counted and told here; the reader need not log it.
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

pub(crate) fn meter_provider(
    endpoints: &Endpoints,
    resource: Resource,
    notices: Notices,
    failures: Arc<AtomicU64>,
) -> Result<SdkMeterProvider, TelemetryError> {
    let exporter = built(
        "metrics",
        opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_http_client(Client::new(EXPORT_TIMEOUT))
            .with_endpoint(endpoints.of(Signal::Metrics))
            .with_timeout(EXPORT_TIMEOUT)
            .with_retry_policy(retry())
            .with_temporality(Temporality::Cumulative)
            .build(),
    )?;
    let reader = PeriodicReader::builder(Counted {
        inner: exporter,
        failures,
        told: AtomicBool::new(false),
        notices,
    })
    .with_interval(METRIC_INTERVAL)
    .build();
    Ok(SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(vars: &[(&str, &str)]) -> http::HeaderMap {
        trace_headers(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_standard_header_variables_are_read_and_the_traces_one_wins() {
        let h = headers(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=a%20b, x-tenant = t1 ,broken,=v,empty=",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=t2"),
        ]);
        assert_eq!(h["content-type"], "application/x-protobuf");
        assert_eq!(h["api-key"], "a b");
        assert_eq!(h["x-tenant"], "t2");
        // content-type, api-key, x-tenant: nothing else got in.
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(headers(&[]).len(), 1);
    }

    /// A collector on loopback answering each POST with the next status
    /// of `answers` (then closing); how many POSTs it took.
    fn collector(answers: &'static [u16]) -> (String, std::thread::JoinHandle<usize>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let mut taken = 0;
            let until = std::time::Instant::now() + Duration::from_secs(2);
            while taken < answers.len() && std::time::Instant::now() < until {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as content-length says.
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let status = answers[taken];
                taken += 1;
                let _ = write!(s, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            }
            taken
        });
        (url, server)
    }

    fn sender(url: &str) -> SpanSender {
        SpanSender::new(url, trace_headers(|_| None)).unwrap()
    }

    #[test]
    fn a_busy_collector_is_tried_once_more() {
        let (url, server) = collector(&[503, 200]);
        assert_eq!(sender(&url).send(&EncodedSpans::default()), Ok(()));
        assert_eq!(server.join().unwrap(), 2);
    }

    #[test]
    fn a_refusal_is_not_retried_and_says_the_status() {
        let (url, server) = collector(&[400, 200]);
        let err = sender(&url).send(&EncodedSpans::default()).unwrap_err();
        assert!(err.contains("400"), "{err}");
        // Only one POST came; the collector gives up waiting for a second.
        assert_eq!(server.join().unwrap(), 1);
    }

    #[test]
    fn percent_escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(percent_decoded("a%2Cb%3d"), "a,b=");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz%4"), "%zz%4");
    }
}
