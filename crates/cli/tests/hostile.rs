//! Hostile guests and hostile surroundings, end to end: every host resource
//! a guest (or the shell around Warden) can drive is bounded, every limit
//! fires, and Warden never crashes. Each test runs the real binary with a
//! real guest (test-programs/src/bin/{flood,hostile}.rs, or WebAssembly text
//! written here) and fails without the bound it checks.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use warden_test_artifacts::{Target, guest};

fn hostile() -> String {
    p(&guest(Target::P2, "hostile")).to_string()
}

fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ------------------------------------------------------- a closed stderr

#[test]
fn a_closed_stderr_loses_neither_the_run_nor_the_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let client = guest(Target::P2, "net_client");
    // Five different denials: five stderr lines, the first read, then the
    // reader goes away (as `2>&1 | head -1` does).
    let steps: Vec<String> = (1..=5).map(|i| format!("connect:127.0.0.1:{i}")).collect();
    // A grant elsewhere switches TCP on, so each connect reaches the gate.
    let mut cmd = run_cmd(&[
        "--allow-connect",
        "127.0.0.1:9",
        "--audit",
        p(&audit),
        p(&client),
    ]);
    cmd.args(&steps)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.starts_with("warden: denied connect"), "{first}");
    drop(err);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(30), "the guest finishes");
    assert_eq!(status.code(), Some(0), "no panic on the closed pipe");
    assert_eq!(out.lines().count(), 5, "{out}");
    let recs = records(&audit);
    let connects = recs.iter().filter(|r| r["event"] == "connect").count();
    assert_eq!(connects, 5, "every decision is in the audit log");
}

/// A preview1 echo server that accepted one connection (an audit record),
/// with stderr closed from the start, is stopped by `signal`: the exit
/// status is 128 + the signal and the audit log is on disk.
fn stopped_by(signal: libc::c_int) {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = run_cmd(&[
        "--listen",
        &addr,
        "--audit",
        p(&audit),
        p(&guest(Target::P1, "echo_std")),
        "2",
    ]);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the listening line, then close stderr for good.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    drop(err);
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.write_all(b"hi\n").unwrap();
    let mut back = [0u8; 3];
    conn.read_exact(&mut back).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = wait_bounded(&mut child, Duration::from_secs(10), "the signal stops it");
    assert_eq!(status.code(), Some(128 + signal));
    let recs = records(&audit);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["event"], "accept");
}

#[test]
fn sigterm_with_stderr_closed_still_stops_and_flushes() {
    stopped_by(libc::SIGTERM);
}

#[test]
fn sighup_stops_and_flushes() {
    stopped_by(libc::SIGHUP);
}

#[test]
fn sigquit_stops_and_flushes() {
    stopped_by(libc::SIGQUIT);
}

// ------------------------------------------------------- --timeout

/// `--timeout 1s` on a guest writing to a reader that never reads: Warden
/// is back within the limit and a margin, p1 and p2, stdout and stderr.
fn timeout_while_blocked_writing(t: Target, stream: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let mut cmd = run_cmd(&[
        "--timeout",
        "1s",
        "--audit",
        p(&audit),
        p(&guest(t, "flood")),
        stream,
    ]);
    // The pipe the guest floods is never read until Warden has exited.
    let (out, err) = if stream == "stderr" {
        (Stdio::null(), Stdio::piped())
    } else {
        (Stdio::piped(), Stdio::null())
    };
    let started = Instant::now();
    let mut child = cmd.stdout(out).stderr(err).spawn().unwrap();
    let _unread = (child.stdout.take(), child.stderr.take());
    let status = wait_bounded(&mut child, Duration::from_secs(20), "--timeout fires");
    let took = started.elapsed();
    assert_eq!(status.code(), Some(124));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let recs = records(&audit);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["event"], "limit");
    assert_eq!(recs[0]["limit"], "timeout");
}

#[test]
fn timeout_fires_while_a_p1_guest_is_blocked_on_stdout() {
    timeout_while_blocked_writing(Target::P1, "stdout");
}

#[test]
fn timeout_fires_while_a_p2_guest_is_blocked_on_stdout() {
    timeout_while_blocked_writing(Target::P2, "stdout");
}

#[test]
fn timeout_fires_while_a_p2_guest_is_blocked_on_stderr() {
    timeout_while_blocked_writing(Target::P2, "stderr");
}

/// `--timeout` stops a guest blocked in a host call that never returns.
fn stops_in_time(args: &[&str]) {
    let mut all = vec!["--timeout", "1s"];
    all.extend_from_slice(args);
    let m = measure(run_cmd(&all), Duration::from_secs(20));
    assert_eq!(m.ran.code, 124, "{}", m.ran.stderr);
    assert!(m.elapsed < Duration::from_secs(4), "took {:?}", m.elapsed);
}

#[test]
fn timeout_fires_while_the_guest_waits_for_an_http_response() {
    // A server that accepts and never answers.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let conn = server.accept();
        std::thread::sleep(Duration::from_secs(6));
        drop(conn);
    });
    let grant = format!("127.0.0.1:{port}");
    let step = format!("http:http://127.0.0.1:{port}/");
    stops_in_time(&[
        "--allow-connect",
        &grant,
        p(&guest(Target::P2, "net_client")),
        &step,
    ]);
    holder.join().unwrap();
}

#[test]
fn timeout_fires_while_the_guest_reads_a_fifo_nobody_writes() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let grant = format!("{}::/d", dir.path().display());
    stops_in_time(&["--dir", &grant, &hostile(), "read", "/d/fifo"]);
}

#[test]
fn a_guest_exiting_124_is_not_a_timeout_in_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let r = run(&[
        "--audit",
        p(&audit),
        p(&guest(Target::P1, "cli")),
        "exit=124",
    ]);
    assert_eq!(r.code, 124);
    assert!(records(&audit).is_empty(), "no limit event");
}

/// Output still in Warden's buffer when the guest exits is written before
/// Warden exits: 512 KiB (eight times the buffer) arrive whole and in order.
fn output_is_whole_when_the_guest_ends(t: Target) {
    let r = run(&[p(&guest(t, "flood")), "stdout", "512"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 512);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.len(), 1023);
        assert!(l.ends_with(&format!(" {i:06}")), "line {i}");
    }
}

#[test]
fn output_is_whole_when_a_p1_guest_ends() {
    output_is_whole_when_the_guest_ends(Target::P1);
}

#[test]
fn output_is_whole_when_a_p2_guest_ends() {
    output_is_whole_when_the_guest_ends(Target::P2);
}

#[test]
fn a_closed_stdout_is_the_guests_broken_pipe() {
    // The reader goes away: the guest's write fails (it exits 3), Warden
    // does not.
    for t in [Target::P1, Target::P2] {
        let mut child = run_cmd(&[p(&guest(t, "flood"))])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut some = [0u8; 4096];
        out.read_exact(&mut some).unwrap();
        drop(out);
        let status = wait_bounded(&mut child, Duration::from_secs(20), "the guest sees EPIPE");
        // Rust's std on wasip2 exits non-zero as `err`, which is 1.
        let expected = if t == Target::P1 { 3 } else { 1 };
        assert_eq!(status.code(), Some(expected), "{t:?}");
    }
}

// ------------------------------------------------------- compilation

#[test]
fn a_program_over_the_size_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.wat");
    let mut text = String::from("(module\n");
    while text.len() < 2 << 20 {
        text.push_str(";; padding padding padding padding padding padding padding\n");
    }
    text.push_str(")\n");
    std::fs::write(&file, &text).unwrap();
    let r = run(&["--max-module-size", "1MiB", p(&file)]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("is larger than the 1048576-byte limit on programs"),
        "{}",
        r.stderr
    );
    // The twin: the same file under a limit it fits.
    let r = run(&["--max-module-size", "4MiB", p(&file)]);
    assert!(
        r.stderr.contains("no `_start` function"),
        "read, compiled, then found not to be a command: {}",
        r.stderr
    );
}

#[test]
fn compilation_past_its_time_limit_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.wat");
    // Thousands of functions with long bodies: seconds of compiling.
    let mut text = String::from("(module\n");
    for f in 0..3000 {
        text.push_str(&format!(
            "(func $f{f} (param i32) (result i32) local.get 0\n"
        ));
        for i in 0..300 {
            text.push_str(&format!("i32.const {i} i32.add i32.const 3 i32.mul\n"));
        }
        text.push_str(")\n");
    }
    text.push_str("(func (export \"_start\")))\n");
    std::fs::write(&file, &text).unwrap();
    let started = Instant::now();
    let r = ran(warden()
        .args(["run", "--no-cache", "--compile-timeout", "200ms", p(&file)])
        .output()
        .unwrap());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("compiling took longer than the limit of 200ms"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ------------------------------------------------------- tables

/// A module that grows its table by `delta` elements four times and exits
/// with the number of growths that succeeded.
fn table_grower(dir: &std::path::Path, delta: u32) -> std::path::PathBuf {
    let file = dir.join(format!("grow{delta}.wat"));
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (table 0 funcref)
  (global $ok (mut i32) (i32.const 0))
  (func $grow
    (if (i32.ne (table.grow (ref.null func) (i32.const {delta})) (i32.const -1))
      (then (global.set $ok (i32.add (global.get $ok) (i32.const 1))))))
  (func (export "_start")
    call $grow call $grow call $grow call $grow
    (call $exit (global.get $ok))))"#
    );
    std::fs::write(&file, wat).unwrap();
    file
}

#[test]
fn table_growth_is_counted_and_refused_inside_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let big = table_grower(dir.path(), 1 << 26);
    // Counted in --max-memory: 2^26 elements are 512 MiB.
    let mut cmd = run_cmd(&["--max-memory", "16MiB", p(&big)]);
    cmd.env_clear();
    let m = measure(cmd, Duration::from_secs(60));
    assert_eq!(m.ran.code, 0, "no growth succeeded: {}", m.ran.stderr);
    assert!(
        m.ran
            .stderr
            .contains("refused the guest's growth of a table"),
        "{}",
        m.ran.stderr
    );
    assert!(m.max_rss_kib < 200 << 10, "peak RSS {} KiB", m.max_rss_kib);
    // And by the default element limit without any memory limit.
    let m = measure(run_cmd(&[p(&big)]), Duration::from_secs(60));
    assert_eq!(m.ran.code, 0, "{}", m.ran.stderr);
    assert!(m.max_rss_kib < 200 << 10, "peak RSS {} KiB", m.max_rss_kib);
    // The twin: growths within the limits succeed.
    let small = table_grower(dir.path(), 1000);
    let r = run(&["--max-memory", "16MiB", p(&small)]);
    assert_eq!(r.code, 4, "{}", r.stderr);
}

// ------------------------------------------------------- names

#[test]
fn huge_names_are_refused_before_the_gate_and_never_echoed() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let mut cmd = run_cmd(&[
        "--allow-resolve",
        "*.example.com",
        "--audit",
        p(&audit),
        &hostile(),
        "long-names",
        "1048576",
        "200",
    ]);
    cmd.env_clear();
    let m = measure(cmd, Duration::from_secs(120));
    assert_eq!(m.ran.code, 0, "{}", m.ran.stderr);
    assert_eq!(m.ran.stdout, "long-names: 200 of 200 refused\n");
    assert!(
        m.ran.stderr.len() < 1024,
        "stderr: {} bytes",
        m.ran.stderr.len()
    );
    assert!(records(&audit).is_empty(), "nothing was decided");
    assert!(m.max_rss_kib < 200 << 10, "peak RSS {} KiB", m.max_rss_kib);
}

/// A DNS server that counts queries and never answers.
struct Silent {
    addr: String,
    queries: Arc<AtomicUsize>,
}

impl Silent {
    fn start() -> Silent {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap().to_string();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let q = queries.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut buf = [0u8; 1500];
            while Instant::now() < deadline {
                if sock.recv_from(&mut buf).is_ok() {
                    q.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Silent { addr, queries }
    }
}

#[test]
fn concurrent_lookups_are_bounded_in_flight_and_in_rate() {
    let dns = Silent::start();
    let mut cmd = run_cmd(&[
        "--timeout",
        "6s",
        "--allow-resolve",
        "*.silent.test",
        "--dns-server",
        &dns.addr,
        &hostile(),
        "lookups",
        "5000",
    ]);
    cmd.env_clear();
    let m = measure(cmd, Duration::from_secs(60));
    // The guest waits on a lookup the silent server never answers, until
    // --timeout stops it.
    assert_eq!(m.ran.code, 124, "{}", m.ran.stderr);
    let queries = dns.queries.load(Ordering::SeqCst);
    // At most 64 lookups in flight, each asking A and AAAA, twice: 256
    // queries in the 6 s (without the bound: tens of thousands).
    assert!(queries <= 300, "{queries} queries");
    assert!(queries > 0, "the lookups that were admitted were sent");
    assert!(m.max_rss_kib < 250 << 10, "peak RSS {} KiB", m.max_rss_kib);
}

// ------------------------------------------------------- HTTP fields

#[test]
fn header_maps_a_guest_holds_are_bounded() {
    // 10,000 maps of 50 KB: refused once the guest holds 256 of them.
    let mut cmd = run_cmd(&[&hostile(), "fields", "10000", "50000"]);
    cmd.env_clear();
    let m = measure(cmd, Duration::from_secs(120));
    assert_eq!(m.ran.code, 134, "{}", m.ran.stderr);
    assert!(
        m.ran
            .stderr
            .contains("the guest holds 256 HTTP header maps"),
        "{}",
        m.ran.stderr
    );
    assert!(m.max_rss_kib < 250 << 10, "peak RSS {} KiB", m.max_rss_kib);
    // A map over the size limit is refused on its own.
    let r = run(&[&hostile(), "fields", "1", "100000"]);
    assert_eq!(r.code, 134, "{}", r.stderr);
    assert!(
        r.stderr.contains("total size of fields exceeds limit"),
        "{}",
        r.stderr
    );
    // The twin: what fits is kept.
    let r = run(&[&hostile(), "fields", "100", "50000"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "fields: kept 100 maps\n"),
        "{}",
        r.stderr
    );
}

/// What the audit records in `text` stand for, by event: one each, or a
/// summary's `repeated`.
fn accounted(text: &str) -> std::collections::BTreeMap<String, u64> {
    let mut by_event = std::collections::BTreeMap::new();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        *by_event
            .entry(r["event"].as_str().unwrap().to_string())
            .or_default() += r["repeated"].as_u64().unwrap_or(1);
    }
    by_event
}

/// The hostile guest sends COUNT datagrams to PORTS ports of 127.0.0.1,
/// auditing to `log`: binding is granted, every datagram denied.
fn datagrams(log: &std::path::Path, flags: &[&str], count: &str, ports: &str) -> Ran {
    let h = hostile();
    let mut args = vec![
        "--timeout",
        "60s",
        "--allow-udp-bind",
        "0.0.0.0:0",
        "--audit",
        p(log),
    ];
    args.extend_from_slice(flags);
    args.extend([h.as_str(), "datagrams", count, ports]);
    run(&args)
}

#[test]
fn a_flood_of_denials_leaves_a_small_log_that_accounts_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.jsonl");
    let r = datagrams(&log, &[], "100000", "1");
    assert_eq!(
        r.stdout, "datagrams: 100000 of 100000 failed\n",
        "{}",
        r.stderr
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.len() < 64 * 1024, "{} bytes of audit log", text.len());
    assert_eq!(accounted(&text).get("udp-send"), Some(&100_000), "{text}");
    // The summaries say what they stand for.
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "udp-send");
    assert_eq!(last["decision"], "deny");
    assert!(last["repeated"].as_u64().unwrap() > 1, "{last}");
}

#[test]
fn the_audit_file_is_rotated_at_its_maximum_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.jsonl");
    // 5,000 targets in turn: few repeats, so the records are many.
    let r = datagrams(&log, &["--audit-max-size", "256KiB"], "20000", "5000");
    assert_eq!(
        r.stdout, "datagrams: 20000 of 20000 failed\n",
        "{}",
        r.stderr
    );
    let now = std::fs::read_to_string(&log).unwrap();
    let old = std::fs::read_to_string(dir.path().join("a.jsonl.1")).unwrap();
    assert!(now.len() <= 256 * 1024 && old.len() <= 256 * 1024);
    assert!(
        now.lines()
            .next()
            .unwrap()
            .contains("\"event\":\"log-rotated\""),
        "the new file says why it is new"
    );
    assert!(
        r.stderr
            .contains("warden: audit: the log reached its maximum size and was rotated"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_audit_fifo_nobody_reads_is_refused_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let started = Instant::now();
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.wat");
    let r = run(&["--audit", p(&fifo), p(&hello)]);
    let took = started.elapsed();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("is a FIFO that nothing reads (waited 5s for a reader)"),
        "{}",
        r.stderr
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(r.stdout.is_empty(), "the guest never started");
}
