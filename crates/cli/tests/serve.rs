//! `warden serve` end to end: the real binary serving a real WASI 0.2
//! proxy component (test-programs/src/bin/http_proxy.rs) to real clients
//! on loopback (hyper, curl, raw sockets), with every hardening limit and
//! its allowed twin.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::peers::TcpPeer;
use common::server::Server;
use common::serving::*;
use common::tls::Pki;
use common::*;
use warden_test_artifacts::{Target, guest};

#[test]
fn a_02_proxy_serves_http1_and_h2c_to_hyper_with_a_request_id() {
    let server = serve(&[]);
    assert!(
        server.child.id() > 0,
        "the first stderr line named the port: {}",
        server.port
    );
    let port = server.port;
    block_on(async {
        use http_body_util::BodyExt;
        use hyper_util::rt::TokioIo;
        // HTTP/1.1.
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/hello")
            .header("host", "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-request-id"));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello from a proxy\n");
        // HTTP/2 with prior knowledge (h2c), a client-chosen request id.
        let mut sender = h2_client(port).await;
        let req = http::Request::get(format!("http://localhost:{port}/info?x=1"))
            .header("x-request-id", "client-chosen-1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.headers()["x-request-id"], "client-chosen-1");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("scheme http\n"), "{text}");
        assert!(
            text.contains(&format!("authority localhost:{port}\n")),
            "{text}"
        );
        assert!(text.contains("path /info?x=1\n"), "{text}");
        assert!(text.contains("request-id client-chosen-1\n"), "{text}");
    });
    let r = stop(server);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("warden: serving http://127.0.0.1:"),
        "{}",
        r.stderr
    );
}

#[test]
fn each_request_gets_a_fresh_instance_and_a_plain_request_id() {
    let server = serve(&[]);
    for _ in 0..3 {
        assert_eq!(
            get(server.port, "/count").body,
            "1\n",
            "a fresh instance each time"
        );
    }
    // A request id a client may not choose is replaced.
    let r = exchange(
        server.port,
        b"GET /info HTTP/1.1\r\nHost: localhost\r\nx-request-id: has space\r\nConnection: close\r\n\r\n",
    );
    let id = r.header("x-request-id").unwrap().to_string();
    assert_ne!(id, "has space");
    assert!(r.body.contains(&format!("request-id {id}\n")), "{}", r.body);
    stop(server);
}

#[test]
fn curl_over_http1_h2c_https_and_http2_over_tls() {
    let pki = Pki::new();
    let server = serve(&[]);
    let url = format!("http://127.0.0.1:{}/hello", server.port);
    let (body, err, ok) = curl(&[&url]);
    assert!(ok, "{err}");
    assert_eq!(body, "hello from a proxy\n");
    let (version, _, ok) = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &url,
    ]);
    assert!(ok);
    assert_eq!(version, "2");
    stop(server);

    let (cert, key, ca) = (
        pki.arg("server.pem"),
        pki.arg("server.key"),
        pki.arg("ca.pem"),
    );
    let server = serve(&["--tls-cert", &cert, "--tls-key", &key]);
    let url = format!("https://localhost:{}/info", server.port);
    let resolve = format!("localhost:{}:127.0.0.1", server.port);
    let (body, err, ok) = curl(&["--cacert", &ca, "--resolve", &resolve, "--http1.1", &url]);
    assert!(ok, "{err}");
    assert!(
        body.contains("scheme https\n"),
        "the guest sees https: {body}"
    );
    let (version, err, ok) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &url,
    ]);
    assert!(ok, "{err}");
    assert_eq!(version, "2", "HTTP/2 by ALPN");
    // Deny twin: a client that trusts another CA refuses the server.
    let (_, _, ok) = curl(&[
        "--cacert",
        &pki.arg("other-ca.pem"),
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(!ok);
    let r = stop(server);
    assert!(
        r.stderr.starts_with("warden: serving https://127.0.0.1:"),
        "{}",
        r.stderr
    );
}

#[test]
fn client_certificates_are_required_with_tls_client_ca() {
    let pki = Pki::new();
    let (cert, key, ca, client_ca) = (
        pki.arg("server.pem"),
        pki.arg("server.key"),
        pki.arg("ca.pem"),
        pki.arg("client-ca.pem"),
    );
    let server = serve(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &client_ca,
    ]);
    let url = format!("https://localhost:{}/hello", server.port);
    let resolve = format!("localhost:{}:127.0.0.1", server.port);
    let (_, _, ok) = curl(&["--cacert", &ca, "--resolve", &resolve, &url]);
    assert!(!ok, "no client certificate, no answer");
    let (body, err, ok) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "--cert",
        &pki.arg("client.pem"),
        "--key",
        &pki.arg("client.key"),
        &url,
    ]);
    assert!(ok, "{err}");
    assert_eq!(body, "hello from a proxy\n");
    stop(server);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(pki.path("server.pem"), &cert).unwrap();
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    let server = serve(&["--tls-cert", p(&cert), "--tls-key", p(&key)]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let config = pki.client_config("ca.pem", false);
    let mut kept = common::tls::tls_connect(addr, config.clone(), "localhost").unwrap();
    let ask = |tls: &mut common::tls::TlsClient| {
        tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        tls.flush().unwrap();
        let mut reader = BufReader::new(tls);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        // Read the rest of the (chunked) response.
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            if l == "0\r\n" {
                let mut end = String::new();
                reader.read_line(&mut end).unwrap();
                break;
            }
        }
        status
    };
    assert!(ask(&mut kept).starts_with("HTTP/1.1 200"));
    let before = kept.conn.peer_certificates().unwrap()[0].to_vec();
    // A new certificate for the same names, then SIGHUP.
    std::fs::copy(pki.path("self-signed.pem"), &cert).unwrap();
    std::fs::copy(pki.path("self-signed.key"), &key).unwrap();
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let fresh = loop {
        // The test's CA does not sign the new certificate: accept any.
        let any = common::tls::accept_any_client();
        if let Ok(c) = common::tls::tls_connect(addr, any, "localhost") {
            let now = c.conn.peer_certificates().unwrap()[0].to_vec();
            if now != before {
                break now;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(fresh, before);
    // The connection made before the reload still works.
    assert!(ask(&mut kept).starts_with("HTTP/1.1 200"));
    drop(kept);
    let r = stop(server);
    assert!(
        r.stderr.contains("warden: reloaded the certificate"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_slow_client_is_closed_and_never_holds_a_request_slot() {
    let server = serve(&["--header-timeout", "1s", "--max-requests", "1"]);
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: loc").unwrap();
    // Meanwhile, a complete request is served: the slow one holds no slot.
    assert_eq!(get(server.port, "/hello").status, 200);
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut raw = Vec::new();
    let _ = slow.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        raw.is_empty() || text.starts_with("HTTP/1.1 408"),
        "closed (or 408): {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    stop(server);
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = serve(&["--idle-timeout", "1s"]);
    let mut conn = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    conn.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut raw = Vec::new();
    // Read the response and then the end of the connection.
    let _ = conn.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    stop(server);
}

#[test]
fn headers_past_max_header_get_431() {
    let server = serve(&["--max-header", "8KiB"]);
    let big = format!(
        "GET /hello HTTP/1.1\r\nHost: localhost\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(exchange(server.port, big.as_bytes()).status, 431);
    let small = "GET /hello HTTP/1.1\r\nHost: localhost\r\nx-small: a\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(server.port, small.as_bytes()).status, 200);
    stop(server);
}

#[test]
fn bodies_past_max_body_get_413_declared_or_streamed() {
    let server = serve(&["--max-body", "1KiB"]);
    let post = |path: &str, body: &[u8], chunked: bool| {
        let mut req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
            .into_bytes();
        if chunked {
            req.extend(b"Transfer-Encoding: chunked\r\n\r\n");
            for c in body.chunks(300) {
                req.extend(format!("{:x}\r\n", c.len()).as_bytes());
                req.extend(c);
                req.extend(b"\r\n");
            }
            req.extend(b"0\r\n\r\n");
        } else {
            req.extend(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            req.extend(body);
        }
        exchange(server.port, &req)
    };
    // Declared too large: 413 before the guest runs.
    assert_eq!(post("/echo", &[b'x'; 2000], false).status, 413);
    // Streamed past the limit to a guest that reads before it answers:
    // its read fails, and the answer is 413.
    assert_eq!(post("/len", &[b'x'; 2000], true).status, 413);
    // To a guest that answered already (an echo): the response is cut,
    // never a complete success.
    let cut = post("/echo", &[b'x'; 2000], true);
    assert!(
        cut.status != 200 || cut.body.len() < 2000,
        "{} {}",
        cut.status,
        cut.body.len()
    );
    // Within the limit, both work.
    let ok = post("/echo", &[b'y'; 500], true);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, "y".repeat(500));
    assert_eq!(post("/len", &[b'z'; 1000], false).body, "1000\n");
    stop(server);
}

#[test]
fn the_request_timeout_is_504_and_the_server_goes_on() {
    let server = serve(&["--timeout", "1s"]);
    for path in ["/spin", "/sleep?ms=5000"] {
        let started = Instant::now();
        assert_eq!(get(server.port, path).status, 504, "{path}");
        assert!(started.elapsed() < Duration::from_secs(4), "{path}");
    }
    assert_eq!(get(server.port, "/sleep?ms=100").status, 200);
    assert_eq!(get(server.port, "/hello").status, 200);
    stop(server);
}

#[test]
fn past_max_requests_is_503_with_retry_after() {
    let server = serve(&["--max-requests", "1"]);
    let port = server.port;
    let busy = std::thread::spawn(move || get(port, "/sleep?ms=1500"));
    std::thread::sleep(Duration::from_millis(400));
    let refused = get(port, "/hello");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(busy.join().unwrap().status, 200);
    assert_eq!(get(port, "/hello").status, 200);
    stop(server);
}

#[test]
fn past_max_connections_a_client_waits_for_a_place() {
    let server = serve(&["--max-connections", "1"]);
    let mut first = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    first
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(first.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"));
    // The first connection stays open: the second waits, unanswered.
    let mut second = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    second
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        second.read(&mut buf).is_err(),
        "no answer while the first is open"
    );
    drop(reader);
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = second.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    stop(server);
}

#[test]
fn a_trap_is_a_500_with_its_message_logged_and_the_server_goes_on() {
    let server = serve(&[]);
    let r = get(server.port, "/trap");
    assert_eq!(r.status, 500);
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(r.body, format!("internal error (request {id})\n"));
    let r = get(server.port, "/noresponse");
    assert_eq!(r.status, 500);
    assert_eq!(get(server.port, "/hello").status, 200);
    let out = stop(server);
    assert!(
        out.stderr.contains("the handler panicked on purpose"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "warden: http_proxy request {id} (GET /trap) failed: wasm trap"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("returned without a response"),
        "{}",
        out.stderr
    );
}

#[test]
fn sigterm_finishes_requests_in_flight_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let server = serve(&["--audit", p(&audit), "--shutdown-grace", "5s"]);
    let port = server.port;
    // A request that makes a (denied) egress call, for the audit log.
    assert_eq!(get(port, "/fetch?url=http://127.0.0.1:9/").status, 502);
    let slow = std::thread::spawn(move || get(port, "/sleep?ms=1500"));
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections once stopping"
    );
    assert_eq!(
        slow.join().unwrap().status,
        200,
        "the request in flight finished"
    );
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warden: SIGTERM: stopping"),
        "{}",
        r.stderr
    );
    let records = lines_of(&audit);
    assert!(
        records.iter().any(|r| r["event"] == "http-request"
            && r["decision"] == "deny"
            && r["app"] == "http_proxy"),
        "{records:#?}"
    );
}

#[test]
fn egress_from_handlers_goes_through_the_gate_with_the_request_id() {
    let peer = TcpPeer::start("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let grant = format!("127.0.0.1:{}", peer.port());
    let server = serve(&["--allow-connect", &grant, "--audit", p(&audit)]);
    let url = format!("/fetch?url=http://127.0.0.1:{}/", peer.port());
    let ok = get(server.port, &url);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body, format!("fetched 200\nhello from {}", peer.port()));
    let id = ok.header("x-request-id").unwrap().to_string();
    // Deny twin: another port is not granted; nothing reaches it.
    let other = TcpPeer::start("127.0.0.1");
    let denied = get(
        server.port,
        &format!("/fetch?url=http://127.0.0.1:{}/", other.port()),
    );
    assert_eq!(denied.status, 502);
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
    assert_eq!(other.accepted(), 0);
    stop(server);
    let records = lines_of(&audit);
    assert!(
        records.iter().any(|r| r["event"] == "http-request"
            && r["decision"] == "allow"
            && r["request_id"] == id.as_str()),
        "{records:#?}"
    );
}

#[test]
fn the_access_log_and_metrics_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.jsonl");
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = serve(&["--access-log", p(&access), "--metrics", &metrics_addr]);
    assert_eq!(get(server.port, "/hello").status, 200);
    assert_eq!(get(server.port, "/nothing").status, 404);
    assert_eq!(
        get(server.port, "/fetch?url=http://127.0.0.1:9/").status,
        502
    );
    let (health, _, ok) = curl(&[&format!("http://{metrics_addr}/healthz")]);
    assert!(ok);
    assert_eq!(health, "ok\n");
    let (text, _, ok) = curl(&[&format!("http://{metrics_addr}/metrics")]);
    assert!(ok);
    assert!(
        text.contains(r#"warden_requests_total{app="http_proxy",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"warden_denials_total{action="http-request"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("warden_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"warden_instances_created_total{app="http_proxy"} 3"#),
        "{text}"
    );
    stop(server);
    let lines = lines_of(&access);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let first = &lines[0];
    for field in [
        "ts",
        "request_id",
        "remote",
        "method",
        "path",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "app",
        "module_sha256",
    ] {
        assert!(first.get(field).is_some(), "{field}: {first}");
    }
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes_out"], 19);
    assert_eq!(lines[1]["status"], 404);
}

#[test]
fn several_apps_are_routed_by_the_longest_match_and_host() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(proxy(), dir.path().join("proxy.wasm")).unwrap();
    let manifest = dir.path().join("apps.toml");
    std::fs::write(
        &manifest,
        r#"version = 1

[[app]]
name = "site"
component = "proxy.wasm"
path = "/"
env = ["APP=site"]

[[app]]
name = "api"
component = "proxy.wasm"
path = "/api"
env = ["APP=api"]

[[app]]
name = "admin"
component = "proxy.wasm"
path = "/api"
host = "admin.test"
env = ["APP=admin"]
"#,
    )
    .unwrap();
    let server = serve_manifest(&manifest);
    let ask = |path: &str, host: &str| {
        exchange(
            server.port,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .body
    };
    assert_eq!(ask("/env?name=APP", "localhost"), "site\n");
    assert_eq!(ask("/api/env?name=APP", "localhost"), "api\n");
    assert_eq!(
        ask("/apix/env?name=APP", "localhost"),
        "site\n",
        "segment boundaries"
    );
    assert_eq!(ask("/api/env?name=APP", "admin.test"), "admin\n");
    assert_eq!(ask("/api/env?name=APP", "ADMIN.test:80"), "admin\n");
    stop(server);
    // No route for / at all: Warden's own 404.
    let only_api = dir.path().join("api.toml");
    std::fs::write(
        &only_api,
        "version = 1\n\n[[app]]\nname = \"api\"\ncomponent = \"proxy.wasm\"\npath = \"/api\"\n",
    )
    .unwrap();
    let server = serve_manifest(&only_api);
    let r = get(server.port, "/elsewhere");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "not found: no application serves this path\n");
    stop(server);
    // check prints the routes.
    let r = ran(warden().arg("check").arg(&manifest).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("app api: /api -> proxy.wasm"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("app admin: admin.test/api -> proxy.wasm"),
        "{}",
        r.stdout
    );
}

#[test]
fn serve_takes_only_http_components() {
    for (t, program) in [(Target::P1, "hello"), (Target::P2, "cli")] {
        let r = ran(serve_cmd(&["--addr", "127.0.0.1:0", p(&guest(t, program))])
            .output()
            .unwrap());
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr
                .contains("warden serve takes wasi:http/proxy 0.2 components"),
            "{}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    }
    let r = ran(serve_cmd(&["--addr", "127.0.0.1:0"]).output().unwrap());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("serve needs a component FILE"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_03_service_gets_fresh_instances_or_reuses_them_as_told() {
    let svc = service();
    let server = Server::start_with(serve_cmd(&[
        "--addr",
        "127.0.0.1:0",
        "--timeout",
        "1s",
        &svc,
    ]));
    let counts: Vec<String> = (0..3).map(|_| get(server.port, "/count").body).collect();
    assert_eq!(
        counts,
        ["1\n", "1\n", "1\n"],
        "a fresh instance per request by default"
    );
    let started = Instant::now();
    assert_eq!(get(server.port, "/spin").status, 504);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(get(server.port, "/").body, "hello from a 0.3 service\n");
    stop(server);
    let server = Server::start_with(serve_cmd(&[
        "--addr",
        "127.0.0.1:0",
        "--max-instance-reuse",
        "3",
        &svc,
    ]));
    let counts: Vec<String> = (0..4).map(|_| get(server.port, "/count").body).collect();
    assert_eq!(
        counts,
        ["1\n", "2\n", "3\n", "1\n"],
        "three requests per instance"
    );
    stop(server);
}

#[test]
fn a_03_service_sees_https_and_its_request_id() {
    let pki = Pki::new();
    let svc = service();
    let (cert, key, ca) = (
        pki.arg("server.pem"),
        pki.arg("server.key"),
        pki.arg("ca.pem"),
    );
    let server = Server::start_with(serve_cmd(&[
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        &svc,
    ]));
    let url = format!("https://localhost:{}/info", server.port);
    let resolve = format!("localhost:{}:127.0.0.1", server.port);
    let (body, err, ok) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-H",
        "x-request-id: from-curl",
        &url,
    ]);
    assert!(ok, "{err}");
    assert!(body.contains("scheme https\n"), "{body}");
    assert!(
        body.contains(&format!("authority localhost:{}\n", server.port)),
        "{body}"
    );
    assert!(body.contains("request-id from-curl\n"), "{body}");
    stop(server);
}
