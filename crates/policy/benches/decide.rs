//! ns per `Policy::decide` for one address, at 10, 1,000 and 100,000 CIDR
//! grants, each with a connection kind attached (plus a deny and a name
//! rule, so every kind of lookup happens).
//! Run: `cargo bench -p warden-policy --bench decide`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use warden_policy::{
    Action, Cidr, Kind, Policy, Ports, Protocol, Rights, Rule, RuleTarget, Target,
};

/// `n` distinct /24 and /32 grants spread over 10.0.0.0/8 and 172.16.0.0/12
/// (a fixed multiplicative sequence, so every run builds the same policy).
fn policy(n: u32) -> Policy {
    let mut rules = Vec::with_capacity(n as usize + 2);
    rules.push(Rule::deny(
        "deny-meta",
        RuleTarget::Net("169.254.0.0/16".parse().unwrap()),
        Ports::ANY,
    ));
    rules.push(Rule::allow(
        "api",
        RuleTarget::Name("*.example.com".parse().unwrap()),
        Ports::one(443),
        Rights::CONNECT,
    ));
    for i in 0..n {
        let x = i.wrapping_mul(2_654_435_761);
        let (base, len) = if i % 2 == 0 {
            (0x0a00_0000 | (x & 0x00ff_ff00), 24)
        } else {
            (0xac10_0000 | (x & 0x000f_ffff), 32)
        };
        let cidr = Cidr::new(IpAddr::V4(Ipv4Addr::from(base)), len).unwrap();
        rules.push(
            Rule::allow(
                format!("g{i}"),
                RuleTarget::Net(cidr),
                Ports::range(1000, 2000).unwrap(),
                Rights::CONNECT,
            )
            .with_kind("db"),
        );
    }
    let db = Kind {
        name: "db".into(),
        protocol: Protocol::Tls,
        server_name: Some("db.internal".into()),
        ..Kind::default()
    };
    Policy::with_kinds(rules, [db], false).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for n in [10u32, 1_000, 100_000] {
        let p = policy(n);
        // One address a grant covers (the last one inserted), one nobody
        // covers, and an IPv4-mapped IPv6 spelling of the first.
        let last = n - 1;
        let x = last.wrapping_mul(2_654_435_761);
        let hit = if last % 2 == 0 {
            0x0a00_0000 | (x & 0x00ff_ff00) | 7
        } else {
            0xac10_0000 | (x & 0x000f_ffff)
        };
        let hit = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(hit)), 1500);
        let miss: SocketAddr = "192.0.2.1:1500".parse().unwrap();
        let mapped = SocketAddr::new(
            IpAddr::V6(match hit.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            }),
            1500,
        );
        let d = p.decide(Action::Connect, &Target::Addr(hit));
        assert!(d.is_allowed() && d.kind() == Some("db"));
        assert!(
            p.decide(Action::Connect, &Target::Addr(mapped))
                .is_allowed()
        );
        assert!(!p.decide(Action::Connect, &Target::Addr(miss)).is_allowed());
        for (label, addr) in [("allowed", hit), ("denied", miss), ("mapped", mapped)] {
            group.bench_with_input(BenchmarkId::new(label, n), &addr, |b, addr| {
                b.iter(|| p.decide(black_box(Action::Connect), black_box(&Target::Addr(*addr))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
