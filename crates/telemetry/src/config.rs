//! Where telemetry goes: the operator's endpoint (a flag or the
//! manifest's `[telemetry]`), else OpenTelemetry's standard variables,
//! and what the resource says.
//!
//! Telemetry is off unless an endpoint is given: by Warden's
//! configuration, or by `OTEL_EXPORTER_OTLP_ENDPOINT` or a signal's own
//! `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT` in the environment
//! (an operator who sets those means to export). `OTEL_SDK_DISABLED=true`
//! turns it off whatever else is set.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use crate::{Signal, TelemetryError};

/// The collector's port for OTLP over HTTP, when a variable names none.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// What the operator configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The collector's base URL (`http://collector:4318`); each signal
    /// posts to `/v1/<signal>` under it.
    pub endpoint: Option<String>,
}

/// Each signal's full URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Where spans go.
    pub traces: String,
    /// Where metrics go.
    pub metrics: String,
    /// Where log records go.
    pub logs: String,
}

impl Endpoints {
    /// The URL for `signal`.
    pub fn of(&self, signal: Signal) -> &str {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }
}

impl TelemetryConfig {
    /// Where each signal goes, or `None` when telemetry is off. `env`
    /// reads a variable (`std::env::var` in the binary). An endpoint
    /// that is not `http://host[:port][/path]` is an error.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Endpoints>, TelemetryError> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let general = var("OTEL_EXPORTER_OTLP_ENDPOINT");
        let own = |s: Signal| {
            var(&format!(
                "OTEL_EXPORTER_OTLP_{}_ENDPOINT",
                s.as_str().to_uppercase()
            ))
        };
        let any_env = general.is_some()
            || [Signal::Traces, Signal::Metrics, Signal::Logs]
                .iter()
                .any(|s| own(*s).is_some());
        if self.endpoint.is_none() && !any_env {
            return Ok(None);
        }
        // The operator's own endpoint is checked as given, so an error
        // quotes what was written.
        if let Some(base) = &self.endpoint {
            check(base.trim())?;
        }
        let url = |s: Signal| -> Result<String, TelemetryError> {
            let url = match (&self.endpoint, own(s), &general) {
                // Warden's own configuration wins over the environment.
                (Some(base), _, _) => under(base, s),
                (None, Some(exact), _) => exact,
                (None, None, Some(base)) => under(base, s),
                (None, None, None) => under(DEFAULT_ENDPOINT, s),
            };
            check(&url)?;
            Ok(url)
        };
        Ok(Some(Endpoints {
            traces: url(Signal::Traces)?,
            metrics: url(Signal::Metrics)?,
            logs: url(Signal::Logs)?,
        }))
    }
}

/// `base` with the signal's path appended, as the OTLP specification
/// says for a base endpoint.
fn under(base: &str, s: Signal) -> String {
    format!("{}/v1/{}", base.trim().trim_end_matches('/'), s.as_str())
}

/// An endpoint Warden can post to: `http://host[:port][/path]`.
pub fn check(url: &str) -> Result<(), TelemetryError> {
    let bad = |why: &str| TelemetryError::Endpoint {
        endpoint: url.to_string(),
        why: why.to_string(),
    };
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
        bad(&format!("not a URL ({e}); expected http://host:port"))
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported; send to a collector's plain OTLP/HTTP port (4318) on this host or network",
            ));
        }
        _ => return Err(bad("expected http://host:port")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    if url.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    Ok(())
}

/// The resource every signal carries: the service (`OTEL_SERVICE_NAME`,
/// else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `warden`),
/// Warden's version, and the variables' other attributes.
pub(crate) fn resource(version: &str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let mut builder = Resource::builder();
    if !named {
        builder = builder.with_service_name("warden");
    }
    builder
        .with_attribute(KeyValue::new("service.version", version.to_string()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        endpoint: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<Option<Endpoints>, TelemetryError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TelemetryConfig {
            endpoint: endpoint.map(str::to_string),
        }
        .resolve(|k| vars.get(k).cloned())
    }

    #[test]
    fn off_unless_an_endpoint_is_given_and_disabled_wins() {
        assert_eq!(resolve(None, &[]).unwrap(), None);
        assert_eq!(resolve(None, &[("OTEL_SERVICE_NAME", "x")]).unwrap(), None);
        assert_eq!(
            resolve(Some("http://c:4318"), &[("OTEL_SDK_DISABLED", "true")]).unwrap(),
            None
        );
    }

    #[test]
    fn a_base_gets_each_signals_path_and_a_signal_variable_is_used_as_is() {
        let e = resolve(Some("http://c:4318/"), &[]).unwrap().unwrap();
        assert_eq!(e.traces, "http://c:4318/v1/traces");
        assert_eq!(e.metrics, "http://c:4318/v1/metrics");
        assert_eq!(e.logs, "http://c:4318/v1/logs");
        let e = resolve(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/t"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.traces, "http://b:2/t");
        assert_eq!(e.metrics, "http://a:1/v1/metrics");
        // Warden's own configuration wins.
        let e = resolve(
            Some("http://w:3"),
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/t")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.traces, "http://w:3/v1/traces");
        // Only a signal's own variable: the others go to the default port.
        let e = resolve(
            None,
            &[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:9/logs")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.logs, "http://l:9/logs");
        assert_eq!(e.traces, "http://localhost:4318/v1/traces");
    }

    #[test]
    fn endpoints_that_cannot_be_posted_to_are_errors() {
        for bad in [
            "https://c:4318",
            "c:4318",
            "ftp://c",
            "http://user:pw@c:4318",
            "http://",
        ] {
            let err = resolve(Some(bad), &[]).unwrap_err();
            assert!(
                matches!(err, TelemetryError::Endpoint { .. }),
                "{bad}: {err}"
            );
        }
        assert!(resolve(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c")]).is_err());
    }
}
