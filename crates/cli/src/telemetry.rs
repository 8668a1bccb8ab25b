//! `--otlp-endpoint`, `--otlp-audit` and the manifest's `[telemetry]`:
//! OpenTelemetry export, started here for `run` and `serve`, and what it
//! tells (losses, the totals at the end) put into words.

use std::sync::Arc;

use warden_policy::manifest::TelemetryTable;
use warden_telemetry::{Endpoints, Loss, Notice, Notices, Summary, Telemetry, TelemetryConfig};

/// The telemetry flags `run` and `serve` share.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TelemetryArgs {
    /// Export OpenTelemetry data to the collector at URL, over OTLP/HTTP
    /// with protobuf bodies: spans to URL/v1/traces (a run, or each
    /// request, with its instance, handler, outgoing requests, connects,
    /// TLS handshakes and every denial as events), metrics to
    /// URL/v1/metrics. Off by default. Without this flag,
    /// OTEL_EXPORTER_OTLP_ENDPOINT (or a signal's own
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ...) turns export on;
    /// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service
    /// (default: warden), and OTEL_SDK_DISABLED=true turns it off. A
    /// collector that is down or slow never holds up a guest: what does
    /// not fit a bounded queue is dropped, counted and told once.
    /// Example: --otlp-endpoint http://127.0.0.1:4318
    #[arg(long = "otlp-endpoint", value_name = "URL", help_heading = "Telemetry")]
    pub otlp_endpoint: Option<String>,

    /// Also export every audit record as an OTLP log record (to
    /// URL/v1/logs), on the trace and span of the work it records; with
    /// --audit, they are written there too. Needs an endpoint.
    /// Example: --otlp-endpoint http://127.0.0.1:4318 --otlp-audit
    #[arg(long = "otlp-audit", help_heading = "Telemetry")]
    pub otlp_audit: bool,
}

impl TelemetryArgs {
    /// Start export if the flags, `manifest` (`[telemetry]`) or the
    /// environment give an endpoint; `None` when it is off.
    pub fn start(
        &self,
        manifest: Option<&TelemetryTable>,
    ) -> Result<Option<Arc<Telemetry>>, String> {
        let config = TelemetryConfig {
            endpoint: self
                .otlp_endpoint
                .clone()
                .or_else(|| manifest.and_then(|m| m.endpoint.clone())),
        };
        let audit = self.otlp_audit || manifest.is_some_and(|m| m.audit);
        let endpoints = config
            .resolve(|k| std::env::var(k).ok())
            .map_err(|e| e.to_string())?;
        let Some(endpoints) = endpoints else {
            if audit {
                return Err(
                    "--otlp-audit (or [telemetry] audit) needs an OTLP endpoint: --otlp-endpoint URL, [telemetry] endpoint, or OTEL_EXPORTER_OTLP_ENDPOINT"
                        .into(),
                );
            }
            return Ok(None);
        };
        let shown = endpoints.clone();
        let notices = Notices::new(move |n| warden_net::out::line(&notice(n, &shown)));
        // Its threads must leave the stop signals to Warden's own.
        let telemetry = warden_host::with_stop_signals_blocked(|| {
            Telemetry::start(endpoints, env!("CARGO_PKG_VERSION"), audit, notices)
        })
        .map(Arc::new)
        .map_err(|e| e.to_string())?;
        // A run a signal ends still sends what it recorded.
        let t = telemetry.clone();
        warden_host::on_forced_exit(move || finish(Some(&t)));
        Ok(Some(telemetry))
    }
}

/// Send what is queued and stop; say what was lost, if anything was.
pub fn finish(telemetry: Option<&Arc<Telemetry>>) {
    let Some(t) = telemetry else { return };
    let summary = t.shutdown();
    if summary.lost_any() {
        warden_net::out::line(&summary_words(&summary));
    }
}

fn notice(n: &Notice, endpoints: &Endpoints) -> String {
    match n {
        Notice::Lost {
            signal,
            loss: Loss::QueueFull,
        } => format!(
            "warden: telemetry: the {} queue is full (the collector at {} takes them slower than they come); what does not fit is dropped and counted",
            signal.as_str(),
            endpoints.of(*signal)
        ),
        Notice::Lost {
            signal,
            loss: Loss::Export(why),
        } => format!(
            "warden: telemetry: sending {} to {} failed ({why}); what is not sent is dropped and counted",
            signal.as_str(),
            endpoints.of(*signal)
        ),
        Notice::Unfinished { signal, after } => format!(
            "warden: telemetry: {} were still being sent {}s after the end; the rest is dropped",
            signal.as_str(),
            after.as_secs_f64()
        ),
    }
}

fn summary_words(s: &Summary) -> String {
    let mut parts = Vec::new();
    for (what, c) in [("spans", s.traces), ("log records", s.logs)] {
        if c.exported + c.dropped + c.failed > 0 {
            parts.push(format!(
                "{what}: {} sent, {} dropped (queue full), {} lost (export failed or unfinished)",
                c.exported, c.dropped, c.failed
            ));
        }
    }
    if s.metric_failures > 0 {
        parts.push(format!("metrics: {} exports failed", s.metric_failures));
    }
    format!("warden: telemetry: {}", parts.join("; "))
}
