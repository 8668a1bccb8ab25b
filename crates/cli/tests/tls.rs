//! Connection kinds and transparent TLS, end to end: the real `warden`
//! binary, real guests (preview1 servers, a WASI 0.2 and a 0.3 client),
//! real TLS peers and clients on loopback, and certificates made at test
//! time. The host speaks TLS for the guest, which reads and writes
//! plaintext; every allow has its deny twin.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::peers::{Dns, Zone};
use common::server::Server;
use common::tls::*;
use common::*;
use warden_test_artifacts::{Target, guest};

fn client() -> String {
    p(&guest(Target::P2, "net_client")).to_string()
}

fn dns() -> Dns {
    let zone = Zone {
        answers: vec![vec!["127.0.0.1".parse().unwrap()]],
        ttl: 300,
    };
    Dns::start(&[("echo.test", zone.clone()), ("web.test", zone)])
}

/// `warden run --timeout 30s FLAGS net_client STEPS`, checked to exit 0.
fn net(flags: &[&str], steps: &[&str]) -> Ran {
    let c = client();
    let mut args: Vec<&str> = vec!["--timeout", "30s"];
    // The test DNS server answers with loopback addresses, which name
    // grants reach only when they say so (see
    // names_cannot_steer_traffic_inside_unless_the_grant_says_so).
    if flags.contains(&"--dns-server") {
        args.push("--allow-internal");
    }
    args.extend_from_slice(flags);
    args.push(&c);
    args.extend_from_slice(steps);
    let r = run(&args);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r
}

fn audit(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events<'a>(records: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

fn peer(pki: &Pki, leaf: &str, speaks: Speaks, ending: Ending) -> TlsPeer {
    TlsPeer::start(PeerSpec {
        config: pki.server_config(leaf, false),
        speaks,
        ending,
        postgres: None,
    })
}

/// A manifest in `dir` with the test DNS server, the TOML `kind` (and
/// anything before it), and a grant to connect to echo.test:`port` as the
/// kind `name` (internal: the test DNS server answers with loopback).
fn echo_manifest(dir: &Path, dns: &Dns, port: u16, kind: &str, name: &str) -> std::path::PathBuf {
    let manifest = dir.join("warden.toml");
    let text = format!(
        "version = 1\ndns_server = \"{}\"\n{kind}\n\n[[allow]]\nid = \"echo\"\ntarget = \"echo.test\"\nports = \"{port}\"\nrights = [\"connect\", \"resolve\"]\nkind = \"{name}\"\ninternal = true\n",
        dns.addr
    );
    std::fs::write(&manifest, text).unwrap();
    manifest
}

fn sha256_of_pem(path: &Path) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let der = CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    format!("{:x}", sha2::Sha256::digest(&der))
}

// ---- Incoming: --listen-tls -------------------------------------------

fn tls_server(pki: &Pki, extra: &[&str], program: &str, args: &[&str]) -> Server {
    let (cert, key) = (pki.arg("server.pem"), pki.arg("server.key"));
    let g = p(&guest(Target::P1, program)).to_string();
    let mut all: Vec<&str> = vec![
        "--timeout",
        "60s",
        "--listen-tls",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    all.extend_from_slice(extra);
    all.push(&g);
    all.extend_from_slice(args);
    Server::start(&all)
}

fn addr(server: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port))
}

/// One round through an echo guest behind TLS: send `text`, end with
/// close_notify, read everything back until the guest's own close_notify
/// (a truncated end fails). With `mutual`, present the client certificate.
fn echo_round(pki: &Pki, server: &Server, mutual: bool, text: &str) -> String {
    let mut tls = tls_connect(
        addr(server),
        pki.client_config("ca.pem", mutual),
        "localhost",
    )
    .expect("the handshake with Warden");
    tls.write_all(text.as_bytes()).unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    read_to_end(&mut tls).expect("the guest's close arrives as close_notify")
}

#[test]
fn a_preview1_echo_behind_listen_tls_serves_a_tls_client_plaintext() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let server = tls_server(&pki, &["--audit", s(&log)], "echo_std", &["1"]);
    // Enough to cross the host's buffers several times. Our close_notify
    // reads as the end of the stream in the guest, which closes; its close
    // is a close_notify here: a clean end, not a truncation.
    let data: String = (0..20_000).map(|i| format!("line {i:05}\n")).collect();
    let back = echo_round(&pki, &server, false, &data);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed byte for byte");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("listening on 127.0.0.1:")
            && r.stderr.contains("(TLS, terminated by Warden)"),
        "{}",
        r.stderr
    );
    let records = audit(&log);
    let accepts = events(&records, "tls-accept");
    assert_eq!(accepts.len(), 1, "{records:#?}");
    let a = accepts[0];
    assert_eq!(a["result"], "ok");
    assert_eq!(a["name"], "localhost", "the SNI the client sent");
    assert_eq!(a["kind"], "listen:tcp0");
    assert!(a["version"].as_str().unwrap().starts_with("TLSv1_"), "{a}");
    assert!(a["cipher"].as_str().unwrap().starts_with("TLS"), "{a}");
    assert!(a["peer_cert_sha256"].is_null(), "no client certificate");
}

/// CPU time (user + system) `pid` has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis: utime is the 12th,
    // stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn event_loops_that_never_block_still_get_their_tls_bytes() {
    // A mio loop that keeps every connection registered for writable as
    // well never waits while a client is connected (the socket is always
    // writable); the host tasks that move TLS bytes must run anyway. The
    // same loop registered the usual way, and tokio, for comparison.
    let pki = Pki::new();
    for (program, args) in [
        ("echo_mio", ["2", "both"]),
        ("echo_mio", ["2", "read"]),
        ("echo_tokio", ["2", ""]),
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let server = tls_server(&pki, &[], program, &args);
        let data: String = (0..2_000).map(|i| format!("line {i:05}\n")).collect();
        let back = echo_round(&pki, &server, false, &data);
        assert!(back == data, "{program} {args:?}: echoed byte for byte");
        // With no client left, Warden waits without spinning: over a
        // second, far less than a second of CPU.
        let pid = server.child.id();
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_ticks(pid) - before;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert!(
            used * 4 < hz,
            "{program} {args:?}: {used} of {hz} ticks idle"
        );
        let back = echo_round(&pki, &server, false, "second client\n");
        assert_eq!(back, "second client\n", "{program} {args:?}");
        let r = server.finish();
        assert_eq!(r.code, 0, "{program} {args:?}: {}", r.stderr);
    }
}

#[test]
fn clients_that_fail_the_handshake_never_reach_the_guest() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    // The guest serves exactly one connection, then exits.
    let server = tls_server(&pki, &["--audit", s(&log)], "echo_std", &["1"]);
    // A client that does not trust Warden's certificate.
    let distrust = tls_connect(
        addr(&server),
        pki.client_config("other-ca.pem", false),
        "localhost",
    );
    assert!(distrust.is_err(), "an unknown CA fails on the client side");
    // A plaintext client.
    let mut plain = server.connect();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"GET"),
        "the plaintext never reached the echo guest: {buf:?}"
    );
    // The guest is still waiting for its one connection: this one.
    assert_eq!(echo_round(&pki, &server, false, "the one\n"), "the one\n");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warden: TLS handshake with client 127.0.0.1:")
            && r.stderr
                .contains("the connection was closed before the guest saw it"),
        "{}",
        r.stderr
    );
    // Said once for the one peer address, however many failed.
    assert_eq!(
        r.stderr.matches("TLS handshake with client").count(),
        1,
        "{}",
        r.stderr
    );
    let records = audit(&log);
    let accepts = events(&records, "tls-accept");
    let failed: Vec<_> = accepts.iter().filter(|r| r["result"] == "failed").collect();
    let ok: Vec<_> = accepts.iter().filter(|r| r["result"] == "ok").collect();
    assert_eq!((failed.len(), ok.len()), (2, 1), "{records:#?}");
    assert!(
        failed
            .iter()
            .all(|r| !r["reason"].as_str().unwrap().is_empty())
    );
}

#[test]
fn mutual_tls_in_refuses_clients_without_a_certificate_before_the_guest() {
    let pki = Pki::new();
    let ca = pki.arg("client-ca.pem");
    let server = tls_server(&pki, &["--tls-client-ca", &ca], "echo_std", &["1"]);
    // Without a client certificate: the handshake (or the first read, in
    // TLS 1.3) fails, and nothing is echoed.
    if let Ok(mut anon) = tls_connect(
        addr(&server),
        pki.client_config("ca.pem", false),
        "localhost",
    ) {
        let _ = anon.write_all(b"anonymous\n");
        let _ = anon.flush();
        let mut buf = [0u8; 64];
        assert!(
            !matches!(anon.read(&mut buf), Ok(n) if n > 0),
            "no echo for a client without a certificate"
        );
    }
    // With one: served (and it is the guest's only connection).
    let text = "with a certificate\n";
    assert_eq!(echo_round(&pki, &server, true, text), text);
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn stalled_handshakes_are_dropped_on_the_hosts_time_and_never_occupy_the_guest() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    // The guest serves two connections: one while handshakes are stalled,
    // one after they were dropped.
    let server = tls_server(
        &pki,
        &["--tls-handshake-timeout", "1s", "--audit", s(&log)],
        "echo_std",
        &["2"],
    );
    let round = |text: &str| assert_eq!(echo_round(&pki, &server, false, text), text);
    // Clients that connect and say nothing, or half a ClientHello.
    let silent: Vec<_> = (0..5).map(|_| server.connect()).collect();
    let mut half = server.connect();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // A real client is served at once, stalled ones or not.
    let started = Instant::now();
    round("not held up\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stalled ones are closed by the host after the timeout, while
    // the guest still runs.
    for mut c in silent.into_iter().chain([half]) {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        let closed = match c.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        assert!(closed, "a stalled handshake is dropped");
    }
    round("still serving\n");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let records = audit(&log);
    assert!(
        events(&records, "tls-accept")
            .iter()
            .any(|r| r["reason"] == "the handshake did not finish within 1s"),
        "{records:#?}"
    );
}

#[test]
fn curl_gets_a_page_from_a_preview1_http_server_behind_listen_tls() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is needed for this test (apt-get install curl)");
    }
    let pki = Pki::new();
    let server = tls_server(&pki, &[], "http_mio", &["2"]);
    let url = format!("https://localhost:{}/", server.port);
    let curl = |ca: &str| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert", ca, "--resolve"])
            .arg(format!("localhost:{}:127.0.0.1", server.port))
            .arg(&url)
            .output()
            .unwrap()
    };
    let out = curl(&pki.arg("ca.pem"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(!body.is_empty(), "a response body");
    // Deny twin: curl trusting another CA refuses Warden's certificate.
    let refused = curl(&pki.arg("other-ca.pem"));
    assert!(!refused.status.success());
    // The guest answers one more request, then exits.
    let again = curl(&pki.arg("ca.pem"));
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A line through TLS to a component listening at `port`: its echo.
fn tls_line(pki: &Pki, port: u16, line: &str) -> String {
    let mut tls = tls_connect(
        SocketAddr::from(([127, 0, 0, 1], port)),
        pki.client_config("ca.pem", false),
        "localhost",
    )
    .expect("the handshake with Warden");
    tls.write_all(line.as_bytes()).unwrap();
    tls.flush().unwrap();
    let mut back = Vec::new();
    while !back.ends_with(b"\n") {
        let mut byte = [0u8; 1];
        if tls.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        back.push(byte[0]);
    }
    String::from_utf8(back).unwrap()
}

#[test]
fn components_listen_behind_tls_pre_opened_or_by_their_grants_kind() {
    let pki = Pki::new();
    // WASI 0.3 on a pre-opened --listen-tls listener its bind takes over.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (cert, key) = (pki.arg("server.pem"), pki.arg("server.key"));
    let step = format!("listen:{addr}");
    let p3 = p(&guest(Target::P3, "p3_net")).to_string();
    let mut server = Server::start(&[
        "--timeout",
        "30s",
        "--listen-tls",
        &format!("web={addr}"),
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        &p3,
        &step,
    ]);
    assert_eq!(server.line(), format!("listening on {addr}"));
    // A plaintext client never reaches the guest...
    let mut plain = server.connect();
    plain.write_all(b"plaintext\n").unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"echo"), "{buf:?}");
    // ...a TLS client does, in plaintext.
    assert_eq!(tls_line(&pki, port, "hello\n"), "echo hello\n");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("{step}: ok accepted hello")),
        "{}",
        r.stdout
    );

    // WASI 0.2 binding its own listener, under a manifest grant whose kind
    // has a certificate.
    let dir = tempfile::tempdir().unwrap();
    for f in ["server.pem", "server.key"] {
        std::fs::copy(pki.path(f), dir.path().join(f)).unwrap();
    }
    let manifest = dir.path().join("warden.toml");
    std::fs::write(
        &manifest,
        r#"version = 1

[[kind]]
name = "web"
cert = "server.pem"
key = "server.key"

[[allow]]
id = "web"
target = "127.0.0.1"
ports = "*"
rights = ["bind", "listen"]
kind = "web"

[[allow]]
id = "peers"
target = "127.0.0.0/8"
ports = "*"
rights = ["accept"]
"#,
    )
    .unwrap();
    let c = client();
    let server = Server::start_guest(&[
        "--timeout",
        "30s",
        "--manifest",
        s(&manifest),
        &c,
        "listen:127.0.0.1:0",
    ]);
    assert_eq!(tls_line(&pki, server.port, "hi\n"), "echo hi\n");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Deny twin: the same grant without the kind serves plaintext (a TLS
    // client's handshake fails against it).
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("kind = \"web\"\n", ""),
    )
    .unwrap();
    let server = Server::start_guest(&[
        "--timeout",
        "30s",
        "--manifest",
        s(&manifest),
        &c,
        "listen:127.0.0.1:0",
    ]);
    let refused = tls_connect(
        SocketAddr::from(([127, 0, 0, 1], server.port)),
        pki.client_config("ca.pem", false),
        "localhost",
    );
    assert!(refused.is_err(), "no TLS without the kind");
    // Dropping the server stops it.
    drop(server);
}

// ---- Outgoing: --connect-tls, WASI 0.2 -----------------------------------

#[test]
fn a_02_guest_writes_plaintext_and_the_peer_sees_only_tls() {
    let pki = Pki::new();
    let dns = dns();
    let tls_peer = peer(&pki, "server", Speaks::Line, Ending::Clean);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let grant = format!("echo.test:{}", tls_peer.port());
    let (d, ca) = (dns.addr.to_string(), pki.arg("ca.pem"));
    let step = format!("talk:echo.test:{}", tls_peer.port());
    let r = net(
        &[
            "--dns-server",
            &d,
            "--connect-tls",
            &grant,
            "--tls-ca",
            &ca,
            "--audit",
            s(&log),
        ],
        &[&step],
    );
    assert!(
        r.stdout
            .contains(&format!("{step}: ok tls peer got ping eof")),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let seen = tls_peer.wait_seen(1);
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].client_hello(),
        "the first bytes on the wire: {:?}",
        seen[0].first
    );
    assert_eq!(
        seen[0].sni.as_deref(),
        Some("echo.test"),
        "SNI is the pinned name"
    );
    assert_eq!(seen[0].got, "ping");
    assert_eq!(seen[0].end, "close_notify", "the guest's shutdown(write)");
    let records = audit(&log);
    let connects = events(&records, "tls-connect");
    assert_eq!(connects.len(), 1, "{records:#?}");
    let c = connects[0];
    assert_eq!(c["result"], "ok");
    assert_eq!(c["name"], "echo.test");
    assert_eq!(c["kind"], "--connect-tls");
    assert_eq!(c["addr"], format!("127.0.0.1:{}", tls_peer.port()));
    assert_eq!(
        c["peer_cert_sha256"],
        sha256_of_pem(&pki.path("server.pem"))
    );
    assert!(
        c["peer_cert_subject"]
            .as_str()
            .unwrap()
            .contains("echo.test"),
        "{c}"
    );
}

#[test]
fn a_failed_verification_refuses_the_guests_connect_and_sends_no_plaintext() {
    let pki = Pki::new();
    let dns = dns();
    let d = dns.addr.to_string();
    // (the peer's certificate, the CA Warden trusts, what fails)
    let cases = [
        (
            "wrong-name",
            Some("ca.pem"),
            "not valid for name \"echo.test\"",
        ),
        ("expired", Some("ca.pem"), "expired"),
        ("self-signed", Some("ca.pem"), "UnknownIssuer"),
        ("server", Some("other-ca.pem"), "UnknownIssuer"),
        // The default trust is the webpki roots, which never signed a
        // test CA.
        ("server", None, "UnknownIssuer"),
    ];
    for (leaf, ca, why) in cases {
        let tls_peer = peer(&pki, leaf, Speaks::Line, Ending::Clean);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let grant = format!("echo.test:{}", tls_peer.port());
        let step = format!("connect:echo.test:{}", tls_peer.port());
        let ca_path = ca.map(|c| pki.arg(c));
        let mut flags = vec![
            "--dns-server",
            &d,
            "--connect-tls",
            &grant,
            "--audit",
            s(&log),
        ];
        if let Some(ca) = &ca_path {
            flags.extend(["--tls-ca", ca.as_str()]);
        }
        let r = net(&flags, &[&step, &step]);
        assert_eq!(
            r.stdout
                .matches(&format!("{step}: ConnectionRefused"))
                .count(),
            2,
            "{leaf}/{ca:?}: {}\n{}",
            r.stdout,
            r.stderr
        );
        let line = format!(
            "warden: TLS to echo.test (127.0.0.1:{}, kind --connect-tls) failed:",
            tls_peer.port()
        );
        assert_eq!(r.stderr.matches(&line).count(), 1, "once: {}", r.stderr);
        let seen = tls_peer.wait_seen(2);
        assert!(
            seen.iter().all(|s| s.client_hello() && s.got.is_empty()),
            "{leaf}: {seen:?}"
        );
        let records = audit(&log);
        let failed = events(&records, "tls-connect");
        assert_eq!(failed.len(), 2, "{records:#?}");
        assert!(
            failed
                .iter()
                .all(|r| r["result"] == "failed" && r["reason"].as_str().unwrap().contains(why)),
            "{leaf}: {failed:#?}"
        );
    }
}

#[test]
fn a_truncated_stream_reads_as_an_error_and_close_notify_as_the_end() {
    let pki = Pki::new();
    let dns = dns();
    let d = dns.addr.to_string();
    let ca = pki.arg("ca.pem");
    for (ending, expect) in [
        (Ending::Clean, "ok tls peer got ping eof"),
        (Ending::Truncate, "read failed ("),
    ] {
        let tls_peer = peer(&pki, "server", Speaks::Line, ending);
        let grant = format!("echo.test:{}", tls_peer.port());
        let step = format!("talk:echo.test:{}", tls_peer.port());
        let r = net(
            &["--dns-server", &d, "--connect-tls", &grant, "--tls-ca", &ca],
            &[&step],
        );
        assert!(
            r.stdout.contains(&format!("{step}: {expect}")),
            "{ending:?}: {}\n{}",
            r.stdout,
            r.stderr
        );
    }
}

#[test]
fn mutual_tls_out_presents_the_client_certificate() {
    let pki = Pki::new();
    let dns = dns();
    let d = dns.addr.to_string();
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );
    let tls_peer = TlsPeer::start(PeerSpec {
        config: pki.server_config("server", true),
        speaks: Speaks::Line,
        ending: Ending::Clean,
        postgres: None,
    });
    let grant = format!("echo.test:{}", tls_peer.port());
    let step = format!("connect:echo.test:{}", tls_peer.port());
    let r = net(
        &[
            "--dns-server",
            &d,
            "--connect-tls",
            &grant,
            "--tls-ca",
            &ca,
            "--tls-client-cert",
            &cert,
            "--tls-client-key",
            &key,
        ],
        &[&step],
    );
    assert!(
        r.stdout.contains(&format!("{step}: ok tls peer got ping")),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let seen = tls_peer.wait_seen(1);
    assert!(seen[0].client_cert, "{seen:?}");
    // Deny twin: without the client certificate, the peer refuses, and
    // the guest never gets its answer.
    let r = net(
        &["--dns-server", &d, "--connect-tls", &grant, "--tls-ca", &ca],
        &[&step],
    );
    assert!(!r.stdout.contains("ok tls peer got"), "{}", r.stdout);
    let seen = tls_peer.wait_seen(2);
    assert!(
        seen[1].error.is_some() && seen[1].got.is_empty(),
        "{seen:?}"
    );
}

#[test]
fn postgres_tls_sends_the_ssl_request_then_tls() {
    let pki = Pki::new();
    let dns = dns();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(pki.path("ca.pem"), dir.path().join("ca.pem")).unwrap();
    for (answer, works) in [(b'S', true), (b'N', false)] {
        let tls_peer = TlsPeer::start(PeerSpec {
            config: pki.server_config("server", false),
            speaks: Speaks::Line,
            ending: Ending::Clean,
            postgres: Some(answer),
        });
        let manifest = echo_manifest(
            dir.path(),
            &dns,
            tls_peer.port(),
            "require_tls = true\n\n[[kind]]\nname = \"db\"\nprotocol = \"postgres-tls\"\nca = \"ca.pem\"",
            "db",
        );
        let step = format!("connect:echo.test:{}", tls_peer.port());
        let r = net(&["--manifest", s(&manifest)], &[&step]);
        let seen = tls_peer.wait_seen(1);
        assert!(seen[0].ssl_request, "the SSLRequest came first: {seen:?}");
        if works {
            assert!(
                r.stdout.contains(&format!("{step}: ok tls peer got ping")),
                "{}\n{}",
                r.stdout,
                r.stderr
            );
            assert!(seen[0].client_hello(), "then a ClientHello: {seen:?}");
        } else {
            assert!(
                r.stdout.contains(&format!("{step}: ConnectionRefused")),
                "{}",
                r.stdout
            );
            assert!(
                r.stderr.contains("does not do TLS (it answered N"),
                "{}",
                r.stderr
            );
            assert!(seen[0].got.is_empty());
        }
    }
}

#[test]
fn tls_inside_tls_passes_through_a_guest_untouched() {
    // The guest relays a client's bytes to a peer over a TLS kind; the
    // client does its own TLS through it (to the peer's inner endpoint).
    let pki = Pki::new();
    let dns = dns();
    let tls_peer = peer(&pki, "server", Speaks::TlsInTls, Ending::Clean);
    let (d, ca) = (dns.addr.to_string(), pki.arg("ca.pem"));
    let grant = format!("echo.test:{}", tls_peer.port());
    let c = client();
    let step = format!("relay:127.0.0.1:0:echo.test:{}", tls_peer.port());
    let mut server = Server::start_guest(&[
        "--timeout",
        "60s",
        "--allow-listen",
        "127.0.0.1:*",
        "--dns-server",
        &d,
        // The test DNS server answers with loopback.
        "--allow-internal",
        "--connect-tls",
        &grant,
        "--tls-ca",
        &ca,
        &c,
        &step,
    ]);
    let relay = SocketAddr::from(([127, 0, 0, 1], server.port));
    let mut inner = tls_connect(relay, pki.client_config("ca.pem", false), "echo.test")
        .expect("the inner handshake passes through the guest and Warden's TLS");
    inner.write_all(b"ping\n").unwrap();
    inner.flush().unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(b"\n") {
        let mut byte = [0u8; 1];
        assert_eq!(inner.read(&mut byte).unwrap(), 1, "the reply, whole");
        reply.push(byte[0]);
    }
    assert_eq!(reply, b"tls peer got ping\n");
    inner.conn.send_close_notify();
    inner.flush().unwrap();
    let _ = read_to_end(&mut inner);
    drop(inner);
    let line = server.line();
    assert!(line.contains(": ok relayed"), "{line}");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = tls_peer.wait_seen(1);
    assert!(
        seen[0].client_hello() && seen[0].error.is_none(),
        "{seen:?}"
    );
    assert_eq!(seen[0].got, "ping");
}

#[test]
fn a_kinds_connection_cap_refuses_the_connection_past_it() {
    let pki = Pki::new();
    let dns = dns();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(pki.path("ca.pem"), dir.path().join("ca.pem")).unwrap();
    let tls_peer = peer(&pki, "server", Speaks::Line, Ending::Clean);
    for (max, expect) in [
        (1, "first connected, second ConnectionRefused"),
        (2, "first connected, second connected"),
    ] {
        let kind = format!(
            "[[kind]]\nname = \"capped\"\nprotocol = \"tls\"\nca = \"ca.pem\"\nmax_connections = {max}"
        );
        let manifest = echo_manifest(dir.path(), &dns, tls_peer.port(), &kind, "capped");
        let step = format!("twice:echo.test:{}", tls_peer.port());
        let r = net(&["--manifest", s(&manifest)], &[&step]);
        assert!(
            r.stdout.contains(&format!("{step}: ok {expect}")),
            "{max}: {}\n{}",
            r.stdout,
            r.stderr
        );
        let said = r
            .stderr
            .contains("kind capped allows 1 connections open at once");
        assert_eq!(said, max == 1, "{}", r.stderr);
    }
}

// ---- Outgoing: WASI 0.3 ----------------------------------------------------

#[test]
fn a_03_guest_connects_through_connect_tls() {
    let pki = Pki::new();
    let ca = pki.arg("ca.pem");
    let g = p(&guest(Target::P3, "p3_net")).to_string();
    for (leaf, ok) in [("server", true), ("wrong-name", false)] {
        let tls_peer = peer(&pki, leaf, Speaks::Line, Ending::Clean);
        // By address: the name to check comes from --tls-server-name.
        let grant = format!("127.0.0.1:{}", tls_peer.port());
        let step = format!("connect:127.0.0.1:{}", tls_peer.port());
        let r = run(&[
            "--timeout",
            "30s",
            "--connect-tls",
            &grant,
            "--tls-server-name",
            "echo.test",
            "--tls-ca",
            &ca,
            &g,
            &step,
        ]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let seen = tls_peer.wait_seen(1);
        assert!(seen[0].client_hello(), "{seen:?}");
        assert_eq!(
            seen[0].sni.as_deref(),
            Some("echo.test"),
            "{seen:?}\n{}\n{}",
            r.stdout,
            r.stderr
        );
        if ok {
            assert!(
                r.stdout.contains(&format!("{step}: ok tls peer got ping")),
                "{}\n{}",
                r.stdout,
                r.stderr
            );
            assert_eq!(seen[0].end, "close_notify", "the 0.3 send stream's end");
        } else {
            assert!(
                r.stdout
                    .contains(&format!("{step}: ErrorCode::ConnectionRefused")),
                "{}\n{}",
                r.stdout,
                r.stderr
            );
            assert!(seen[0].got.is_empty());
        }
    }
}

// ---- wasi:http https:// ----------------------------------------------------

#[test]
fn https_egress_goes_through_the_hosts_tls() {
    let pki = Pki::new();
    let dns = dns();
    let d = dns.addr.to_string();
    let ca = pki.arg("ca.pem");
    let web = peer(&pki, "server", Speaks::Http, Ending::Clean);
    let grant = format!("web.test:{}", web.port());
    let https = format!("http:https://web.test:{}/page", web.port());
    // With the kind's CA: sent, answered.
    let r = net(
        &["--dns-server", &d, "--connect-tls", &grant, "--tls-ca", &ca],
        &[&https],
    );
    assert!(
        r.stdout
            .contains(&format!("{https}: ok status 200 hello over tls")),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // A TLS kind makes even an http:// request TLS on the wire.
    let plain_url = format!("http:http://web.test:{}/plain", web.port());
    let r = net(
        &["--dns-server", &d, "--connect-tls", &grant, "--tls-ca", &ca],
        &[&plain_url],
    );
    assert!(
        r.stdout
            .contains(&format!("{plain_url}: ok status 200 hello over tls")),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let seen = web.wait_seen(2);
    assert!(
        seen.iter()
            .all(|s| s.client_hello() && s.sni.as_deref() == Some("web.test")),
        "{seen:?}"
    );
    assert_eq!(seen[0].got, "GET /page HTTP/1.1");
    // Deny twin: a plain grant trusts the webpki roots, which did not sign
    // the test CA: a certificate error, and no request reaches the peer.
    let r = net(&["--dns-server", &d, "--allow-connect", &grant], &[&https]);
    assert!(
        r.stdout
            .contains(&format!("{https}: ErrorCode::TlsCertificateError")),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let seen = web.wait_seen(3);
    assert_eq!(seen.len(), 3);
    assert!(seen[2].got.is_empty(), "{seen:?}");
}

// ---- Policy: require-tls, check, explain -----------------------------------

#[test]
fn require_tls_refuses_plain_grants_at_load() {
    let hello = p(&guest(Target::P1, "hello")).to_string();
    let r = run(&["--require-tls", "--allow-connect", "127.0.0.1:5432", &hello]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--allow-connect 127.0.0.1:5432 allows plain TCP connections")
            && r.stderr.contains("use --connect-tls"),
        "{}",
        r.stderr
    );
    let r = run(&["--require-tls", "--connect-tls", "db.test:5432", &hello]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // An address needs a name to check.
    let r = run(&["--connect-tls", "127.0.0.1:5432", &hello]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("add --tls-server-name NAME"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_tls_material_is_one_clear_error_before_the_guest_starts() {
    let pki = Pki::new();
    let hello = p(&guest(Target::P1, "hello")).to_string();
    let (cert, expired, key, other_key) = (
        pki.arg("server.pem"),
        pki.arg("expired.pem"),
        pki.arg("server.key"),
        pki.arg("client.key"),
    );
    let cases: [(&[&str], &str); 4] = [
        (
            &["--tls-cert", &cert, "--tls-key", &other_key],
            "does not belong to the certificate",
        ),
        (
            &["--tls-cert", &expired, "--tls-key", &key],
            "expired on 2021-01-01",
        ),
        (
            &["--tls-cert", "/nonexistent.pem", "--tls-key", &key],
            "cannot read /nonexistent.pem",
        ),
        (
            &["--tls-cert", &key, "--tls-key", &key],
            "no certificate in it",
        ),
    ];
    for (flags, why) in cases {
        let mut args = vec!["--listen-tls", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        args.push(&hello);
        let r = run(&args);
        assert_eq!(r.code, 2, "{flags:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{flags:?}: {}", r.stderr);
        assert!(!r.stdout.contains("hello"), "the guest never ran");
    }
    // --listen-tls without a certificate is a usage error.
    let r = run(&["--listen-tls", "127.0.0.1:0", &hello]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--tls-cert"), "{}", r.stderr);
}

#[test]
fn check_validates_the_material_and_prints_each_kind() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
        "expired.pem",
    ] {
        std::fs::copy(pki.path(f), dir.path().join(f)).unwrap();
    }
    let manifest = dir.path().join("warden.toml");
    let text = r#"version = 1

[[kind]]
name = "db"
protocol = "postgres-tls"
ca = "ca.pem"
client_cert = "client.pem"
client_key = "client.key"
min_version = "1.3"

[[allow]]
id = "db"
target = "db.internal"
ports = "5432"
rights = ["connect", "resolve"]
kind = "db"

[[listen]]
name = "web"
addr = "127.0.0.1:8443"
cert = "server.pem"
key = "server.key"
"#;
    std::fs::write(&manifest, text).unwrap();
    let out = warden().arg("check").arg(&manifest).output().unwrap();
    let r = ran(out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("allow connect,resolve db.internal:5432 kind db"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("kind db: protocol postgres-tls")
            && r.stdout.contains("TLS 1.3 or newer"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("client certificate"), "{}", r.stdout);
    assert!(r.stdout.contains("kind listen:web:"), "{}", r.stdout);
    assert!(r.stdout.contains("CN=echo.test"), "{}", r.stdout);
    // Deny twins: an expired certificate, a key that is not the
    // certificate's.
    for (from, to, why) in [
        (
            "cert = \"server.pem\"",
            "cert = \"expired.pem\"",
            "expired on",
        ),
        (
            "client_key = \"client.key\"",
            "client_key = \"server.key\"",
            "does not belong",
        ),
    ] {
        std::fs::write(&manifest, text.replace(from, to)).unwrap();
        let r = ran(warden().arg("check").arg(&manifest).output().unwrap());
        assert_eq!(r.code, 2, "{}", r.stdout);
        assert!(r.stderr.contains(why), "{}", r.stderr);
    }
}

#[test]
fn explain_names_the_kind_that_applies() {
    let r = ran(warden()
        .args([
            "explain",
            "--connect-tls",
            "db.example.com:5432",
            "connect",
            "db.example.com:5432",
        ])
        .output()
        .unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("kind: --connect-tls (protocol tls, trusting the webpki roots"),
        "{}",
        r.stdout
    );
    let r = ran(warden()
        .args([
            "explain",
            "--allow-connect",
            "db.example.com:5432",
            "connect",
            "db.example.com:5432",
        ])
        .output()
        .unwrap());
    assert!(r.stdout.contains("kind: none (plain TCP"), "{}", r.stdout);
}
