//! Where an instance's network work shows on a trace: the span it belongs
//! to (a request's handler under `serve`, the run under `run`) and the
//! tracer of its app. The gate puts an event on that span for every
//! decision that denied and every limit that fired; connects, TLS
//! handshakes and outgoing HTTP requests done for the guest are child
//! spans.
//!
//! Only the OpenTelemetry API is used here; the SDK and the exporters
//! live in warden-telemetry. Without telemetry a gate holds no `Trace`,
//! and none of this runs.

use std::sync::Arc;

use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};

/// A span an instance's work belongs to, and the tracer its children
/// start from.
#[derive(Clone)]
pub struct Trace {
    tracer: Arc<BoxedTracer>,
    cx: Context,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (t, s) = self.ids();
        write!(f, "Trace({t}/{s})")
    }
}

impl Trace {
    /// Work in `cx` (whose span is the parent), traced by `tracer`.
    pub fn new(tracer: Arc<BoxedTracer>, cx: Context) -> Trace {
        Trace { tracer, cx }
    }

    /// The context: its span is the one this work belongs to.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// The tracer.
    pub fn tracer(&self) -> &Arc<BoxedTracer> {
        &self.tracer
    }

    /// The trace and span ids, in hex (as the audit and access logs carry
    /// them).
    pub fn ids(&self) -> (String, String) {
        let span = self.cx.span();
        let sc = span.span_context();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    }

    /// Start a child span `name` of `kind`: it ends when the returned
    /// [`Child`] is dropped (or [`Child::end`]).
    pub fn child(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Child {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&*self.tracer, &self.cx);
        let cx = self.cx.with_span(span);
        Child {
            trace: Trace {
                tracer: self.tracer.clone(),
                cx,
            },
        }
    }

    /// An event on this span.
    pub fn event(&self, name: &'static str, attributes: Vec<KeyValue>) {
        self.cx.span().add_event(name, attributes);
    }

    /// A limit that fired (`timeout`, `max_body`, `memory`, `fuel`, ...),
    /// with what happened: a `warden.limit` event on this span.
    pub fn limit(&self, limit: &str, reason: &str) {
        self.event(
            "warden.limit",
            vec![
                KeyValue::new("warden.limit", limit.to_string()),
                KeyValue::new("warden.reason", reason.to_string()),
            ],
        );
    }
}

/// A child span, ended when dropped.
pub struct Child {
    trace: Trace,
}

impl Child {
    /// The child as a trace (for its own children and events).
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Add an attribute.
    pub fn set(&self, kv: KeyValue) {
        self.trace.cx.span().set_attribute(kv);
    }

    /// Mark it failed, with why (`error.type`, and the status).
    pub fn fail(&self, error_type: &str, why: impl Into<String>) {
        let span = self.trace.cx.span();
        span.set_attribute(KeyValue::new("error.type", error_type.to_string()));
        span.set_status(Status::error(why.into()));
    }

    /// End it now.
    pub fn end(self) {}
}

impl Drop for Child {
    fn drop(&mut self) {
        self.trace.cx.span().end();
    }
}

/// A span started outside a [`Trace`] (the root of a request or run).
pub fn root(
    tracer: &Arc<BoxedTracer>,
    name: String,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    parent: &Context,
) -> BoxedSpan {
    tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(&**tracer, parent)
}

/// The context an incoming request's `traceparent` (and `tracestate`)
/// names, by the W3C Trace Context propagator installed with telemetry;
/// the empty context (a new trace) without one.
pub fn extract(headers: &http::HeaderMap) -> Context {
    // Most requests carry none: they skip the global propagator's lock.
    if !headers.contains_key("traceparent") {
        return Context::new();
    }
    struct Headers<'a>(&'a http::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)))
}

/// Put `cx` on an outgoing request as `traceparent` (and `tracestate`),
/// unless the request carries a `traceparent` of its own (the guest
/// propagates its own trace then, and it is left alone).
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    if headers.contains_key("traceparent") {
        return;
    }
    struct Headers<'a>(&'a mut http::HeaderMap);
    impl opentelemetry::propagation::Injector for Headers<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(key.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                self.0.insert(k, v);
            }
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut Headers(headers)));
}

/// A decision that denied (or, in audit mode, would have) as an event on
/// the span the work belongs to: the action, the target, the rule and the
/// reason, as the audit record has them.
pub(crate) fn denial(
    trace: &Trace,
    action: crate::Action,
    target: &crate::Target,
    decision: &crate::Decision,
) {
    trace.event(
        "warden.denied",
        vec![
            KeyValue::new("warden.action", action.as_str()),
            KeyValue::new(
                "warden.target",
                warden_policy::shorten(&target.to_string()).into_owned(),
            ),
            KeyValue::new("warden.decision", decision.verdict().as_str()),
            KeyValue::new("warden.rule", decision.rule().to_string()),
            KeyValue::new("warden.reason", decision.reason().to_string()),
        ],
    );
}

/// A TLS handshake Warden did with a peer connecting to the guest, as an
/// event: the peer, the kind, the version agreed or why it failed, and
/// the peer's SPIFFE ID if it presented one.
pub(crate) fn tls_accept(trace: &Trace, peer: std::net::SocketAddr, o: &crate::tls::Handshake) {
    let mut attrs = vec![
        KeyValue::new("network.peer.address", peer.ip().to_string()),
        KeyValue::new("network.peer.port", i64::from(peer.port())),
        KeyValue::new(
            "warden.result",
            if o.failure.is_none() { "ok" } else { "failed" },
        ),
    ];
    if let Some(k) = &o.kind {
        attrs.push(KeyValue::new("warden.tls.kind", k.clone()));
    }
    if let Some(v) = &o.version {
        attrs.push(KeyValue::new("tls.protocol.version", v.clone()));
    }
    if let Some(f) = &o.failure {
        attrs.push(KeyValue::new("warden.reason", f.clone()));
    }
    if let Some(id) = &o.peer_id {
        attrs.push(KeyValue::new("warden.peer_id", id.clone()));
    }
    trace.event("warden.tls_accept", attrs);
}
