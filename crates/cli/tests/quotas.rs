//! Tenancy quotas end to end: `--max-conns-out`, `--max-conns-in` and
//! `--max-udp-sockets` (and their `[limits]` keys), reached and freed, on
//! each ABI, with real guests and real peers on loopback. Each quota's
//! twin: the same program without it (or with room) is not refused.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::peers::TcpPeer;
use common::server::Server;
use common::{p, ran, run, warden};
use warden_test_artifacts::{Target, guest};

/// A listener that never accepts: the kernel completes connections into
/// its backlog, so a guest can hold several open.
fn backlog() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

fn audit_limits(path: &std::path::Path, key: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "limit" && r["limit"] == key)
        .collect()
}

#[test]
fn outgoing_connections_are_held_within_the_quota_and_freed_on_close_preview1() {
    let (_l, addr) = backlog();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let prog = guest(Target::P1, "p1_sock");
    let grant = addr.clone();
    let r = run(&[
        "--allow-connect",
        &grant,
        "--max-conns-out",
        "2",
        "--audit",
        p(&audit),
        p(&prog),
        "hold",
        &addr,
        "5",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // ECONNREFUSED is preview1's errno 14.
    assert_eq!(r.stdout, "hold: 2 open, then errno 14\nagain: ok\n");
    assert!(
        r.stderr.contains(&format!(
            "warden: refused a connection to {addr}: the guest may hold 2 outgoing connections open at once (raise it with --max-conns-out, or max_conns_out in [limits]), and that many are open"
        )),
        "{}",
        r.stderr
    );
    let records = audit_limits(&audit, "max_conns_out");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["decision"], "deny");
    // The twin: without the quota, all five are held.
    let r = run(&["--allow-connect", &grant, p(&prog), "hold", &addr, "5"]);
    assert_eq!(
        r.stdout, "hold: 5 open, then none failed\nagain: ok\n",
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("refused"), "{}", r.stderr);
}

fn components_hold_outgoing_connections_within_the_quota(t: Target, program: &str, expect: &str) {
    let (_l, addr) = backlog();
    let prog = guest(t, program);
    let step = format!("hold:4:{addr}");
    let r = run(&[
        "--allow-connect",
        &addr,
        "--max-conns-out",
        "3",
        p(&prog),
        &step,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("{step}: 3 open, then {expect}; again ok\n"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--max-conns-out"), "{}", r.stderr);
    let r = run(&["--allow-connect", &addr, p(&prog), &step]);
    assert_eq!(
        r.stdout,
        format!("{step}: 4 open, then none failed; again ok\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn outgoing_connections_are_held_within_the_quota_wasi_02() {
    components_hold_outgoing_connections_within_the_quota(
        Target::P2,
        "net_client",
        "ConnectionRefused",
    );
}

#[test]
fn a_non_blocking_connect_past_the_quota_is_refused_too() {
    // std's connect_timeout: a non-blocking connect, then poll, as
    // wasi-libc does it. The refusal must not read as a success.
    let (_l, addr) = backlog();
    let prog = guest(Target::P2, "net_client");
    let step = format!("holdnb:3:{addr}");
    let r = run(&[
        "--allow-connect",
        &addr,
        "--max-conns-out",
        "2",
        p(&prog),
        &step,
    ]);
    assert_eq!(
        r.stdout,
        format!("{step}: 2 open, then ConnectionRefused; again ok\n"),
        "{}",
        r.stderr
    );
    let r = run(&["--allow-connect", &addr, p(&prog), &step]);
    assert_eq!(
        r.stdout,
        format!("{step}: 3 open, then none failed; again ok\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn outgoing_connections_are_held_within_the_quota_wasi_03() {
    components_hold_outgoing_connections_within_the_quota(
        Target::P3,
        "p3_net",
        "ErrorCode::ConnectionRefused",
    );
}

#[test]
fn an_http_request_counts_as_an_outgoing_connection() {
    let (_l, held) = backlog();
    let peer = TcpPeer::start("127.0.0.1");
    let prog = guest(Target::P2, "net_client");
    let url = format!("http://127.0.0.1:{}/", peer.port());
    let step = format!("busyhttp:{held}:{url}");
    let grants = [
        "--allow-connect",
        held.as_str(),
        "--allow-connect",
        &peer.addr.to_string(),
    ];
    let mut args: Vec<&str> = grants.to_vec();
    args.extend(["--max-conns-out", "1", p(&prog), &step]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with(&format!("{step}: ")), "{}", r.stdout);
    assert!(!r.stdout.contains("200"), "{}", r.stdout);
    assert!(r.stderr.contains("--max-conns-out"), "{}", r.stderr);
    assert_eq!(peer.accepted(), 0);
    // With room for both, the request is made.
    let mut args: Vec<&str> = grants.to_vec();
    args.extend(["--max-conns-out", "2", p(&prog), &step]);
    let r = run(&args);
    assert!(
        r.stdout
            .contains(&format!("200 hello from {}", peer.port())),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn udp_sockets_are_held_within_the_quota_on_every_abi() {
    let p1 = guest(Target::P1, "p1_sock");
    let r = run(&["--max-udp-sockets", "2", p(&p1), "udps", "4"]);
    // EMFILE is preview1's errno 33.
    assert_eq!(
        r.stdout, "udps: 2 open, then errno 33\nagain: ok\n",
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("warden: refused a UDP socket: the guest may hold 2 UDP sockets open at once (raise it with --max-udp-sockets, or max_udp_sockets in [limits])"),
        "{}",
        r.stderr
    );
    let r = run(&[p(&p1), "udps", "4"]);
    assert_eq!(
        r.stdout, "udps: 4 open, then none failed\nagain: ok\n",
        "{}",
        r.stderr
    );

    let p2 = guest(Target::P2, "net_client");
    let bind = ["--allow-udp-bind", "127.0.0.1:*"];
    let mut args = bind.to_vec();
    args.extend(["--max-udp-sockets", "2", p(&p2), "udps:4"]);
    let r = run(&args);
    assert!(
        r.stdout.starts_with("udps:4: 2 open, then ") && r.stdout.ends_with("; again ok\n"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stderr.contains("--max-udp-sockets"), "{}", r.stderr);
    let mut args = bind.to_vec();
    args.extend([p(&p2), "udps:4"]);
    let r = run(&args);
    assert_eq!(
        r.stdout, "udps:4: 4 open, then none failed; again ok\n",
        "{}",
        r.stderr
    );

    let p3 = guest(Target::P3, "p3_net");
    let r = run(&["--max-udp-sockets", "2", p(&p3), "udps:4"]);
    assert_eq!(
        r.stdout, "udps:4: 2 open, then ErrorCode::Other(Some(\"new-socket-limit\")); again ok\n",
        "{}",
        r.stderr
    );
    let r = run(&[p(&p3), "udps:4"]);
    assert_eq!(
        r.stdout, "udps:4: 4 open, then none failed; again ok\n",
        "{}",
        r.stderr
    );
}

#[test]
fn quotas_come_from_the_manifest_and_a_flag_wins() {
    let (_l, addr) = backlog();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("q.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n[[allow]]\nid = \"peer\"\ntarget = \"127.0.0.1\"\nports = \"{port}\"\nrights = [\"connect\"]\n[limits]\nmax_conns_out = 1\nmax_udp_sockets = 3\n",
            port = addr.rsplit_once(':').unwrap().1
        ),
    )
    .unwrap();
    let prog = guest(Target::P1, "p1_sock");
    let r = run(&["--manifest", p(&manifest), p(&prog), "hold", &addr, "3"]);
    assert_eq!(
        r.stdout, "hold: 1 open, then errno 14\nagain: ok\n",
        "{}",
        r.stderr
    );
    let r = run(&[
        "--manifest",
        p(&manifest),
        "--max-conns-out",
        "2",
        p(&prog),
        "hold",
        &addr,
        "3",
    ]);
    assert_eq!(
        r.stdout, "hold: 2 open, then errno 14\nagain: ok\n",
        "{}",
        r.stderr
    );
    // `check` says them.
    let r = ran(warden().args(["check", p(&manifest)]).output().unwrap());
    assert!(
        r.stdout
            .contains("quota max_conns_out 1 (outgoing connections open at once)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("quota max_udp_sockets 3"), "{}", r.stdout);
    // A zero is refused, in the manifest and as a flag.
    std::fs::write(&manifest, "version = 1\n[limits]\nmax_conns_in = 0\n").unwrap();
    let r = run(&["--manifest", p(&manifest), p(&prog), "udps", "1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("limits.max_conns_in: expected 1 or more"),
        "{}",
        r.stderr
    );
    let r = run(&["--max-conns-in", "0", p(&prog), "udps", "1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("a quota of zero"), "{}", r.stderr);
}

/// Write `byte`, read it back: the guest has accepted the connection.
fn echoed(s: &mut TcpStream, byte: u8) {
    s.write_all(&[byte]).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(b[0], byte);
}

#[test]
fn a_peer_past_the_accepted_connections_quota_is_reset_before_the_guest_sees_it() {
    let server = Server::start(&[
        "--max-conns-in",
        "1",
        "--listen",
        "127.0.0.1:0",
        p(&guest(Target::P1, "echo_mio")),
        "2",
        "read",
    ]);
    let mut a = server.connect();
    echoed(&mut a, b'a');
    // A second client while the first is open: reset, never served.
    let mut b = server.connect();
    b.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = b.write_all(b"b");
    let mut buf = [0u8; 8];
    match b.read(&mut buf) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("the second client was served: {:?}", &buf[..n]),
    }
    // The first ends; its place is free for the next.
    a.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    let mut c = server.connect();
    echoed(&mut c, b'c');
    c.shutdown(std::net::Shutdown::Write).unwrap();
    c.read_to_end(&mut rest).unwrap();
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("the peer was reset: the guest may hold 1 accepted connections open at once (raise it with --max-conns-in, or max_conns_in in [limits])"),
        "{}",
        r.stderr
    );
}

/// An HTTP server that answers each request after `delay`, a thread per
/// connection, for as long as the test holds it (bounded: it stops
/// accepting after a minute).
fn slow_backend(delay: Duration) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::BufRead;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let end = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < end {
            let Ok((conn, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            std::thread::spawn(move || {
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                std::thread::sleep(delay);
                let mut conn = conn;
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                );
            });
        }
    });
    (addr, t)
}

/// Two requests at once, each fetching from `backend` through the app at
/// `prefix_a` and `prefix_b`: their statuses, sorted.
fn two_fetches(port: u16, backend: std::net::SocketAddr, a: &str, b: &str) -> Vec<u16> {
    let url = format!("http://{backend}/");
    let ask = |prefix: String| {
        let url = url.clone();
        std::thread::spawn(move || {
            common::serving::get(port, &format!("{prefix}/fetch?url={url}")).status
        })
    };
    let (x, y) = (ask(a.to_string()), ask(b.to_string()));
    let mut got = vec![x.join().unwrap(), y.join().unwrap()];
    got.sort();
    got
}

#[test]
fn serve_bounds_each_app_and_all_apps_together() {
    let (backend, _t) = slow_backend(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::serving::proxy(), dir.path().join("proxy.wasm")).unwrap();
    let manifest = dir.path().join("apps.toml");
    let apps = |limits: &str, a_quota: &str| {
        format!(
            "version = 1\n[[allow]]\nid = \"backend\"\ntarget = \"127.0.0.1\"\nports = \"{}\"\nrights = [\"connect\"]\n{limits}\n[[app]]\nname = \"a\"\ncomponent = \"proxy.wasm\"\npath = \"/a\"\n{a_quota}\n[[app]]\nname = \"b\"\ncomponent = \"proxy.wasm\"\npath = \"/b\"\n",
            backend.port()
        )
    };
    // App a may hold one outgoing connection (all its instances
    // together); app b has no quota.
    std::fs::write(&manifest, apps("", "max_conns_out = 1")).unwrap();
    let server = common::serving::serve_manifest(&manifest);
    assert_eq!(two_fetches(server.port, backend, "/a", "/a"), [200, 502]);
    assert_eq!(two_fetches(server.port, backend, "/b", "/b"), [200, 200]);
    let r = common::serving::stop(server);
    assert!(r.stderr.contains("--max-conns-out"), "{}", r.stderr);
    // The server's quota bounds all apps together.
    std::fs::write(&manifest, apps("[limits]\nmax_conns_out = 1", "")).unwrap();
    let server = common::serving::serve_manifest(&manifest);
    assert_eq!(two_fetches(server.port, backend, "/a", "/b"), [200, 502]);
    let r = common::serving::stop(server);
    assert!(
        r.stderr
            .contains("all apps together may hold 1 outgoing connections"),
        "{}",
        r.stderr
    );
}
