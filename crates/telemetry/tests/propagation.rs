//! W3C trace context in and out of HTTP headers, as serve and the
//! wasi:http egress use it (warden_net::trace), with the propagator
//! warden-telemetry installs.

use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};

fn install() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
}

fn context(trace: &str, span: &str) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex(trace).unwrap(),
        SpanId::from_hex(span).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

#[test]
fn an_incoming_traceparent_is_continued_and_an_outgoing_one_added() {
    install();
    let mut incoming = http::HeaderMap::new();
    incoming.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let cx = warden_net::trace::extract(&incoming);
    let sc = cx.span().span_context().clone();
    assert_eq!(
        sc.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
    let mut out = http::HeaderMap::new();
    warden_net::trace::inject(
        &context("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
        &mut out,
    );
    assert_eq!(
        out["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    // Garbage is a new trace, not an error.
    let mut bad = http::HeaderMap::new();
    bad.insert("traceparent", "00-zz-yy-01".parse().unwrap());
    assert!(
        !warden_net::trace::extract(&bad)
            .span()
            .span_context()
            .is_valid()
    );
}

#[test]
fn a_guests_own_traceparent_is_left_alone() {
    install();
    let mut out = http::HeaderMap::new();
    let guests = "00-11111111111111111111111111111111-2222222222222222-01";
    out.insert("traceparent", guests.parse().unwrap());
    warden_net::trace::inject(
        &context("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
        &mut out,
    );
    assert_eq!(out["traceparent"], guests);
    assert_eq!(out.get_all("traceparent").iter().count(), 1);
}
