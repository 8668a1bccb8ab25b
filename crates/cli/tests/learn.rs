//! Audit mode and `warden learn`, end to end: a real program resolves a
//! name, connects to it, makes an HTTP request and listens, under
//! `--policy-mode audit` (everything let through and recorded as
//! would-deny, counted at the end); `warden learn` turns the log into a
//! manifest; the same program under it, enforced, is denied nothing; and
//! the manifest without any one of its grants denies something.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::peers::{Dns, TcpPeer, Zone};
use common::{free_port, p, run};
use warden_test_artifacts::{Target, guest};

/// Connect to 127.0.0.1:`port` once the guest listens (until `done`, or
/// 20 s), send a line and read the echo.
fn client(port: u16, done: Arc<AtomicBool>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = s.write_all(b"hi\n");
                let mut line = String::new();
                let _ = BufReader::new(s).read_line(&mut line);
                return line;
            }
            if Instant::now() > deadline || done.load(Ordering::SeqCst) {
                return String::new();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

struct World {
    dns: Dns,
    peer: TcpPeer,
    /// Where the program listens: the same in every run, as a program
    /// configured once would.
    port: u16,
}

impl World {
    fn start() -> World {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        World {
            dns: Dns::start(&[(
                "svc.test",
                Zone {
                    answers: vec![vec![loopback]],
                    ttl: 300,
                },
            )]),
            peer: TcpPeer::start("127.0.0.1"),
            port: free_port(),
        }
    }

    /// The program's run with `flags`, and the audit log's records.
    fn run(&self, flags: &[&str], audit: &Path) -> (common::Ran, Vec<serde_json::Value>) {
        let _ = std::fs::remove_file(audit);
        let port = self.port;
        let done = Arc::new(AtomicBool::new(false));
        let echo = client(port, done.clone());
        let dns = self.dns.addr.to_string();
        let peer = self.peer.addr.port();
        let steps = [
            "resolve:svc.test".to_string(),
            format!("connect:svc.test:{peer}"),
            format!("http:http://svc.test:{peer}/"),
            format!("listen:127.0.0.1:{port}"),
        ];
        let prog = guest(Target::P2, "net_client");
        // Without its accept grant the program waits for a peer it never
        // sees (the refused one is reset before it could): the timeout
        // ends that run.
        let mut args: Vec<&str> = vec![
            "--timeout",
            "10s",
            "--dns-server",
            &dns,
            "--audit",
            p(audit),
        ];
        args.extend_from_slice(flags);
        args.push(p(&prog));
        args.extend(steps.iter().map(String::as_str));
        let r = run(&args);
        done.store(true, Ordering::SeqCst);
        let _ = echo.join();
        let records = common::serving::lines_of(audit);
        (r, records)
    }
}

fn denials(records: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    records.iter().filter(|r| r["decision"] == "deny").collect()
}

#[test]
fn audit_mode_lets_through_and_learn_writes_the_policy_the_program_needs() {
    let world = World::start();
    let dir = tempfile::tempdir().unwrap();
    let learning = dir.path().join("learn.jsonl");
    // Enforced with no grants, every step is refused.
    let (r, records) = world.run(&[], &learning);
    assert!(
        r.stdout.lines().all(|l| !l.contains(": ok")),
        "{}",
        r.stdout
    );
    assert!(!denials(&records).is_empty());
    // Audit mode: everything goes through, recorded as would-deny.
    let (r, records) = world.run(&["--policy-mode", "audit"], &learning);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.matches(": ok").count(),
        4,
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr
            .contains("warden: WARNING: policy mode is audit: NOTHING IS DENIED"),
        "{}",
        r.stderr
    );
    let would: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "would-deny")
        .collect();
    assert!(would.len() >= 4, "{records:?}");
    assert!(denials(&records).is_empty(), "{records:?}");
    assert!(
        r.stderr.contains(&format!(
            "warden: audit mode: {} decisions the policy denies were let through (recorded as would-deny)",
            would.len()
        )),
        "{}",
        r.stderr
    );
    // Learn the manifest.
    let learned = common::ran(
        common::warden()
            .args(["learn", p(&learning)])
            .output()
            .unwrap(),
    );
    assert_eq!(learned.code, 0, "{}", learned.stderr);
    let manifest = dir.path().join("learned.toml");
    std::fs::write(&manifest, &learned.stdout).unwrap();
    assert!(
        learned.stdout.contains("target = \"svc.test\""),
        "{}",
        learned.stdout
    );
    assert!(
        learned.stdout.contains("internal = true"),
        "{}",
        learned.stdout
    );
    // Enforced under it: nothing is denied, every step works.
    let enforced = dir.path().join("enforced.jsonl");
    let (r, records) = world.run(&["--manifest", p(&manifest)], &enforced);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.matches(": ok").count(),
        4,
        "{}\n{}\n{}",
        r.stdout,
        r.stderr,
        learned.stdout
    );
    assert!(
        denials(&records).is_empty(),
        "{records:?}\n{}",
        learned.stdout
    );
    // Without any one grant, something is denied.
    let blocks: Vec<&str> = learned.stdout.split("\n\n").collect();
    let grants: Vec<usize> = (0..blocks.len())
        .filter(|&i| blocks[i].contains("[[allow]]"))
        .collect();
    assert!(grants.len() >= 4, "{}", learned.stdout);
    for &skip in &grants {
        let less: Vec<&str> = blocks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, b)| *b)
            .collect();
        std::fs::write(&manifest, less.join("\n\n")).unwrap();
        let (_, records) = world.run(&["--manifest", p(&manifest)], &enforced);
        assert!(
            !denials(&records).is_empty(),
            "without\n{}\nnothing was denied",
            blocks[skip]
        );
    }
}

#[test]
fn learn_refuses_what_is_not_an_audit_log_with_where() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bad.jsonl");
    std::fs::write(&log, "{\"event\":\"resolve\",\"name\":\"a.test\",\"decision\":\"deny\",\"rule\":\"default-deny\"}\nnot json\n").unwrap();
    let r = common::ran(common::warden().args(["learn", p(&log)]).output().unwrap());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("bad.jsonl:2: not a JSON audit record"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
    std::fs::write(&log, "{\"event\":\"limit\",\"limit\":\"timeout\"}\n").unwrap();
    let r = common::ran(common::warden().args(["learn", p(&log)]).output().unwrap());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no network decisions in it"),
        "{}",
        r.stderr
    );
    let r = common::ran(
        common::warden()
            .args(["learn", "/nonexistent/x.jsonl"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot read /nonexistent/x.jsonl"),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_notes_audit_mode() {
    let r = common::ran(
        common::warden()
            .args([
                "explain",
                "--policy-mode",
                "audit",
                "connect",
                "10.1.2.3:22",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1, "the policy still denies it: {}", r.stderr);
    assert!(
        r.stdout.starts_with("deny connect 10.1.2.3:22\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("note: the policy mode is audit: in a run this is recorded as would-deny"),
        "{}",
        r.stdout
    );
    let r = common::ran(
        common::warden()
            .args(["explain", "connect", "10.1.2.3:22"])
            .output()
            .unwrap(),
    );
    assert!(!r.stdout.contains("audit"), "{}", r.stdout);
}
