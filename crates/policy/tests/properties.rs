//! Properties of `Policy::decide` over random rule sets and addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;
use warden_policy::{
    Action, Cidr, Effect, Known, Policy, Ports, Rights, Rule, RuleTarget, Target, internal_range,
};

/// The socket actions (resolve and http-request are about names).
const ACTIONS: [Action; 7] = {
    let a = Action::ALL;
    [a[0], a[1], a[2], a[3], a[4], a[5], a[6]]
};

/// Addresses drawn from a small space so that rules and addresses collide.
fn v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        (0u8..4, any::<u8>()).prop_map(|(c, d)| Ipv4Addr::new(10, 0, c, d)),
        any::<u32>().prop_map(Ipv4Addr::from),
        Just(Ipv4Addr::UNSPECIFIED),
        Just(Ipv4Addr::BROADCAST),
        Just(Ipv4Addr::new(224, 0, 0, 1)),
    ]
}

fn ports() -> impl Strategy<Value = Ports> {
    prop_oneof![
        Just(Ports::ANY),
        (0u16..100).prop_map(Ports::one),
        (0u16..100, 0u16..100).prop_map(|(a, b)| Ports::range(a.min(b), a.max(b)).unwrap()),
    ]
}

fn rights() -> impl Strategy<Value = Rights> {
    proptest::sample::subsequence(ACTIONS.to_vec(), 1..=3).prop_map(|a| {
        a.into_iter()
            .fold(Rights::NONE, |r, a| r | Rights::for_action(a))
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        v4(),
        0u8..=32,
        ports(),
        prop::option::weighted(0.8, rights()),
        any::<u16>(),
    )
        .prop_map(|(ip, len, ports, rights, id)| {
            let target = RuleTarget::Net(Cidr::new(IpAddr::V4(ip), len).unwrap());
            match rights {
                Some(r) => Rule::allow(format!("a{id}"), target, ports, r),
                None => Rule::deny(format!("d{id}"), target, ports),
            }
        })
}

fn decide(p: &Policy, action: Action, ip: IpAddr, port: u16) -> (bool, String) {
    let d = p.decide(action, &Target::Addr(SocketAddr::new(ip, port)));
    (d.is_allowed(), d.rule().to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever is allowed lies inside some grant with that right and port,
    /// and inside no deny.
    #[test]
    fn nothing_outside_every_grant_is_allowed(
        rules in prop::collection::vec(rule(), 0..12),
        ip in v4(),
        port in 0u16..100,
        action in proptest::sample::select(ACTIONS.to_vec()),
    ) {
        let p = Policy::new(rules.clone());
        let (allowed, _) = decide(&p, action, IpAddr::V4(ip), port);
        let inside = |r: &Rule| {
            matches!(&r.target, RuleTarget::Net(c) if c.contains(IpAddr::V4(ip))) && r.ports.contains(port)
        };
        let need = Rights::for_action(action);
        let granted = rules
            .iter()
            .any(|r| inside(r) && matches!(r.effect, Effect::Allow(x) if x.contains(need)));
        // The one derived grant: traffic rights allow the ephemeral bind
        // (0.0.0.0:0) an unbound socket makes before sending.
        let sender = match action {
            Action::Bind => Some(Rights::CONNECT),
            Action::UdpBind => Some(Rights::UDP_SEND),
            _ => None,
        };
        let ephemeral = ip.is_unspecified() && port == 0 && sender.is_some_and(|need| {
            rules.iter().any(|r| matches!(r.effect, Effect::Allow(x) if x.contains(need)))
        });
        let granted = granted || ephemeral;
        let denied = rules.iter().any(|r| inside(r) && r.effect == Effect::Deny);
        if allowed {
            prop_assert!(granted && !denied);
        }
    }

    /// `::ffff:a.b.c.d` and `::a.b.c.d` decide exactly as `a.b.c.d`, rule
    /// and all.
    #[test]
    fn mapped_ipv6_decides_like_ipv4(
        rules in prop::collection::vec(rule(), 0..12),
        ip in v4(),
        port in 0u16..100,
        action in proptest::sample::select(ACTIONS.to_vec()),
    ) {
        let p = Policy::new(rules);
        let plain = decide(&p, action, IpAddr::V4(ip), port);
        prop_assert_eq!(&decide(&p, action, IpAddr::V6(ip.to_ipv6_mapped()), port), &plain);
        // ::0.0.0.0 and ::0.0.0.1 are :: and ::1, IPv6 addresses of their own.
        if u32::from(ip) > 1 {
            prop_assert_eq!(&decide(&p, action, IpAddr::V6(ip.to_ipv6_compatible()), port), &plain);
        }
    }

    /// A deny covering the address and port wins, wherever it sits among
    /// the grants.
    #[test]
    fn deny_always_beats_allow(
        rules in prop::collection::vec(rule(), 0..12),
        ip in v4(),
        len in 0u8..=32,
        port in 0u16..100,
        at in any::<prop::sample::Index>(),
        action in proptest::sample::select(ACTIONS.to_vec()),
    ) {
        let mut rules = rules;
        let net = Cidr::new(IpAddr::V4(ip), len).unwrap();
        let deny = Rule::deny("the-deny", RuleTarget::Net(net), Ports::ANY);
        rules.insert(at.index(rules.len() + 1), deny);
        // An allow-everything grant too, so there is always something to beat.
        let all = RuleTarget::Net("0.0.0.0/0".parse().unwrap());
        rules.push(Rule::allow("all", all, Ports::ANY, Rights::for_action(action)));
        let p = Policy::new(rules);
        prop_assert!(!decide(&p, action, IpAddr::V4(ip), port).0);
        prop_assert!(!decide(&p, action, IpAddr::V6(ip.to_ipv6_mapped()), port).0);
    }

    /// Traffic to an address reached through a name grant that is not
    /// marked internal is allowed only when the address is not internal,
    /// or some address grant (with the right and port) names it; whatever
    /// the address rules are.
    #[test]
    fn names_never_steer_traffic_inside_unless_granted(
        rules in prop::collection::vec(rule(), 0..12),
        ip in v4(),
        port in 0u16..100,
        internal in any::<bool>(),
        action in proptest::sample::select(vec![Action::Connect, Action::UdpSend, Action::UdpRecv]),
    ) {
        let mut rules = rules;
        let mut name = Rule::allow(
            "by-name",
            RuleTarget::Name("*.example.test".parse().unwrap()),
            Ports::ANY,
            Rights::for_action(action),
        );
        name.internal = internal;
        rules.push(name);
        let p = Policy::new(rules.clone());
        let d = p.decide_known(
            action,
            &Target::Addr(SocketAddr::new(IpAddr::V4(ip), port)),
            &Known { resolved_from: &["a.example.test"], ..Known::default() },
        );
        let by_address = rules.iter().any(|r| {
            matches!(&r.target, RuleTarget::Net(c) if c.contains(IpAddr::V4(ip)))
                && r.ports.contains(port)
                && matches!(r.effect, Effect::Allow(x) if x.contains(Rights::for_action(action)))
        });
        if d.is_allowed() && d.rule() == "by-name" {
            prop_assert!(internal || internal_range(IpAddr::V4(ip)).is_none());
        }
        if d.is_allowed() && d.rule() != "by-name" {
            prop_assert!(by_address);
        }
    }
}
