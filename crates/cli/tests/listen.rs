//! Pre-opened listeners for preview1 guests, end to end: the real `warden`
//! binary serving real guest programs (test-programs/, wasm32-wasip1) to
//! real TCP clients on loopback.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::server::Server;
use common::*;
use warden_test_artifacts::{Target, guest};

/// Send `data` (from a second thread, so large payloads cannot stall with
/// both sides' buffers full), close our side, and return everything read
/// back until the server closes.
fn exchange(stream: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let w = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    (&stream).read_to_end(&mut back).unwrap();
    w.join().unwrap();
    back
}

fn echo_round(server: &Server, data: &[u8]) -> Vec<u8> {
    exchange(server.connect(), data.to_vec())
}

#[test]
fn std_echo_serves_sequential_connections() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        p(&guest(Target::P1, "echo_std")),
        "50",
    ]);
    let mut total = 0;
    for i in 0..50 {
        let msg = format!("message {i}: {}\n", "x".repeat(i * 37));
        assert_eq!(
            echo_round(&server, msg.as_bytes()),
            msg.as_bytes(),
            "connection {i}"
        );
        total += msg.len();
    }
    let r = server.finish();
    assert_eq!(
        r.stdout,
        format!("served 50 connections, echoed {total} bytes\n")
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn std_echo_moves_large_transfers_byte_for_byte() {
    const SIZE: usize = 8 << 20;
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        p(&guest(Target::P1, "echo_std")),
        "1",
    ]);
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    // Written while the echo is read back, so neither side stalls.
    let back = exchange(server.connect(), data.clone());
    assert_eq!(back.len(), SIZE);
    assert!(back == data, "echoed bytes differ");
    let r = server.finish();
    assert_eq!(
        r.stdout,
        format!("served 1 connections, echoed {SIZE} bytes\n")
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn std_echo_survives_a_client_reset_mid_transfer() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        p(&guest(Target::P1, "echo_std")),
        "2",
    ]);
    let s = server.connect();
    (&s).write_all(&vec![7u8; 256 * 1024]).unwrap();
    // Reset instead of closing: SO_LINGER 0, then drop.
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    assert_eq!(echo_round(&server, b"still here\n"), b"still here\n");
    let r = server.finish();
    assert!(r.stdout.starts_with("served 2 connections"), "{}", r.stdout);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn probe_walks_the_preview1_socket_surface() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "preopen content\n").unwrap();
    let dir = format!("{}::/data", p(data.path()));
    let mut server = Server::start(&[
        "--listen",
        "web=127.0.0.1:0",
        "--dir-ro",
        &dir,
        p(&guest(Target::P1, "sock_probe")),
        "/data/hello.txt",
    ]);
    for expected in [
        "LISTEN_FDS=1",
        "LISTEN_FDNAMES=web",
        "FD_COUNT=4",
        "FD_NAMES=stdin:stdout:stderr:web",
        // The directory after the listener is still found by wasi-libc.
        "file: preopen content",
        "nonblocking accept: WouldBlock",
        "ready",
    ] {
        assert_eq!(server.line(), expected);
    }
    // Client A: the guest writes, half-closes, then reads what we send.
    let mut a = server.connect();
    let mut got = Vec::new();
    a.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello\n");
    a.write_all(b"abc").unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    // fd 3 the listener, fd 4 the directory, so A is fd 5.
    assert_eq!(server.line(), "accepted A on fd 5");
    assert_eq!(server.line(), "A sent 3 bytes after our half-close");
    drop(a);
    let b = server.connect();
    assert_eq!(server.line(), "accepted B on the same fd: true");
    assert_eq!(
        server.line(),
        "nonblocking read with nothing sent: WouldBlock"
    );
    assert_eq!(server.line(), "fd 3: socket true, may accept true");
    assert_eq!(
        server.line(),
        "B: socket true, may read true, nonblocking true"
    );
    assert_eq!(server.line(), "fd 3 filestat is a socket: true");
    drop(b);
    // No connection is pending: stdout (always writable) answers, not the
    // listener, and not the 5 s clock; then the short clock fires.
    assert_eq!(server.line(), "poll listener + stdout + 5s clock: 2:write");
    assert_eq!(server.line(), "poll listener + 50ms clock: 9:clock");
    assert_eq!(server.line(), "ready for C");
    let mut c = server.connect();
    c.write_all(b"peekaboo").unwrap();
    assert_eq!(server.line(), "peek: peek");
    assert_eq!(server.line(), "then recv: peekaboo");
    // WAITALL waits for all ten bytes, sent in two parts.
    c.write_all(b"01234").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(b"56789").unwrap();
    assert_eq!(server.line(), "waitall: 0123456789");
    drop(c);
    // preview1 errno 8 is EBADF, 57 is ENOTSOCK: errors, not traps.
    assert_eq!(server.line(), "write to fd 77: Some(8)");
    assert_eq!(server.line(), "accept on stdout: Some(57)");
    // 53 is ENOTCONN: a listener has no connection to shut down.
    assert_eq!(server.line(), "shutdown on the listener: 53");
    assert_eq!(server.line(), "closed the listener");
    // Closed in the guest means closed on the host, at once.
    let refused = TcpStream::connect(("127.0.0.1", server.port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    server
        .child
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    assert_eq!(server.line(), "accept after close: 8");
    assert_eq!(server.line(), "done");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn without_listen_there_is_no_socket_to_accept_on() {
    // The deny twin of every test above: no --listen, so fd 3 is nothing
    // and the guest's accept fails (it panics, which is a trap).
    let r = run(&["--timeout", "20s", p(&guest(Target::P1, "echo_std")), "1"]);
    assert_eq!(r.code, 134, "{}", r.stderr);
    assert!(r.stderr.contains("accept"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

#[test]
fn listen_on_a_busy_address_is_one_clear_error_before_the_guest_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let r = run(&["--listen", &addr, p(&guest(Target::P1, "hello"))]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "", "the guest must not have started");
    assert_eq!(
        r.stderr,
        format!("warden: error: cannot listen on {addr}: Address already in use (os error 98)\n")
    );
}

/// A port free right now on 127.0.0.1.
/// A component serving one client on a pre-opened listener: its bind of
/// the listener's address takes the listener over (Warden bound it first,
/// so without the handover the bind would find the port taken).
fn component_serves_on_a_pre_opened_listener(t: Target, program: &str) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let step = format!("listen:{addr}");
    let mut server = Server::start(&[
        "--timeout",
        "30s",
        "--listen",
        &format!("web={addr}"),
        p(&guest(t, program)),
        &step,
    ]);
    assert_eq!(server.port, port);
    assert_eq!(server.line(), format!("listening on {addr}"));
    let mut conn = server.connect();
    conn.write_all(b"hello\n").unwrap();
    let mut back = String::new();
    BufReader::new(&conn).read_line(&mut back).unwrap();
    assert_eq!(back, "echo hello\n");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("{step}: ok accepted hello\n"));
    assert!(
        r.stderr.contains(&format!(
            "warden: web (for the guest's bind of that address) listening on {addr}"
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn a_02_component_serves_on_a_pre_opened_listener() {
    component_serves_on_a_pre_opened_listener(Target::P2, "net_client");
}

#[test]
fn a_03_component_serves_on_a_pre_opened_listener() {
    component_serves_on_a_pre_opened_listener(Target::P3, "p3_net");
}

#[test]
fn without_a_listener_or_grant_a_component_cannot_listen() {
    // The deny twin of the two above.
    for (t, program) in [(Target::P2, "net_client"), (Target::P3, "p3_net")] {
        let step = format!("listen:127.0.0.1:{}", free_port());
        let r = run(&["--timeout", "30s", p(&guest(t, program)), &step]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let refused = if t == Target::P2 {
            "PermissionDenied"
        } else {
            "bind ErrorCode::AccessDenied"
        };
        assert_eq!(r.stdout, format!("{step}: {refused}\n"), "{t:?}");
        assert!(
            r.stderr.contains("warden: denied bind 127.0.0.1:"),
            "{}",
            r.stderr
        );
    }
}

/// `warden run` started the way systemd starts a socket-activated service:
/// a listening socket at fd 3, and LISTEN_PID (Warden's own pid, which
/// `$$` is once the shell execs it), LISTEN_FDS and LISTEN_FDNAMES set.
fn handed_over(
    listener: &std::net::TcpListener,
    listen_pid: &str,
    args: &[&str],
) -> std::process::Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.env_clear()
        .arg("-c")
        .arg(format!(
            "LISTEN_PID={listen_pid} LISTEN_FDS=1 LISTEN_FDNAMES=web exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_warden"))
        .arg("run")
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(args);
    // SAFETY: dup2 and fcntl are async-signal-safe; they put the listener
    // at fd 3 in the child without close-on-exec, as a service manager
    // does (dup2 onto itself would keep the flag, hence the fcntl).
    unsafe {
        cmd.pre_exec(move || {
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd
}

#[test]
fn a_listener_handed_over_by_a_service_manager_is_served() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Preview1: the handed-over socket is the guest's fd 3, by name.
    let mut child = handed_over(
        &listener,
        "$$",
        &["--listen", "fd:web", p(&guest(Target::P1, "echo_std")), "1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let back = exchange(
        TcpStream::connect(("127.0.0.1", port)).unwrap(),
        b"via systemd\n".to_vec(),
    );
    assert_eq!(back, b"via systemd\n");
    let out = wait_out(child, "the p1 guest served one connection");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("warden: fd 3 (web) listening on 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    // A component: its bind of the socket's address takes it over.
    let step = format!("listen:127.0.0.1:{port}");
    child = handed_over(
        &listener,
        "$$",
        &[
            "--listen",
            "fd:3",
            p(&guest(Target::P2, "net_client")),
            &step,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"hi\n").unwrap();
    let mut back = String::new();
    BufReader::new(&conn).read_line(&mut back).unwrap();
    assert_eq!(back, "echo hi\n");
    let out = wait_out(child, "the component served one connection");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.ends_with(&format!("{step}: ok accepted hi\n")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_handover_meant_for_another_process_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = handed_over(
        &listener,
        "1",
        &["--listen", "fd:3", p(&guest(Target::P1, "echo_std")), "1"],
    )
    .output()
    .unwrap();
    let r = ran(out);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "warden: error: cannot listen on fd:3: no listening sockets were handed to Warden (LISTEN_PID is not this process)\n"
    );
    // And a descriptor that is not a handed-over listener.
    let out = handed_over(
        &listener,
        "$$",
        &["--listen", "fd:4", p(&guest(Target::P1, "echo_std")), "1"],
    )
    .output()
    .unwrap();
    let r = ran(out);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("fd 4 is not one of the 1 listening sockets handed to Warden"),
        "{}",
        r.stderr
    );
}

/// Wait (bounded) for a spawned warden and collect what it printed.
fn wait_out(mut child: Child, what: &str) -> Ran {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(60), what);
    Ran {
        code: status.code().unwrap(),
        stdout: out,
        stderr: err.join().unwrap(),
    }
}

#[test]
fn timeout_stops_a_guest_blocked_in_accept() {
    let server = Server::start(&[
        "--timeout",
        "300ms",
        "--listen",
        "127.0.0.1:0",
        p(&guest(Target::P1, "echo_std")),
        "1",
    ]);
    let r = server.finish();
    assert_eq!(r.code, 124);
    assert!(
        r.stderr
            .ends_with("warden: guest stopped: --timeout 300ms reached\n"),
        "{}",
        r.stderr
    );
}

/// Run `clients` clients at once against `port`: each connects, waits until
/// all are connected, then sends `request(i)` and half-closes; returns what
/// each read back, in client order.
fn concurrent_clients(port: u16, clients: usize, request: fn(usize) -> Vec<u8>) -> Vec<Vec<u8>> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                barrier.wait();
                exchange(s, request(i))
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn mio_http_serves_200_concurrent_clients_with_a_timer() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        p(&guest(Target::P1, "http_mio")),
        "200",
    ]);
    // Idle for a while first: the poll loop's timer must tick meanwhile.
    std::thread::sleep(Duration::from_millis(200));
    let responses = concurrent_clients(server.port, 200, |i| {
        format!("GET /client{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
    });
    for (i, response) in responses.iter().enumerate() {
        let text = String::from_utf8_lossy(response);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "client {i}: {text}"
        );
        assert!(
            text.contains(&format!(
                "hello from mio, you asked for /client{i}, request "
            )),
            "client {i}: {text}"
        );
    }
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let peak: usize = r
        .stdout
        .strip_prefix("served 200 requests; peak ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        peak > 1,
        "the server never had two clients at once: {}",
        r.stdout
    );
    assert!(r.stdout.ends_with("timer ticked: true\n"), "{}", r.stdout);
}

#[test]
fn tokio_echo_serves_concurrent_clients() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        p(&guest(Target::P1, "echo_tokio")),
        "20",
    ]);
    let request = |i: usize| {
        (0..256 * 1024)
            .map(|j| ((i * 7 + j) % 253) as u8)
            .collect::<Vec<u8>>()
    };
    let responses = concurrent_clients(server.port, 20, request);
    for (i, back) in responses.iter().enumerate() {
        assert!(
            *back == request(i),
            "client {i} got {} bytes back",
            back.len()
        );
    }
    let r = server.finish();
    assert_eq!(
        r.stdout,
        format!(
            "tokio served 20 connections, echoed {} bytes\n",
            20 * 256 * 1024
        )
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn c_echo_serves_connections() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        p(&warden_test_artifacts::c_guest("echo_c")),
        "3",
    ]);
    let mut total = 0;
    for i in 0..3 {
        let msg: Vec<u8> = (0..(i + 1) * 700_000).map(|j| (j % 241) as u8).collect();
        let back = exchange(server.connect(), msg.clone());
        assert!(
            back == msg,
            "connection {i}: {} bytes back of {}",
            back.len(),
            msg.len()
        );
        total += msg.len();
    }
    let r = server.finish();
    assert_eq!(
        r.stdout,
        format!("c served 3 connections, echoed {total} bytes\n")
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn hostile_counts_get_einval_not_host_allocations() {
    // poll_oneoff claiming 2^31-1 subscriptions and sock_recv with 100000
    // iovecs: both must fail with EINVAL (28) before the host copies
    // anything. fd_prestat_get on the listener with a misaligned result
    // pointer must be EFAULT (21) with nothing written (it used to write
    // half the result and then trap). Exit code 0 means all three did.
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.wat");
    std::fs::write(
        &hostile,
        r#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (if (i32.ne (call $prestat (i32.const 3) (i32.const 0x1001)) (i32.const 21))
              (then (call $exit (i32.const 3))))
            (if (i32.ne (call $poll (i32.const 0) (i32.const 0) (i32.const 0x7fffffff) (i32.const 8)) (i32.const 28))
              (then (call $exit (i32.const 1))))
            (if (i32.ne (call $recv (i32.const 3) (i32.const 0) (i32.const 100000) (i32.const 0) (i32.const 8) (i32.const 12)) (i32.const 28))
              (then (call $exit (i32.const 2))))
            (call $exit (i32.const 0))))"#,
    )
    .unwrap();
    let r = run(&[
        "--listen",
        "127.0.0.1:0",
        "--max-memory",
        "64MiB",
        p(&hostile),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A connection to `port` from the local address `from`.
fn connect_from(from: &str, port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    let to: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    sock.connect(&to.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

#[test]
fn accepted_peers_pass_the_gate_and_are_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("audit.jsonl");
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--deny",
        "127.0.0.2:*",
        "--audit",
        p(&log),
        p(&guest(Target::P1, "echo_std")),
        "1",
    ]);
    // The denied peer is reset by the host and never reaches the guest (a
    // reset the write took first leaves an end of stream to read).
    let mut refused = connect_from("127.0.0.2", server.port);
    let _ = refused.write_all(b"nope\n");
    let mut buf = Vec::new();
    match refused.read_to_end(&mut buf) {
        Ok(_) => assert_eq!(buf, b""),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    let served = exchange(connect_from("127.0.0.1", server.port), b"yes\n".to_vec());
    assert_eq!(served, b"yes\n");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "served 1 connections, echoed 4 bytes\n");
    assert!(
        r.stderr.contains("warden: denied accept 127.0.0.2:"),
        "{}",
        r.stderr
    );
    let audit = std::fs::read_to_string(&log).unwrap();
    let recs: Vec<(String, String, String)> = audit
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ip = v["addr"]
                .as_str()
                .unwrap()
                .rsplit_once(':')
                .unwrap()
                .0
                .to_string();
            (
                v["event"].to_string(),
                ip,
                v["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let listen_rule = "--listen 127.0.0.1:0".to_string();
    assert_eq!(
        recs,
        [
            (
                "\"accept\"".into(),
                "127.0.0.2".into(),
                "--deny 127.0.0.2:*".into()
            ),
            ("\"accept\"".into(), "127.0.0.1".into(), listen_rule),
        ]
    );
}

#[test]
fn manifest_listeners_come_first() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("w.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[[listen]]\nname = \"web\"\naddr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let server = Server::start(&[
        "--manifest",
        p(&manifest),
        "--listen",
        "admin=127.0.0.1:0",
        p(&guest(Target::P1, "echo_std")),
        "1",
    ]);
    assert_eq!(echo_round(&server, b"via manifest\n"), b"via manifest\n");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("warden: fd 3 (web) listening on 127.0.0.1:"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("warden: fd 4 (admin) listening on 127.0.0.1:"),
        "{}",
        r.stderr
    );
}

#[test]
fn sigterm_stops_a_server_with_its_audit_log_flushed() {
    // The second run prints a warning before the guest starts (an
    // allow-all grant the echo server never uses), which starts Warden's
    // output thread before the stop signals are taken over: a SIGTERM
    // must still stop it the same way.
    for extra in [&[][..], &["--allow-connect", "0.0.0.0/0:*"][..]] {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("audit.jsonl");
        let mut args = vec!["--listen", "127.0.0.1:0", "--audit", p(&log)];
        args.extend_from_slice(extra);
        let prog = guest(Target::P1, "echo_std");
        args.extend([p(&prog), "5"]);
        let server = Server::start(&args);
        assert_eq!(echo_round(&server, b"one\n"), b"one\n");
        // SAFETY: signalling our own child process.
        assert_eq!(
            unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) },
            0
        );
        let r = server.finish();
        assert_eq!(r.code, 143, "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr.ends_with("warden: stopped by SIGTERM\n"),
            "{extra:?}: {}",
            r.stderr
        );
        let audit = std::fs::read_to_string(&log).unwrap();
        assert_eq!(audit.lines().count(), 1, "{audit}");
        let rec: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
        assert_eq!(
            (rec["event"].as_str(), rec["decision"].as_str()),
            (Some("accept"), Some("allow"))
        );
    }
}

#[test]
fn listener_variables_replace_the_operators_env() {
    let r = run(&[
        "--env",
        "LISTEN_FDS=99",
        "--env",
        "FD_COUNT=99",
        "--listen",
        "web=127.0.0.1:0",
        p(&guest(Target::P1, "cli")),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("env LISTEN_FDS=1\n"), "{}", r.stdout);
    assert!(r.stdout.contains("env FD_COUNT=4\n"), "{}", r.stdout);
    assert!(!r.stdout.contains("99"), "{}", r.stdout);
}

#[test]
fn duplicate_listener_names_are_refused() {
    let r = run(&[
        "--listen",
        "web=127.0.0.1:0",
        "--listen",
        "web=127.0.0.1:0",
        p(&guest(Target::P1, "cli")),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("two listeners are named `web`"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_peer_connecting_many_times_is_reported_once() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--deny",
        "127.0.0.2:*",
        p(&guest(Target::P1, "echo_std")),
        "1",
    ]);
    for _ in 0..30 {
        let mut refused = connect_from("127.0.0.2", server.port);
        let mut buf = Vec::new();
        let _ = refused.read_to_end(&mut buf);
    }
    let served = exchange(connect_from("127.0.0.1", server.port), b"yes\n".to_vec());
    assert_eq!(served, b"yes\n");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("warden: denied accept").count(),
        1,
        "{}",
        r.stderr
    );
}
