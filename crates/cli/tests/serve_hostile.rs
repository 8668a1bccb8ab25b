//! `warden serve` against hostile clients and guests: bodies that never
//! end, clients that never read, connections that never speak, authorities
//! that lie, guests that trap after their response began, and clients that
//! come before the apps are ready. Real clients on loopback (raw sockets
//! with raw HTTP/1.1 and HTTP/2 frames, curl, rustls), real guests (the
//! WASI 0.2 proxy and the 0.3 service), every bound with its allowed twin.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::server::Server;
use common::serving::*;
use common::tls::{Pki, tls_connect};
use common::*;

/// Both ABIs: the 0.2 proxy and the 0.3 service.
fn guests() -> [(&'static str, String); 2] {
    [("0.2", proxy()), ("0.3", service())]
}

/// A server of `guest` on 127.0.0.1:0 with `args`.
fn serve_guest(guest: &str, args: &[&str]) -> Server {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    all.push(guest);
    Server::start_with(serve_cmd(&all))
}

/// Send a raw HTTP/1.1 GET for `path` and read until the server closes;
/// the bytes, how the reading ended and how long it took.
fn raw_get(port: u16, path: &str, limit: Duration) -> (Vec<u8>, std::io::Result<()>, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                // Keep the head and the last bytes only.
                if got.len() < 4096 {
                    got.extend_from_slice(&buf[..n]);
                } else {
                    got.truncate(4096);
                    got.extend_from_slice(&buf[n.saturating_sub(16)..n]);
                }
            }
            Err(e) => break Err(e),
        }
        if started.elapsed() > limit {
            break Err(std::io::ErrorKind::TimedOut.into());
        }
    };
    (got, end, started.elapsed())
}

/// curl's exit code and time for `args`.
fn curl_code(args: &[&str]) -> (i32, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is needed for these tests (apt-get install curl)");
    (out.status.code().unwrap_or(-1), started.elapsed())
}

/// The access log's records for `path`.
fn records_for(log: &std::path::Path, path: &str) -> Vec<serde_json::Value> {
    lines_of(log)
        .into_iter()
        .filter(|r| r["path"] == path)
        .collect()
}

#[test]
fn a_body_that_never_ends_is_cut_at_the_timeout_on_http1_and_http2() {
    for (abi, guest) in guests() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.jsonl");
        let server = serve_guest(&guest, &["--timeout", "1s", "--access-log", p(&log)]);
        // HTTP/1.1: the connection closes without the chunked body's end.
        let (got, end, took) = raw_get(server.port, "/stream", Duration::from_secs(20));
        assert!(got.starts_with(b"HTTP/1.1 200"), "{abi}");
        assert!(end.is_ok(), "{abi}: the server closes: {end:?}");
        assert!(!got.ends_with(b"0\r\n\r\n"), "{abi}: no last chunk");
        assert!(took < Duration::from_secs(4), "{abi}: {took:?}");
        // HTTP/2: the stream is reset; curl says it was not closed cleanly.
        let url = format!("http://127.0.0.1:{}/stream", server.port);
        let (code, took) = curl_code(&["--http2-prior-knowledge", &url]);
        assert_ne!(code, 0, "{abi}: curl must see a cut response");
        assert!(took < Duration::from_secs(4), "{abi}: {took:?}");
        // The server goes on.
        assert_eq!(get(server.port, "/hello").status, 200, "{abi}");
        let r = stop(server);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let cut = records_for(&log, "/stream");
        assert_eq!(cut.len(), 2, "{abi}: {cut:#?}");
        for rec in cut {
            assert_eq!(rec["status"], 200, "{abi}");
            assert_eq!(rec["cut"], "timeout", "{abi}: {rec}");
        }
    }
}

#[test]
fn a_request_stopped_by_its_deadline_is_504_however_it_is_caught() {
    // Several at once, so some are caught computing (the epoch), some
    // waiting for a worker, some in a host call: each is a 504.
    for (abi, guest) in guests() {
        let server = serve_guest(&guest, &["--timeout", "1s"]);
        let port = server.port;
        let runs: Vec<_> = (0..6)
            .map(|_| std::thread::spawn(move || get(port, "/spin").status))
            .collect();
        for r in runs {
            assert_eq!(r.join().unwrap(), 504, "{abi}");
        }
        if abi == "0.2" {
            assert_eq!(get(port, "/sleep?ms=5000").status, 504);
        }
        stop(server);
    }
}

/// A client that asks for a body that never ends and never reads it, with
/// a small receive buffer: the server's writes fill the buffers and stop.
fn stalled_reader(port: u16) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut s: TcpStream = s.into();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    s
}

#[test]
fn clients_that_do_not_read_cannot_hold_the_request_slots() {
    // --timeout bounds the exchange, body included; --write-timeout cuts
    // a response nobody reads before that.
    for (flags, cut, bound) in [
        (["--timeout", "1s", "--write-timeout", "30s"], "timeout", 1),
        (
            ["--timeout", "60s", "--write-timeout", "1s"],
            "write-timeout",
            1,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.jsonl");
        let mut args = vec!["--max-requests", "4", "--access-log", p(&log)];
        args.extend(flags);
        let server = serve(&args);
        let started = Instant::now();
        let stalled: Vec<TcpStream> = (0..4).map(|_| stalled_reader(server.port)).collect();
        std::thread::sleep(Duration::from_millis(300));
        // A well-behaved fifth client is served once their slots are freed:
        // within the bound and one second more.
        let served = loop {
            let r = get(server.port, "/hello");
            if r.status == 200 {
                break started.elapsed();
            }
            assert_eq!(r.status, 503, "busy until the slots are freed");
            assert!(
                started.elapsed() < Duration::from_secs(bound + 3),
                "{cut}: the slots were never freed"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            served < Duration::from_secs(bound + 1) + Duration::from_millis(500),
            "{cut}: served after {served:?}"
        );
        // The fifth client needed one slot; the other stalled responses
        // are cut by their own bound a moment later (on a loaded machine,
        // later still). Wait for all four before the clients go, or a
        // client's own close would end one first.
        let deadline = Instant::now() + Duration::from_secs(bound + 5);
        while records_for(&log, "/stream").len() < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(stalled);
        let r = stop(server);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let cuts: Vec<_> = records_for(&log, "/stream")
            .into_iter()
            .map(|r| r["cut"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(cuts, vec![cut.to_string(); 4], "{cuts:?}");
    }
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Read (and drop) what the server sends until it closes; how long that
/// took, or `None` if it did not close within `limit`.
fn closed_within(s: &mut impl Read, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn silent_connections_are_closed_and_cannot_hold_max_connections() {
    let pki = Pki::new();
    let (cert, key) = (pki.arg("server.pem"), pki.arg("server.key"));
    // Closed within the deadline, a tick and the close grace, whatever the
    // peer does (here: nothing).
    let bound = Duration::from_secs(1) + Duration::from_secs(1) + Duration::from_secs(2);
    for tls in [false, true] {
        let mut args = vec![
            "--idle-timeout",
            "1s",
            "--header-timeout",
            "1s",
            "--max-connections",
            "2",
        ];
        if tls {
            args.extend(["--tls-cert", cert.as_str(), "--tls-key", key.as_str()]);
        }
        let server = serve(&args);
        let port = server.port;
        let open = |hello: &[u8]| -> Box<dyn ReadWrite> {
            let short = Some(Duration::from_millis(200));
            let mut s: Box<dyn ReadWrite> = if tls {
                let c = tls_connect(
                    std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    pki.client_config("ca.pem", false),
                    "localhost",
                )
                .expect("the handshake");
                c.sock.set_read_timeout(short).unwrap();
                Box::new(c)
            } else {
                let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
                tcp.set_read_timeout(short).unwrap();
                Box::new(tcp)
            };
            s.write_all(hello).unwrap();
            s.flush().unwrap();
            s
        };
        // Two silent HTTP/2 clients: the preface and SETTINGS, then nothing
        // (not even the answer to the server's PING).
        let mut silent: Vec<_> = (0..2).map(|_| open(H2_HELLO)).collect();
        let started = Instant::now();
        for s in &mut silent {
            let took = closed_within(s, Duration::from_secs(10));
            assert!(
                took.is_some() && started.elapsed() < bound + Duration::from_secs(1),
                "tls {tls}: an HTTP/2 connection that answers nothing stayed open"
            );
        }
        // Then nobody holds the connections: a client is served.
        let url_scheme = if tls { "https" } else { "http" };
        let url = format!("{url_scheme}://localhost:{port}/hello");
        let resolve = format!("localhost:{port}:127.0.0.1");
        let ca = pki.arg("ca.pem");
        let (code, _) = curl_code(&["--cacert", &ca, "--resolve", &resolve, &url]);
        assert_eq!(
            code, 0,
            "tls {tls}: served after the silent ones were closed"
        );
        // An HTTP/1 client that sends nothing at all: closed at the header
        // timeout too.
        let mut quiet = open(b"");
        assert!(
            closed_within(&mut quiet, Duration::from_secs(10)).is_some_and(|d| d < bound),
            "tls {tls}: a silent connection stayed open"
        );
        stop(server);
    }
}

/// A stream to read and write, plain or TLS.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn an_authority_that_is_not_host_and_port_is_refused_before_routing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(proxy(), dir.path().join("proxy.wasm")).unwrap();
    let manifest = dir.path().join("apps.toml");
    std::fs::write(
        &manifest,
        "version = 1\n\n[[app]]\nname = \"site\"\ncomponent = \"proxy.wasm\"\npath = \"/\"\nenv = [\"APP=site\"]\n\n[[app]]\nname = \"admin\"\ncomponent = \"proxy.wasm\"\npath = \"/admin\"\nhost = \"admin.test\"\nenv = [\"APP=admin\"]\n",
    )
    .unwrap();
    let server = serve_manifest(&manifest);
    let port = server.port;
    let ask = |headers: &str| {
        exchange(
            port,
            format!("GET /admin/info HTTP/1.1\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
        )
    };
    // The allowed twin: the admin app, which sees the authority it was
    // routed on.
    let r = ask("Host: admin.test\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("authority admin.test\n"), "{}", r.body);
    for bad in [
        "Host: evil.test@admin.test\r\n",
        "Host: @admin.test\r\n",
        "Host: admin.test\r\nHost: other.test\r\n",
        "Host: admin.test/x\r\n",
    ] {
        let r = ask(bad);
        assert_eq!(r.status, 400, "{bad:?}: {}", r.body);
        assert!(r.body.starts_with("bad request:"), "{}", r.body);
    }
    // HTTP/2: the same for :authority.
    block_on(async {
        use http_body_util::BodyExt;
        let mut sender = h2_client(port).await;
        for (uri, status) in [
            ("http://admin.test/admin/info", 200),
            ("http://evil.test@admin.test/admin/info", 400),
        ] {
            let req = http::Request::get(uri)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), status, "{uri}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            if status == 200 {
                assert!(String::from_utf8_lossy(&body).contains("authority admin.test\n"));
            }
        }
    });
    stop(server);
}

#[test]
fn a_trap_after_the_head_is_said_and_cuts_the_response() {
    for (abi, guest) in guests() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.jsonl");
        let server = serve_guest(&guest, &["--access-log", p(&log)]);
        // HTTP/1.1: no complete response (the body's end never comes).
        let (got, _, _) = raw_get(server.port, "/traphead", Duration::from_secs(20));
        assert!(
            !got.ends_with(b"0\r\n\r\n"),
            "{abi}: {:?}",
            String::from_utf8_lossy(&got)
        );
        let url = format!("http://127.0.0.1:{}/traphead", server.port);
        let (code, _) = curl_code(&[&url]);
        assert_ne!(code, 0, "{abi}: curl must see a cut response");
        let (code, _) = curl_code(&["--http2-prior-knowledge", &url]);
        assert_ne!(code, 0, "{abi}: curl must see a reset stream");
        assert_eq!(
            get(server.port, "/").status,
            if abi == "0.2" { 404 } else { 200 }
        );
        let r = stop(server);
        let said: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("(GET /traphead) failed after its response began: "))
            .collect();
        assert_eq!(said.len(), 3, "{abi}: one line per request: {}", r.stderr);
        let records = records_for(&log, "/traphead");
        assert_eq!(records.len(), 3, "{abi}");
        for rec in &records {
            assert_eq!(rec["cut"], "trap", "{abi}: {rec}");
            let id = rec["request_id"].as_str().unwrap();
            assert!(said.iter().any(|l| l.contains(id)), "{abi}: {id}");
        }
    }
}

#[test]
fn serve_answers_only_once_its_apps_are_ready() {
    // An empty compile cache: the app is compiled before anything listens.
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let proxy = proxy();
    let mut cmd = warden();
    cmd.arg("serve")
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["--addr", &addr, &proxy])
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ready.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        r.store(true, std::sync::atomic::Ordering::SeqCst);
        first
    });
    // While the app compiles, connections are refused at once, never left
    // waiting in a backlog nobody serves. (Warden listens just before it
    // says so: a try in between may get through, and is served.)
    let started = Instant::now();
    let (mut tries, mut taken) = (0u32, 0u32);
    while !ready.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(started.elapsed() < Duration::from_secs(120), "never served");
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            taken += 1;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            assert!(
                reply.starts_with("HTTP/1.1 200"),
                "taken, then not served: {reply:?}"
            );
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = reader.join().unwrap();
    assert_eq!(first, format!("warden: serving http://{addr}/"));
    eprintln!("{tries} tries while the app compiled, {taken} taken");
    assert!(
        tries >= 10,
        "the compile was too quick to tell ({tries} tries)"
    );
    assert!(
        taken <= 2,
        "{taken} of {tries} connections taken while the app compiled"
    );
    assert_eq!(get(port, "/hello").status, 200);
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_bounded(&mut child, Duration::from_secs(20), "serve stops");
}

#[test]
fn an_http2_stream_past_its_deadline_is_reset_alone() {
    // The cut of one stream leaves the connection and its other streams
    // alone.
    let server = serve(&["--timeout", "1s"]);
    let port = server.port;
    block_on(async {
        use http_body_util::BodyExt;
        let mut sender = h2_client(port).await;
        let get = |path: &str| {
            http::Request::get(format!("http://localhost:{port}{path}"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap()
        };
        let resp = sender.send_request(get("/stream")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let started = Instant::now();
        let mut body = resp.into_body();
        let mut bytes = 0usize;
        let ended = loop {
            match body.frame().await {
                Some(Ok(f)) => bytes += f.data_ref().map_or(0, |d| d.len()),
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            }
        };
        assert!(ended.is_err(), "the stream is reset, not ended");
        assert!(bytes > 0);
        assert!(started.elapsed() < Duration::from_secs(4));
        // The same connection serves the next request.
        let resp = sender.send_request(get("/hello")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello from a proxy\n");
    });
    // The client went with block_on's runtime (else the server's shutdown
    // would wait its grace for it).
    stop(server);
}
