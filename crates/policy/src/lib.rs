//! Warden's policy: pure data and decisions.
//!
//! This crate answers one question: *may this guest do this network action to
//! this target?* It holds no sockets, performs no I/O and knows nothing of
//! wasmtime; the gate in `warden-net` asks it and enforces the answer.
//!
//! A [`Policy`] is a list of [`Rule`]s: grants (a target, a port range and
//! [`Rights`]) and denies (a target and ports), where a target is an address
//! block ([`Cidr`]) or a host-name pattern ([`NamePattern`]). No grant means
//! denied; a matching deny beats every grant; the empty policy denies
//! everything. Addresses are compared canonically (IPv4-mapped and
//! IPv4-compatible IPv6 decide exactly as the IPv4 address), and the
//! unspecified, broadcast and multicast addresses are reached only by a rule
//! that names them explicitly. Every [`Decision`] names the rule that decided
//! it and a reason, so that denials can be explained and audited.
//!
//! Address rules live in a prefix trie, so one decision costs at most one
//! walk of 32 or 128 nodes however many rules there are; name rules are
//! looked up by exact name and by each label suffix. [`manifest`] reads the
//! operator's TOML file into rules.

pub mod manifest;
mod rule;
mod trie;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::ControlFlow;

pub use rule::{
    Cidr, Effect, NamePattern, Ports, Rights, Rule, RuleTarget, canonical_ip, ip_literal,
    normalize_name, parse_target_ports,
};
use trie::Trie;

/// The rule id reported when no grant matched and the default applied.
pub const DEFAULT_DENY: &str = "default-deny";

/// A network action a guest can attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Open a TCP connection to a remote address.
    Connect,
    /// Bind a TCP socket to a local address.
    Bind,
    /// Listen on a bound TCP socket.
    Listen,
    /// Accept a connection from a remote peer.
    Accept,
    /// Bind a UDP socket to a local address.
    UdpBind,
    /// Send a UDP datagram to a remote address.
    UdpSend,
    /// Receive a UDP datagram from a remote address.
    UdpRecv,
    /// Resolve a host name to addresses.
    Resolve,
    /// Send an outgoing HTTP request (wasi-http).
    HttpRequest,
}

impl Action {
    /// Every action, in the order the audit vocabulary lists them.
    pub const ALL: [Action; 9] = [
        Action::Connect,
        Action::Bind,
        Action::Listen,
        Action::Accept,
        Action::UdpBind,
        Action::UdpSend,
        Action::UdpRecv,
        Action::Resolve,
        Action::HttpRequest,
    ];

    /// The action called `name` (`connect`, `udp-send`, ...).
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether an address may get this action through the name it was
    /// resolved from (traffic to a peer: connect, http-request, udp-send,
    /// udp-recv), not only through an address grant.
    pub fn follows_pins(self) -> bool {
        matches!(
            self,
            Action::Connect | Action::HttpRequest | Action::UdpSend | Action::UdpRecv
        )
    }

    /// The action's name as used in messages, flags and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Bind => "bind",
            Action::Listen => "listen",
            Action::Accept => "accept",
            Action::UdpBind => "udp-bind",
            Action::UdpSend => "udp-send",
            Action::UdpRecv => "udp-recv",
            Action::Resolve => "resolve",
            Action::HttpRequest => "http-request",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action is aimed at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A socket address (IP and port).
    Addr(SocketAddr),
    /// A host name, with the port when the action has one (HTTP requests).
    Name {
        /// The host name as the guest gave it.
        host: String,
        /// The port, if the action names one.
        port: Option<u16>,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(addr) => write!(f, "{addr}"),
            Target::Name {
                host,
                port: Some(port),
            } => write!(f, "{host}:{port}"),
            Target::Name { host, port: None } => f.write_str(host),
        }
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The action may proceed.
    Allow,
    /// The action is refused.
    Deny,
}

impl Verdict {
    /// `allow` or `deny`, as the audit log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// The answer to one question, with the rule that gave it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// The id of the rule that decided ([`DEFAULT_DENY`] when none matched).
    pub rule: String,
    /// Why, in words an operator can act on.
    pub reason: String,
    /// The host name the decision turned on: the target's own, or the name
    /// an address was resolved from when that name's rule decided.
    pub name: Option<String>,
}

impl Decision {
    /// Whether the action may proceed.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    fn allow(rule: &Rule, reason: String, name: Option<String>) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            rule: rule.id.clone(),
            reason,
            name,
        }
    }

    fn deny(rule: &str, reason: String, name: Option<String>) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            rule: rule.to_string(),
            reason,
            name,
        }
    }
}

/// Which transports a policy could ever allow. The runtime keeps a transport
/// switched off entirely when no grant could use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transports {
    /// Some grant could allow a TCP action.
    pub tcp: bool,
    /// Some grant could allow a UDP action.
    pub udp: bool,
    /// Some grant could allow a name lookup.
    pub resolve: bool,
}

/// The operator's network grants for one guest.
///
/// `Policy::default()` is the empty policy: it grants nothing, so every
/// [`Policy::decide`] is a denial by [`DEFAULT_DENY`].
#[derive(Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    v4: Trie,
    v6: Trie,
    exact: HashMap<String, Vec<u32>>,
    suffix: HashMap<String, Vec<u32>>,
    any_name: Vec<u32>,
    transports: Transports,
    /// The first grant with `connect`, and the first with `udp-send`: they
    /// also allow the ephemeral local bind their traffic needs.
    first_connect: Option<u32>,
    first_udp_send: Option<u32>,
    /// Each rule as `warden check` shows it, made once: decisions quote it.
    texts: Vec<String>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules)
            .finish()
    }
}

impl Policy {
    /// The empty policy, which denies every action.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// A policy of `rules`. Order matters only for reporting: when several
    /// grants allow an action, the first one is named.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut p = Policy::default();
        for rule in rules {
            let i = u32::try_from(p.rules.len()).expect("fewer than 2^32 rules");
            match &rule.target {
                RuleTarget::Net(c) => {
                    let trie = if c.addr().is_ipv4() {
                        &mut p.v4
                    } else {
                        &mut p.v6
                    };
                    trie.insert(rule::ip_bits(c.addr()), c.prefix_len(), i);
                }
                RuleTarget::Name(NamePattern::Exact(n)) => {
                    p.exact.entry(n.clone()).or_default().push(i)
                }
                RuleTarget::Name(NamePattern::Suffix(s)) => {
                    p.suffix.entry(s.clone()).or_default().push(i)
                }
                RuleTarget::Name(NamePattern::Any) => p.any_name.push(i),
            }
            if let Effect::Allow(r) = rule.effect {
                if r.contains(Rights::CONNECT) {
                    p.first_connect.get_or_insert(i);
                }
                if r.contains(Rights::UDP_SEND) {
                    p.first_udp_send.get_or_insert(i);
                }
                let t = &mut p.transports;
                t.tcp |=
                    r.intersects(Rights::CONNECT | Rights::BIND | Rights::LISTEN | Rights::ACCEPT);
                t.udp |= r.intersects(Rights::UDP_BIND | Rights::UDP_SEND | Rights::UDP_RECV);
                t.resolve |= r.contains(Rights::RESOLVE);
            }
            p.texts.push(rule.to_string());
            p.rules.push(rule);
        }
        p
    }

    /// Rule `i` and its text.
    fn at(&self, i: u32) -> (&Rule, &str) {
        (&self.rules[i as usize], &self.texts[i as usize])
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The grants that allow everything of a family on every port; the
    /// operator is warned about each.
    pub fn allow_all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.is_allow_all())
    }

    /// Which transports any grant of this policy could use.
    pub fn transports(&self) -> Transports {
        self.transports
    }

    /// Decide whether `action` on `target` is allowed.
    pub fn decide(&self, action: Action, target: &Target) -> Decision {
        self.decide_pinned(action, target, &[])
    }

    /// Decide, where the target address was resolved (for a permitted
    /// lookup, still live) from the names in `pinned`. Such an address may
    /// be reached by those names' grants, at their ports, for connects and
    /// UDP traffic; denies on those names apply to it too.
    pub fn decide_pinned(&self, action: Action, target: &Target, pinned: &[&str]) -> Decision {
        match target {
            Target::Addr(addr) => self.decide_addr(action, *addr, pinned),
            Target::Name { host, port } => match ip_literal(host) {
                Some(ip) => self.decide_addr(action, SocketAddr::new(ip, port.unwrap_or(0)), &[]),
                None => self.decide_name(action, host, *port),
            },
        }
    }

    fn decide_addr(&self, action: Action, addr: SocketAddr, pinned: &[&str]) -> Decision {
        let ip = canonical_ip(addr.ip());
        let port = addr.port();
        let shown = SocketAddr::new(ip, port);
        let need = Rights::for_action(action);
        let special = rule::special(ip);
        let (trie, width) = if ip.is_ipv4() {
            (&self.v4, 32)
        } else {
            (&self.v6, 128)
        };
        let mut allow: Option<u32> = None;
        let mut deny: Option<u32> = None;
        let mut too_wide: Option<u32> = None;
        trie.for_each_match(rule::ip_bits(ip), width, |i| {
            let r = &self.rules[i as usize];
            if !r.ports.contains(port) {
                return ControlFlow::Continue(());
            }
            match r.effect {
                Effect::Deny => {
                    deny = Some(i);
                    return ControlFlow::Break(());
                }
                Effect::Allow(rights) if rights.contains(need) => {
                    let RuleTarget::Net(c) = &r.target else {
                        unreachable!("only address rules are in the trie")
                    };
                    match special {
                        Some((_, min)) if c.prefix_len() < min => {
                            too_wide.get_or_insert(i);
                        }
                        _ => allow = Some(allow.map_or(i, |a| a.min(i))),
                    }
                }
                Effect::Allow(_) => {}
            }
            ControlFlow::Continue(())
        });
        if let Some(i) = deny {
            let (r, t) = self.at(i);
            return Decision::deny(
                &r.id,
                format!("{shown} is denied by rule {} ({t})", r.id),
                None,
            );
        }
        let pinned: &[&str] = if action.follows_pins() { pinned } else { &[] };
        for name in pinned {
            if let Some((r, t)) = self
                .name_match(name, Some(port), need)
                .deny
                .map(|i| self.at(i))
            {
                return Decision::deny(
                    &r.id,
                    format!(
                        "{shown} was resolved from {name}, which rule {} denies ({t})",
                        r.id
                    ),
                    Some(name.to_string()),
                );
            }
        }
        if let Some(i) = allow {
            let (r, t) = self.at(i);
            return Decision::allow(
                r,
                format!("rule {} ({t}) allows {action} to {shown}", r.id),
                None,
            );
        }
        // An outgoing connection (or datagram) from a socket the guest did
        // not bind binds an ephemeral port on every interface first: the
        // grant for the traffic allows that bind, which accepts nothing.
        let ephemeral = port == 0 && ip.is_unspecified();
        let sender = match action {
            Action::Bind => self.first_connect,
            Action::UdpBind => self.first_udp_send,
            _ => None,
        };
        if let (true, Some(i)) = (ephemeral, sender) {
            let (r, t) = self.at(i);
            return Decision::allow(
                r,
                format!(
                    "rule {} ({t}) allows outgoing traffic, which binds an ephemeral local port ({shown})",
                    r.id
                ),
                None,
            );
        }
        if special.is_none() {
            for name in pinned {
                if let Some((r, t)) = self
                    .name_match(name, Some(port), need)
                    .allow
                    .map(|i| self.at(i))
                {
                    return Decision::allow(
                        r,
                        format!(
                            "{ip} was resolved from {name}; rule {} ({t}) allows {action} to {name}:{port}",
                            r.id
                        ),
                        Some(name.to_string()),
                    );
                }
            }
        }
        let reason = match (special, too_wide) {
            (Some((kind, _)), Some(i)) => format!(
                "{ip} is a {kind} address, which only a rule naming it explicitly allows; rule {} ({}) is wider than that",
                self.at(i).0.id,
                self.at(i).1
            ),
            _ => {
                format!("no grant allows {action} to {shown}; network access is denied by default")
            }
        };
        Decision::deny(DEFAULT_DENY, reason, pinned.first().map(|n| n.to_string()))
    }

    fn decide_name(&self, action: Action, host: &str, port: Option<u16>) -> Decision {
        let target = Target::Name {
            host: host.to_string(),
            port,
        };
        let Some(name) = normalize_name(host) else {
            return Decision::deny(
                DEFAULT_DENY,
                format!("`{host}` is not a valid host name"),
                Some(host.to_string()),
            );
        };
        let m = self.name_match(&name, port, Rights::for_action(action));
        if let Some((r, t)) = m.deny.map(|i| self.at(i)) {
            return Decision::deny(
                &r.id,
                format!("{target} is denied by rule {} ({t})", r.id),
                Some(name),
            );
        }
        if let Some((r, t)) = m.allow.map(|i| self.at(i)) {
            return Decision::allow(
                r,
                format!("rule {} ({t}) allows {action} to {target}", r.id),
                Some(name),
            );
        }
        Decision::deny(
            DEFAULT_DENY,
            format!("no grant allows {action} to {target}; network access is denied by default"),
            Some(name),
        )
    }

    /// The first deny and the first grant (with `need`) among the name
    /// rules matching `name` at `port`. Without a port (name resolution),
    /// only a deny on every port applies.
    fn name_match(&self, name: &str, port: Option<u16>, need: Rights) -> NameMatch {
        let mut m = NameMatch::default();
        let mut best: Option<u32> = None;
        let suffixes = name
            .match_indices('.')
            .filter_map(|(i, _)| self.suffix.get(&name[i + 1..]));
        let lists = self
            .exact
            .get(name)
            .into_iter()
            .chain(suffixes)
            .chain(std::iter::once(&self.any_name));
        for &i in lists.flatten() {
            let r = &self.rules[i as usize];
            let ports_ok = match port {
                Some(p) => r.ports.contains(p),
                None => r.effect == Effect::Deny && r.ports.is_any() || r.effect != Effect::Deny,
            };
            if !ports_ok {
                continue;
            }
            match r.effect {
                Effect::Deny => {
                    m.deny = Some(i);
                    return m;
                }
                Effect::Allow(rights) if rights.contains(need) => {
                    best = Some(best.map_or(i, |b| b.min(i)));
                }
                Effect::Allow(_) => {}
            }
        }
        m.allow = best;
        m
    }
}

/// Indices of the first deny and the best grant among matching name rules.
#[derive(Default)]
struct NameMatch {
    deny: Option<u32>,
    allow: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: [Action; 9] = Action::ALL;

    #[test]
    fn empty_policy_denies_every_action_by_default_rule() {
        let policy = Policy::deny_all();
        let targets = [
            Target::Addr("127.0.0.1:80".parse().unwrap()),
            Target::Addr("[::1]:443".parse().unwrap()),
            Target::Addr("0.0.0.0:0".parse().unwrap()),
            Target::Name {
                host: "localhost".into(),
                port: Some(8080),
            },
            Target::Name {
                host: "example.com".into(),
                port: None,
            },
        ];
        for action in ACTIONS {
            for target in &targets {
                let d = policy.decide(action, target);
                assert_eq!(d.verdict, Verdict::Deny, "{action} {target}");
                assert!(!d.is_allowed());
                assert_eq!(d.rule, DEFAULT_DENY);
                assert!(d.reason.contains(action.as_str()), "{}", d.reason);
                assert!(d.reason.contains(&target.to_string()), "{}", d.reason);
            }
        }
        assert_eq!(policy.transports(), Transports::default());
    }

    #[test]
    fn action_names_are_the_audit_vocabulary() {
        let names: Vec<_> = ACTIONS.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            names,
            [
                "connect",
                "bind",
                "listen",
                "accept",
                "udp-bind",
                "udp-send",
                "udp-recv",
                "resolve",
                "http-request"
            ]
        );
    }

    #[test]
    fn targets_display_as_operators_write_them() {
        let v6 = Target::Addr("[::1]:443".parse().unwrap());
        assert_eq!(v6.to_string(), "[::1]:443");
        let name = Target::Name {
            host: "api.example.com".into(),
            port: Some(443),
        };
        assert_eq!(name.to_string(), "api.example.com:443");
    }

    fn rules(spec: &[(&str, &str, Option<Rights>)]) -> Policy {
        Policy::new(spec.iter().map(|(id, tp, rights)| {
            let (t, p) = parse_target_ports(tp).unwrap();
            match rights {
                Some(r) => Rule::allow(*id, t, p, *r),
                None => Rule::deny(*id, t, p),
            }
        }))
    }

    fn addr(p: &Policy, action: Action, a: &str) -> Decision {
        p.decide(action, &Target::Addr(a.parse().unwrap()))
    }

    fn name(p: &Policy, action: Action, host: &str, port: Option<u16>) -> Decision {
        p.decide(
            action,
            &Target::Name {
                host: host.into(),
                port,
            },
        )
    }

    #[test]
    fn grants_allow_only_their_rights_and_ports() {
        let p = rules(&[("web", "10.0.0.0/8:80-89", Some(Rights::CONNECT))]);
        let d = addr(&p, Action::Connect, "10.1.2.3:80");
        assert!(d.is_allowed());
        assert_eq!(d.rule, "web");
        assert_eq!(
            d.reason,
            "rule web (allow connect 10.0.0.0/8:80-89) allows connect to 10.1.2.3:80"
        );
        assert!(addr(&p, Action::Connect, "10.1.2.3:89").is_allowed());
        for (action, a) in [
            (Action::Connect, "10.1.2.3:79"),
            (Action::Connect, "10.1.2.3:90"),
            (Action::Connect, "11.0.0.1:80"),
            (Action::Bind, "10.1.2.3:80"),
            (Action::UdpSend, "10.1.2.3:80"),
        ] {
            let d = addr(&p, action, a);
            assert!(!d.is_allowed(), "{action} {a}");
            assert_eq!(d.rule, DEFAULT_DENY);
        }
        assert_eq!(
            p.transports(),
            Transports {
                tcp: true,
                udp: false,
                resolve: false
            }
        );
    }

    #[test]
    fn deny_beats_every_grant_in_any_order() {
        for order in [false, true] {
            let mut spec = vec![
                ("all", "0.0.0.0/0:*", Some(Rights::CONNECT)),
                ("no-meta", "169.254.169.254:*", None),
            ];
            if order {
                spec.reverse();
            }
            let p = rules(&spec);
            let d = addr(&p, Action::Connect, "169.254.169.254:80");
            assert!(!d.is_allowed());
            assert_eq!(d.rule, "no-meta");
            assert_eq!(
                d.reason,
                "169.254.169.254:80 is denied by rule no-meta (deny 169.254.169.254/32:*)"
            );
            assert!(addr(&p, Action::Connect, "169.254.169.253:80").is_allowed());
        }
    }

    #[test]
    fn mapped_and_compatible_ipv6_decide_as_ipv4() {
        let p = rules(&[
            ("lo", "127.0.0.0/8:*", Some(Rights::CONNECT)),
            ("no-66", "127.0.0.66:*", None),
        ]);
        for a in ["127.0.0.1:1", "[::ffff:127.0.0.1]:1", "[::127.0.0.1]:1"] {
            assert!(addr(&p, Action::Connect, a).is_allowed(), "{a}");
        }
        for a in ["127.0.0.66:1", "[::ffff:127.0.0.66]:1", "[::127.0.0.66]:1"] {
            assert_eq!(addr(&p, Action::Connect, a).rule, "no-66", "{a}");
        }
        // A rule written in mapped form is the IPv4 rule.
        let p = rules(&[("m", "[::ffff:10.0.0.0/104]:*", Some(Rights::CONNECT))]);
        assert!(addr(&p, Action::Connect, "10.9.9.9:1").is_allowed());
        assert!(!addr(&p, Action::Connect, "[::1]:1").is_allowed());
    }

    #[test]
    fn special_addresses_need_a_rule_that_names_them() {
        let p = rules(&[
            ("v4", "0.0.0.0/0:*", Some(Rights::CONNECT)),
            ("v6", "[::/0]:*", Some(Rights::CONNECT)),
        ]);
        for a in [
            "0.0.0.0:80",
            "[::]:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
            "[ff02::1]:80",
            "[::ffff:0.0.0.0]:80",
        ] {
            let d = addr(&p, Action::Connect, a);
            assert!(!d.is_allowed(), "{a}");
            assert!(
                d.reason.contains("only a rule naming it explicitly"),
                "{a}: {}",
                d.reason
            );
        }
        assert!(addr(&p, Action::Connect, "8.8.8.8:80").is_allowed());
        let p = rules(&[
            ("any4", "0.0.0.0:8080", Some(Rights::BIND)),
            ("mcast", "239.0.0.0/8:*", Some(Rights::UDP_SEND)),
        ]);
        assert!(addr(&p, Action::Bind, "0.0.0.0:8080").is_allowed());
        assert!(addr(&p, Action::UdpSend, "239.1.2.3:5000").is_allowed());
        assert!(!addr(&p, Action::UdpSend, "224.0.0.1:5000").is_allowed());
    }

    #[test]
    fn name_patterns_and_name_denies() {
        let p = rules(&[
            (
                "api",
                "*.example.com:443",
                Some(Rights::CONNECT | Rights::RESOLVE),
            ),
            ("bad", "evil.example.com:*", None),
            ("one", "db.internal:5432", Some(Rights::CONNECT)),
        ]);
        assert!(name(&p, Action::HttpRequest, "api.example.com", Some(443)).is_allowed());
        assert!(name(&p, Action::Resolve, "API.Example.com.", None).is_allowed());
        assert!(!name(&p, Action::HttpRequest, "api.example.com", Some(444)).is_allowed());
        assert!(!name(&p, Action::Resolve, "example.com", None).is_allowed());
        assert!(!name(&p, Action::Resolve, "evilexample.com", None).is_allowed());
        let d = name(&p, Action::Resolve, "evil.example.com", None);
        assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, "bad"));
        assert!(!name(&p, Action::Resolve, "db.internal", None).is_allowed());
        assert!(name(&p, Action::Connect, "db.internal", Some(5432)).is_allowed());
        let d = name(&p, Action::Resolve, "not a name", None);
        assert_eq!(d.reason, "`not a name` is not a valid host name");
        // An IP literal as a host is decided as the address.
        assert!(!name(&p, Action::HttpRequest, "127.0.0.1", Some(443)).is_allowed());
        let p = rules(&[("lo", "127.0.0.1:8080", Some(Rights::CONNECT))]);
        assert!(name(&p, Action::HttpRequest, "127.0.0.1", Some(8080)).is_allowed());
        assert!(name(&p, Action::HttpRequest, "[::ffff:127.0.0.1]", Some(8080)).is_allowed());
    }

    #[test]
    fn a_name_with_a_port_deny_still_resolves() {
        let p = rules(&[
            (
                "r",
                "*.example.com:*",
                Some(Rights::RESOLVE | Rights::CONNECT),
            ),
            ("no-25", "*.example.com:25", None),
        ]);
        assert!(name(&p, Action::Resolve, "mx.example.com", None).is_allowed());
        assert_eq!(
            name(&p, Action::Connect, "mx.example.com", Some(25)).rule,
            "no-25"
        );
    }

    #[test]
    fn pinned_addresses_get_their_names_grants_and_nothing_else() {
        let p = rules(&[
            (
                "api",
                "api.test:8000-8001",
                Some(Rights::CONNECT | Rights::RESOLVE),
            ),
            ("bad", "bad.test:*", None),
            ("no-66", "127.0.0.66:*", None),
        ]);
        let pin = |a: &str, action: Action, names: &[&str]| {
            p.decide_pinned(action, &Target::Addr(a.parse().unwrap()), names)
        };
        let d = pin("127.0.0.5:8000", Action::Connect, &["api.test"]);
        assert!(d.is_allowed());
        assert_eq!(d.name.as_deref(), Some("api.test"));
        assert_eq!(
            d.reason,
            "127.0.0.5 was resolved from api.test; rule api (allow connect,resolve api.test:8000-8001) allows connect to api.test:8000"
        );
        assert!(!pin("127.0.0.5:8002", Action::Connect, &["api.test"]).is_allowed());
        assert!(!pin("127.0.0.5:8000", Action::Connect, &[]).is_allowed());
        assert!(!pin("127.0.0.5:8000", Action::Bind, &["api.test"]).is_allowed());
        assert_eq!(
            pin("127.0.0.66:8000", Action::Connect, &["api.test"]).rule,
            "no-66"
        );
        assert_eq!(
            pin("127.0.0.5:8000", Action::Connect, &["api.test", "bad.test"]).rule,
            "bad"
        );
        assert!(!pin("0.0.0.0:8000", Action::Connect, &["api.test"]).is_allowed());
    }

    #[test]
    fn traffic_grants_allow_the_ephemeral_bind_they_need_and_no_more() {
        let p = rules(&[("out", "10.0.0.0/8:443", Some(Rights::CONNECT))]);
        for a in ["0.0.0.0:0", "[::]:0"] {
            let d = addr(&p, Action::Bind, a);
            assert!(d.is_allowed(), "{a}");
            assert_eq!(d.rule, "out");
        }
        assert!(!addr(&p, Action::Bind, "0.0.0.0:8080").is_allowed());
        assert!(!addr(&p, Action::Bind, "127.0.0.1:0").is_allowed());
        assert!(!addr(&p, Action::Listen, "0.0.0.0:0").is_allowed());
        assert!(!addr(&p, Action::UdpBind, "0.0.0.0:0").is_allowed());
        let p = rules(&[
            (
                "dns",
                "127.0.0.1:53",
                Some(Rights::UDP_SEND | Rights::UDP_RECV),
            ),
            ("no-any", "0.0.0.0:*", None),
        ]);
        assert!(addr(&p, Action::UdpBind, "[::]:0").is_allowed());
        assert_eq!(addr(&p, Action::UdpBind, "0.0.0.0:0").rule, "no-any");
        assert!(!addr(&p, Action::Bind, "[::]:0").is_allowed());
        assert!(
            !Policy::deny_all()
                .decide(Action::Bind, &Target::Addr("0.0.0.0:0".parse().unwrap()))
                .is_allowed()
        );
    }

    #[test]
    fn allow_all_is_noticed() {
        let p = rules(&[
            ("all", "0.0.0.0/0:*", Some(Rights::CONNECT)),
            ("some", "10.0.0.0/8:*", Some(Rights::CONNECT)),
            ("names", "*:*", Some(Rights::RESOLVE)),
            ("deny", "0.0.0.0/0:*", None),
        ]);
        let ids: Vec<_> = p.allow_all_rules().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["all", "names"]);
    }
}
