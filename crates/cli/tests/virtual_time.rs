//! Virtual time and randomness, end to end: real guests on every ABI
//! (preview1, WASI 0.2, WASI 0.3, and a wasi:http app under `serve`) read
//! the clocks and random sources the operator set with `--wall-clock`,
//! `--monotonic-clock`, `--random-seed`, the manifest's `[time]` and
//! `[random]`, or an `[[app]]`'s keys; and, as the twin of each, the
//! host's when nothing is set.

mod common;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use common::serving::{exchange, serve_manifest, stop};
use common::{p, run};
use warden_test_artifacts::{Target, guest};

/// 2024-05-01T12:00:00Z.
const MAY_2024: u64 = 1_714_564_800;
/// 2030-01-01T00:00:00Z.
const JAN_2030: u64 = 1_893_456_000;

/// The `clocks` guest's lines (p1, p2) as a map from their first word.
fn clocks(t: Target, flags: &[&str]) -> (BTreeMap<String, String>, String) {
    let prog = guest(t, "clocks");
    let mut args: Vec<&str> = flags.to_vec();
    args.push(p(&prog));
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = r
        .stdout
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("KEY VALUE");
            (k.to_string(), v.to_string())
        })
        .collect();
    (lines, r.stderr)
}

/// The 0.3 guest's `time:30` and `random:16` steps, as a map of their
/// words (`wall`, `mono`, `wall-after`, `waited-ms`, `random`,
/// `insecure`, `seed`).
fn p3(flags: &[&str]) -> (BTreeMap<String, String>, String) {
    let prog = guest(Target::P3, "p3_net");
    let mut args: Vec<&str> = flags.to_vec();
    args.extend([p(&prog), "time:30", "random:16"]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut out = BTreeMap::new();
    for line in r.stdout.lines() {
        let (_, rest) = line.split_once(": ok ").unwrap_or_else(|| panic!("{line}"));
        let words: Vec<&str> = rest.split(' ').collect();
        for pair in words.chunks(2) {
            out.insert(pair[0].to_string(), pair[1].to_string());
        }
    }
    (out, r.stderr)
}

/// The wall clock and the one after the sleep, for any ABI.
fn walls(t: Target, flags: &[&str]) -> (String, String) {
    let m = match t {
        Target::P3 => p3(flags).0,
        _ => clocks(t, flags).0,
    };
    (m["wall"].clone(), m["wall-after"].clone())
}

fn secs(wall: &str) -> f64 {
    wall.parse().unwrap()
}

fn host_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const ABIS: [Target; 3] = [Target::P1, Target::P2, Target::P3];

#[test]
fn a_frozen_wall_clock_stands_still_on_every_abi_and_the_real_one_does_not() {
    for t in ABIS {
        let (wall, after) = walls(t, &["--wall-clock", "frozen:2024-05-01T12:00:00Z"]);
        assert_eq!(wall, format!("{MAY_2024}.000000000"), "{t:?}");
        assert_eq!(after, wall, "{t:?}: a frozen clock moved across a sleep");
        let (wall, _) = walls(t, &["--wall-clock", "frozen"]);
        assert_eq!(wall, "0.000000000", "{t:?}: frozen alone is the epoch");
        // The twin: with nothing set the guest reads the host's clock.
        let (wall, after) = walls(t, &[]);
        assert!((secs(&wall) - host_now()).abs() < 60.0, "{t:?}: {wall}");
        assert!(
            secs(&after) > secs(&wall),
            "{t:?}: the real clock stood still"
        );
    }
}

#[test]
fn a_started_wall_clock_moves_on_from_its_time() {
    for t in ABIS {
        let (wall, after) = walls(t, &["--wall-clock", "start:2030-01-01T00:00:00Z"]);
        let (wall, after) = (secs(&wall), secs(&after));
        assert!(
            (JAN_2030 as f64..JAN_2030 as f64 + 30.0).contains(&wall),
            "{t:?}: {wall}"
        );
        assert!(after >= wall + 0.029, "{t:?}: {wall} then {after}");
    }
}

fn host_monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn the_monotonic_clock_counts_from_the_start_unless_the_hosts_is_asked_for() {
    for t in ABIS {
        let read = |flags: &[&str]| -> (u64, u64) {
            let m = match t {
                Target::P3 => p3(flags).0,
                _ => clocks(t, flags).0,
            };
            let waited = m.get("slept-ms").or(m.get("waited-ms")).unwrap();
            (m["mono"].parse().unwrap(), waited.parse().unwrap())
        };
        let (mono, waited) = read(&[]);
        assert!(
            mono < 10_000_000_000,
            "{t:?}: {mono} ns is not since the start"
        );
        assert!(waited >= 29, "{t:?}: a 30 ms sleep took {waited} ms");
        let before = host_monotonic_ns();
        let (mono, waited) = read(&["--monotonic-clock", "real"]);
        let after = host_monotonic_ns();
        assert!(
            (before..=after).contains(&mono),
            "{t:?}: {mono} is not the host's clock ({before}..{after})"
        );
        assert!(waited >= 29, "{t:?}: a 30 ms sleep took {waited} ms");
    }
}

/// What a run's random sources gave, on one ABI.
fn randomness(t: Target, flags: &[&str]) -> (Vec<String>, String) {
    let (m, stderr) = match t {
        Target::P3 => p3(flags),
        _ => clocks(t, flags),
    };
    let keys: &[&str] = match t {
        Target::P1 => &["random", "hash"],
        Target::P2 => &["random", "insecure", "seed", "hash"],
        Target::P3 => &["random", "insecure", "seed"],
    };
    (keys.iter().map(|k| m[*k].clone()).collect(), stderr)
}

#[test]
fn a_seed_replays_every_random_source_and_another_seed_does_not() {
    for t in ABIS {
        let (first, stderr) = randomness(t, &["--random-seed", "7"]);
        assert!(
            stderr.contains("warden: warning: random seed 7:")
                && stderr.contains("for tests and replay"),
            "{t:?}: {stderr}"
        );
        let (again, _) = randomness(t, &["--random-seed", "7"]);
        assert_eq!(first, again, "{t:?}: the same seed gave other bytes");
        let (other, _) = randomness(t, &["--random-seed", "8"]);
        for (a, b) in first.iter().zip(&other) {
            assert_ne!(a, b, "{t:?}: seeds 7 and 8 gave the same");
        }
        // The twin: without a seed two runs differ, and nothing is said.
        let (one, stderr) = randomness(t, &[]);
        let (two, _) = randomness(t, &[]);
        assert_ne!(one[0], two[0], "{t:?}: unseeded runs repeated");
        assert!(!stderr.contains("random seed"), "{t:?}: {stderr}");
    }
}

#[test]
fn the_manifest_sets_clocks_and_seed_and_a_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("time.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[time]\nwall_clock = \"frozen:2024-05-01T12:00:00Z\"\nmonotonic_clock = \"virtual\"\n[random]\nseed = 7\n",
    )
    .unwrap();
    let m = p(&manifest);
    let (from_manifest, _) = randomness(Target::P2, &["--manifest", m]);
    let (from_flag, _) = randomness(Target::P2, &["--random-seed", "7"]);
    assert_eq!(from_manifest, from_flag);
    assert_eq!(
        walls(Target::P2, &["--manifest", m]).0,
        format!("{MAY_2024}.000000000")
    );
    assert_eq!(
        walls(
            Target::P2,
            &[
                "--manifest",
                m,
                "--wall-clock",
                "frozen:2000-01-01T00:00:00Z"
            ]
        )
        .0,
        "946684800.000000000"
    );
    // A value that does not read is refused, naming where it is.
    std::fs::write(
        &manifest,
        "version = 1\n[time]\nwall_clock = \"yesterday\"\n",
    )
    .unwrap();
    let r = run(&["--manifest", m, p(&guest(Target::P2, "clocks"))]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("time.wall_clock: `yesterday` is not a wall clock"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
}

#[test]
fn bad_clock_flags_are_refused_with_what_would_do() {
    for (flag, value, said) in [
        ("--wall-clock", "start", "start:TIME"),
        ("--wall-clock", "frozen:2024-13-01T00:00:00Z", "no month 13"),
        ("--wall-clock", "frozen:1969-12-31T23:59:59Z", "before 1970"),
        ("--monotonic-clock", "frozen", "virtual"),
        ("--random-seed", "seven", "--random-seed"),
    ] {
        let r = run(&[flag, value, p(&guest(Target::P2, "clocks"))]);
        assert_eq!(r.code, 2, "{flag} {value}: {}", r.stderr);
        assert!(r.stderr.contains(said), "{flag} {value}: {}", r.stderr);
        assert_eq!(r.stdout, "");
    }
}

#[test]
fn each_served_app_reads_its_own_clock_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::serving::proxy(), dir.path().join("proxy.wasm")).unwrap();
    let manifest = dir.path().join("apps.toml");
    std::fs::write(
        &manifest,
        r#"version = 1

[[app]]
name = "replay"
component = "proxy.wasm"
path = "/replay"
wall_clock = "frozen:2024-05-01T12:00:00Z"
random_seed = 7

[[app]]
name = "live"
component = "proxy.wasm"
path = "/"
"#,
    )
    .unwrap();
    let server = serve_manifest(&manifest);
    let ask = |path: &str| {
        exchange(
            server.port,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let first = ask("/replay/time");
    assert_eq!(first.status, 200);
    let (wall, random) = first.body.trim().split_once(' ').unwrap();
    assert_eq!(wall, format!("{MAY_2024}.000000000"));
    // Every request's instance starts the same stream.
    assert_eq!(ask("/replay/time").body, first.body);
    // The twin: the other app reads the host's clock and random.
    let live = ask("/time").body;
    let (live_wall, live_random) = live.trim().split_once(' ').unwrap();
    assert!((secs(live_wall) - host_now()).abs() < 60.0, "{live}");
    assert_ne!(live_random, random);
    assert_ne!(ask("/time").body, live);
    let ran = stop(server);
    assert!(
        ran.stderr.contains("random seed 7") && ran.stderr.contains("(app `replay`)"),
        "{}",
        ran.stderr
    );
}

#[test]
fn check_prints_the_clocks_and_seed_and_refuses_one_that_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("time.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[time]\nwall_clock = \"start:2030-01-01T01:00:00+01:00\"\n[random]\nseed = 3\n\
         [[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nmonotonic_clock = \"real\"\n",
    )
    .unwrap();
    let r = common::ran(
        common::warden()
            .args(["check", p(&manifest)])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("wall-clock start:2030-01-01T00:00:00Z\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("random-seed 3 ("), "{}", r.stdout);
    assert!(r.stdout.contains("app a: / -> "), "{}", r.stdout);
    assert!(
        r.stdout.contains("\n  monotonic-clock real\n"),
        "{}",
        r.stdout
    );
    std::fs::write(
        &manifest,
        "version = 1\n[[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nmonotonic_clock = \"fast\"\n",
    )
    .unwrap();
    let r = common::ran(
        common::warden()
            .args(["check", p(&manifest)])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("app `a`.monotonic_clock: `fast` is not a monotonic clock"),
        "{}",
        r.stderr
    );
}
