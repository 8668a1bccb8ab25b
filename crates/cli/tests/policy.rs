//! Network policy end to end: the real `warden` binary running a real
//! WASI 0.2 client/server guest (test-programs/src/bin/net_client.rs)
//! against real peers on loopback (TCP, HTTP, UDP, and a DNS server whose
//! answers the test controls). Every allow has its deny twin, and every
//! deny checks that nothing reached the peer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::peers::{Dns, TcpPeer, UdpPeer, Zone};
use common::*;
use warden_test_artifacts::{Target, guest};

fn client() -> String {
    p(&guest(Target::P2, "net_client")).to_string()
}

/// `warden run FLAGS net_client STEPS`, checked to have exited 0.
fn net(flags: &[&str], steps: &[&str]) -> Ran {
    let c = client();
    // Bounded: a guest that waits forever is stopped, and the test fails.
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

fn zone(ips: &[&str]) -> Zone {
    Zone {
        answers: vec![ips.iter().map(|s| s.parse().unwrap()).collect()],
        ttl: 300,
    }
}

/// The DNS server most tests use: every name the tests mention.
fn dns() -> Dns {
    Dns::start(&[
        ("api.example.com", zone(&["127.0.0.1"])),
        ("web.example.com", zone(&["127.0.0.1"])),
        ("other.example.com", zone(&["127.0.0.1"])),
        ("evilexample.com", zone(&["127.0.0.1"])),
        ("bad.test", zone(&["127.0.0.1"])),
        ("dual.test", zone(&["127.0.0.1", "::1"])),
    ])
}

// ------------------------------------------------------------ tcp connect

#[test]
fn connect_allowed_by_address_grant_and_its_deny_twin() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let step = format!("connect:127.0.0.1:{port}");
    let r = net(&["--allow-connect", &format!("127.0.0.1:{port}")], &[&step]);
    assert_eq!(r.stdout, format!("{step}: ok peer {port} got ping\n"));
    assert_eq!(peer.accepted(), 1);

    let other = TcpPeer::start("127.0.0.1");
    let r = net(
        &["--allow-connect", &format!("127.0.0.1:{}", port ^ 1)],
        &[&format!("connect:127.0.0.1:{}", other.port())],
    );
    assert!(r.stdout.ends_with(": PermissionDenied\n"), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "warden: denied connect 127.0.0.1:{} (rule default-deny)",
            other.port()
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "to allow it: --allow-connect 127.0.0.1:{}",
            other.port()
        )),
        "{}",
        r.stderr
    );
    assert_eq!(other.accepted(), 0);
}

#[test]
fn connect_over_ipv6_allowed_and_denied() {
    let peer = TcpPeer::start("[::1]");
    let port = peer.port();
    let step = format!("connect:[::1]:{port}");
    let r = net(&["--allow-connect", &format!("[::1]:{port}")], &[&step]);
    assert_eq!(r.stdout, format!("{step}: ok peer {port} got ping\n"));
    let r = net(&["--allow-connect", &format!("127.0.0.1:{port}")], &[&step]);
    assert_eq!(r.stdout, format!("{step}: PermissionDenied\n"));
    assert_eq!(peer.accepted(), 1);
}

#[test]
fn ipv4_mapped_and_compatible_spellings_of_a_denied_address_are_denied() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let grant = format!("127.0.0.0/8:{port}");
    let deny = format!("127.0.0.1:{port}");
    // wasi:http connects from the host, so every spelling of the address
    // reaches the gate (and would reach the peer). The twin first: allowed,
    // the mapped and compatible spellings do reach it.
    let mapped = format!("http:http://[::ffff:127.0.0.1]:{port}/");
    let compat = format!("http:http://[::127.0.0.1]:{port}/");
    let r = net(&["--allow-connect", &grant], &[&mapped]);
    assert_eq!(
        r.stdout,
        format!("{mapped}: ok status 200 hello from {port}\n")
    );
    assert_eq!(peer.accepted(), 1);
    let r = net(
        &["--allow-connect", &grant, "--deny", &deny],
        &[&mapped, &compat],
    );
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{mapped}: ErrorCode::HttpRequestDenied"),
            &format!("{compat}: ErrorCode::HttpRequestDenied"),
        ])
    );
    for spelled in ["[::ffff:127.0.0.1]", "[::127.0.0.1]"] {
        let line = format!("warden: denied http-request {spelled}:{port} (rule --deny {deny})");
        assert!(r.stderr.contains(&line), "{spelled}: {}", r.stderr);
    }
    // wasi:sockets refuses these spellings itself (invalid-argument); with
    // the deny they are also the gate's to refuse. Nothing reaches the peer.
    let tcp_mapped = format!("connect:[::ffff:127.0.0.1]:{port}");
    let tcp_compat = format!("connect:[::127.0.0.1]:{port}");
    let r = net(
        &["--allow-connect", &grant, "--deny", &deny],
        &[&tcp_mapped, &tcp_compat],
    );
    assert!(!r.stdout.contains(": ok"), "{}", r.stdout);
    assert_eq!(peer.accepted(), 1, "nothing more reached the peer");
}

#[test]
fn unspecified_addresses_are_not_in_an_everything_grant() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let v4 = format!("0.0.0.0/0:{port}");
    let v6 = format!("[::/0]:{port}");
    let zero4 = format!("connect:0.0.0.0:{port}");
    let zero6 = format!("connect:[::]:{port}");
    let twin = format!("connect:127.0.0.1:{port}");
    let r = net(
        &["--allow-connect", &v4, "--allow-connect", &v6],
        &[&zero4, &zero6, &twin],
    );
    let out: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(out.len(), 3, "{}", r.stdout);
    assert!(!out[0].contains(": ok"), "{}", r.stdout);
    assert!(!out[1].contains(": ok"), "{}", r.stdout);
    assert_eq!(out[2], format!("{twin}: ok peer {port} got ping"));
    assert_eq!(peer.accepted(), 1, "only the twin reached the peer");
}

#[test]
fn a_port_just_outside_the_range_is_denied() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let step = format!("connect:127.0.0.1:{port}");
    let above = format!("127.0.0.1:{}-{}", port + 1, port + 9);
    let below = format!("127.0.0.1:{}-{}", port - 9, port - 1);
    let r = net(
        &["--allow-connect", &above, "--allow-connect", &below],
        &[&step],
    );
    assert_eq!(r.stdout, format!("{step}: PermissionDenied\n"));
    assert_eq!(peer.accepted(), 0);
    let edge = format!("127.0.0.1:{}-{}", port - 9, port);
    let r = net(&["--allow-connect", &edge], &[&step]);
    assert_eq!(r.stdout, format!("{step}: ok peer {port} got ping\n"));
}

// ------------------------------------------------------------ names

#[test]
fn names_match_whole_labels_only() {
    let dns = dns();
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let d = dns.addr.to_string();
    let grant = format!("*.example.com:{port}");
    let good = format!("connect:api.example.com:{port}");
    let evil = format!("connect:evilexample.com:{port}");
    let apex = "resolve:example.com";
    let r = net(
        &["--dns-server", &d, "--allow-connect", &grant],
        &[&good, &evil, apex],
    );
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{good}: ok peer {port} got ping"),
            &format!("{evil}: PermissionDenied"),
            &format!("{apex}: PermissionDenied"),
        ])
    );
    assert_eq!(peer.accepted(), 1);
    assert_eq!(
        dns.a_queries("evilexample.com"),
        0,
        "a denied name is never sent"
    );
    assert!(
        r.stderr
            .contains("warden: denied resolve evilexample.com (rule default-deny)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_name_that_resolves_to_a_denied_address_is_denied() {
    let dns = dns();
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let d = dns.addr.to_string();
    let grant = format!("bad.test:{port}");
    let step = format!("connect:bad.test:{port}");
    let r = net(
        &[
            "--dns-server",
            &d,
            "--allow-connect",
            &grant,
            "--deny",
            "127.0.0.0/8:*",
        ],
        &[&step],
    );
    assert_eq!(r.stdout, format!("{step}: PermissionDenied\n"));
    assert!(
        r.stderr.contains(&format!(
            "warden: denied connect 127.0.0.1:{port} (rule --deny 127.0.0.0/8:*)"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(peer.accepted(), 0);
    // The twin: without the deny, the name's grant reaches its address.
    let r = net(&["--dns-server", &d, "--allow-connect", &grant], &[&step]);
    assert_eq!(r.stdout, format!("{step}: ok peer {port} got ping\n"));
}

#[test]
fn a_resolved_address_is_reachable_only_at_the_names_ports() {
    let dns = dns();
    let peer = TcpPeer::start("127.0.0.1");
    let other = TcpPeer::start("127.0.0.1");
    let d = dns.addr.to_string();
    let grant = format!("api.example.com:{}", peer.port());
    let by_name = format!("connect:api.example.com:{}", peer.port());
    let by_ip = format!("connect:127.0.0.1:{}", peer.port());
    let other_port = format!("connect:127.0.0.1:{}", other.port());
    let r = net(
        &["--dns-server", &d, "--allow-connect", &grant],
        &[&by_ip, &by_name, &by_ip, &other_port],
    );
    assert_eq!(
        r.stdout,
        lines(&[
            // Before any lookup the address is nobody's.
            &format!("{by_ip}: PermissionDenied"),
            &format!("{by_name}: ok peer {} got ping", peer.port()),
            // Pinned to api.example.com now, at its rule's port only.
            &format!("{by_ip}: ok peer {} got ping", peer.port()),
            &format!("{other_port}: PermissionDenied"),
        ])
    );
    assert_eq!(other.accepted(), 0);
}

#[test]
fn dns_rebinding_does_not_widen_what_a_name_reached() {
    let first = TcpPeer::start("127.0.0.1");
    let port = first.port();
    let second = TcpPeer::on(&format!("127.0.0.2:{port}"));
    let dns = Dns::start(&[(
        "rebind.example.com",
        Zone {
            answers: vec![
                vec!["127.0.0.1".parse().unwrap()],
                vec!["127.0.0.2".parse().unwrap()],
            ],
            ttl: 300,
        },
    )]);
    let d = dns.addr.to_string();
    let grant = format!("rebind.example.com:{port}");
    let r = net(
        &["--dns-server", &d, "--allow-connect", &grant],
        &[
            "resolve:rebind.example.com",
            "resolve:rebind.example.com",
            &format!("connect:127.0.0.2:{port}"),
            &format!("connect:rebind.example.com:{port}"),
        ],
    );
    assert_eq!(
        r.stdout,
        lines(&[
            "resolve:rebind.example.com: ok 127.0.0.1",
            "resolve:rebind.example.com: ok 127.0.0.1",
            &format!("connect:127.0.0.2:{port}: PermissionDenied"),
            &format!("connect:rebind.example.com:{port}: ok peer {port} got ping"),
        ])
    );
    assert_eq!(
        second.accepted(),
        0,
        "the rebound address was never reached"
    );
    assert_eq!(first.accepted(), 1);
    // The server would have answered 127.0.0.2 the second time; Warden
    // answered from the live pin and did not ask.
    assert_eq!(dns.a_queries("rebind.example.com"), 1);
}

#[test]
fn resolve_allowed_by_pattern_and_its_deny_twin() {
    let dns = dns();
    let d = dns.addr.to_string();
    let r = net(
        &["--dns-server", &d, "--allow-resolve", "*.test"],
        &[
            "resolve:dual.test",
            "resolve:api.example.com",
            "resolve:nosuch.test",
        ],
    );
    assert_eq!(
        r.stdout,
        lines(&[
            "resolve:dual.test: ok 127.0.0.1,::1",
            "resolve:api.example.com: PermissionDenied",
            // Allowed, and the server says there is no such name.
            "resolve:nosuch.test: Uncategorized",
        ])
    );
    assert_eq!(dns.a_queries("api.example.com"), 0);
}

// ------------------------------------------------------------ wasi:http

#[test]
fn http_to_an_allowed_host_and_the_denied_twins() {
    let dns = dns();
    let peer = TcpPeer::start("127.0.0.1");
    let other = TcpPeer::start("127.0.0.1");
    let (port, port2) = (peer.port(), other.port());
    let d = dns.addr.to_string();
    let grant = format!("web.example.com:{port}");
    let ok = format!("http:http://web.example.com:{port}/x?y=1");
    let other_host = format!("http:http://other.example.com:{port}/");
    let other_port = format!("http:http://web.example.com:{port2}/");
    let r = net(
        &["--dns-server", &d, "--allow-connect", &grant],
        &[&ok, &other_host, &other_port],
    );
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{ok}: ok status 200 hello from {port}"),
            &format!("{other_host}: ErrorCode::HttpRequestDenied"),
            &format!("{other_port}: ErrorCode::HttpRequestDenied"),
        ])
    );
    assert_eq!(
        *peer.requests.lock().unwrap(),
        [format!("GET /x?y=1 HTTP/1.1 host=web.example.com:{port}")]
    );
    assert_eq!(other.accepted(), 0);
    assert!(
        r.stderr.contains(&format!(
            "warden: denied http-request other.example.com:{port} (rule default-deny)"
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn names_cannot_steer_traffic_inside_unless_the_grant_says_so() {
    // Whoever answers DNS for a granted zone points its names at this
    // host's loopback (v4 and v6) and at the link-local cloud metadata
    // address.
    let dns = Dns::start(&[
        ("lo.example.test", zone(&["127.0.0.1"])),
        ("lo6.example.test", zone(&["::1"])),
        ("meta.example.test", zone(&["169.254.169.254"])),
    ]);
    let d = dns.addr.to_string();
    let peer = TcpPeer::start("127.0.0.1");
    let peer6 = TcpPeer::start("::1");
    let (port, port6) = (peer.port(), peer6.port());
    let udp = UdpPeer::start("127.0.0.1");
    let connect = format!("connect:lo.example.test:{port}");
    let connect6 = format!("connect:lo6.example.test:{port6}");
    let http = format!("http:http://lo.example.test:{port}/");
    let meta = "connect:meta.example.test:80".to_string();
    let udp_step = format!("udp:0.0.0.0:0:lo.example.test:{}", udp.addr.port());
    let wide = "*.example.test:*";
    let c = client();
    let run_with = |extra: &[&str], steps: &[&str]| {
        let mut args = vec!["--timeout", "30s", "--dns-server", &d];
        args.extend_from_slice(extra);
        args.push(&c);
        args.extend_from_slice(steps);
        let r = run(&args);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        r
    };
    // Refused, with the range named; nothing reaches the peers, and no
    // connect off loopback is ever made.
    let r = run_with(
        &["--allow-connect", wide, "--allow-udp", wide],
        &[&connect, &connect6, &http, &meta, &udp_step].map(String::as_str),
    );
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{connect}: PermissionDenied"),
            &format!("{connect6}: PermissionDenied"),
            &format!("{http}: ErrorCode::HttpRequestDenied"),
            &format!("{meta}: PermissionDenied"),
            &format!("{udp_step}: send PermissionDenied"),
        ]),
        "{}",
        r.stderr
    );
    for range in [
        "127.0.0.1 was resolved from lo.example.test and is a loopback (127.0.0.0/8) address",
        "::1 was resolved from lo6.example.test and is a loopback (::1) address",
        "169.254.169.254 was resolved from meta.example.test and is a link-local (169.254.0.0/16) address",
    ] {
        assert!(r.stderr.contains(range), "{range}: {}", r.stderr);
    }
    assert!(
        r.stderr.contains("--allow-internal"),
        "the denial says what would allow it: {}",
        r.stderr
    );
    assert_eq!(peer.accepted() + peer6.accepted(), 0);
    assert_eq!(udp.received(), 0);
    // The grant says so: allowed (loopback peers only).
    let r = run_with(
        &[
            "--allow-connect",
            wide,
            "--allow-udp",
            wide,
            "--allow-internal",
        ],
        &[&connect, &connect6, &http, &udp_step].map(String::as_str),
    );
    let got: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        got[0],
        format!("{connect}: ok peer {port} got ping"),
        "{}",
        r.stderr
    );
    assert_eq!(got[1], format!("{connect6}: ok peer {port6} got ping"));
    assert_eq!(got[2], format!("{http}: ok status 200 hello from {port}"));
    assert!(
        got[3].starts_with(&format!("{udp_step}: ok pong")),
        "{}",
        got[3]
    );
    // A grant on the address reaches it, whatever name led there.
    let r = run_with(
        &[
            "--allow-resolve",
            "*.example.test",
            "--allow-connect",
            &format!("127.0.0.1:{port}"),
        ],
        &[&connect],
    );
    assert_eq!(r.stdout, format!("{connect}: ok peer {port} got ping\n"));
    // In a manifest: `internal = true` on the grant.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("warden.toml");
    std::fs::write(
        &manifest,
        format!("version = 1\n[[allow]]\nid = \"lan\"\ntarget = \"lo.example.test\"\nports = \"{port}\"\nrights = [\"connect\", \"resolve\"]\ninternal = true\n"),
    )
    .unwrap();
    let r = run_with(&["--manifest", p(&manifest)], &[&connect]);
    assert_eq!(r.stdout, format!("{connect}: ok peer {port} got ping\n"));
}

#[test]
fn http_to_an_ip_literal_is_decided_by_address() {
    let peer = TcpPeer::start("127.0.0.1");
    let other = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let ok = format!("http:http://127.0.0.1:{port}/");
    let denied = format!("http:http://127.0.0.1:{}/", other.port());
    let r = net(
        &["--allow-connect", &format!("127.0.0.1:{port}")],
        &[&ok, &denied],
    );
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{ok}: ok status 200 hello from {port}"),
            &format!("{denied}: ErrorCode::HttpRequestDenied"),
        ])
    );
    assert_eq!(other.accepted(), 0);
}

#[test]
fn http_to_a_name_resolving_to_a_denied_address_is_denied() {
    let dns = dns();
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let d = dns.addr.to_string();
    let step = format!("http:http://web.example.com:{port}/");
    let r = net(
        &[
            "--dns-server",
            &d,
            "--allow-connect",
            &format!("web.example.com:{port}"),
            "--deny",
            "127.0.0.1:*",
        ],
        &[&step],
    );
    assert_eq!(r.stdout, format!("{step}: ErrorCode::HttpRequestDenied\n"));
    assert_eq!(peer.accepted(), 0);
}

// ------------------------------------------------------------ listen, accept

/// Run net_client `listen:ADDR` with `flags`; once it listens, connect from
/// each of `clients` (local IPs to connect from) in turn, sending a line
/// naming the client. Returns warden's output and what each client read.
fn serve_once(flags: &[&str], addr: &str, clients: &[&str]) -> (Ran, Vec<String>) {
    let c = client();
    let step = format!("listen:{addr}");
    let mut cmd = run_cmd(flags);
    cmd.arg(&c).arg(&step);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let mut replies = Vec::new();
    if first.starts_with("listening on") {
        for from in clients {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(
                &format!("{from}:0")
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
            sock.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into())
                .unwrap();
            let mut s: TcpStream = sock.into();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = writeln!(s, "from {from}");
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            replies.push(reply);
        }
    }
    let status = wait_bounded(
        &mut child,
        Duration::from_secs(30),
        "the guest serves one client",
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let ran = Ran {
        code: status.code().unwrap(),
        stdout: first + &rest,
        stderr,
    };
    (ran, replies)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn listen_allowed_and_denied() {
    let addr = format!("127.0.0.1:{}", free_port());
    let (r, replies) = serve_once(&["--allow-listen", &addr], &addr, &["127.0.0.1"]);
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("listening on {addr}"),
            &format!("listen:{addr}: ok accepted from 127.0.0.1"),
        ])
    );
    assert_eq!(replies, ["echo from 127.0.0.1\n"]);

    // No grant at all: TCP is switched off, the socket is never made.
    let (r, replies) = serve_once(&[], &addr, &["127.0.0.1"]);
    assert_eq!(r.stdout, format!("listen:{addr}: PermissionDenied\n"));
    assert!(replies.is_empty());
    // TCP on for another grant: the bind reaches the gate, which refuses it.
    let (r, _) = serve_once(&["--allow-connect", "127.0.0.1:1"], &addr, &[]);
    assert_eq!(r.stdout, format!("listen:{addr}: PermissionDenied\n"));
    assert!(
        r.stderr
            .contains(&format!("warden: denied bind {addr} (rule default-deny)")),
        "{}",
        r.stderr
    );
    // Another port than the granted one is not granted.
    let granted = format!("127.0.0.1:{}", free_port());
    let (r, _) = serve_once(&["--allow-listen", &granted], &addr, &[]);
    assert_eq!(r.stdout, format!("listen:{addr}: PermissionDenied\n"));
}

#[test]
fn accept_refuses_a_denied_peer_and_serves_the_next() {
    let addr = format!("127.0.0.1:{}", free_port());
    let (r, replies) = serve_once(
        &["--allow-listen", &addr, "--deny", "127.0.0.2:*"],
        &addr,
        &["127.0.0.2", "127.0.0.1"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(replies, ["", "echo from 127.0.0.1\n"]);
    assert!(
        r.stdout
            .ends_with(&format!("listen:{addr}: ok accepted from 127.0.0.1\n")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("warden: denied accept 127.0.0.2:"),
        "{}",
        r.stderr
    );
}

// ------------------------------------------------------------ udp

#[test]
fn udp_allowed_and_denied() {
    let peer = UdpPeer::start("127.0.0.1");
    let to = peer.addr.to_string();
    let bound = format!("udp:127.0.0.1:0:{to}");
    let any = format!("udp:0.0.0.0:0:{to}");
    let r = net(&["--allow-udp", &to], &[&bound, &any]);
    let out: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(out.len(), 2, "{}", r.stdout);
    assert!(
        out[0].starts_with(&format!("{bound}: ok pong from {to}")),
        "{}",
        r.stdout
    );
    assert!(
        out[1].starts_with(&format!("{any}: ok pong from {to}")),
        "{}",
        r.stdout
    );
    assert_eq!(peer.received(), 2);

    let other = format!("127.0.0.1:{}", peer.addr.port() ^ 1);
    let r = net(&["--allow-udp", &other], &[&bound]);
    assert_eq!(r.stdout, format!("{bound}: send PermissionDenied\n"));
    assert!(
        r.stderr
            .contains(&format!("warden: denied udp-send {to} (rule default-deny)")),
        "{}",
        r.stderr
    );
    assert_eq!(peer.received(), 2, "nothing more arrived");
}

// ------------------------------------------------------------ the old probe

/// The allow twins of `run.rs`'s network-denied test: the same probe,
/// every access granted, every access working.
#[test]
fn net_probe_works_when_everything_it_tries_is_granted() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let _v6 = TcpPeer::on(&format!("[::1]:{port}"));
    let udp = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let r = run(&[
        "--allow-connect",
        &format!("127.0.0.1:{port}"),
        "--allow-connect",
        &format!("[::1]:{port}"),
        "--allow-listen",
        "127.0.0.1:*",
        "--allow-resolve",
        "localhost",
        "--allow-udp",
        &format!("127.0.0.1:{port}"),
        p(&guest(Target::P2, "net_probe")),
        &port.to_string(),
    ]);
    assert_eq!(
        r.stdout,
        lines(&[
            "tcp connect 127.0.0.1: ok",
            "tcp connect [::1]: ok",
            "tcp bind: ok",
            "name lookup: ok",
            "udp send: ok",
            "http get: status 200",
        ]),
        "{}",
        r.stderr
    );
    let mut buf = [0u8; 8];
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(udp.recv_from(&mut buf).unwrap().0, 2);
}

// ------------------------------------------------------------ audit

fn records(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// (event, addr or name, decision, rule) of each record.
fn summary(recs: &[serde_json::Value]) -> Vec<String> {
    recs.iter()
        .map(|r| {
            let at = match (&r["addr"], &r["name"]) {
                (serde_json::Value::String(a), serde_json::Value::String(n)) => {
                    format!("{a} ({n})")
                }
                (serde_json::Value::String(a), _) => a.clone(),
                (_, serde_json::Value::String(n)) => match r["port"].as_u64() {
                    Some(p) => format!("{n}:{p}"),
                    None => n.clone(),
                },
                _ => "?".into(),
            };
            format!(
                "{} {at} {} {}",
                r["event"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
                r["rule"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn every_decision_is_one_audit_record() {
    use sha2::Digest;
    let dns = dns();
    let peer = TcpPeer::start("127.0.0.1");
    let other = TcpPeer::start("127.0.0.1");
    let (port, port2) = (peer.port(), other.port());
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("audit.jsonl");
    let grant = format!("*.example.com:{port}");
    let r = net(
        &[
            "--dns-server",
            &dns.addr.to_string(),
            "--allow-connect",
            &grant,
            "--audit",
            p(&log),
        ],
        &[
            "resolve:api.example.com",
            &format!("connect:api.example.com:{port}"),
            &format!("connect:127.0.0.1:{port2}"),
            "resolve:evilexample.com",
            &format!("http:http://web.example.com:{port}/"),
            &format!("http:http://evilexample.com:{port}/"),
        ],
    );
    assert_eq!(r.stdout.matches(": ok").count(), 3, "{}", r.stdout);
    let recs = records(&std::fs::read_to_string(&log).unwrap());
    let rule = format!("--allow-connect {grant}");
    assert_eq!(
        summary(&recs),
        [
            format!("resolve api.example.com allow {rule}"),
            format!("resolve api.example.com allow {rule}"),
            // A connect is one decision: its grant covers the ephemeral
            // port an unbound socket binds as it connects.
            format!("connect 127.0.0.1:{port} (api.example.com) allow {rule}"),
            format!("connect 127.0.0.1:{port2} (api.example.com) deny default-deny"),
            "resolve evilexample.com deny default-deny".to_string(),
            format!("http-request web.example.com:{port} allow {rule}"),
            format!("connect 127.0.0.1:{port} (web.example.com) allow {rule}"),
            format!("http-request evilexample.com:{port} deny default-deny"),
        ]
    );
    let sha = hex(&sha2::Sha256::digest(std::fs::read(client()).unwrap()));
    let instance = recs[0]["instance"].as_str().unwrap().to_string();
    for rec in &recs {
        assert_eq!(rec["module_sha256"], sha.as_str());
        assert_eq!(rec["instance"], instance.as_str());
        assert!(rec["ts"].as_str().unwrap().ends_with('Z'));
        assert!(!rec["reason"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        recs[2]["reason"],
        format!(
            "127.0.0.1 was resolved from api.example.com; rule {rule} (allow connect,resolve *.example.com:{port} internal) allows connect to api.example.com:{port}"
        )
    );
    // A second run appends, as another instance.
    net(
        &["--allow-connect", &grant, "--audit", p(&log)],
        &["resolve:nosuch.test"],
    );
    let recs = records(&std::fs::read_to_string(&log).unwrap());
    assert_eq!(recs.len(), 9);
    assert_ne!(recs[8]["instance"], instance.as_str());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn audit_to_stderr_and_an_unwritable_audit_file() {
    let r = net(
        &["--allow-connect", "127.0.0.1:1", "--audit", "-"],
        &["resolve:a.test"],
    );
    let recs: Vec<_> = records(
        &r.stderr
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    assert_eq!(summary(&recs), ["resolve a.test deny default-deny"]);
    let r = run(&["--audit", "/no/such/dir/audit.jsonl", &client()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("cannot open audit log /no/such/dir/audit.jsonl: No such file or directory"),
        "{}",
        r.stderr
    );
}

// ------------------------------------------------------------ manifest, check, explain

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_manifest_grants_like_flags_and_flags_add_to_it() {
    let peer = TcpPeer::start("127.0.0.1");
    let other = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let tmp = tempfile::tempdir().unwrap();
    let manifest = write(
        tmp.path(),
        "warden.toml",
        &format!(
            "version = 1\naudit = \"audit.jsonl\"\n\n[[allow]]\nid = \"peer\"\ntarget = \"127.0.0.1\"\nports = \"{port}\"\nrights = [\"connect\"]\n"
        ),
    );
    let step = format!("connect:127.0.0.1:{port}");
    let step2 = format!("connect:127.0.0.1:{}", other.port());
    let r = net(&["--manifest", &manifest], &[&step, &step2]);
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{step}: ok peer {port} got ping"),
            &format!("{step2}: PermissionDenied"),
        ])
    );
    // The manifest's audit path is relative to the manifest.
    let recs = records(&std::fs::read_to_string(tmp.path().join("audit.jsonl")).unwrap());
    assert_eq!(recs[0]["rule"], "peer");
    // A flag adds a grant; a --deny wins over the manifest's grant.
    let allow2 = format!("127.0.0.1:{}", other.port());
    let r = net(
        &["--manifest", &manifest, "--allow-connect", &allow2],
        &[&step2],
    );
    assert_eq!(
        r.stdout,
        format!("{step2}: ok peer {} got ping\n", other.port())
    );
    let r = net(
        &[
            "--manifest",
            &manifest,
            "--deny",
            &format!("127.0.0.1:{port}"),
        ],
        &[&step],
    );
    assert_eq!(r.stdout, format!("{step}: PermissionDenied\n"));
    assert_eq!(peer.accepted(), 1);
}

#[test]
fn a_bad_manifest_stops_the_run_with_file_line_and_expectation() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = write(
        tmp.path(),
        "bad.toml",
        "version = 1\n[[allow]]\nid = \"x\"\ntarget = \"10.0.0.0/8\"\nports = \"80\"\nrights = [\"conect\"]\n",
    );
    let r = run(&["--manifest", &bad, &client()]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "warden: error: {bad}:6:11: unknown right `conect`; expected one of connect, bind, listen, accept, udp-bind, udp-send, udp-recv, resolve\n"
        )
    );
    assert_eq!(r.stdout, "");
    let r = run(&["--manifest", "/no/such.toml", &client()]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "warden: error: cannot read manifest /no/such.toml: No such file or directory (os error 2)\n"
    );
}

#[test]
fn check_prints_the_resolved_policy_or_where_it_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write(
        tmp.path(),
        "good.toml",
        r#"version = 1
dns_server = "127.0.0.1:5353"

[[allow]]
id = "api"
target = "*.example.com"
ports = "443"
rights = ["connect", "resolve"]

[[allow]]
id = "everything"
target = "0.0.0.0/0"
ports = "*"
rights = ["connect"]

[[deny]]
id = "metadata"
target = "169.254.169.254"

[[listen]]
name = "http"
addr = "127.0.0.1:8080"

[[pool]]
name = "db"
rights = ["connect"]
targets = ["127.0.0.1:5432"]
"#,
    );
    let out = warden().args(["check", &good]).output().unwrap();
    let r = ran(out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        lines(&[
            "api         allow connect,resolve *.example.com:443",
            "everything  allow connect 0.0.0.0/0:*",
            "metadata    deny 169.254.169.254/32:*",
            "listen http=127.0.0.1:8080",
            "pool db: connect on 127.0.0.1/32:5432",
            "dns-server 127.0.0.1:5353",
        ])
    );
    assert_eq!(
        r.stderr,
        "warden: warning: rule everything (allow connect 0.0.0.0/0:*) allows everything of its kind; grant only what the program needs\n"
    );
    let bad = write(
        tmp.path(),
        "bad.toml",
        "version = 1\n\n[[deny]]\nid = \"d\"\ntarget = \"10.0.0.0/8\"\nport = \"1\"\n",
    );
    let r = ran(warden().args(["check", &bad]).output().unwrap());
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "warden: error: {bad}:6:1: unknown field `port`, expected one of `id`, `target`, `ports`\n"
        )
    );
    let empty = write(tmp.path(), "empty.toml", "version = 1\n");
    let r = ran(warden().args(["check", &empty]).output().unwrap());
    assert_eq!(r.stdout, "# no rules: every network action is denied\n");
}

#[test]
fn check_reads_a_manifest_as_a_run_does() {
    // check prints what a run would take: the audit file resolved against
    // the manifest's directory, and [limits] read (a run refuses a bad
    // one, and so does check).
    let tmp = tempfile::tempdir().unwrap();
    let good = write(
        tmp.path(),
        "limits.toml",
        "version = 1\naudit = \"audit.jsonl\"\n[limits]\ntimeout = \"30s\"\nfuel = 1000\n",
    );
    let r = ran(warden().args(["check", &good]).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        lines(&[
            "# no rules: every network action is denied",
            &format!("audit {}", tmp.path().join("audit.jsonl").display()),
            "limit timeout 30s",
            "limit fuel 1000",
        ])
    );
    let bad = write(
        tmp.path(),
        "bad-limits.toml",
        "version = 1\n[limits]\ntimeout = \"5\"\n",
    );
    let r = ran(warden().args(["check", &bad]).output().unwrap());
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("limits.timeout: `5` has no unit"),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_names_the_deciding_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let m = write(
        tmp.path(),
        "w.toml",
        "version = 1\n[[allow]]\nid = \"api\"\ntarget = \"*.example.com\"\nports = \"443\"\nrights = [\"connect\", \"resolve\"]\n[[deny]]\nid = \"evil\"\ntarget = \"evil.example.com\"\n",
    );
    let explain = |args: &[&str]| ran(warden().arg("explain").args(args).output().unwrap());
    let r = explain(&["--manifest", &m, "connect", "api.example.com:443"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "allow connect api.example.com:443\nrule: api\nreason: rule api (allow connect,resolve *.example.com:443) allows connect to api.example.com:443\nkind: none (plain TCP: the program's bytes go on the wire as they are)\nnote: in a run this is refused for any address that a denied name resolves to (evil.example.com): the host resolves denied names itself\nnote: in a run, an address api.example.com resolves to in an internal range (loopback, private, link-local, shared, documentation, ...) is refused: the grant is not marked internal (--allow-internal, or internal = true in the manifest)\n"
        )
    );
    let r = explain(&["--manifest", &m, "connect", "api.example.com:444"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .starts_with("deny connect api.example.com:444\nrule: default-deny\n"),
        "{}",
        r.stdout
    );
    let r = explain(&["--manifest", &m, "resolve", "evil.example.com"]);
    assert_eq!((r.code, r.stdout.lines().nth(1)), (1, Some("rule: evil")));
    let r = explain(&["--manifest", &m, "resolve", "evilexample.com"]);
    assert_eq!(r.code, 1);
    let r = explain(&[
        "--allow-listen",
        "127.0.0.1:8000-8999",
        "listen",
        "127.0.0.1:8080",
    ]);
    assert_eq!(
        (r.code, r.stdout.lines().nth(1)),
        (0, Some("rule: --allow-listen 127.0.0.1:8000-8999"))
    );
    let r = explain(&[
        "--allow-connect",
        "10.0.0.0/8:*",
        "connect",
        "[::ffff:10.1.2.3]:5",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = explain(&["--allow-connect", "0.0.0.0/0:*", "connect", "0.0.0.0:80"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let r = explain(&["fly", "x"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("expected one of connect, bind, listen, accept, udp-bind, udp-send, udp-recv, resolve, http-request"), "{}", r.stderr);
    let r = explain(&["connect", "api.example.com"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "warden: error: `api.example.com`: expected HOST:PORT, IP:PORT or [IPv6]:PORT\n"
    );
}

#[test]
fn udp_bind_and_receive_have_their_deny_twins() {
    let peer = UdpPeer::start("127.0.0.1");
    let to = peer.addr.to_string();
    // A local address outside the grant's block cannot be bound.
    let elsewhere = format!("udp:127.0.0.2:0:{to}");
    let r = net(&["--allow-udp", &to], &[&elsewhere]);
    assert_eq!(r.stdout, format!("{elsewhere}: bind PermissionDenied\n"));
    assert_eq!(peer.received(), 0);

    // Sending allowed, receiving not: the reply is dropped by the host
    // (and audited), so the guest waits until --timeout stops it.
    let tmp = tempfile::tempdir().unwrap();
    let manifest = write(
        tmp.path(),
        "w.toml",
        &format!(
            "version = 1\naudit = \"audit.jsonl\"\n[[allow]]\nid = \"send-only\"\ntarget = \"127.0.0.1\"\nports = \"{}\"\nrights = [\"udp-send\"]\n",
            peer.addr.port()
        ),
    );
    let step = format!("udp:0.0.0.0:0:{to}");
    let r = run(&["--timeout", "2s", "--manifest", &manifest, &client(), &step]);
    assert_eq!(r.code, 124, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(peer.received(), 1, "the datagram was sent");
    let recs = records(&std::fs::read_to_string(tmp.path().join("audit.jsonl")).unwrap());
    assert_eq!(
        summary(&recs),
        [
            "udp-bind 0.0.0.0:0 allow send-only".to_string(),
            format!("udp-send {to} allow send-only"),
            format!("udp-recv {to} deny default-deny"),
            // The timeout that stopped the guest is on the record too.
            "limit ? deny timeout".to_string(),
        ]
    );
}

// ------------------------------------------------------------ issue 8

#[test]
fn a_deny_on_a_name_covers_its_address_whatever_name_reaches_it() {
    let dns = Dns::start(&[
        ("secret.corp.test", zone(&["127.0.0.1"])),
        ("alias.corp.test", zone(&["127.0.0.1"])),
    ]);
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let d = dns.addr.to_string();
    let step = format!("connect:alias.corp.test:{port}");
    let grant = format!("*.corp.test:{port}");
    let r = net(
        &[
            "--dns-server",
            &d,
            "--allow-connect",
            &grant,
            "--deny",
            "secret.corp.test:*",
        ],
        &[&step],
    );
    assert_eq!(r.stdout, format!("{step}: PermissionDenied\n"));
    assert!(
        r.stderr.contains(&format!(
            "warden: denied connect 127.0.0.1:{port} (rule --deny secret.corp.test:*): 127.0.0.1 is an address of secret.corp.test"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(peer.accepted(), 0);
    // Also through an address grant: the deny is on the host, not a name.
    let addr_grant = format!("127.0.0.1:{port}");
    let direct = format!("connect:127.0.0.1:{port}");
    let r = net(
        &[
            "--dns-server",
            &d,
            "--allow-connect",
            &addr_grant,
            "--deny",
            "secret.corp.test:*",
        ],
        &[&direct],
    );
    assert_eq!(r.stdout, format!("{direct}: PermissionDenied\n"));
    assert_eq!(peer.accepted(), 0);
    // The twin: without the deny, the alias reaches the peer.
    let r = net(&["--dns-server", &d, "--allow-connect", &grant], &[&step]);
    assert_eq!(r.stdout, format!("{step}: ok peer {port} got ping\n"));
}

#[test]
fn nat64_spellings_of_a_denied_ipv4_address_are_denied() {
    let explain = |args: &[&str]| ran(warden().arg("explain").args(args).output().unwrap());
    let r = explain(&[
        "--allow-connect",
        "[::/0]:*",
        "--deny",
        "169.254.169.254:*",
        "connect",
        "[64:ff9b::a9fe:a9fe]:80",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("rule: --deny 169.254.169.254:*"),
        "{}",
        r.stdout
    );
    let r = explain(&[
        "--allow-connect",
        "[::/0]:*",
        "--deny",
        "169.254.169.254:*",
        "connect",
        "[64:ff9b:1::a9fe:a9fe]:80",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    // The twin: an IPv6 address outside the NAT64 prefixes is the grant's.
    let r = explain(&[
        "--allow-connect",
        "[::/0]:*",
        "--deny",
        "169.254.169.254:*",
        "connect",
        "[2001:db8::a9fe:a9fe]:80",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn http_authority_with_userinfo_is_refused_and_host_is_what_was_decided() {
    let peer = TcpPeer::start("127.0.0.3");
    let port = peer.port();
    let grant = format!("127.0.0.3:{port}");
    let tricky = format!("http:http://evil.test:80@127.0.0.3:{port}/");
    let plain = format!("http:http://127.0.0.3:{port}/p");
    let r = net(&["--allow-connect", &grant], &[&tricky, &plain]);
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{tricky}: ErrorCode::HttpRequestDenied"),
            &format!("{plain}: ok status 200 hello from {port}"),
        ])
    );
    assert!(
        r.stderr.contains("authority carries userinfo"),
        "{}",
        r.stderr
    );
    // Only the plain request arrived, with Host exactly as decided.
    assert_eq!(
        *peer.requests.lock().unwrap(),
        [format!("GET /p HTTP/1.1 host=127.0.0.3:{port}")]
    );
}

#[test]
fn explain_says_what_run_does_for_ip_literals() {
    let r = ran(warden()
        .args(["explain", "resolve", "127.0.0.1"])
        .output()
        .unwrap());
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "allow resolve 127.0.0.1\nrule: ip-literal\nreason: 127.0.0.1 is an IP literal: it resolves to itself and no lookup leaves the host\n"
        )
    );
    // And a run resolves it with no grant at all.
    let step = "resolve:127.0.0.1";
    let r = net(&[], &[step]);
    assert_eq!(r.stdout, format!("{step}: ok 127.0.0.1\n"));
}

#[test]
fn an_audit_log_that_cannot_be_written_says_so() {
    let step = "connect:127.0.0.1:1";
    let r = net(
        &["--allow-connect", "127.0.0.1:9", "--audit", "/dev/full"],
        &[step],
    );
    assert_eq!(r.stdout, format!("{step}: PermissionDenied\n"));
    assert!(
        r.stderr.contains(
            "warden: audit: writing the log failed after 0 records were written: No space left on device"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("fell behind"), "{}", r.stderr);
}

#[test]
fn only_allow_all_grants_warn_and_once() {
    let hello = p(&guest(Target::P2, "hello")).to_string();
    let r = run(&["--allow-listen", "127.0.0.1:7777", &hello]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let r = run(&["--allow-listen", "0.0.0.0/0:*", &hello]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr.matches("warning").count(), 1, "{}", r.stderr);
}

#[test]
fn an_invalid_host_gets_no_hint_warden_would_reject() {
    // An HTTP host that is no host name: refused as invalid, and stderr
    // suggests no flag (none could be typed).
    let step = "http:http://bad_name!.test/";
    let r = net(&["--allow-connect", "127.0.0.1:9"], &[step]);
    assert_eq!(
        r.stdout,
        format!("{step}: ErrorCode::HttpRequestUriInvalid\n")
    );
    assert!(!r.stderr.contains("to allow it"), "{}", r.stderr);
}

// ------------------------------------------------------------ WASI 0.3

fn p3(flags: &[&str], steps: &[&str]) -> Ran {
    let program = p(&guest(Target::P3, "p3_net")).to_string();
    let mut args: Vec<&str> = vec!["--timeout", "30s"];
    // The test DNS server answers with loopback addresses, which name
    // grants reach only when they say so (see
    // names_cannot_steer_traffic_inside_unless_the_grant_says_so).
    if flags.contains(&"--dns-server") {
        args.push("--allow-internal");
    }
    args.extend_from_slice(flags);
    args.push(&program);
    args.extend_from_slice(steps);
    let r = run(&args);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r
}

#[test]
fn a_03_guest_connects_only_where_granted() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let step = format!("connect:127.0.0.1:{port}");
    let grant = format!("127.0.0.1:{port}");
    let r = p3(&["--allow-connect", &grant], &[&step]);
    assert_eq!(r.stdout, format!("{step}: ok peer {port} got ping\n"));
    assert_eq!(peer.accepted(), 1);
    // The deny twin: another port is not granted; nothing reaches the peer.
    let other = format!("127.0.0.1:{}", port.wrapping_add(1).max(1));
    let r = p3(&["--allow-connect", &other], &[&step]);
    assert_eq!(r.stdout, format!("{step}: ErrorCode::AccessDenied\n"));
    assert!(
        r.stderr
            .contains(&format!("warden: denied connect 127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
    assert_eq!(peer.accepted(), 1);
}

#[test]
fn a_03_guest_resolves_and_requests_only_what_is_granted() {
    let dns = dns();
    let d = dns.addr.to_string();
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port();
    let grant = format!("web.example.com:{port}");
    let resolve = "resolve:web.example.com";
    let http = format!("http:http://web.example.com:{port}/p3");
    let r = p3(
        &["--dns-server", &d, "--allow-connect", &grant],
        &[resolve, &http],
    );
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{resolve}: ok 127.0.0.1"),
            &format!("{http}: ok status 200 hello from {port}"),
        ])
    );
    assert_eq!(
        *peer.requests.lock().unwrap(),
        [format!("GET /p3 HTTP/1.1 host=web.example.com:{port}")]
    );
    // The deny twin: no grant, no lookup sent, no request made.
    let r = p3(&["--dns-server", &d], &[resolve, &http]);
    assert_eq!(
        r.stdout,
        lines(&[
            &format!("{resolve}: ErrorCode::AccessDenied"),
            &format!("{http}: ErrorCode::HttpRequestDenied"),
        ])
    );
    assert_eq!(
        dns.a_queries("web.example.com"),
        1,
        "only the allowed run asked"
    );
    assert_eq!(peer.requests.lock().unwrap().len(), 1);
}
