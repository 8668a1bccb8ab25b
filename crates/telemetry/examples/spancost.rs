//! What a traced request's spans cost on the thread that makes them:
//! `serve`'s three (server, instance, handler), with their attributes,
//! made and ended N times, to the collector at `$SINK` (by default one
//! that is not there: the queue drops and counts). Only the thread that
//! makes the spans is timed; the export runs on its own thread.
//!
//! Usage: [SINK=http://127.0.0.1:4318] cargo run --release -p warden-telemetry --example spancost [N]

use std::time::Instant;

use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let endpoints = warden_telemetry::TelemetryConfig {
        endpoint: Some(std::env::var("SINK").unwrap_or_else(|_| "http://127.0.0.1:9".into())),
    }
    .resolve(|_| None)
    .unwrap()
    .unwrap();
    let t = warden_telemetry::Telemetry::start(
        endpoints,
        "0",
        false,
        warden_telemetry::Notices::new(|_| {}),
    )
    .unwrap();
    let scope = t
        .scope(Some(&warden_telemetry::AppInfo {
            name: "app".into(),
            sha256: "0".repeat(64),
        }))
        .unwrap();
    let tracer = scope.tracer();
    let t0 = Instant::now();
    for i in 0..n {
        let parent = Context::new();
        let trace = tracer.start(
            format!("GET {}", "/"),
            SpanKind::Server,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.path", "/hello".to_string()),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("client.address", "127.0.0.1".to_string()),
                KeyValue::new("client.port", 40000i64),
                KeyValue::new("server.port", 8080i64),
                KeyValue::new("network.protocol.name", "http"),
                KeyValue::new("network.protocol.version", "1.1"),
                KeyValue::new("warden.request_id", format!("{i:016x}")),
                KeyValue::new("http.route", "/".to_string()),
                KeyValue::new("warden.app", "app".to_string()),
            ],
            &parent,
            None,
        );
        {
            let _instance = trace.child(
                "instance",
                SpanKind::Internal,
                vec![
                    KeyValue::new("warden.instance.id", format!("app-{i}")),
                    KeyValue::new("warden.instance.reused", false),
                ],
            );
        }
        {
            let _handler = trace.child("handler", SpanKind::Internal, vec![]);
        }
        trace.set_all([
            KeyValue::new("http.response.status_code", 200i64),
            KeyValue::new("http.request.body.size", 0i64),
            KeyValue::new("http.response.body.size", 19i64),
        ]);
        trace.end();
    }
    let per = t0.elapsed() / n;
    println!("{per:?} per request (3 spans)");
    println!("{:?}", t.shutdown());
}
