//! The stress group: hostile guests at full strength, one after another,
//! each checked to end without crashing Warden and with Warden's peak
//! memory under [`RSS_BOUND`]. Slower than the default tests, so not in
//! them; run with
//!
//!     cargo test -p warden --test stress -- --ignored --nocapture
//!
//! Each run prints its peak RSS and time.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use warden_test_artifacts::{Target, guest};

/// Warden's peak resident memory, whatever a guest does under the limits
/// below: 256 MiB (a 64 MiB memory limit, the host's bounded tables and
/// queues, and the runtime itself).
const RSS_BOUND_KIB: i64 = 256 << 10;

/// How a stressed run may end: the guest's own exit, 124 (a limit), 134
/// (a trap: a limit that wasm reports as one). Never a crash (101) or a
/// signal.
const CLEAN: [i32; 5] = [0, 1, 3, 124, 134];

fn stressed(name: &str, args: &[&str]) {
    let mut all = vec!["--max-memory", "64MiB", "--timeout", "20s"];
    all.extend_from_slice(args);
    let m = measure(run_cmd(&all), Duration::from_secs(120));
    println!(
        "{name}: exit {}, peak RSS {} MiB, {:.1} s; stdout: {}",
        m.ran.code,
        m.max_rss_kib >> 10,
        m.elapsed.as_secs_f64(),
        m.ran.stdout.lines().last().unwrap_or("")
    );
    assert!(CLEAN.contains(&m.ran.code), "{name}: {}", m.ran.stderr);
    assert!(
        m.max_rss_kib < RSS_BOUND_KIB,
        "{name}: peak RSS {} KiB",
        m.max_rss_kib
    );
}

#[test]
#[ignore = "stress: cargo test -p warden --test stress -- --ignored"]
fn hostile_guests_at_full_strength_stay_bounded() {
    let hostile = p(&guest(Target::P2, "hostile")).to_string();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = silent.local_addr().unwrap().to_string();
    let resolve = ["--allow-resolve", "*", "--dns-server", dns.as_str()];
    let with = |extra: &[&str], scenario: &[&str]| -> Vec<String> {
        extra
            .iter()
            .chain(std::iter::once(&hostile.as_str()))
            .chain(scenario)
            .map(|s| s.to_string())
            .collect()
    };
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            "1 MB names x 2000",
            with(&resolve, &["long-names", "1048576", "2000"]),
        ),
        // Below the resource table's bound (10,000), so the lookup bounds
        // are what hold.
        ("9,000 lookups", with(&resolve, &["lookups", "9000"])),
        ("50,000 lookups", with(&resolve, &["lookups", "50000"])),
        (
            "100,000 header maps of 60 KB",
            with(&[], &["fields", "100000", "60000"]),
        ),
        (
            "100,000 UDP sockets",
            with(&["--allow-udp", "127.0.0.1:*"], &["sockets", "100000"]),
        ),
    ];
    for (name, args) in &runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        stressed(name, &args);
    }
    let flood = p(&guest(Target::P2, "flood")).to_string();
    stressed("stdout flood for 20 s", &[&flood]);
    let hog = p(&guest(Target::P1, "memory_hog")).to_string();
    stressed("memory to the limit", &[&hog, "1000000"]);
    drop(silent);
}
