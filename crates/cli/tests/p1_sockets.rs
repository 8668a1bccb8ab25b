//! Preview1 outgoing sockets (the socket extension with address pools),
//! end to end: a C program on POSIX calls over the ABI
//! (test-programs/c/sock_c.c) and a Rust one on raw imports
//! (test-programs/src/bin/p1_sock) through the real `warden` binary, with
//! real TCP, UDP, DNS and TLS peers on loopback. Every allow has its deny
//! twin, through the policy and through a pool.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ChildStdout;
use std::time::Duration;

use common::peers::{Dns, TcpPeer, UdpPeer, Zone};
use common::*;
use warden_test_artifacts::{Target, c_guest, guest};

fn sock_c(flags: &[&str], args: &[&str]) -> Ran {
    let prog = c_guest("sock_c");
    let mut all: Vec<&str> = flags.to_vec();
    all.push(p(&prog));
    all.extend_from_slice(args);
    run(&all)
}

fn p1_sock(flags: &[&str], args: &[&str]) -> Ran {
    let prog = guest(Target::P1, "p1_sock");
    let mut all: Vec<&str> = flags.to_vec();
    all.push(p(&prog));
    all.extend_from_slice(args);
    run(&all)
}

fn audit_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn c_connect_is_allowed_by_a_grant_and_denied_without_one() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port().to_string();
    let grant = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let r = sock_c(
        &["--allow-connect", &grant, "--audit", p(&audit)],
        &["tcp", "127.0.0.1", &port],
    );
    assert_eq!(
        r.stdout,
        format!("got: peer {port} got hello\n"),
        "{}",
        r.stderr
    );
    assert_eq!(r.code, 0);
    let lines = audit_lines(&audit);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"connect\"") && l.contains("\"allow\"") && l.contains(&grant)),
        "{lines:?}"
    );

    let r = sock_c(&[], &["tcp", "127.0.0.1", &port]);
    assert_eq!(r.stdout, "error: connect: EACCES (2)\n");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("denied connect 127.0.0.1:{port}"))
            && r.stderr
                .contains(&format!("--allow-connect 127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
    assert_eq!(
        peer.accepted(),
        1,
        "the denied connect never reached the peer"
    );
}

#[test]
fn a_pool_confines_its_sockets_within_the_policy() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port().to_string();
    let exact = format!("127.0.0.1:{port}");
    let pool_exact = format!("db=connect@{exact}");
    let pool_other = format!("db=connect@127.0.0.1:{}", peer.port() ^ 1);
    let tcp = ["tcp", "127.0.0.1", &port, "--pool", "db"];

    // Pool and policy both allow it.
    let r = sock_c(
        &["--allow-connect", "127.0.0.0/8:*", "--pool", &pool_exact],
        &tcp,
    );
    assert_eq!(
        r.stdout,
        format!("got: peer {port} got hello\n"),
        "{}",
        r.stderr
    );
    // A pool narrower than the policy refuses.
    let r = sock_c(
        &["--allow-connect", "127.0.0.0/8:*", "--pool", &pool_other],
        &tcp,
    );
    assert_eq!(r.stdout, "error: connect: EACCES (2)\n", "{}", r.stderr);
    assert!(
        r.stderr.contains("(rule pool:db)") && r.stderr.contains("widening the pool"),
        "{}",
        r.stderr
    );
    // A policy narrower than the pool refuses: a pool grants nothing.
    let r = sock_c(&["--pool", &pool_exact], &tcp);
    assert_eq!(r.stdout, "error: connect: EACCES (2)\n", "{}", r.stderr);
    assert!(r.stderr.contains("(rule default-deny)"), "{}", r.stderr);
    // The same pool from a manifest.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("warden.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n[[allow]]\nid = \"lo\"\ntarget = \"127.0.0.0/8\"\nports = \"*\"\nrights = [\"connect\"]\n\n[[pool]]\nname = \"db\"\nrights = [\"connect\"]\ntargets = [\"{exact}\"]\n"
        ),
    )
    .unwrap();
    let r = sock_c(&["--manifest", p(&manifest)], &tcp);
    assert_eq!(
        r.stdout,
        format!("got: peer {port} got hello\n"),
        "{}",
        r.stderr
    );
    assert_eq!(peer.accepted(), 2);
}

#[test]
fn a_narrowed_pool_allows_only_what_it_and_its_pool_allow() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port().to_string();
    let other = (peer.port() ^ 1).to_string();
    let policy = ["--allow-connect", "127.0.0.0/8:*"];
    let run_narrowed = |outer: &str, spec: &str| {
        let pool = format!("db=connect@{outer}");
        let mut flags = policy.to_vec();
        flags.extend(["--pool", &pool]);
        sock_c(
            &flags,
            &["tcp", "127.0.0.1", &port, "--pool", "db", "--narrow", spec],
        )
    };
    // Narrowed to the peer's port, inside the pool: allowed.
    let r = run_narrowed("127.0.0.0/8:*", &format!("one=connect@127.0.0.1:{port}"));
    assert_eq!(
        r.stdout,
        format!("got: peer {port} got hello\n"),
        "{}",
        r.stderr
    );
    // Narrowed to another port: the narrowed pool refuses.
    let r = run_narrowed("127.0.0.0/8:*", &format!("one=connect@127.0.0.1:{other}"));
    assert_eq!(r.stdout, "error: connect: EACCES (2)\n", "{}", r.stderr);
    assert!(r.stderr.contains("(rule pool:one)"), "{}", r.stderr);
    // A "narrowing" that asks for more than its pool: the pool still
    // refuses, so handing on a pool never widens it.
    let r = run_narrowed(
        &format!("127.0.0.1:{other}"),
        &format!("one=connect@127.0.0.1:{port}"),
    );
    assert_eq!(r.stdout, "error: connect: EACCES (2)\n", "{}", r.stderr);
    assert!(r.stderr.contains("(rule pool:db)"), "{}", r.stderr);
    // A spec that does not parse is EINVAL; narrowing no pool is EBADF.
    let r = run_narrowed("127.0.0.0/8:*", "one=fly@127.0.0.1:1");
    assert_eq!(r.stdout, "error: narrow: EINVAL (28)\n", "{}", r.stderr);
    let r = sock_c(
        &policy,
        &["tcp", "127.0.0.1", &port, "--pool", "none", "--narrow", "x"],
    );
    assert_eq!(r.stdout, "error: no pool none in WARDEN_POOLS\n");
}

#[test]
fn strict_pools_refuse_sockets_opened_without_one() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port().to_string();
    let grant = format!("127.0.0.1:{port}");
    let r = sock_c(
        &["--allow-connect", &grant, "--strict-pools"],
        &["tcp", "127.0.0.1", &port],
    );
    assert_eq!(r.stdout, "error: socket: EBADF (8)\n", "{}", r.stderr);
    let pool = format!("p=connect@{grant}");
    let r = sock_c(
        &["--allow-connect", &grant, "--strict-pools", "--pool", &pool],
        &["tcp", "127.0.0.1", &port, "--pool", "p"],
    );
    assert_eq!(
        r.stdout,
        format!("got: peer {port} got hello\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_pool_flags_are_clear_errors() {
    for (flag, says) in [
        ("db", "expected NAME=RIGHTS@TARGETS"),
        ("db=fly@127.0.0.1:1", "unknown right `fly`"),
        ("db=connect@127.0.0.1", "expected TARGET:PORTS"),
    ] {
        let r = sock_c(&["--pool", flag], &["opts"]);
        assert_eq!(r.code, 2, "{flag}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{flag}: {}", r.stderr);
    }
    let r = sock_c(
        &[
            "--pool",
            "a=connect@127.0.0.1:1",
            "--pool",
            "a=bind@127.0.0.1:1",
        ],
        &["opts"],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("a pool named `a` is defined already"),
        "{}",
        r.stderr
    );
}

#[test]
fn c_nonblocking_connect_reports_einprogress_then_writable() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port().to_string();
    let grant = format!("127.0.0.1:{port}");
    let r = sock_c(&["--allow-connect", &grant], &["nb", "127.0.0.1", &port]);
    assert_eq!(
        r.stdout,
        format!("connect: EINPROGRESS\nwritable\ngot: peer {port} got hello\n"),
        "{}",
        r.stderr
    );
    // Denied: refused at once, not in progress.
    let r = sock_c(&[], &["nb", "127.0.0.1", &port]);
    assert_eq!(r.stdout, "error: connect: EACCES (2)\n", "{}", r.stderr);
}

#[test]
fn c_udp_is_allowed_by_a_grant_and_denied_without_one() {
    let peer = UdpPeer::start("127.0.0.1");
    let port = peer.addr.port().to_string();
    let grant = format!("127.0.0.1:{port}");
    let r = sock_c(&["--allow-udp", &grant], &["udp", "127.0.0.1", &port]);
    assert_eq!(
        r.stdout,
        format!("udp got pong from 127.0.0.1:{port}\n"),
        "{}",
        r.stderr
    );
    let r = sock_c(&[], &["udp", "127.0.0.1", &port]);
    assert_eq!(r.stdout, "error: sendto: EACCES (2)\n", "{}", r.stderr);
    // A pool without udp-send refuses, whatever the policy allows.
    let pool = format!("u=connect@{grant}");
    let r = sock_c(
        &["--allow-udp", &grant, "--pool", &pool],
        &["udp", "127.0.0.1", &port, "--pool", "u"],
    );
    assert_eq!(r.stdout, "error: sendto: EACCES (2)\n", "{}", r.stderr);
    assert_eq!(peer.received(), 1);
}

/// Start `sock_c` under `warden run`, its output piped.
fn spawn_sock_c(flags: &[&str], args: &[&str]) -> std::process::Child {
    let prog = c_guest("sock_c");
    let mut all: Vec<&str> = flags.to_vec();
    all.push(p(&prog));
    all.extend_from_slice(args);
    run_cmd(&all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The port a `sock_c server` child (bound to port 0, so no other test can
/// hold it) says it listens on, in its first line; and its stdout's rest.
fn listening_port(child: &mut std::process::Child) -> (u16, BufReader<ChildStdout>) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the server is not listening: {line:?}"));
    (port, out)
}

#[test]
fn c_server_binds_listens_and_accepts_when_granted() {
    let mut child = spawn_sock_c(
        &["--allow-listen", "127.0.0.1:*"],
        &["server", "127.0.0.1", "0", "2"],
    );
    let (port, mut out) = listening_port(&mut child);
    for i in 0..2 {
        let exchange = || -> std::io::Result<String> {
            let mut c = TcpStream::connect(("127.0.0.1", port))?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            // One write: the server answers its first recv and closes, so
            // a line written in pieces (as writeln! does) could meet a
            // reset.
            c.write_all(format!("hi {i}\n").as_bytes())?;
            let mut back = String::new();
            c.read_to_string(&mut back)?;
            Ok(back)
        };
        match exchange() {
            Ok(back) => assert_eq!(back, format!("echo: hi {i}\n")),
            Err(e) => {
                // Killed, so there is no exit code to check: say what it
                // wrote.
                let _ = child.kill();
                let mut rest = String::new();
                let _ = out.read_to_string(&mut rest);
                let stderr = child
                    .wait_with_output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                panic!("client {i} of port {port}: {e}\nstdout: {rest}\nstderr: {stderr}");
            }
        }
    }
    wait_bounded(&mut child, Duration::from_secs(20), "sock_c server");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let r = ran(child.wait_with_output().unwrap());
    assert_eq!(rest, "served 2\n", "{}", r.stderr);

    // No grant: the bind is refused.
    let r = sock_c(&[], &["server", "127.0.0.1", "0", "1"]);
    assert_eq!(r.stdout, "error: bind: EACCES (2)\n", "{}", r.stderr);
}

#[test]
fn a_peer_the_policy_does_not_accept_never_reaches_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("warden.toml");
    // Bind and listen, but no accept.
    std::fs::write(
        &manifest,
        "version = 1\n[[allow]]\nid = \"srv\"\ntarget = \"127.0.0.1\"\nports = \"*\"\nrights = [\"bind\", \"listen\"]\n",
    )
    .unwrap();
    let mut child = spawn_sock_c(
        &["--manifest", p(&manifest), "--timeout", "3s"],
        &["server", "127.0.0.1", "0", "1"],
    );
    let (port, mut out) = listening_port(&mut child);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = writeln!(c, "hi");
    let mut back = String::new();
    // Closed by the host: nothing echoed.
    let _ = c.read_to_string(&mut back);
    assert_eq!(back, "");
    wait_bounded(&mut child, Duration::from_secs(20), "sock_c server");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let r = ran(child.wait_with_output().unwrap());
    assert!(!rest.contains("served"), "{rest}");
    assert!(
        r.stderr.contains("denied accept 127.0.0.1:"),
        "{}",
        r.stderr
    );
}

#[test]
fn c_resolves_through_the_gate_and_connects_to_the_pinned_address() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port().to_string();
    let dns = Dns::start(&[(
        "svc.test",
        Zone {
            answers: vec![vec!["127.0.0.1".parse().unwrap()]],
            ttl: 60,
        },
    )]);
    let d = dns.addr.to_string();
    let grant = format!("svc.test:{port}");
    // The name answers with a loopback address: a name grant reaches it
    // only when it says so.
    let r = sock_c(
        &["--dns-server", &d, "--allow-connect", &grant],
        &["name", "svc.test", &port],
    );
    assert_eq!(
        r.stdout,
        format!("resolved 1, first 127.0.0.1:{port}\nerror: connect: EACCES (2)\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "127.0.0.1 was resolved from svc.test and is a loopback (127.0.0.0/8) address"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(peer.accepted(), 0);
    let r = sock_c(
        &[
            "--dns-server",
            &d,
            "--allow-connect",
            &grant,
            "--allow-internal",
        ],
        &["name", "svc.test", &port],
    );
    assert_eq!(
        r.stdout,
        format!("resolved 1, first 127.0.0.1:{port}\ngot: peer {port} got hello\n"),
        "{}",
        r.stderr
    );
    // Resolving a name no grant covers is refused before any query.
    let r = sock_c(&["--dns-server", &d], &["name", "svc.test", &port]);
    assert_eq!(r.stdout, "error: resolve: EACCES (2)\n", "{}", r.stderr);
    assert_eq!(
        dns.a_queries("svc.test"),
        2,
        "one query for each run allowed to"
    );
}

#[test]
fn c_socket_options_round_trip() {
    let r = sock_c(&[], &["opts"]);
    assert_eq!(
        r.stdout,
        "tcp_no_delay 1\nkeep_alive 1\nrecv_buf_size at least 65536: 1\nrecv_timeout 1500000\nlinger 1 7\nip_ttl 42\nipv6_only 1\nipv6_only on IPv4: EINVAL\nunknown option: ENOPROTOOPT\n",
        "{}",
        r.stderr
    );
}

#[test]
fn rust_client_connects_and_sends_datagrams_through_its_own_imports() {
    let peer = TcpPeer::start("127.0.0.1");
    let addr = peer.addr.to_string();
    let r = p1_sock(&["--allow-connect", &addr], &["connect", &addr]);
    assert_eq!(
        r.stdout,
        format!(
            "peer {addr}\nlocal is loopback: true\ngot: peer {} got hello\n",
            peer.port()
        ),
        "{}",
        r.stderr
    );
    let r = p1_sock(&[], &["connect", &addr]);
    assert_eq!(r.stdout, "connect failed: errno 2\n");
    let udp = UdpPeer::start("127.0.0.1");
    let uaddr = udp.addr.to_string();
    let r = p1_sock(&["--allow-udp", &uaddr], &["udp", &uaddr]);
    assert_eq!(
        r.stdout,
        format!("udp got pong from {uaddr}\n"),
        "{}",
        r.stderr
    );
    let r = p1_sock(&[], &["udp", &uaddr]);
    assert_eq!(r.stdout, "send failed: errno 2\n");
}

#[test]
fn resolve_fills_what_fits_and_reports_the_total() {
    let dns = Dns::start(&[(
        "many.test",
        Zone {
            answers: vec![vec![
                "127.0.0.1".parse().unwrap(),
                "127.0.0.2".parse().unwrap(),
                "127.0.0.3".parse().unwrap(),
            ]],
            ttl: 60,
        },
    )]);
    let d = dns.addr.to_string();
    let flags = ["--dns-server", &d, "--allow-resolve", "many.test"];
    let r = p1_sock(&flags, &["resolve", "many.test", "1"]);
    assert_eq!(r.stdout, "resolved 1 of 3: 127.0.0.1:443\n", "{}", r.stderr);
    let r = p1_sock(&flags, &["resolve", "many.test", "8"]);
    assert_eq!(
        r.stdout,
        "resolved 3 of 3: 127.0.0.1:443 127.0.0.2:443 127.0.0.3:443\n"
    );
    let r = p1_sock(&flags, &["resolve", "many.test", "0"]);
    assert_eq!(r.stdout, "resolved 0 of 3: \n");
}

#[test]
fn hostile_arguments_get_errnos_never_traps() {
    let peer = TcpPeer::start("127.0.0.1");
    let port = peer.port().to_string();
    let grant = format!("127.0.0.1:{port}");
    let pool = format!("p=connect@{grant}");
    let r = p1_sock(
        &["--allow-connect", &grant, "--pool", &pool],
        &["probe", &port],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        lines(&[
            "open unknown family: EAFNOSUPPORT",
            "open unknown type: EINVAL",
            "open pool closed: EBADF",
            "open pool file: EINVAL",
            "open pool socket: EINVAL",
            "connect unknown kind: EAFNOSUPPORT",
            "connect truncated: EFAULT",
            "connect port 0: EINVAL",
            "connect v6 on v4 socket: EAFNOSUPPORT",
            // IPv4-mapped addresses are decided as their IPv4 address.
            "connect mapped denied: EACCES",
            "connect mapped allowed: ok",
            "resolve long name: ENAMETOOLONG",
            "resolve bad name: EINVAL",
            "bind stdout: ENOTSOCK",
            "bind closed: EBADF",
            "listen udp: ENOTSUP",
            "accept unlistened: EINVAL",
            "recv unconnected: ENOTCONN",
            // Buffers and out-pointers past the end of memory.
            "send_to buffer past memory: EFAULT",
            "send_to iovecs past memory: EFAULT",
            "send_to address past memory: EFAULT",
            "recv_from buffer past memory: EFAULT",
            "sock_send buffer past memory: EFAULT",
            "sock_recv buffer past memory: EFAULT",
            "addr_local out past memory: EFAULT",
            "get option out past memory: EFAULT",
            &format!("still works: peer {port} got after"),
            "read pool: ENOTCAPABLE",
            "pool filetype: 0",
            "narrow no pool: EBADF",
            "narrow a socket: EINVAL",
            "narrow bad spec: EINVAL",
            "narrow spec off memory: EFAULT",
            // Eight pools deep at most: a guest cannot stack them forever.
            "narrow too deep: EMLINK",
            "close pool: ok",
            "open closed pool: EBADF",
        ])
    );
    assert!(
        r.stderr.contains("denied connect [::ffff:127.0.0.2]"),
        "{}",
        r.stderr
    );
}

#[test]
fn connection_kinds_make_preview1_connects_tls() {
    use common::tls::{Ending, PeerSpec, Pki, Speaks, TlsPeer};
    let pki = Pki::new();
    let tls_peer = TlsPeer::start(PeerSpec {
        config: pki.server_config("server", false),
        speaks: Speaks::Line,
        ending: Ending::Clean,
        postgres: None,
    });
    let port = tls_peer.port().to_string();
    let grant = format!("127.0.0.1:{port}");
    let ca = pki.arg("ca.pem");
    let r = sock_c(
        &[
            "--connect-tls",
            &grant,
            "--tls-ca",
            &ca,
            "--tls-server-name",
            "echo.test",
        ],
        &["tcp", "127.0.0.1", &port],
    );
    assert_eq!(r.stdout, "got: tls peer got hello\n", "{}", r.stderr);
    let seen = tls_peer.wait_seen(1);
    assert_eq!(seen[0].sni.as_deref(), Some("echo.test"));
    // The wrong CA: the handshake fails, the connect is refused.
    let r = sock_c(
        &[
            "--connect-tls",
            &grant,
            "--tls-ca",
            &pki.arg("server.pem"),
            "--tls-server-name",
            "echo.test",
        ],
        &["tcp", "127.0.0.1", &port],
    );
    assert_eq!(
        r.stdout, "error: connect: ECONNREFUSED (14)\n",
        "{}",
        r.stderr
    );
}

#[test]
fn c_connect_to_a_closed_port_is_refused_blocking_and_not() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let grant = format!("127.0.0.1:{port}");
    let r = sock_c(&["--allow-connect", &grant], &["tcp", "127.0.0.1", &port]);
    assert_eq!(
        r.stdout, "error: connect: ECONNREFUSED (14)\n",
        "{}",
        r.stderr
    );
    // Non-blocking: in progress, then writable (the connect has ended),
    // and the next call on the socket reports why.
    let r = sock_c(&["--allow-connect", &grant], &["nb", "127.0.0.1", &port]);
    assert_eq!(
        r.stdout, "connect: EINPROGRESS\nwritable\nerror: getpeername: ECONNREFUSED (14)\n",
        "{}",
        r.stderr
    );
}

#[test]
fn narrowing_is_bounded_in_count_and_size_per_instance() {
    use common::measure;
    use warden_wasi::p1::{MAX_NARROWED_POOLS, MAX_NARROWED_SPEC_BYTES};
    let prog = guest(Target::P1, "p1_sock");
    // A guest narrowing thousands of times with specs of 4,000 bytes
    // under a 16 MiB memory limit: once its pools hold the most spec text
    // they may, ENOMEM; with tiny specs, EMFILE past the most pools. The
    // host's memory stays small either way.
    for (size, bound, errno) in [
        ("big", MAX_NARROWED_SPEC_BYTES / 4039, "ENOMEM"),
        ("tiny", MAX_NARROWED_POOLS, "EMFILE"),
    ] {
        let mut cmd = run_cmd(&[
            "--max-memory",
            "16MiB",
            "--pool",
            "p=connect@10.0.0.0/8:*",
            p(&prog),
            "narrow-flood",
            "p",
            "9900",
            size,
        ]);
        cmd.env_remove("RUST_BACKTRACE");
        let m = measure(cmd, Duration::from_secs(120));
        assert_eq!(m.ran.code, 0, "{}", m.ran.stderr);
        let line = m.ran.stdout.trim_end();
        let refused = 9900 - bound;
        assert!(
            line.ends_with(&format!(": {errno}={refused} ok={bound}")),
            "{size}: {line}"
        );
        eprintln!("{size}: peak RSS {} MiB", m.max_rss_kib / 1024);
        assert!(m.max_rss_kib < 128 * 1024, "{size}: {} KiB", m.max_rss_kib);
    }
}
