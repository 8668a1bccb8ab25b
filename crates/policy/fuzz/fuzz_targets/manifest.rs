//! Manifest parsing never panics, and whatever it accepts builds a policy
//! whose rules print and parse back to the same rules.
//! Run: `cd crates/policy && cargo +nightly fuzz run manifest`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_policy::{Policy, Target, Action, manifest, parse_target_ports};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = manifest::parse(text, "fuzz.toml") else {
        return;
    };
    for rule in &m.rules {
        let shown = format!("{}:{}", rule.target, rule.ports);
        let (target, ports) = parse_target_ports(&shown).expect("a printed rule parses back");
        assert_eq!((&target, ports), (&rule.target, rule.ports), "{shown}");
    }
    let policy = Policy::new(m.rules);
    let _ = policy.decide(Action::Connect, &Target::Addr("127.0.0.1:80".parse().unwrap()));
});
