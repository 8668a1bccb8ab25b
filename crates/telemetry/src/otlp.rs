//! Finished spans as an OTLP `ExportTraceServiceRequest` in protobuf,
//! written straight from Warden's spans (`warden_net::trace`) into one
//! reused buffer, all in the instrumentation scope [`crate::SCOPE`].
//!
//! Why not the OTLP crate's encoder: it takes the SDK's spans and first
//! copies every one into the generated message types (a `String` for
//! every attribute key and value, a `Vec` for every id), then encodes
//! those: about 27 allocations per span, on a thread that shares the
//! cores with the guests. Here a span costs none, and what it writes
//! decodes to the same message (the tests decode both with the official
//! `opentelemetry-proto` types and compare, the same spans given to the
//! OTLP crate as the SDK's).
//!
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`
//! and `common/v1/common.proto`. A nested message is written in place and
//! its length put in front once it is known.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::Resource;
use warden_net::trace::FinishedSpan;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// `SpanFlags`: the span says whether its parent is remote.
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags`: its parent is remote.
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// The encoder of one provider's spans: its resource, encoded once.
#[derive(Debug, Default)]
pub(crate) struct SpanEncoder {
    /// The `Resource` message's fields.
    resource: Vec<u8>,
    schema_url: String,
}

impl SpanEncoder {
    /// The resource every request names.
    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        self.resource.clear();
        for (k, v) in resource.iter() {
            message(&mut self.resource, 1, |b| key_value(b, k.as_str(), v));
        }
        self.schema_url = resource.schema_url().unwrap_or_default().to_string();
    }

    /// `spans` as one request, into `out` (cleared first); the request
    /// is `out[start..]`, `start` returned.
    ///
    /// The spans, encoded already, are copied in after room for what goes
    /// before them, and the three messages around them (the request, the
    /// resource's, the scope's) put in that room once their lengths are
    /// known: a batch is not moved to make room for a length.
    pub(crate) fn encode(&self, spans: &EncodedSpans, out: &mut Vec<u8>) -> usize {
        out.clear();
        // What precedes the spans: at most the resource, the scope's
        // name, and five tags and lengths of at most ten bytes each.
        let room = self.resource.len() + crate::SCOPE.len() + 64;
        out.resize(room, 0);
        out.extend_from_slice(&spans.bytes);
        let spans_len = spans.bytes.len();
        let mut scope = Vec::new();
        if !spans.ends.is_empty() {
            message(&mut scope, 1, |b| string(b, 1, crate::SCOPE));
        }
        let mut tail = Vec::new();
        string(&mut tail, 3, &self.schema_url);
        out.extend_from_slice(&tail);
        // Resource spans: the resource, the scope's message (its head,
        // then the spans already in place), the schema URL.
        let mut head = Vec::new();
        message(&mut head, 1, |b| b.extend_from_slice(&self.resource));
        if !spans.ends.is_empty() {
            tag(&mut head, 2, LEN);
            varint(&mut head, (scope.len() + spans_len) as u64);
            head.extend_from_slice(&scope);
        }
        let resource_spans = head.len() + spans_len + tail.len();
        let mut outer = Vec::with_capacity(head.len() + 12);
        tag(&mut outer, 1, LEN);
        varint(&mut outer, resource_spans as u64);
        outer.extend_from_slice(&head);
        let start = room - outer.len();
        out[start..room].copy_from_slice(&outer);
        start
    }
}

/// Spans encoded as they end, each a `ScopeSpans.spans` field, one after
/// the other: what a span queue holds.
///
/// Why encode on the thread that ends the span: the span's strings and
/// vectors are then freed by the thread that made them. Freed on the
/// export thread, every one went back to another thread's arena under
/// its lock, and left that arena's bins to be consolidated on the
/// request threads (`malloc_consolidate`, `unlink_chunk` in the profile).
#[derive(Debug, Default)]
pub(crate) struct EncodedSpans {
    bytes: Vec<u8>,
    /// Where each span ends in `bytes`.
    ends: Vec<usize>,
}

impl crate::worker::Batch for EncodedSpans {
    type Item<'a> = &'a [u8];

    fn push(&mut self, span: &[u8]) {
        self.bytes.extend_from_slice(span);
        self.ends.push(self.bytes.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn move_front(&mut self, n: usize, into: &mut Self) {
        let n = n.min(self.ends.len());
        if n == 0 {
            return;
        }
        let cut = self.ends[n - 1];
        let base = into.bytes.len();
        into.bytes.extend_from_slice(&self.bytes[..cut]);
        into.ends.extend(self.ends[..n].iter().map(|e| base + e));
        self.bytes.drain(..cut);
        self.ends.drain(..n);
        for e in &mut self.ends {
            *e -= cut;
        }
    }
}

/// `s` as a `ScopeSpans.spans` field, at the end of `out`.
pub(crate) fn span_field(out: &mut Vec<u8>, s: &FinishedSpan) {
    message(out, 2, |b| span(b, s));
}

fn span(b: &mut Vec<u8>, s: &FinishedSpan) {
    ids(b, &s.context);
    if s.parent != SpanId::INVALID {
        bytes(b, 4, &s.parent.to_bytes());
    }
    string(b, 5, &s.name);
    uint(b, 6, kind(&s.kind));
    fixed64(b, 7, nanos(s.start));
    fixed64(b, 8, nanos(s.end));
    for kv in &s.attributes {
        message(b, 9, |b| key_value(b, kv.key.as_str(), &kv.value));
    }
    uint(b, 10, u64::from(s.dropped_attributes));
    for e in &s.events {
        message(b, 11, |b| {
            fixed64(b, 1, nanos(e.timestamp));
            string(b, 2, &e.name);
            for kv in &e.attributes {
                message(b, 3, |b| key_value(b, kv.key.as_str(), &kv.value));
            }
            uint(b, 4, u64::from(e.dropped_attributes_count));
        });
    }
    uint(b, 12, u64::from(s.dropped_events));
    // Always there, as the OTLP crate writes it (empty when unset).
    message(b, 15, |b| match &s.status {
        Status::Unset => {}
        Status::Ok => uint(b, 3, 1),
        Status::Error { description } => {
            string(b, 2, description);
            uint(b, 3, 2);
        }
    });
    fixed32(b, 16, flags(&s.context, s.parent_remote));
}

/// A span's trace and span ids and trace state (fields 1-3).
fn ids(b: &mut Vec<u8>, cx: &SpanContext) {
    bytes(b, 1, &cx.trace_id().to_bytes());
    bytes(b, 2, &cx.span_id().to_bytes());
    // Most spans carry no trace state: nothing to write out.
    if *cx.trace_state() != TraceState::NONE {
        string(b, 3, &cx.trace_state().header());
    }
}

fn flags(cx: &SpanContext, remote: bool) -> u32 {
    let mut f = u32::from(cx.trace_flags().to_u8()) | CONTEXT_HAS_IS_REMOTE;
    if remote {
        f |= CONTEXT_IS_REMOTE;
    }
    f
}

fn kind(k: &SpanKind) -> u64 {
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A `KeyValue` message's fields.
fn key_value(b: &mut Vec<u8>, key: &str, value: &Value) {
    string(b, 1, key);
    message(b, 2, |b| any_value(b, value));
}

/// An `AnyValue` message's fields: its one value is written even when it
/// is the default (a `false` or a `0` is still a value).
fn any_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => {
            tag(b, 1, LEN);
            len_bytes(b, s.as_str().as_bytes());
        }
        Value::Bool(x) => {
            tag(b, 2, VARINT);
            varint(b, u64::from(*x));
        }
        Value::I64(x) => {
            tag(b, 3, VARINT);
            varint(b, *x as u64);
        }
        Value::F64(x) => {
            tag(b, 4, FIXED64);
            b.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Value::Array(a) => message(b, 5, |b| match a {
            Array::Bool(xs) => each(b, xs, |x| Value::Bool(*x)),
            Array::I64(xs) => each(b, xs, |x| Value::I64(*x)),
            Array::F64(xs) => each(b, xs, |x| Value::F64(*x)),
            Array::String(xs) => each(b, xs, |x| Value::String(x.clone())),
            // A kind of array this version does not know: its text.
            other => each(b, &[other.to_string()], |x| Value::from(x.clone())),
        }),
        // A kind of value this version does not know: its text.
        other => {
            tag(b, 1, LEN);
            len_bytes(b, other.to_string().as_bytes());
        }
    }
}

/// An `ArrayValue`'s values.
fn each<T>(b: &mut Vec<u8>, xs: &[T], v: impl Fn(&T) -> Value) {
    for x in xs {
        message(b, 1, |b| any_value(b, &v(x)));
    }
}

fn tag(b: &mut Vec<u8>, field: u32, wire: u8) {
    varint(b, (u64::from(field) << 3) | u64::from(wire));
}

fn varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn len_bytes(b: &mut Vec<u8>, x: &[u8]) {
    varint(b, x.len() as u64);
    b.extend_from_slice(x);
}

/// A string field, left out when empty (proto3's default).
fn string(b: &mut Vec<u8>, field: u32, s: &str) {
    bytes(b, field, s.as_bytes());
}

/// A bytes field, left out when empty.
fn bytes(b: &mut Vec<u8>, field: u32, x: &[u8]) {
    if !x.is_empty() {
        tag(b, field, LEN);
        len_bytes(b, x);
    }
}

/// An integer field, left out when zero.
fn uint(b: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(b, field, VARINT);
        varint(b, v);
    }
}

fn fixed64(b: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(b, field, FIXED64);
        b.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32(b: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        tag(b, field, FIXED32);
        b.extend_from_slice(&v.to_le_bytes());
    }
}

/// A message field: `fields` writes its fields after the tag and one
/// byte kept for the length, which goes there once known. Most of a
/// span's messages (an attribute, its value) are under 128 bytes and
/// need no more; a longer one moves its fields up by the length's other
/// bytes.
fn message(b: &mut Vec<u8>, field: u32, fields: impl FnOnce(&mut Vec<u8>)) {
    tag(b, field, LEN);
    let at = b.len();
    b.push(0);
    fields(b);
    let end = b.len();
    let n = end - at - 1;
    if n < 0x80 {
        b[at] = n as u8;
        return;
    }
    let mut head = [0u8; 10];
    let mut used = 0;
    let mut v = n as u64;
    while v >= 0x80 {
        head[used] = (v as u8) | 0x80;
        v >>= 7;
        used += 1;
    }
    head[used] = v as u8;
    used += 1;
    b.resize(end + used - 1, 0);
    b.copy_within(at + 1..end, at + used);
    b[at..at + used].copy_from_slice(&head[..used]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Batch as _;
    use opentelemetry::trace::{Event, SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use prost::Message as _;
    use std::borrow::Cow;
    use std::time::Duration;

    fn cx(t: u128, s: u64, flags: TraceFlags, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(t),
            SpanId::from(s),
            flags,
            false,
            TraceState::from_key_value(
                state
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .filter_map(|e| e.split_once('=')),
            )
            .unwrap(),
        )
    }

    fn attrs(n: u64) -> Vec<KeyValue> {
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", format!("/p/{n}")),
            KeyValue::new("client.port", 40_000 + n as i64),
            KeyValue::new("negative", -1 - n as i64),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("off", false),
            KeyValue::new("on", true),
            KeyValue::new("ratio", 0.25 * n as f64),
            KeyValue::new("nothing", ""),
            KeyValue::new("long", "x".repeat(300)),
            KeyValue::new(
                "list",
                Value::Array(Array::String(vec!["a".into(), "".into()])),
            ),
            KeyValue::new("ints", Value::Array(Array::I64(vec![0, 1, -2]))),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![false]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![1.5]))),
        ]
    }

    fn span(n: u64) -> FinishedSpan {
        let t0 = UNIX_EPOCH + Duration::from_nanos(1_765_000_000_123_456_789 + n);
        let mut events = Vec::new();
        if n.is_multiple_of(2) {
            events.push(Event::new(
                "warden.denied",
                t0 + Duration::from_micros(5),
                vec![KeyValue::new("warden.rule", "r1")],
                1,
            ));
        }
        FinishedSpan {
            context: cx(
                0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c + u128::from(n),
                0xb7ad_6b71_6920_3331 + n,
                if n % 7 == 6 {
                    TraceFlags::NOT_SAMPLED
                } else {
                    TraceFlags::SAMPLED
                },
                if n.is_multiple_of(3) { "a=1,b=2" } else { "" },
            ),
            parent: if n % 4 == 1 {
                SpanId::INVALID
            } else {
                SpanId::from(n + 1)
            },
            parent_remote: n.is_multiple_of(5),
            kind: [
                SpanKind::Server,
                SpanKind::Client,
                SpanKind::Internal,
                SpanKind::Producer,
                SpanKind::Consumer,
            ][(n % 5) as usize]
                .clone(),
            name: Cow::Owned(format!("GET /route/{n}")),
            start: t0,
            end: t0 + Duration::from_micros(40 + n),
            attributes: attrs(n),
            dropped_attributes: (n % 3) as u32,
            events,
            dropped_events: if n.is_multiple_of(2) { 3 } else { 0 },
            status: match n % 3 {
                0 => Status::Unset,
                1 => Status::Ok,
                _ => Status::error(format!("answered 50{n}")),
            },
        }
    }

    /// The same span as the SDK's, for the OTLP crate's encoder.
    fn sdk(s: &FinishedSpan) -> SpanData {
        let mut events = SpanEvents::default();
        events.events = s.events.clone();
        events.dropped_count = s.dropped_events;
        SpanData {
            span_context: s.context.clone(),
            parent_span_id: s.parent,
            parent_span_is_remote: s.parent_remote,
            span_kind: s.kind.clone(),
            name: s.name.clone(),
            start_time: s.start,
            end_time: s.end,
            attributes: s.attributes.clone(),
            dropped_attributes_count: s.dropped_attributes,
            events,
            links: SpanLinks::default(),
            status: s.status.clone(),
            instrumentation_scope: InstrumentationScope::builder(crate::SCOPE).build(),
        }
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "warden"),
                KeyValue::new("warden.app", "hello"),
                KeyValue::new("pid", 42_i64),
            ])
            .with_schema_url([], "https://opentelemetry.io/schemas/1.0")
            .build()
    }

    /// What the OTLP crate's own encoder makes of the same spans.
    fn theirs(spans: &[FinishedSpan], resource: &Resource) -> Vec<ResourceSpans> {
        let r = ResourceAttributesWithSchema::from(resource);
        group_spans_by_resource_and_scope(spans.iter().map(sdk).collect(), &r)
    }

    fn encoded(spans: &[FinishedSpan]) -> EncodedSpans {
        let mut batch = EncodedSpans::default();
        let mut one = Vec::new();
        for s in spans {
            one.clear();
            span_field(&mut one, s);
            batch.push(&one);
        }
        batch
    }

    fn ours(spans: &[FinishedSpan], resource: &Resource) -> Vec<ResourceSpans> {
        let mut e = SpanEncoder::default();
        e.set_resource(resource);
        let mut out = Vec::new();
        let start = e.encode(&encoded(spans), &mut out);
        ExportTraceServiceRequest::decode(&out[start..])
            .expect("our bytes decode")
            .resource_spans
    }

    /// Resource attributes come out of a map: compare them as a set.
    fn sorted(mut r: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
        for rs in &mut r {
            if let Some(res) = &mut rs.resource {
                res.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        r
    }

    #[test]
    fn decodes_to_what_the_otlp_crate_encodes() {
        let resource = resource();
        for n in [0_u64, 1, 2, 7, 40] {
            let spans: Vec<FinishedSpan> = (0..n).map(span).collect();
            let want = sorted(theirs(&spans, &resource));
            let got = sorted(ours(&spans, &resource));
            // The crate sends no resource group at all for no spans.
            if n == 0 {
                assert_eq!(got.len(), 1);
                assert!(got[0].scope_spans.is_empty());
                continue;
            }
            assert_eq!(got, want, "{n} spans");
        }
    }

    #[test]
    fn a_backlog_moves_whole_spans_in_order() {
        let resource = resource();
        let spans: Vec<FinishedSpan> = (0..9).map(span).collect();
        let mut all = encoded(&spans);
        let mut first = EncodedSpans::default();
        all.move_front(4, &mut first);
        assert_eq!((first.len(), all.len()), (4, 5));
        let decode = |b: &EncodedSpans| {
            let mut e = SpanEncoder::default();
            e.set_resource(&resource);
            let mut out = Vec::new();
            let start = e.encode(b, &mut out);
            sorted(
                ExportTraceServiceRequest::decode(&out[start..])
                    .unwrap()
                    .resource_spans,
            )
        };
        assert_eq!(decode(&first), sorted(theirs(&spans[..4], &resource)));
        assert_eq!(decode(&all), sorted(theirs(&spans[4..], &resource)));
        // Moved onto a batch that holds some already: after them.
        all.move_front(2, &mut first);
        assert_eq!(first.len(), 6);
        assert_eq!(decode(&first), sorted(theirs(&spans[..6], &resource)));
        assert_eq!(decode(&all), sorted(theirs(&spans[6..], &resource)));
    }

    #[test]
    fn a_false_and_a_zero_are_still_values() {
        let mut s = span(1);
        s.attributes = vec![KeyValue::new("off", false), KeyValue::new("zero", 0_i64)];
        let got = ours(&[s], &Resource::builder_empty().build());
        let a = &got[0].scope_spans[0].spans[0].attributes;
        assert_eq!(
            a[0].value.as_ref().unwrap().value,
            Some(any_value::Value::BoolValue(false))
        );
        assert_eq!(
            a[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(0))
        );
    }

    #[test]
    fn lengths_past_one_byte_are_prefixed_right() {
        // Messages of 127, 128 and 16 KiB bytes: a length of one, two and
        // three varint bytes.
        for n in [127_usize, 128, 16_384] {
            let mut b = Vec::new();
            message(&mut b, 1, |b| b.extend(std::iter::repeat_n(7u8, n)));
            let mut want = Vec::new();
            tag(&mut want, 1, LEN);
            varint(&mut want, n as u64);
            want.extend(std::iter::repeat_n(7u8, n));
            assert_eq!(b, want);
        }
    }
}
