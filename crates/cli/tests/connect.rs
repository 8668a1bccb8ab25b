//! A guest's connect, made every way real programs make it, reports what
//! really happened: allowed, denied, refused, unreachable, timed out, TLS
//! verification failed. WASI 0.2 guests connect five ways (std's blocking
//! `connect`, std's `connect_timeout`, tokio, a C-style non-blocking
//! connect with `poll` and `SO_ERROR`, and wasi:sockets' own start/finish
//! protocol: test-programs/src/bin/connect_modes.rs), WASI 0.3 guests
//! through `connect` (p3_net), preview1 guests through the socket
//! extension (p1_sock). A connect is one decision on every ABI: the
//! operator's line and the audit record name the connect, never a bind.
//!
//! Peers are real and on loopback. "Unreachable" and the kernel's own
//! connect timeout need a network namespace of their own (no route there
//! leaves the host; SYN retries shortened), which needs root: without it
//! those cases say SKIPPED and check nothing.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::peers::{Dns, TcpPeer, Zone};
use common::tls::{Ending, PeerSpec, Pki, Speaks, TlsPeer};
use common::*;
use warden_test_artifacts::{Target, guest};

/// The ways a WASI 0.2 guest connects (see connect_modes.rs).
const MODES: [&str; 5] = ["blocking", "timeout", "tokio", "libc", "raw"];

/// What each mode prints for one outcome, in `MODES` order.
type Expected = [&'static str; 5];

/// The guest's one line for `connect_modes MODE TARGET MS` under `flags`.
fn p2_line(flags: &[&str], mode: &str, target: &str, ms: u64) -> String {
    let prog = guest(Target::P2, "connect_modes");
    let ms = ms.to_string();
    let mut all: Vec<&str> = vec!["--timeout", "60s"];
    all.extend_from_slice(flags);
    all.extend([p(&prog), mode, target, &ms]);
    let r = run(&all);
    assert_eq!(r.code, 0, "{mode}: {}\n{}", r.stdout, r.stderr);
    r.stdout.trim_end().to_string()
}

/// Every mode against `target`, in parallel; each line checked against
/// its expectation (a prefix of it).
fn every_mode(flags: &[&str], target: &str, ms: u64, expected: Expected, case: &str) {
    std::thread::scope(|s| {
        let runs: Vec<_> = MODES
            .iter()
            .map(|mode| s.spawn(move || (mode, p2_line(flags, mode, target, ms))))
            .collect();
        for (run, want) in runs.into_iter().zip(expected) {
            let (mode, line) = run.join().unwrap();
            assert!(
                line.starts_with(want),
                "{case}, {mode}: expected {want:?}, got {line:?}"
            );
        }
    });
}

/// The 0.3 guest's line for `connect:TARGET`.
fn p3_line(flags: &[&str], target: &str) -> String {
    let prog = guest(Target::P3, "p3_net");
    let step = format!("connect:{target}");
    let mut all: Vec<&str> = vec!["--timeout", "60s"];
    all.extend_from_slice(flags);
    all.extend([p(&prog), &step]);
    let r = run(&all);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.stdout
        .trim_end()
        .strip_prefix(&format!("{step}: "))
        .unwrap_or_else(|| panic!("{}", r.stdout))
        .to_string()
}

fn audit(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The socket decisions in an audit log: (event, decision) pairs.
fn socket_decisions(path: &Path) -> Vec<(String, String)> {
    audit(path)
        .iter()
        .filter(|r| r["event"] == "connect" || r["event"] == "bind")
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_string(),
                r["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_allowed_connect_connects_every_way() {
    let peer = TcpPeer::start("127.0.0.1");
    let target = peer.addr.to_string();
    let ok = format!("ok connected {target}");
    let ok: &'static str = Box::leak(ok.into_boxed_str());
    every_mode(
        &["--allow-connect", &target],
        &target,
        3000,
        [ok; 5],
        "allowed",
    );
    assert_eq!(
        p3_line(&["--allow-connect", &target], &target),
        format!("ok peer {} got ping", peer.port())
    );
}

#[test]
fn a_denied_connect_is_denied_every_way_and_decided_as_a_connect() {
    let target = "127.0.0.1:9";
    every_mode(
        &[],
        target,
        3000,
        [
            "err PermissionDenied",
            "err PermissionDenied",
            "err PermissionDenied",
            "err PermissionDenied",
            "err ErrorCode { code: 1, name: \"access-denied\"",
        ],
        "denied",
    );
    assert_eq!(p3_line(&[], target), "ErrorCode::AccessDenied");
    // One decision, named for what the guest tried, on every ABI.
    let p1 = guest(Target::P1, "p1_sock");
    let p2 = guest(Target::P2, "connect_modes");
    let p3 = guest(Target::P3, "p3_net");
    let step = format!("connect:{target}");
    let runs: [(&str, Vec<&str>); 3] = [
        ("preview1", vec![p(&p1), "connect", target]),
        ("0.2", vec![p(&p2), "blocking", target]),
        ("0.3", vec![p(&p3), &step]),
    ];
    for (abi, args) in runs {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let mut all = vec!["--audit", p(&log)];
        all.extend(args);
        let r = run(&all);
        assert!(
            r.stderr
                .contains("warden: denied connect 127.0.0.1:9 (rule default-deny)"),
            "{abi}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("bind"), "{abi}: {}", r.stderr);
        assert_eq!(
            socket_decisions(&log),
            [("connect".to_string(), "deny".to_string())],
            "{abi}"
        );
    }
}

#[test]
fn an_allowed_connect_is_one_decision_whose_grant_covers_the_ephemeral_bind() {
    let peer = TcpPeer::start("127.0.0.1");
    let target = peer.addr.to_string();
    let p1 = guest(Target::P1, "p1_sock");
    let p2 = guest(Target::P2, "connect_modes");
    let p3 = guest(Target::P3, "p3_net");
    let step = format!("connect:{target}");
    let runs: [(&str, Vec<&str>); 3] = [
        ("preview1", vec![p(&p1), "connect", &target]),
        ("0.2", vec![p(&p2), "tokio", &target]),
        ("0.3", vec![p(&p3), &step]),
    ];
    for (abi, args) in runs {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let mut all = vec!["--allow-connect", &target, "--audit", p(&log)];
        all.extend(args);
        let r = run(&all);
        assert_eq!(r.code, 0, "{abi}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(
            socket_decisions(&log),
            [("connect".to_string(), "allow".to_string())],
            "{abi}"
        );
    }
}

#[test]
fn a_refused_connect_is_refused_every_way() {
    // A port nobody listens on: bound, never listening, so the kernel
    // answers a connect with a reset.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let target = closed
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .to_string();
    every_mode(
        &["--allow-connect", &target],
        &target,
        3000,
        [
            "err ConnectionRefused",
            "err ConnectionRefused",
            "err ConnectionRefused",
            "err ConnectionRefused",
            "err ErrorCode { code: 14, name: \"connection-refused\"",
        ],
        "refused",
    );
    assert_eq!(
        p3_line(&["--allow-connect", &target], &target),
        "ErrorCode::ConnectionRefused"
    );
}

/// A listener whose accept queue is full: the kernel drops further SYNs,
/// so a connect to it hangs until someone's timeout. Kept open while the
/// value lives.
struct Stalled {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<socket2::Socket>,
}

impl Stalled {
    fn start() -> Stalled {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        // Fill the queue until a probe's handshake no longer completes.
        for _ in 0..8 {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            let done = wait_writable(&s, Duration::from_millis(300));
            fillers.push(s);
            if !done {
                return Stalled {
                    addr,
                    _listener: listener,
                    _fillers: fillers,
                };
            }
        }
        panic!("the accept queue never filled");
    }
}

fn wait_writable(s: &socket2::Socket, within: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, within.as_millis() as i32) > 0 }
}

#[test]
fn a_connect_that_hangs_times_out_on_the_guests_own_clock() {
    let stalled = Stalled::start();
    let target = stalled.addr.to_string();
    let prog = guest(Target::P2, "connect_modes");
    // The blocking connect has no clock of its own; the kernel's timeout
    // is tested in a namespace of its own below.
    for mode in ["timeout", "tokio", "libc", "raw"] {
        let r = run(&[
            "--timeout",
            "60s",
            "--allow-connect",
            &target,
            p(&prog),
            mode,
            &target,
            "500",
        ]);
        assert_eq!(r.stdout, "err TimedOut\n", "{mode}: {}", r.stderr);
    }
}

#[test]
fn a_failed_tls_verification_refuses_the_connect() {
    let pki = Pki::new();
    let zone = Zone {
        answers: vec![vec!["127.0.0.1".parse().unwrap()]],
        ttl: 300,
    };
    let dns = Dns::start(&[("echo.test", zone)]);
    let peer = TlsPeer::start(PeerSpec {
        config: pki.server_config("wrong-name", false),
        speaks: Speaks::Line,
        ending: Ending::Clean,
        postgres: None,
    });
    let target = format!("echo.test:{}", peer.port());
    let d = dns.addr.to_string();
    let ca = pki.arg("ca.pem");
    let flags = [
        "--dns-server",
        &d,
        "--allow-internal",
        "--connect-tls",
        &target,
        "--tls-ca",
        &ca,
    ];
    every_mode(
        &flags,
        &target,
        5000,
        [
            "err ConnectionRefused",
            // Expected failure, from the guest's libc: wasi-libc's `poll`
            // reports a connect that failed after `EINPROGRESS` as
            // writable only (no POLLERR/POLLHUP), and std's
            // `connect_timeout` reads `SO_ERROR` only after those, so it
            // hands back a stream that is not connected. The handshake
            // cannot finish inside the guest's first `finish-connect`.
            "err peer_addr NotConnected",
            "err ConnectionRefused",
            "err ConnectionRefused",
            "err ErrorCode { code: 14, name: \"connection-refused\"",
        ],
        "TLS verification failed",
    );
    let addr = format!("127.0.0.1:{}", peer.port());
    let p3_flags = [
        "--connect-tls",
        &addr,
        "--tls-server-name",
        "echo.test",
        "--tls-ca",
        &ca,
    ];
    assert_eq!(p3_line(&p3_flags, &addr), "ErrorCode::ConnectionRefused");
}

/// Run `f` on a thread of its own inside a new network namespace with
/// loopback up and SYN retries cut to one (a kernel connect timeout of
/// about 3 s); children it spawns live there too. `None` when the
/// namespace cannot be made (not root).
fn in_own_netns<R: Send>(f: impl FnOnce() -> R + Send) -> Option<R> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects only this thread, which is ours.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            loopback_up();
            std::fs::write("/proc/sys/net/ipv4/tcp_syn_retries", "1").unwrap();
            Some(f())
        })
        .join()
        .unwrap()
    })
}

fn loopback_up() {
    // SAFETY: an ioctl on a socket of our own with a zeroed, named ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr), 0);
        libc::close(fd);
    }
    assert!(TcpStream::connect("127.0.0.1:1").is_err());
}

#[test]
fn unreachable_and_kernel_timeouts_reach_the_guest() {
    let ran = in_own_netns(|| {
        // No route but loopback here: the kernel refuses at once, and
        // nothing leaves the namespace. 192.0.2.1 is a documentation
        // address.
        let unreachable = "192.0.2.1:80";
        every_mode(
            &["--allow-connect", unreachable],
            unreachable,
            3000,
            [
                "err HostUnreachable",
                "err HostUnreachable",
                "err HostUnreachable",
                "err HostUnreachable",
                "err ErrorCode { code: 13, name: \"remote-unreachable\"",
            ],
            "unreachable",
        );
        assert_eq!(
            p3_line(&["--allow-connect", unreachable], unreachable),
            "ErrorCode::RemoteUnreachable"
        );
        // The kernel gives up on an unanswered handshake (here after
        // about 3 s) before the guest's own 20 s.
        let stalled = Stalled::start();
        let target = stalled.addr.to_string();
        every_mode(
            &["--allow-connect", &target],
            &target,
            20_000,
            [
                "err TimedOut",
                // Expected failure, as for TLS above: wasi-libc's `poll`
                // shows the failed connect as writable only.
                "err peer_addr NotConnected",
                "err TimedOut",
                "err TimedOut",
                "err ErrorCode { code: 5, name: \"timeout\"",
            ],
            "kernel timeout",
        );
        assert_eq!(
            p3_line(&["--allow-connect", &target], &target),
            "ErrorCode::Timeout"
        );
    });
    if ran.is_none() {
        eprintln!("SKIPPED: a network namespace of its own needs root");
    }
}
