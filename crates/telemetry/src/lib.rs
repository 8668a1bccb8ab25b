//! warden-telemetry: Warden's OpenTelemetry export. Traces, metrics and
//! (audit records as) logs go to a collector over OTLP/HTTP with protobuf
//! bodies: spans (Warden's own, see `warden_net::trace`) through
//! Warden's encoder (`otlp`), metrics and logs through the opentelemetry
//! SDK's providers and the OTLP crate's encoders.
//!
//! Why a crate of its own: the SDK, the exporters and their encoders are
//! only needed when telemetry is on, and only here; the rest of Warden
//! speaks the small `opentelemetry` API's types and records spans with
//! `warden_net::trace`, which costs nothing when no tracer is given.
//!
//! What it guarantees: nothing a collector does reaches a guest or a
//! request. Finished spans and log records go into bounded queues without
//! waiting (`worker`), and threads of their own post them (`client`);
//! what a full queue or a failed export loses is counted, told once as a
//! [`Notice`], and totalled at the end ([`Summary`]). Notices are data;
//! the binary words them.

mod client;
mod config;
mod export;
mod otlp;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;

pub use client::MAX_RESPONSE;
pub use config::{Endpoints, TelemetryConfig};
pub use worker::{BATCH, BATCH_DELAY, Counts, QUEUE};

/// How long an export may take before it counts as failed.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often metrics are sent.
pub const METRIC_INTERVAL: Duration = Duration::from_secs(10);

/// How long Warden waits at exit for what is queued to be sent.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The instrumentation scope of everything Warden records.
pub const SCOPE: &str = "warden";

/// What telemetry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric points.
    Metrics,
    /// Log records (audit records).
    Logs,
}

impl Signal {
    /// Its name in OTLP's paths and variables.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

/// Why telemetry was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// The queue was full: the collector is slower than Warden.
    QueueFull,
    /// An export failed, with why (the collector is down, refused it, or
    /// did not answer in time).
    Export(String),
}

/// Something the operator should be told, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The first loss of a signal's data (told once per queue).
    Lost {
        /// Which signal.
        signal: Signal,
        /// Why.
        loss: Loss,
    },
    /// At exit, a queue had not been sent within the grace.
    Unfinished {
        /// Which signal.
        signal: Signal,
        /// The grace waited.
        after: Duration,
    },
}

/// Where notices go.
#[derive(Clone)]
pub struct Notices(Arc<dyn Fn(&Notice) + Send + Sync>);

impl Notices {
    /// Notices told to `f`.
    pub fn new(f: impl Fn(&Notice) + Send + Sync + 'static) -> Notices {
        Notices(Arc::new(f))
    }

    pub(crate) fn tell(&self, notice: &Notice) {
        (self.0)(notice);
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not one Warden can post to.
    #[error("OTLP endpoint {endpoint:?}: {why}")]
    Endpoint {
        /// As given.
        endpoint: String,
        /// What is wrong with it.
        why: String,
    },
    /// An exporter could not be built.
    #[error("the OTLP {signal} exporter: {why}")]
    Exporter {
        /// For which signal.
        signal: &'static str,
        /// Why.
        why: String,
    },
    /// A thread could not be started.
    #[error("starting the telemetry thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What an application is, for its telemetry's resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// Its name (`serve`'s app name; `run`'s file name).
    pub name: String,
    /// The SHA-256 of its module, hex.
    pub sha256: String,
}

/// What was sent and lost, at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Spans.
    pub traces: Counts,
    /// Log records.
    pub logs: Counts,
    /// Metric exports that failed.
    pub metric_failures: u64,
}

impl Summary {
    /// Whether anything was lost.
    pub fn lost_any(&self) -> bool {
        self.traces.dropped + self.traces.failed + self.logs.dropped + self.logs.failed > 0
            || self.metric_failures > 0
    }
}

/// Telemetry, started: providers per application (each with its own
/// resource: Warden's version, the app's name and module digest), one
/// meter provider for all.
pub struct Telemetry {
    endpoints: Endpoints,
    base: Resource,
    notices: Notices,
    audit_logs: bool,
    meters: SdkMeterProvider,
    metric_failures: Arc<std::sync::atomic::AtomicU64>,
    apps: Mutex<Vec<(Option<AppInfo>, Scope)>>,
}

/// One application's tracer and logger.
#[derive(Clone)]
pub struct Scope {
    tracer: warden_net::trace::Tracer,
    traces: Arc<export::Traces>,
    logs: Option<(SdkLoggerProvider, Arc<export::Logs>)>,
}

impl Scope {
    /// The tracer its spans start from.
    pub fn tracer(&self) -> &warden_net::trace::Tracer {
        &self.tracer
    }

    /// Where its audit records go as log records, when `--otlp-audit` asks.
    pub fn audit_logs(&self) -> Option<Arc<dyn warden_net::AuditSink>> {
        self.logs
            .as_ref()
            .map(|(provider, _)| Arc::new(export::AuditLogs::new(provider)) as _)
    }
}

impl Telemetry {
    /// Start exporting to `endpoints` (see [`TelemetryConfig::resolve`]),
    /// as service `version` of Warden. Nothing is sent until something
    /// is recorded; a collector that is down costs nothing but the
    /// notices.
    pub fn start(
        endpoints: Endpoints,
        version: &str,
        audit_logs: bool,
        notices: Notices,
    ) -> Result<Telemetry, TelemetryError> {
        let base = config::resource(version);
        let metric_failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let meters = export::meter_provider(
            &endpoints,
            base.clone(),
            notices.clone(),
            metric_failures.clone(),
        )?;
        let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
        opentelemetry::global::set_text_map_propagator(propagator);
        Ok(Telemetry {
            endpoints,
            base,
            notices,
            audit_logs,
            meters,
            metric_failures,
            apps: Mutex::new(Vec::new()),
        })
    }

    /// The meter every instrument comes from.
    pub fn meter(&self) -> opentelemetry::metrics::Meter {
        use opentelemetry::metrics::MeterProvider as _;
        self.meters.meter(SCOPE)
    }

    /// The scope of `app` (or of the server itself, for what no app
    /// answers): made once, with a resource naming it.
    pub fn scope(&self, app: Option<&AppInfo>) -> Result<Scope, TelemetryError> {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = apps.iter().find(|(a, _)| a.as_ref() == app) {
            return Ok(s.clone());
        }
        let mut resource = Resource::builder_empty().with_attributes(
            self.base
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
        if let Some(app) = app {
            resource = resource.with_attributes([
                KeyValue::new("warden.app", app.name.clone()),
                KeyValue::new("warden.module.sha256", app.sha256.clone()),
            ]);
        }
        let resource = resource.build();
        let traces = Arc::new(export::traces(
            &self.endpoints,
            &resource,
            self.notices.clone(),
        )?);
        let tracer = traces.tracer();
        let logs = if self.audit_logs {
            Some(export::logger_provider(
                &self.endpoints,
                resource,
                self.notices.clone(),
            )?)
        } else {
            None
        };
        let scope = Scope {
            tracer,
            traces,
            logs,
        };
        apps.push((app.cloned(), scope.clone()));
        Ok(scope)
    }

    /// Send what is queued and stop, waiting at most [`SHUTDOWN_GRACE`]
    /// per queue; what was sent and lost.
    pub fn shutdown(&self) -> Summary {
        let mut summary = Summary::default();
        let apps = std::mem::take(&mut *self.apps.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, scope) in apps {
            add(&mut summary.traces, scope.traces.finish(SHUTDOWN_GRACE));
            if let Some((provider, logs)) = scope.logs {
                let _ = provider.shutdown_with_timeout(SHUTDOWN_GRACE);
                add(&mut summary.logs, logs.finish(SHUTDOWN_GRACE));
            }
        }
        let meters = self.meters.clone();
        // The reader's last export runs on its own thread; wait for it no
        // longer than the grace.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let _ = std::thread::Builder::new()
            .name("warden-otlp-stop".into())
            .spawn(move || {
                let _ = meters.shutdown_with_timeout(SHUTDOWN_GRACE);
                let _ = tx.send(());
            });
        let _ = rx.recv_timeout(SHUTDOWN_GRACE + Duration::from_millis(500));
        summary.metric_failures = self
            .metric_failures
            .load(std::sync::atomic::Ordering::Relaxed);
        summary
    }
}

fn add(total: &mut Counts, c: Counts) {
    total.exported += c.exported;
    total.dropped += c.dropped;
    total.failed += c.failed;
}
