//! OpenTelemetry export (`--otlp-endpoint`, `--otlp-audit`, `[telemetry]`,
//! the OTEL_* variables), against a real OTLP/HTTP collector that decodes
//! what it gets with the official protobuf definitions
//! (`common::otlp`), real guests, and real peers on loopback.

mod common;

use std::time::{Duration, Instant};

use common::otlp::{Collector, Span};
use common::peers::TcpPeer;
use common::serving::{exchange, get, lines_of, serve, serve_cmd, stop};
use common::{p, run_cmd};

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// The spans of one trace, by name.
fn named<'a>(spans: &'a [Span], trace: &str, name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect()
}

fn one<'a>(spans: &'a [Span], trace: &str, name: &str) -> &'a Span {
    let found = named(spans, trace, name);
    assert_eq!(found.len(), 1, "one {name:?} in {trace}: {spans:#?}");
    found[0]
}

fn request(port: u16, path: &str, traceparent: Option<&str>) -> common::serving::Response {
    let tp = traceparent.map_or(String::new(), |t| format!("traceparent: {t}\r\n"));
    exchange(
        port,
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: telemetry-test\r\n{tp}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

/// `warden run --otlp-endpoint COLLECTOR FLAGS net_client.wasm STEPS`,
/// with `env` set; its output, once it has sent what it recorded.
fn traced_client(
    collector: &Collector,
    flags: &[&str],
    steps: &[&str],
    env: &[(&str, &str)],
) -> common::Ran {
    let endpoint = collector.endpoint();
    let client = p(&warden_test_artifacts::guest(
        warden_test_artifacts::Target::P2,
        "net_client",
    ))
    .to_string();
    let mut args = vec!["--otlp-endpoint", endpoint.as_str()];
    args.extend_from_slice(flags);
    args.push(&client);
    args.extend_from_slice(steps);
    let mut cmd = run_cmd(&args);
    cmd.envs(env.iter().copied());
    common::ran(cmd.output().unwrap())
}

#[test]
fn a_request_is_one_trace_with_its_instance_handler_egress_and_denials() {
    let collector = Collector::start();
    let peer = TcpPeer::start("127.0.0.1");
    let other = TcpPeer::start("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let (audit, access) = (
        dir.path().join("audit.jsonl"),
        dir.path().join("access.jsonl"),
    );
    let grant = format!("127.0.0.1:{}", peer.port());
    let server = serve(&[
        "--otlp-endpoint",
        &collector.endpoint(),
        "--allow-connect",
        &grant,
        "--audit",
        p(&audit),
        "--access-log",
        p(&access),
    ]);
    // The client's trace goes on: its trace id, its span the parent.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let allowed = request(
        server.port,
        &format!("/fetch?url=http://127.0.0.1:{}/", peer.port()),
        Some(&format!("00-{client_trace}-{client_span}-01")),
    );
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let allowed_id = allowed.header("x-request-id").unwrap().to_string();
    // Deny twin: another port, not granted; nothing reaches it.
    let denied = request(
        server.port,
        &format!("/fetch?url=http://127.0.0.1:{}/", other.port()),
        None,
    );
    assert_eq!(denied.status, 502, "{}", denied.body);
    assert_eq!(other.accepted(), 0);
    let ran = stop(server);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("telemetry:"),
        "nothing was lost: {}",
        ran.stderr
    );
    assert!(collector.got().bad.is_empty(), "{:?}", collector.got().bad);
    let spans = collector.spans();

    // The allowed request: server -> instance, handler -> client -> connect.
    let server_span = one(&spans, client_trace, "GET /");
    assert_eq!(server_span.kind, SERVER);
    assert_eq!(server_span.parent, client_span);
    for (k, v) in [
        ("http.request.method", "GET"),
        ("url.path", "/fetch"),
        ("url.scheme", "http"),
        ("http.route", "/"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("client.address", "127.0.0.1"),
        ("user_agent.original", "telemetry-test"),
        ("warden.app", "http_proxy"),
        ("warden.request_id", allowed_id.as_str()),
    ] {
        assert_eq!(server_span.attr(k), Some(v), "{k}: {server_span:#?}");
    }
    assert!(!server_span.error);
    assert_eq!(
        server_span.resource.get("service.name").map(String::as_str),
        Some("warden")
    );
    assert_eq!(
        server_span
            .resource
            .get("service.version")
            .map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        server_span.resource.get("warden.app").map(String::as_str),
        Some("http_proxy")
    );
    assert_eq!(
        server_span
            .resource
            .get("warden.module.sha256")
            .map(String::len),
        Some(64)
    );
    let instance = one(&spans, client_trace, "instance");
    let handler = one(&spans, client_trace, "handler");
    assert_eq!(instance.parent, server_span.span_id);
    assert_eq!(handler.parent, server_span.span_id);
    assert_eq!(instance.attr("warden.instance.reused"), Some("false"));
    let client = one(&spans, client_trace, "GET");
    assert_eq!(client.kind, CLIENT);
    assert_eq!(client.parent, handler.span_id);
    assert_eq!(client.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(
        client.attr("server.port"),
        Some(peer.port().to_string().as_str())
    );
    assert_eq!(client.attr("http.response.status_code"), Some("200"));
    assert!(!client.error);
    let connect = one(&spans, client_trace, "connect");
    assert_eq!(connect.parent, client.span_id);
    assert_eq!(
        connect.attr("network.peer.port"),
        Some(peer.port().to_string().as_str())
    );
    // The peer got the trace, the client span as its parent.
    let seen = peer.requests.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![format!(
            "GET / HTTP/1.1 host=127.0.0.1:{} traceparent=00-{client_trace}-{}-01",
            peer.port(),
            client.span_id
        )]
    );

    // The denied request: a trace of its own, its client span failed, the
    // denial an event on it with the rule and reason.
    let denied_server: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SERVER && s.trace_id != client_trace)
        .collect();
    assert_eq!(denied_server.len(), 1, "{spans:#?}");
    let denied_server = denied_server[0];
    assert_eq!(denied_server.parent, "");
    assert_eq!(denied_server.attr("http.response.status_code"), Some("502"));
    assert!(denied_server.error, "a 5xx is an error on a server span");
    let trace = denied_server.trace_id.as_str();
    let denied_client = one(&spans, trace, "GET");
    assert!(denied_client.error);
    assert_eq!(denied_client.attr("error.type"), Some("denied"));
    let (name, event) = &denied_client.events[0];
    assert_eq!(name, "warden.denied");
    assert_eq!(event["warden.action"], "http-request");
    assert_eq!(event["warden.decision"], "deny");
    assert_eq!(
        event["warden.target"],
        format!("127.0.0.1:{}", other.port())
    );
    assert!(
        !event["warden.rule"].is_empty() && !event["warden.reason"].is_empty(),
        "{event:?}"
    );
    assert!(
        named(&spans, trace, "connect").is_empty(),
        "nothing was dialled"
    );

    // The logs carry the ids: the audit record of the handler's span, the
    // access line of the server span.
    let records = lines_of(&audit);
    let allow = records
        .iter()
        .find(|r| r["event"] == "http-request" && r["decision"] == "allow")
        .unwrap();
    assert_eq!(allow["trace_id"], client_trace);
    assert_eq!(allow["span_id"], handler.span_id.as_str());
    let deny = records
        .iter()
        .find(|r| r["event"] == "http-request" && r["decision"] == "deny")
        .unwrap();
    assert_eq!(deny["trace_id"], trace);
    let lines = lines_of(&access);
    let line = lines
        .iter()
        .find(|l| l["request_id"] == allowed_id.as_str())
        .unwrap();
    assert_eq!(line["trace_id"], client_trace);
    assert_eq!(line["span_id"], server_span.span_id.as_str());
}

#[test]
fn without_telemetry_nothing_is_sent_and_the_logs_carry_no_ids() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.jsonl");
    // The collector's address is known to the environment's variables
    // only under another name: nothing turns export on.
    let server = serve(&["--access-log", p(&access)]);
    assert_eq!(get(server.port, "/hello").status, 200);
    let ran = stop(server);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    std::thread::sleep(Duration::from_millis(200));
    assert!(collector.got().traces.is_empty() && collector.got().metrics.is_empty());
    let lines = lines_of(&access);
    assert!(lines[0].get("trace_id").is_none(), "{lines:?}");
}

#[test]
fn metrics_and_audit_logs_arrive_over_otlp() {
    let collector = Collector::start();
    let server = serve(&["--otlp-endpoint", &collector.endpoint(), "--otlp-audit"]);
    for _ in 0..3 {
        assert_eq!(get(server.port, "/hello").status, 200);
    }
    // A denied egress call makes an audit record (and no --audit file is
    // needed for the logs).
    assert_eq!(
        get(server.port, "/fetch?url=http://127.0.0.1:9/").status,
        502
    );
    let ran = stop(server);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let got = collector.got();
    // Metrics: the same instruments as Prometheus, sent at the end.
    let mut seen = std::collections::HashMap::new();
    for req in &got.metrics {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
                    let total: f64 = match &m.data {
                        Some(Data::Sum(s)) => s
                            .data_points
                            .iter()
                            .map(|d| match d.value {
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i as f64,
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(f)) => f,
                                None => 0.0,
                            })
                            .sum(),
                        Some(Data::Histogram(h)) => h.data_points.iter().map(|d| d.count as f64).sum(),
                        _ => 0.0,
                    };
                    seen.insert(m.name.clone(), total);
                }
            }
        }
    }
    assert_eq!(seen.get("warden.requests"), Some(&4.0), "{seen:?}");
    assert_eq!(seen.get("warden.instances_created"), Some(&4.0), "{seen:?}");
    assert_eq!(seen.get("warden.denials"), Some(&1.0), "{seen:?}");
    assert_eq!(
        seen.get("http.server.request.duration"),
        Some(&4.0),
        "{seen:?}"
    );
    assert_eq!(seen.get("warden.request.duration"), Some(&4.0), "{seen:?}");
    assert!(
        seen.get("warden.bytes_out").is_some_and(|b| *b > 0.0),
        "{seen:?}"
    );
    assert!(seen.contains_key("warden.bytes_in"), "{seen:?}");
    assert!(seen.contains_key("warden.connections_open"), "{seen:?}");
    // Logs: the audit record, on its trace, with its fields.
    let mut records = Vec::new();
    for req in &got.logs {
        for rl in &req.resource_logs {
            for sl in &rl.scope_logs {
                records.extend(sl.log_records.iter().cloned());
            }
        }
    }
    let deny = records
        .iter()
        .find(|r| {
            let a = common::otlp::attrs(&r.attributes);
            a.get("warden.event").map(String::as_str) == Some("http-request")
                && a.get("warden.decision").map(String::as_str) == Some("deny")
        })
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(deny.trace_id.len(), 16);
    assert_eq!(deny.span_id.len(), 8);
    assert_eq!(deny.severity_text, "WARN");
    drop(got);
    let spans = collector.spans();
    let handler = spans
        .iter()
        .find(|s| s.name == "handler" && s.trace_id == common::otlp::hex(&deny.trace_id))
        .expect("the record's trace has the handler");
    assert_eq!(handler.span_id, common::otlp::hex(&deny.span_id));
}

#[test]
fn a_run_is_a_span_with_its_ending_and_its_network_work() {
    let collector = Collector::start();
    let peer = TcpPeer::start("127.0.0.1");
    let other = TcpPeer::start("127.0.0.1");
    let allowed = format!("127.0.0.1:{}", peer.port());
    let ran = traced_client(
        &collector,
        &["--allow-connect", &allowed],
        &[
            &format!("connect:{allowed}"),
            &format!("connect:127.0.0.1:{}", other.port()),
        ],
        &[(
            "TRACEPARENT",
            "00-11111111111111111111111111111111-2222222222222222-01",
        )],
    );
    let spans = collector.spans();
    let run = spans
        .iter()
        .find(|s| s.name.starts_with("run "))
        .unwrap_or_else(|| panic!("{}\n{spans:#?}", ran.stderr));
    assert_eq!(run.trace_id, "11111111111111111111111111111111");
    assert_eq!(run.parent, "2222222222222222");
    assert_eq!(run.attr("warden.end"), Some("exit"));
    assert_eq!(
        run.attr("process.exit.code"),
        Some(ran.code.to_string().as_str())
    );
    assert_eq!(
        run.resource.get("warden.app").map(String::as_str),
        Some("net_client.wasm")
    );
    let connects: Vec<&Span> = spans.iter().filter(|s| s.name == "connect").collect();
    assert_eq!(connects.len(), 1, "{spans:#?}");
    assert_eq!(connects[0].parent, run.span_id);
    let denial = run
        .events
        .iter()
        .find(|(n, _)| n == "warden.denied")
        .unwrap_or_else(|| panic!("{run:#?}"));
    assert_eq!(denial.1["warden.action"], "connect");
    assert_eq!(
        denial.1["warden.target"],
        format!("127.0.0.1:{}", other.port())
    );
    assert_eq!(other.accepted(), 0);
}

#[test]
fn a_collector_that_is_down_or_hangs_never_holds_up_a_request() {
    // Down: a port bound and never listened on, held for the test (so no
    // other test's server can take it): every connect is refused.
    let down = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    down.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let down_port = down.local_addr().unwrap().as_socket().unwrap().port();
    for collector in [None, Some(Collector::hanging())] {
        // Hanging: accepts, never answers.
        let endpoint = collector.as_ref().map_or_else(
            || format!("http://127.0.0.1:{down_port}"),
            Collector::endpoint,
        );
        let server = serve(&["--otlp-endpoint", &endpoint]);
        let t0 = Instant::now();
        for _ in 0..50 {
            assert_eq!(get(server.port, "/hello").status, 200);
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        let t0 = Instant::now();
        let ran = stop(server);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        // The exit waits for the collector no longer than the grace.
        assert!(t0.elapsed() < Duration::from_secs(12), "{:?}", t0.elapsed());
        // Told once, and counted at the end.
        let told = ran
            .stderr
            .matches("warden: telemetry: sending traces to")
            .count()
            + ran
                .stderr
                .matches("warden: telemetry: traces were still being sent")
                .count();
        assert!(told >= 1, "{}", ran.stderr);
        assert!(
            ran.stderr
                .matches("warden: telemetry: sending traces to")
                .count()
                <= 1,
            "{}",
            ran.stderr
        );
        assert!(
            ran.stderr.contains("warden: telemetry: spans:"),
            "{}",
            ran.stderr
        );
    }
}

#[test]
fn the_standard_variables_turn_export_on_and_name_the_service() {
    let collector = Collector::start();
    let mut cmd = serve_cmd(&["--addr", "127.0.0.1:0", &common::serving::proxy()]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("OTEL_SERVICE_NAME", "edge")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test");
    let server = common::server::Server::start_with(cmd);
    assert_eq!(get(server.port, "/hello").status, 200);
    let ran = stop(server);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let spans = collector.spans();
    let s = spans.iter().find(|s| s.kind == SERVER).unwrap();
    assert_eq!(
        s.resource.get("service.name").map(String::as_str),
        Some("edge")
    );
    assert_eq!(
        s.resource.get("deployment.environment").map(String::as_str),
        Some("test")
    );
    // OTEL_SDK_DISABLED wins over everything.
    let mut cmd = serve_cmd(&["--addr", "127.0.0.1:0", &common::serving::proxy()]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("OTEL_SDK_DISABLED", "true");
    let before = collector.got().traces.len();
    let server = common::server::Server::start_with(cmd);
    assert_eq!(get(server.port, "/hello").status, 200);
    stop(server);
    assert_eq!(collector.got().traces.len(), before);
}

#[test]
fn bad_telemetry_settings_are_one_clear_error() {
    let hello = p(&warden_test_artifacts::guest(
        warden_test_artifacts::Target::P1,
        "hello",
    ))
    .to_string();
    for (args, says) in [
        (
            vec!["--otlp-endpoint", "https://collector:4318"],
            "https is not supported",
        ),
        (
            vec!["--otlp-endpoint", "collector:4318"],
            "expected http://host:port",
        ),
        (
            vec!["--otlp-audit"],
            "--otlp-audit (or [telemetry] audit) needs an OTLP endpoint",
        ),
    ] {
        let mut all = args.clone();
        all.push(&hello);
        let ran = common::run(&all);
        assert_eq!(ran.code, 2, "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{args:?}: {}", ran.stderr);
        assert!(!ran.stdout.contains("hello"), "nothing ran");
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[telemetry]\nendpoint = \"ftp://x\"\n",
    )
    .unwrap();
    let ran = common::run(&["--manifest", p(&manifest), &hello]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("endpoint"), "{}", ran.stderr);
    // A good [telemetry] table turns export on.
    let collector = Collector::start();
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n[telemetry]\nendpoint = \"{}\"\n",
            collector.endpoint()
        ),
    )
    .unwrap();
    let ran = common::run(&["--manifest", p(&manifest), &hello]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(collector.spans().iter().any(|s| s.name == "run hello.wasm"));
    // `warden check` says where it goes, and refuses what run refuses.
    let checked = common::ran(
        common::warden()
            .args(["check", p(&manifest)])
            .output()
            .unwrap(),
    );
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert!(
        checked.stdout.contains(&format!(
            "telemetry: spans to {}/v1/traces, metrics to {}/v1/metrics",
            collector.endpoint(),
            collector.endpoint()
        )),
        "{}",
        checked.stdout
    );
    std::fs::write(
        &manifest,
        "version = 1\n[telemetry]\nendpoint = \"http://x@y:1\"\n",
    )
    .unwrap();
    let checked = common::ran(
        common::warden()
            .args(["check", p(&manifest)])
            .output()
            .unwrap(),
    );
    assert_eq!(checked.code, 2, "{}", checked.stdout);
    assert!(
        checked.stderr.contains("[telemetry]: OTLP endpoint"),
        "{}",
        checked.stderr
    );
}

#[test]
fn tls_egress_shows_its_client_connect_and_handshake_spans() {
    use common::tls::{Ending, PeerSpec, Pki, Speaks, TlsPeer};
    let collector = Collector::start();
    let pki = Pki::new();
    let web = TlsPeer::start(PeerSpec {
        config: pki.server_config("server", false),
        speaks: Speaks::Http,
        ending: Ending::Clean,
        postgres: None,
    });
    let grant = format!("127.0.0.1:{}", web.port());
    let url = format!("https://127.0.0.1:{}/page", web.port());
    let ca = pki.arg("ca.pem");
    let ran = traced_client(
        &collector,
        &[
            "--connect-tls",
            &grant,
            "--tls-ca",
            &ca,
            "--tls-server-name",
            "localhost",
        ],
        &[&format!("http:{url}")],
        &[],
    );
    assert!(
        ran.stdout.contains("ok status 200 hello over tls"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
    let spans = collector.spans();
    let run = spans
        .iter()
        .find(|s| s.name == "run net_client.wasm")
        .unwrap();
    let client = spans.iter().find(|s| s.kind == CLIENT).unwrap();
    assert_eq!(client.parent, run.span_id);
    assert_eq!(client.attr("url.full"), Some(url.as_str()));
    assert_eq!(client.attr("warden.tls.kind"), Some("--connect-tls"));
    assert_eq!(client.attr("http.response.status_code"), Some("200"));
    let connect = spans.iter().find(|s| s.name == "connect").unwrap();
    let handshake = spans.iter().find(|s| s.name == "tls handshake").unwrap();
    assert_eq!(connect.parent, client.span_id);
    assert_eq!(handshake.parent, client.span_id);
    assert_eq!(handshake.attr("server.address"), Some("localhost"));
    assert!(
        handshake.attr("tls.protocol.version").is_some(),
        "{handshake:#?}"
    );
    assert!(!handshake.error);
    // Deny twin: without the kind's CA the handshake fails, and says so.
    let collector = Collector::start();
    let grant_plain = format!("127.0.0.1:{}", web.port());
    traced_client(
        &collector,
        &["--allow-connect", &grant_plain],
        &[&format!("http:{url}")],
        &[],
    );
    let spans = collector.spans();
    let handshake = spans.iter().find(|s| s.name == "tls handshake").unwrap();
    assert!(handshake.error, "{handshake:#?}");
    let client = spans.iter().find(|s| s.kind == CLIENT).unwrap();
    assert!(client.error);
}

#[test]
fn limits_that_fire_are_events_on_the_request_span() {
    let collector = Collector::start();
    let server = serve(&[
        "--otlp-endpoint",
        &collector.endpoint(),
        "--timeout",
        "300ms",
        "--max-body",
        "1KiB",
        "--max-memory",
        "32MiB",
    ]);
    assert_eq!(get(server.port, "/sleep?ms=5000").status, 504);
    // A body bigger than the memory limit: the growth is refused, the
    // guest's allocation fails, the handler traps.
    assert_eq!(get(server.port, "/big?bytes=100000000").status, 500);
    let big = exchange(
        server.port,
        format!(
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n{}",
            "x".repeat(4096)
        )
        .as_bytes(),
    );
    assert_eq!(big.status, 413);
    // Twin: a request within both limits has no limit event.
    assert_eq!(get(server.port, "/hello").status, 200);
    stop(server);
    let spans = collector.spans();
    let limit_of = |path: &str| -> Vec<String> {
        spans
            .iter()
            .filter(|s| s.kind == SERVER && s.attr("url.path") == Some(path))
            .flat_map(|s| s.events.iter())
            .filter(|(n, _)| n == "warden.limit")
            .map(|(_, a)| a["warden.limit"].clone())
            .collect()
    };
    assert_eq!(limit_of("/sleep"), vec!["timeout"], "{spans:#?}");
    assert_eq!(limit_of("/echo"), vec!["max_body"], "{spans:#?}");
    assert!(limit_of("/hello").is_empty());
    let big = spans
        .iter()
        .find(|s| s.kind == SERVER && s.attr("url.path") == Some("/big"))
        .unwrap();
    let handler = spans
        .iter()
        .find(|s| s.name == "handler" && s.trace_id == big.trace_id)
        .unwrap();
    assert_eq!(handler.attr("error.type"), Some("trap"));
    assert!(
        handler
            .events
            .iter()
            .any(|(n, a)| n == "warden.limit" && a["warden.limit"] == "memory"),
        "{handler:#?}"
    );
    let timed_out = spans
        .iter()
        .find(|s| s.kind == SERVER && s.attr("url.path") == Some("/sleep"))
        .unwrap();
    assert_eq!(timed_out.attr("http.response.status_code"), Some("504"));
    assert!(timed_out.error);
    // The handler the deadline stopped says so.
    let handler = spans
        .iter()
        .find(|s| s.name == "handler" && s.trace_id == timed_out.trace_id)
        .unwrap();
    assert_eq!(handler.attr("error.type"), Some("timeout"));
}

#[test]
fn a_0_3_service_request_has_its_server_and_handler_spans() {
    let collector = Collector::start();
    let service = common::serving::service();
    let server = common::server::Server::start_with(serve_cmd(&[
        "--addr",
        "127.0.0.1:0",
        "--otlp-endpoint",
        &collector.endpoint(),
        &service,
    ]));
    assert_eq!(get(server.port, "/count").status, 200);
    stop(server);
    let spans = collector.spans();
    let server_span = spans.iter().find(|s| s.kind == SERVER).unwrap();
    assert_eq!(server_span.attr("warden.app"), Some("p3_service"));
    let handler = spans.iter().find(|s| s.name == "handler").unwrap();
    assert_eq!(handler.parent, server_span.span_id);
    assert_eq!(handler.trace_id, server_span.trace_id);
}

#[test]
fn a_guests_own_traceparent_goes_out_as_the_guest_set_it() {
    let collector = Collector::start();
    let peer = TcpPeer::start("127.0.0.1");
    let grant = format!("127.0.0.1:{}", peer.port());
    let server = serve(&[
        "--otlp-endpoint",
        &collector.endpoint(),
        "--allow-connect",
        &grant,
    ]);
    let own = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01";
    let r = get(
        server.port,
        &format!(
            "/fetch?url=http://127.0.0.1:{}/&traceparent={own}",
            peer.port()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Twin: without one of its own, the request carries Warden's.
    assert_eq!(
        get(
            server.port,
            &format!("/fetch?url=http://127.0.0.1:{}/", peer.port())
        )
        .status,
        200
    );
    stop(server);
    let seen = peer.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].ends_with(&format!("traceparent={own}")), "{seen:?}");
    let client = collector
        .spans()
        .into_iter()
        .filter(|s| s.kind == CLIENT)
        .map(|s| (s.trace_id, s.span_id))
        .collect::<Vec<_>>();
    assert!(
        client
            .iter()
            .any(|(t, s)| seen[1].ends_with(&format!("traceparent=00-{t}-{s}-01"))),
        "{seen:?} {client:?}"
    );
}

#[test]
fn a_tls_handshake_with_a_guests_listener_is_an_event_on_the_run() {
    use common::tls::{Pki, read_to_end, tls_connect};
    use std::io::Write;
    let collector = Collector::start();
    let pki = Pki::new();
    let (cert, key) = (pki.arg("server.pem"), pki.arg("server.key"));
    let echo = p(&warden_test_artifacts::guest(
        warden_test_artifacts::Target::P1,
        "echo_std",
    ))
    .to_string();
    let endpoint = collector.endpoint();
    let mut server = common::server::Server::start(&[
        "--otlp-endpoint",
        &endpoint,
        "--timeout",
        "60s",
        "--listen-tls",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        &echo,
        "1",
    ]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let mut tls = tls_connect(addr, pki.client_config("ca.pem", false), "localhost").unwrap();
    tls.write_all(b"over tls\n").unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    assert_eq!(read_to_end(&mut tls).unwrap(), "over tls\n");
    common::wait_bounded(
        &mut server.child,
        Duration::from_secs(20),
        "echo_std ends after one client",
    );
    let spans = collector.spans();
    let run = spans
        .iter()
        .find(|s| s.name == "run echo_std.wasm")
        .unwrap();
    let (_, event) = run
        .events
        .iter()
        .find(|(n, _)| n == "warden.tls_accept")
        .unwrap_or_else(|| panic!("{run:#?}"));
    assert_eq!(event["warden.result"], "ok");
    assert_eq!(event["network.peer.address"], "127.0.0.1");
    assert!(event.contains_key("tls.protocol.version"), "{event:?}");
}
