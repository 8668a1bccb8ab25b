//! The spans Warden records around a guest when OpenTelemetry export is
//! on: a run (`warden run`), and under `serve` a request (a server span
//! after OpenTelemetry's HTTP conventions) with its instance and handler
//! as children. What the guest's network work does inside them (connects,
//! TLS handshakes, outgoing requests, denials) the gate records, on the
//! [`Trace`] these hand it.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use warden_net::trace::{Trace, Tracer};

use crate::{HostError, Outcome};

/// The run's span: a root (or a child of the `TRACEPARENT` in the
/// environment, as OpenTelemetry's environment carriers propose), named
/// for the program.
///
/// Also where the run's audit records go as log records, if they do.
pub(crate) fn run_span(
    telemetry: &warden_telemetry::Telemetry,
    file: &Path,
    sha256: &str,
) -> Result<(Trace, Option<Arc<dyn warden_net::AuditSink>>), HostError> {
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let scope = telemetry
        .scope(Some(&warden_telemetry::AppInfo {
            name: name.clone(),
            sha256: sha256.to_string(),
        }))
        .map_err(|e| HostError::Engine(e.to_string()))?;
    let tracer = scope.tracer();
    let mut carrier = http::HeaderMap::new();
    for (var, header) in [("TRACEPARENT", "traceparent"), ("TRACESTATE", "tracestate")] {
        if let Some(v) = std::env::var(var)
            .ok()
            .and_then(|v| http::HeaderValue::from_str(&v).ok())
        {
            carrier.insert(header, v);
        }
    }
    let parent = warden_net::trace::extract(&carrier);
    let trace = tracer.start(
        format!("run {name}"),
        SpanKind::Internal,
        vec![
            KeyValue::new("warden.app", name),
            KeyValue::new("warden.module.sha256", sha256.to_string()),
            KeyValue::new("process.executable.path", file.display().to_string()),
        ],
        &parent,
        None,
    );
    Ok((trace, scope.audit_logs()))
}

/// End the run's span with how the run ended: `process.exit.code` for an
/// exit, `warden.end` (exit, limit, trap, error) and the limit's name.
pub(crate) fn end_run(trace: &Trace, outcome: &Result<Outcome, HostError>) {
    match outcome {
        Ok(Outcome::Exited(code)) => {
            trace.set_all([
                KeyValue::new("warden.end", "exit"),
                KeyValue::new("process.exit.code", i64::from(*code)),
            ]);
            if *code != 0 {
                trace.set_status(Status::error(format!("exited with {code}")));
            }
        }
        Ok(Outcome::Limit(hit)) => {
            trace.set_all([
                KeyValue::new("warden.end", "limit"),
                KeyValue::new("warden.limit", hit.name()),
                KeyValue::new("error.type", "limit"),
            ]);
            trace.set_status(Status::error(hit.to_string()));
        }
        Ok(Outcome::Trapped { reason, .. }) => {
            trace.set_all([
                KeyValue::new("warden.end", "trap"),
                KeyValue::new("error.type", "trap"),
            ]);
            trace.set_status(Status::error(reason.clone()));
        }
        Err(e) => {
            trace.set_all([
                KeyValue::new("warden.end", "error"),
                KeyValue::new("error.type", "host"),
            ]);
            trace.set_status(Status::error(e.to_string()));
        }
    }
    trace.end();
}

/// End the run's span when a signal or the timeout's watchdog ends the
/// process (a span already ended is left as it is).
pub(crate) fn end_forced(trace: &Trace) {
    trace.set_all([
        KeyValue::new("warden.end", "stopped"),
        KeyValue::new("error.type", "stopped"),
    ]);
    trace.set_status(Status::error("stopped by a signal or the timeout"));
    trace.end();
}

/// An app's name and route prefix as its spans and metrics name them,
/// and its server spans' names (`GET /route`) for the methods HTTP
/// defines: made once per app and kept for the life of the process (apps
/// are never unloaded), so a request's span and measurements hold them
/// as static text. Copied, each request would allocate them; shared by
/// reference count, two threads serving the same app would contend for
/// the count on every request (measured: those counts and copies were
/// among the costs tracing added).
#[derive(Clone, Copy)]
pub(crate) struct AppLabels {
    pub(crate) app: &'static str,
    pub(crate) route: &'static str,
    /// `{method} {route}` for each of [`KNOWN_METHODS`], in its order.
    names: [&'static str; KNOWN_METHODS.len()],
}

impl AppLabels {
    pub(crate) fn new(app: &str, route: &str) -> AppLabels {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        AppLabels {
            app: leak(app.to_string()),
            route: leak(route.to_string()),
            names: KNOWN_METHODS.map(|m| leak(format!("{m} {route}"))),
        }
    }

    /// The name of this app's server span for a request of `method`.
    fn span_name(&self, method: &http::Method) -> Cow<'static, str> {
        match KNOWN_METHODS.iter().position(|k| *k == method.as_str()) {
            Some(i) => Cow::Borrowed(self.names[i]),
            None => Cow::Owned(format!("{method} {}", self.route)),
        }
    }
}

/// What a request's server span starts with.
pub(crate) struct RequestStart<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) path: &'a str,
    pub(crate) https: bool,
    /// The app that serves it (its name and route), if one does.
    pub(crate) app: Option<&'a AppLabels>,
    pub(crate) host: Option<&'a str>,
    pub(crate) local_port: u16,
    pub(crate) peer: std::net::SocketAddr,
    /// The peer's address as text, made once for its connection.
    pub(crate) peer_ip: StringValue,
    pub(crate) version: http::Version,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) request_id: &'a str,
    pub(crate) started: SystemTime,
}

/// The most attributes a server span has: the 13 it can start with and
/// the 3 [`RequestSpan::finish`] adds (room made once, not grown).
const REQUEST_ATTRIBUTES: usize = 16;

/// A request's server span.
pub(crate) struct RequestSpan {
    trace: Trace,
}

impl RequestSpan {
    /// Start it, a child of `parent` (what the request's `traceparent`
    /// names, or a new trace).
    ///
    /// Every request pays for this when telemetry is on, so it copies
    /// little: the span's name, the method, the fixed words and the app's
    /// name and route are static text, and the client's address is made
    /// once for its connection.
    pub(crate) fn start(tracer: &Tracer, parent: &Context, r: &RequestStart<'_>) -> RequestSpan {
        let name = match r.app {
            Some(app) => app.span_name(r.method),
            None => known_method(r.method.as_str())
                .map_or_else(|| Cow::Owned(r.method.to_string()), Cow::Borrowed),
        };
        let mut attrs = Vec::with_capacity(REQUEST_ATTRIBUTES);
        attrs.extend([
            KeyValue::new("http.request.method", method_value(r.method.as_str())),
            KeyValue::new("url.path", r.path.to_string()),
            KeyValue::new("url.scheme", if r.https { "https" } else { "http" }),
            KeyValue::new("client.address", r.peer_ip.clone()),
            KeyValue::new("client.port", i64::from(r.peer.port())),
            KeyValue::new("server.port", i64::from(r.local_port)),
            KeyValue::new("network.protocol.name", "http"),
            KeyValue::new("network.protocol.version", protocol_version(r.version)),
            KeyValue::new("warden.request_id", r.request_id.to_string()),
        ]);
        if let Some(app) = r.app {
            attrs.push(KeyValue::new("http.route", app.route));
            attrs.push(KeyValue::new("warden.app", app.app));
        }
        if let Some(host) = r.host {
            attrs.push(KeyValue::new("server.address", host.to_string()));
        }
        if let Some(ua) = r.user_agent {
            attrs.push(KeyValue::new(
                "user_agent.original",
                warden_net::shorten(ua).into_owned(),
            ));
        }
        RequestSpan {
            trace: tracer.start(name, SpanKind::Server, attrs, parent, Some(r.started)),
        }
    }

    /// The span as a trace, for its children.
    pub(crate) fn trace(&self) -> &Trace {
        &self.trace
    }

    /// A limit that fired for the request (`timeout`, `max_body`, ...).
    pub(crate) fn limit(&self, limit: &str, reason: &str) {
        self.trace.limit(limit, reason);
    }

    /// End it with the status sent, the body sizes, and how the body was
    /// cut (if it was). A server span is an error from 500 on.
    pub(crate) fn finish(&self, status: u16, bytes_in: u64, bytes_out: u64, cut: Option<&str>) {
        let t = &self.trace;
        t.set_all([
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("http.request.body.size", bytes_in as i64),
            KeyValue::new("http.response.body.size", bytes_out as i64),
        ]);
        if let Some(cut) = cut {
            t.set_all([
                KeyValue::new("warden.cut", cut.to_string()),
                KeyValue::new("error.type", cut.to_string()),
            ]);
            t.set_status(Status::error(format!("the response was cut: {cut}")));
        } else if status >= 500 {
            t.set(KeyValue::new("error.type", status.to_string()));
            t.set_status(Status::error(format!("answered {status}")));
        }
        t.end();
    }
}

/// The methods HTTP defines.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// A method's name as an attribute value: static for the methods HTTP
/// defines, a copy for anything else.
pub(crate) fn method_value(m: &str) -> Value {
    match known_method(m) {
        Some(k) => Value::from(k),
        None => Value::from(m.to_string()),
    }
}

/// `m` as static text, if HTTP defines it.
fn known_method(m: &str) -> Option<&'static str> {
    KNOWN_METHODS.iter().find(|k| **k == m).copied()
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_span_names_are_method_and_route_for_any_method() {
        let labels = AppLabels::new("api", "/api");
        assert_eq!(labels.span_name(&http::Method::GET), "GET /api");
        assert_eq!(labels.span_name(&http::Method::TRACE), "TRACE /api");
        // A method HTTP does not define is named as well, made for it.
        let purge = http::Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(labels.span_name(&purge), "PURGE /api");
        assert!(matches!(labels.span_name(&purge), Cow::Owned(_)));
        assert!(matches!(
            labels.span_name(&http::Method::POST),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn method_values_are_static_only_for_known_methods() {
        assert_eq!(method_value("GET"), Value::from("GET"));
        assert_eq!(method_value("PURGE"), Value::from("PURGE".to_string()));
        assert_eq!(known_method("PURGE"), None);
        assert_eq!(known_method("DELETE"), Some("DELETE"));
    }
}
