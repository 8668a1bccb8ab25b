//! Where an instance's network work shows on a trace: the span it belongs
//! to (a request's handler under `serve`, the run under `run`). The gate
//! puts an event on that span for every decision that denied and every
//! limit that fired; connects, TLS handshakes and outgoing HTTP requests
//! done for the guest are child spans.
//!
//! Spans are Warden's own, small, and speak OpenTelemetry's types (ids,
//! contexts, attributes, events, status): a span holds what it was
//! given, and when it ends it goes whole, as a [`FinishedSpan`], to its
//! tracer's [`SpanSink`] (warden-telemetry's queue, which encodes it as
//! OTLP). Why not the SDK's spans: a traced request makes three, and the
//! SDK's path (a boxed tracer and span, a sampler, a shared provider,
//! a context per span, and a 350-byte record moved through processors)
//! cost more than the rest of tracing together, on the threads that
//! serve requests. Sampling is OpenTelemetry's default: a span is
//! recorded unless its parent (an incoming `traceparent`) says its trace
//! is not sampled.
//!
//! Without telemetry a gate holds no `Trace`, and none of this runs.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{Context, KeyValue};

/// The most attributes a span keeps; more are counted as dropped
/// (OpenTelemetry's default span limit).
pub const MAX_ATTRIBUTES: usize = 128;

/// The most events a span keeps; more are counted as dropped.
pub const MAX_EVENTS: usize = 128;

/// The most attributes an event keeps; more are counted as dropped.
pub const MAX_EVENT_ATTRIBUTES: usize = 128;

/// A span that has ended: everything an exporter sends of it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    /// Its trace and span ids, flags and trace state.
    pub context: SpanContext,
    /// Its parent's span id ([`SpanId::INVALID`] for a root).
    pub parent: SpanId,
    /// Whether the parent came from another process (a `traceparent`).
    pub parent_remote: bool,
    /// Its name.
    pub name: Cow<'static, str>,
    /// Its kind.
    pub kind: SpanKind,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Its attributes, at most [`MAX_ATTRIBUTES`].
    pub attributes: Vec<KeyValue>,
    /// Attributes past the limit.
    pub dropped_attributes: u32,
    /// Its events, at most [`MAX_EVENTS`].
    pub events: Vec<Event>,
    /// Events past the limit.
    pub dropped_events: u32,
    /// Its status.
    pub status: Status,
}

/// Where finished spans go. It must not block: it is called on the
/// threads that serve requests and run guests.
pub trait SpanSink: Send + Sync {
    /// A span ended.
    fn finished(&self, span: FinishedSpan);
}

/// What spans start from: one per application, its spans going to one
/// sink.
///
/// A tracer, and its sink, live as long as the process: the sink is kept
/// (leaked) when the tracer is made, once per application, so that a
/// root span holds it without a reference count. Counted, every request
/// of an app added to and took from the one count its threads share, a
/// cache line they fought over on each request.
#[derive(Clone, Copy)]
pub struct Tracer {
    sink: &'static dyn SpanSink,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracer")
    }
}

impl Tracer {
    /// Spans that go to `sink` when they end. The sink is kept for the
    /// life of the process: make a tracer once (per application), not
    /// per request.
    pub fn new(sink: Arc<dyn SpanSink>) -> Tracer {
        let sink: &'static Arc<dyn SpanSink> = Box::leak(Box::new(sink));
        Tracer { sink: &**sink }
    }

    /// Start a span outside any [`Trace`] (the root of a request or a
    /// run): a child of the span `parent` names (an incoming
    /// `traceparent`, see [`extract`]), or the first span of a new trace.
    /// `start` is when it began (now, if `None`).
    pub fn start(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        parent: &Context,
        start: Option<SystemTime>,
    ) -> Trace {
        let span = parent.span();
        let parent = span.span_context();
        Trace::begin(
            Owner::Root(*self),
            parent.is_valid().then_some(parent),
            name.into(),
            kind,
            attributes,
            start,
        )
    }
}

/// A span an instance's work belongs to. Clones share the span; it ends
/// once: at [`Trace::end`], when its [`Child`] is dropped, or, if nobody
/// ended it, when its last clone and last child are gone.
#[derive(Clone)]
pub struct Trace {
    span: Arc<Span>,
}

struct Span {
    /// Whose sink it goes to: a root holds its tracer, a child its
    /// parent (a count on the request's own span, where a tracer's is
    /// shared by every request of the app and contended between threads).
    owner: Owner,
    context: SpanContext,
    /// What it records until it ends; `None` once ended, or from the
    /// start for a span its trace does not sample.
    open: Mutex<Option<Open>>,
}

enum Owner {
    Root(Tracer),
    Child(Arc<Span>),
}

impl Span {
    fn tracer(&self) -> &Tracer {
        let mut span = self;
        loop {
            match &span.owner {
                Owner::Root(t) => return t,
                Owner::Child(parent) => span = parent,
            }
        }
    }
}

struct Open {
    parent: SpanId,
    parent_remote: bool,
    name: Cow<'static, str>,
    kind: SpanKind,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    dropped_attributes: u32,
    events: Vec<Event>,
    dropped_events: u32,
    status: Status,
}

impl Open {
    /// As OpenTelemetry orders them, `Ok` wins over `Error`, and either
    /// over `Unset`.
    fn set_status(&mut self, status: Status) {
        if status > self.status {
            self.status = status;
        }
    }

    fn set(&mut self, kv: KeyValue) {
        if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push(kv);
        } else {
            self.dropped_attributes = self.dropped_attributes.saturating_add(1);
        }
    }
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (t, s) = self.ids();
        write!(f, "Trace({t}/{s})")
    }
}

impl Trace {
    fn begin(
        owner: Owner,
        parent: Option<&SpanContext>,
        name: Cow<'static, str>,
        kind: SpanKind,
        mut attributes: Vec<KeyValue>,
        start: Option<SystemTime>,
    ) -> Trace {
        let (trace_id, state, sampled, parent_id, parent_remote) = match parent {
            Some(p) => (
                p.trace_id(),
                p.trace_state().clone(),
                p.is_sampled(),
                p.span_id(),
                p.is_remote(),
            ),
            None => (
                new_trace_id(),
                TraceState::NONE,
                true,
                SpanId::INVALID,
                false,
            ),
        };
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::NOT_SAMPLED
        };
        let context = SpanContext::new(trace_id, new_span_id(), flags, false, state);
        let open = sampled.then(|| {
            let dropped = attributes.len().saturating_sub(MAX_ATTRIBUTES);
            attributes.truncate(MAX_ATTRIBUTES);
            Open {
                parent: parent_id,
                parent_remote,
                name,
                kind,
                start: start.unwrap_or_else(SystemTime::now),
                attributes,
                dropped_attributes: u32::try_from(dropped).unwrap_or(u32::MAX),
                events: Vec::new(),
                dropped_events: 0,
                status: Status::Unset,
            }
        });
        Trace {
            span: Arc::new(Span {
                owner,
                context,
                open: Mutex::new(open),
            }),
        }
    }

    /// Its ids, flags and trace state.
    pub fn span_context(&self) -> &SpanContext {
        &self.span.context
    }

    /// A context whose span is this one, for what takes OpenTelemetry
    /// contexts (the propagator, see [`inject`]).
    pub fn context(&self) -> Context {
        Context::new().with_remote_span_context(self.span.context.clone())
    }

    /// The trace and span ids, in hex (as the audit and access logs carry
    /// them).
    pub fn ids(&self) -> (String, String) {
        let sc = &self.span.context;
        (sc.trace_id().to_string(), sc.span_id().to_string())
    }

    /// Do `f` to what the span records, if it still records.
    fn with_open(&self, f: impl FnOnce(&mut Open)) {
        if let Some(open) = self
            .span
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            f(open);
        }
    }

    /// Start a child span `name` of `kind`: it ends when the returned
    /// [`Child`] is dropped (or [`Child::end`]).
    pub fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Child {
        Child {
            trace: Trace::begin(
                Owner::Child(self.span.clone()),
                Some(&self.span.context),
                name.into(),
                kind,
                attributes,
                None,
            ),
        }
    }

    /// An event on this span.
    pub fn event(&self, name: &'static str, mut attributes: Vec<KeyValue>) {
        self.with_open(|open| {
            if open.events.len() >= MAX_EVENTS {
                open.dropped_events = open.dropped_events.saturating_add(1);
                return;
            }
            let dropped = attributes.len().saturating_sub(MAX_EVENT_ATTRIBUTES);
            attributes.truncate(MAX_EVENT_ATTRIBUTES);
            open.events.push(Event::new(
                name,
                SystemTime::now(),
                attributes,
                u32::try_from(dropped).unwrap_or(u32::MAX),
            ));
        });
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

    /// Add an attribute.
    pub fn set(&self, kv: KeyValue) {
        self.with_open(|open| open.set(kv));
    }

    /// Add attributes.
    pub fn set_all(&self, kvs: impl IntoIterator<Item = KeyValue>) {
        self.with_open(|open| kvs.into_iter().for_each(|kv| open.set(kv)));
    }

    /// Set its status. As OpenTelemetry orders them, `Ok` wins over
    /// `Error`, and either over `Unset`.
    pub fn set_status(&self, status: Status) {
        self.with_open(|open| open.set_status(status));
    }

    /// Mark it failed, with why (`error.type`, and the status).
    pub fn fail(&self, error_type: &str, why: impl Into<String>) {
        let why = why.into();
        self.with_open(|open| {
            open.set(KeyValue::new("error.type", error_type.to_string()));
            open.set_status(Status::error(why));
        });
    }

    /// End it now, and send it to its tracer's sink. Ending again does
    /// nothing. A span nobody ended ends when its last clone (and its
    /// last child) is dropped, as a request whose client went away.
    pub fn end(&self) {
        let open = self
            .span
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(o) = open {
            self.span.send(o);
        }
    }
}

impl Span {
    fn send(&self, o: Open) {
        self.tracer().sink.finished(FinishedSpan {
            context: self.context.clone(),
            parent: o.parent,
            parent_remote: o.parent_remote,
            name: o.name,
            kind: o.kind,
            start: o.start,
            end: SystemTime::now(),
            attributes: o.attributes,
            dropped_attributes: o.dropped_attributes,
            events: o.events,
            dropped_events: o.dropped_events,
            status: o.status,
        });
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let open = self
            .open
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(o) = open {
            self.send(o);
        }
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
        self.trace.set(kv);
    }

    /// Mark it failed, with why (`error.type`, and the status).
    pub fn fail(&self, error_type: &str, why: impl Into<String>) {
        self.trace.fail(error_type, why);
    }

    /// End it now.
    pub fn end(self) {}
}

impl Drop for Child {
    fn drop(&mut self) {
        self.trace.end();
    }
}

/// A new trace id: random, never the invalid (zero) one.
fn new_trace_id() -> TraceId {
    loop {
        let id = (u128::from(random()) << 64) | u128::from(random());
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

/// A new span id: random, never the invalid (zero) one.
fn new_span_id() -> SpanId {
    loop {
        let id = random();
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

/// 64 random bits from a generator per thread (wyrand), seeded from the
/// process's hash keys (which come from the operating system) and the
/// time. Ids must be unique, not secret: this costs a few nanoseconds
/// where a system call per id would cost a microsecond.
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<FinishedSpan>>);

    impl SpanSink for Collect {
        fn finished(&self, span: FinishedSpan) {
            self.0.lock().unwrap().push(span);
        }
    }

    fn tracer() -> (Tracer, Arc<Collect>) {
        let sink = Arc::new(Collect::default());
        (Tracer::new(sink.clone()), sink)
    }

    fn remote(flags: TraceFlags) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags,
            true,
            "k=v".parse().unwrap(),
        ))
    }

    #[test]
    fn a_root_starts_a_trace_and_its_children_join_it() {
        let (tracer, sink) = tracer();
        let root = tracer.start(
            "GET /",
            SpanKind::Server,
            vec![KeyValue::new("a", 1)],
            &Context::new(),
            None,
        );
        let child = root.child("handler", SpanKind::Internal, vec![]);
        child
            .trace()
            .event("warden.limit", vec![KeyValue::new("x", "y")]);
        drop(child);
        root.set(KeyValue::new("b", 2));
        root.end();
        let spans = sink.0.lock().unwrap();
        let [handler, server] = spans.as_slice() else {
            panic!("two spans, got {spans:?}");
        };
        assert!(server.context.is_valid() && server.context.is_sampled());
        assert_eq!(server.parent, SpanId::INVALID);
        assert!(!server.parent_remote);
        assert_eq!(server.kind, SpanKind::Server);
        assert_eq!(
            server.attributes,
            [KeyValue::new("a", 1), KeyValue::new("b", 2)]
        );
        assert!(server.start <= server.end);
        assert_eq!(handler.context.trace_id(), server.context.trace_id());
        assert_eq!(handler.parent, server.context.span_id());
        assert_ne!(handler.context.span_id(), server.context.span_id());
        assert_eq!(handler.events.len(), 1);
        assert_eq!(handler.events[0].name, "warden.limit");
    }

    #[test]
    fn a_remote_parent_is_continued_with_its_state() {
        let (tracer, sink) = tracer();
        let parent = remote(TraceFlags::SAMPLED);
        let t = tracer.start("GET /", SpanKind::Server, vec![], &parent, None);
        // What goes out on an outgoing request names this span.
        let out = t.context();
        let sc = out.span().span_context().clone();
        assert_eq!(sc.span_id(), t.span_context().span_id());
        t.end();
        let s = &sink.0.lock().unwrap()[0];
        assert_eq!(
            s.context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(s.parent.to_string(), "00f067aa0ba902b7");
        assert!(s.parent_remote);
        assert!(!s.context.is_remote());
        assert_eq!(s.context.trace_state().header(), "k=v");
    }

    #[test]
    fn a_trace_its_parent_does_not_sample_records_nothing_but_keeps_its_ids() {
        let (tracer, sink) = tracer();
        let t = tracer.start(
            "GET /",
            SpanKind::Server,
            vec![],
            &remote(TraceFlags::NOT_SAMPLED),
            None,
        );
        let child = t.child("connect", SpanKind::Internal, vec![]);
        assert!(!child.trace().span_context().is_sampled());
        assert_eq!(
            child.trace().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        child.trace().event("warden.denied", vec![]);
        drop(child);
        t.end();
        assert!(sink.0.lock().unwrap().is_empty());
        // Its twin, sampled, records both.
        let t = tracer.start(
            "GET /",
            SpanKind::Server,
            vec![],
            &remote(TraceFlags::SAMPLED),
            None,
        );
        drop(t.child("connect", SpanKind::Internal, vec![]));
        t.end();
        assert_eq!(sink.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_span_ends_once_and_keeps_its_limits() {
        let (tracer, sink) = tracer();
        let many = (0..MAX_ATTRIBUTES as i64 + 2)
            .map(|i| KeyValue::new("n", i))
            .collect();
        let t = tracer.start("x", SpanKind::Internal, many, &Context::new(), None);
        t.set(KeyValue::new("late", true));
        for _ in 0..MAX_EVENTS + 3 {
            t.event(
                "e",
                (0..MAX_EVENT_ATTRIBUTES as i64 + 1)
                    .map(|i| KeyValue::new("a", i))
                    .collect(),
            );
        }
        t.fail("trap", "it trapped");
        // Ok wins over an error, as OpenTelemetry orders them.
        t.set_status(Status::Ok);
        t.fail("again", "no effect on the status");
        t.end();
        t.end();
        t.set(KeyValue::new("after", true));
        let spans = sink.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.attributes.len(), MAX_ATTRIBUTES);
        // Two past the limit at the start, `late` and both `error.type`s.
        assert_eq!(s.dropped_attributes, 5);
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.dropped_events, 3);
        assert_eq!(s.events[0].attributes.len(), MAX_EVENT_ATTRIBUTES);
        assert_eq!(s.events[0].dropped_attributes_count, 1);
        assert_eq!(s.status, Status::Ok);
    }

    #[test]
    fn a_span_nobody_ended_ends_when_dropped_after_its_children() {
        let (tracer, sink) = tracer();
        let root = tracer.start("GET /", SpanKind::Server, vec![], &Context::new(), None);
        let child = root.child("handler", SpanKind::Internal, vec![]);
        let grandchild = child.trace().child("connect", SpanKind::Internal, vec![]);
        // The request goes away: its server span is dropped unended while
        // its children still run.
        drop(root);
        assert!(sink.0.lock().unwrap().is_empty());
        drop(child);
        drop(grandchild);
        let names: Vec<_> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        // The children end when their handles go; the server span when the
        // last of them has.
        assert_eq!(names, ["handler", "connect", "GET /"]);
        // Its twin, ended, is sent once.
        let root = tracer.start("GET /", SpanKind::Server, vec![], &Context::new(), None);
        root.end();
        drop(root);
        assert_eq!(sink.0.lock().unwrap().len(), 4);
    }

    #[test]
    fn ids_are_valid_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5_000).map(|_| new_span_id()).collect::<Vec<_>>()))
            .collect();
        for t in threads {
            for id in t.join().unwrap() {
                assert_ne!(id, SpanId::INVALID);
                assert!(seen.insert(id), "{id} twice");
            }
        }
        let a = new_trace_id();
        assert_ne!(a, TraceId::INVALID);
        assert_ne!(a, new_trace_id());
    }
}
