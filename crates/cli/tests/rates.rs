//! Bandwidth limits end to end: `--max-egress-rate` and
//! `--max-ingress-rate` slow a real transfer to the rate (within 20%,
//! allowing for the documented burst), on preview1, WASI 0.2 and under
//! `serve`, with every byte intact; the twin of each is the same transfer
//! unlimited, well under the limited time.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{p, run};
use warden_test_artifacts::{Target, guest};

const MIB: f64 = 1024.0 * 1024.0;

/// The seconds a transfer of `bytes` should take at `rate` bytes/s after
/// the burst (0.1 s of the rate, at least 16 KiB).
fn expected(bytes: f64, rate: f64) -> f64 {
    (bytes - (rate * 0.1).max(16.0 * 1024.0)) / rate
}

fn within_20_percent(took: f64, want: f64) {
    assert!(
        took >= want * 0.8 && took <= want * 1.2,
        "took {took:.3}s, expected {want:.3}s within 20%"
    );
}

/// A peer on loopback that serves one connection with `serve`, bounded by
/// socket timeouts.
fn peer(serve: fn(std::net::TcpStream)) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        // Bounded: a guest that never connects leaves no peer waiting.
        let end = Instant::now() + Duration::from_secs(60);
        let s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => return,
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        serve(s);
    });
    (addr, t)
}

fn echo(mut s: std::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn count(mut s: std::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let mut sevens = true;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sevens &= buf[..n].iter().all(|b| *b == 7);
                total += n;
            }
        }
    }
    let _ = write!(s, "{total}{}", if sevens { "" } else { " corrupted" });
}

/// The preview1 echo client, 2 MiB through a real echo peer: the seconds
/// it reports (timed inside the program).
fn p1_echo(limits: &[&str]) -> f64 {
    let (addr, t) = peer(echo);
    let mut args = vec!["--allow-connect", addr.as_str()];
    args.extend_from_slice(limits);
    let prog = guest(Target::P1, "p1_client");
    let bytes = (2 * 1024 * 1024).to_string();
    args.extend([p(&prog), "echo", &addr, &bytes]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    t.join().unwrap();
    r.stdout.trim().parse().unwrap()
}

#[test]
fn preview1_sends_and_receives_at_the_rate_and_unlimited_at_full_speed() {
    let want = expected(2.0 * MIB, MIB);
    within_20_percent(p1_echo(&["--max-egress-rate", "1MiB/s"]), want);
    within_20_percent(p1_echo(&["--max-ingress-rate", "1MiB/s"]), want);
    let free = p1_echo(&[]);
    assert!(free < want / 2.0, "unlimited took {free}s");
}

fn p2_upload(limits: &[&str]) -> f64 {
    let (addr, t) = peer(count);
    let mut args = vec!["--allow-connect", addr.as_str()];
    args.extend_from_slice(limits);
    let prog = guest(Target::P2, "net_client");
    let step = format!("upload:{}:{addr}", 2 * 1024 * 1024);
    args.extend([p(&prog), &step]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    t.join().unwrap();
    let rest = r
        .stdout
        .strip_prefix(&format!("{step}: peer got 2097152 in "))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    let ms: f64 = rest
        .trim_end()
        .strip_suffix(" ms")
        .unwrap()
        .parse()
        .unwrap();
    ms / 1000.0
}

#[test]
fn a_wasi_02_component_sends_at_the_rate() {
    within_20_percent(
        p2_upload(&["--max-egress-rate", "1MiB/s"]),
        expected(2.0 * MIB, MIB),
    );
    let free = p2_upload(&[]);
    assert!(free < 0.5, "unlimited took {free}s");
}

#[test]
fn serve_paces_an_apps_response_bodies() {
    use common::serving::{serve, stop};
    let download = |server: &common::server::Server| {
        let started = Instant::now();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(
            b"GET /big?bytes=2097152 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let took = started.elapsed().as_secs_f64();
        let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(all.starts_with(b"HTTP/1.1 200"), "{:?}", &all[..40]);
        (took, all.len() - head_end)
    };
    let server = serve(&["--max-egress-rate", "1MiB/s"]);
    let (took, body) = download(&server);
    stop(server);
    // The body may be chunked: at least its 2 MiB came.
    assert!(body >= 2 * 1024 * 1024, "{body}");
    within_20_percent(took, expected(2.0 * MIB, MIB));
    let server = serve(&[]);
    let (free, _) = download(&server);
    stop(server);
    assert!(free < 0.5, "unlimited took {free}s");
}

#[test]
fn serve_paces_the_request_bodies_an_app_reads() {
    use common::serving::{serve, stop};
    let upload = |server: &common::server::Server| {
        let body = vec![b'x'; 2 * 1024 * 1024];
        let started = Instant::now();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        (started.elapsed().as_secs_f64(), all)
    };
    let server = serve(&["--max-ingress-rate", "1MiB/s", "--max-body", "4MiB"]);
    let (took, answer) = upload(&server);
    stop(server);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("2097152\n") || answer.contains("2097152"),
        "{answer}"
    );
    within_20_percent(took, expected(2.0 * MIB, MIB));
    let server = serve(&["--max-body", "4MiB"]);
    let (free, _) = upload(&server);
    stop(server);
    assert!(free < 0.5, "unlimited took {free}s");
}

/// A component sends 1 MiB in datagrams to a UDP peer on loopback: the
/// milliseconds it reports.
fn udp_send(t: Target, program: &str, limits: &[&str]) -> f64 {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap().to_string();
    let mut args = vec![
        "--allow-udp",
        addr.as_str(),
        "--allow-udp-bind",
        "127.0.0.1:*",
    ];
    args.extend_from_slice(limits);
    let prog = guest(t, program);
    let step = format!("udpsend:{}:{addr}", 1024 * 1024);
    args.extend([p(&prog), &step]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rest = r
        .stdout
        .strip_prefix(&format!("{step}: sent 1048576 in "))
        .unwrap_or_else(|| panic!("{}\n{}", r.stdout, r.stderr));
    rest.trim_end()
        .strip_suffix(" ms")
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1000.0
}

#[test]
fn component_datagrams_are_paced_too() {
    let want = expected(MIB, 512.0 * 1024.0);
    for (t, program) in [(Target::P2, "net_client"), (Target::P3, "p3_net")] {
        within_20_percent(
            udp_send(t, program, &["--max-egress-rate", "512KiB/s"]),
            want,
        );
        let free = udp_send(t, program, &[]);
        assert!(free < want / 2.0, "{program} unlimited took {free}s");
    }
}

fn big_response(mut s: std::net::TcpStream) {
    let mut head = [0u8; 1024];
    let _ = s.read(&mut head);
    let body = vec![b'x'; 512 * 1024];
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(&body);
}

/// A wasi:http GET of 512 KiB: the seconds the whole run took.
fn http_get(limits: &[&str]) -> f64 {
    let (addr, t) = peer(big_response);
    let mut args = vec!["--allow-connect", addr.as_str()];
    args.extend_from_slice(limits);
    let prog = guest(Target::P2, "net_client");
    let step = format!("http:http://{addr}/");
    args.extend([p(&prog), &step]);
    let started = Instant::now();
    let r = run(&args);
    let took = started.elapsed().as_secs_f64();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with(&format!("{step}: ok status 200 ")),
        "{}",
        &r.stdout[..80.min(r.stdout.len())]
    );
    assert!(r.stdout.contains(&"x".repeat(512 * 1024)));
    t.join().unwrap();
    took
}

#[test]
fn a_wasi_http_response_is_received_at_the_rate() {
    let want = expected(512.0 * 1024.0, 256.0 * 1024.0);
    let took = http_get(&["--max-ingress-rate", "256KiB/s"]);
    // The run includes Warden's start (well under the 20%).
    within_20_percent(took, want);
    let free = http_get(&[]);
    assert!(free < want / 2.0, "unlimited took {free}s");
}

#[test]
fn a_rate_that_does_not_read_is_refused() {
    let prog = guest(Target::P1, "p1_client");
    let r = run(&[
        "--max-egress-rate",
        "fast",
        p(&prog),
        "echo",
        "127.0.0.1:9",
        "1",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("like 2MiB/s"), "{}", r.stderr);
}
