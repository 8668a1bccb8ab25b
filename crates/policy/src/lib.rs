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
//! Address rules live in one hash table per prefix length, so one decision
//! costs a probe per prefix length in use however many rules there are;
//! name rules are looked up by exact name and by each label suffix. [`manifest`] reads the
//! operator's TOML file into rules.

mod decision;
mod kind;
pub mod learn;
pub mod manifest;
mod pool;
mod prefixes;
mod rule;
pub mod spiffe;
pub mod world;

/// Whether a policy is enforced, or only audited (every decision it
/// would deny recorded as `would-deny` and let through: for learning a
/// policy, never for strangers' code in production).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Denials are denials (the default).
    #[default]
    Enforce,
    /// Denials are recorded and let through.
    Audit,
}

impl Mode {
    /// `enforce` or `audit`, as flags and manifests write it.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s.trim() {
            "enforce" => Ok(Mode::Enforce),
            "audit" => Ok(Mode::Audit),
            other => Err(format!(
                "`{other}` is not a policy mode: expected enforce (the default) or audit (record what would be denied, and allow it)"
            )),
        }
    }
}

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

pub use decision::{DEFAULT_DENY, Decision, IP_LITERAL, MAX_SHOWN, Remedy, Verdict, shorten};
use decision::{Quoted, Shown, Why};
pub use kind::{Kind, KindError, Protocol, TlsVersion};
pub use pool::{Pool, PoolError};

use prefixes::Prefixes;
pub use rule::{
    Cidr, Effect, NamePattern, Ports, Rights, Rule, RuleTarget, canonical_ip, internal_range,
    ip_literal, normalize_name, parse_target_ports,
};

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

/// Which transports a policy could ever allow (for an embedder that wants
/// to switch off what no grant could use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transports {
    /// Some grant could allow a TCP action.
    pub tcp: bool,
    /// Some grant could allow a UDP action.
    pub udp: bool,
    /// Some grant could allow a name lookup.
    pub resolve: bool,
}

/// What the host knows about an address beyond the address itself, for
/// [`Policy::decide_known`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    /// Names that a permitted lookup resolved to this address, while the
    /// answers live (DNS pins): their grants reach it.
    pub resolved_from: &'a [&'a str],
    /// Names of deny rules that the host itself resolved to this address:
    /// their denies cover it.
    pub address_of: &'a [&'a str],
    /// Set when the host could not resolve the denied names: traffic to
    /// any address is refused, since it might be one of theirs.
    pub denied_names_unknown: Option<&'a str>,
}

/// The operator's network grants for one guest.
///
/// `Policy::default()` is the empty policy: it grants nothing, so every
/// [`Policy::decide`] is a denial by [`DEFAULT_DENY`].
#[derive(Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    v4: Prefixes,
    v6: Prefixes,
    exact: HashMap<String, Vec<u32>>,
    suffix: HashMap<String, Vec<u32>>,
    any_name: Vec<u32>,
    transports: Transports,
    /// The first grant with `connect`, and the first with `udp-send`: they
    /// also allow the ephemeral local bind their traffic needs.
    first_connect: Option<u32>,
    first_udp_send: Option<u32>,
    /// Each rule's id and text as `warden check` shows it, made once:
    /// decisions quote them.
    quotes: Vec<Arc<Quoted>>,
    default_deny: Arc<Quoted>,
    ip_literal: Arc<Quoted>,
    kinds: HashMap<String, Arc<Kind>>,
    require_tls: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rules: Vec::new(),
            v4: Prefixes::default(),
            v6: Prefixes::default(),
            exact: HashMap::new(),
            suffix: HashMap::new(),
            any_name: Vec::new(),
            transports: Transports::default(),
            first_connect: None,
            first_udp_send: None,
            quotes: Vec::new(),
            default_deny: Quoted::named(DEFAULT_DENY),
            ip_literal: Quoted::named(IP_LITERAL),
            kinds: HashMap::new(),
            require_tls: false,
        }
    }
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
                    let table = if c.addr().is_ipv4() {
                        &mut p.v4
                    } else {
                        &mut p.v6
                    };
                    table.insert(rule::ip_bits(c.addr()), c.prefix_len(), i);
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
            p.quotes.push(Arc::new(Quoted {
                id: rule.id.as_str().into(),
                text: rule.to_string().into(),
                kind: rule.kind.as_deref().map(Box::from),
            }));
            p.rules.push(rule);
        }
        p
    }

    /// A policy of `rules` whose grants may name connection `kinds`. Every
    /// kind a grant names must be defined; a TLS kind on a grant to an
    /// address block needs a `server_name`; with `require_tls`, every grant
    /// that allows connections must have a TLS kind.
    pub fn with_kinds(
        rules: impl IntoIterator<Item = Rule>,
        kinds: impl IntoIterator<Item = Kind>,
        require_tls: bool,
    ) -> Result<Self, KindError> {
        let mut p = Policy::new(rules);
        p.require_tls = require_tls;
        for k in kinds {
            if k.client_cert.is_some() != k.client_key.is_some() {
                return Err(KindError::HalfClientAuth { kind: k.name });
            }
            if k.cert.is_some() != k.key.is_some() {
                return Err(KindError::HalfServerAuth { kind: k.name });
            }
            p.kinds.insert(k.name.clone(), Arc::new(k));
        }
        for r in &p.rules {
            let Effect::Allow(rights) = r.effect else {
                continue;
            };
            let kind = match &r.kind {
                Some(name) => Some(p.kinds.get(name).ok_or_else(|| KindError::Unknown {
                    rule: r.id.clone(),
                    kind: name.clone(),
                })?),
                None => None,
            };
            let connects = rights.contains(Rights::CONNECT);
            if let Some(k) = kind
                && connects
                && k.is_tls()
                && k.server_name.is_none()
                && matches!(r.target, RuleTarget::Net(_))
            {
                return Err(KindError::NoServerName {
                    rule: r.id.clone(),
                    kind: k.name.clone(),
                });
            }
            if require_tls && connects && !kind.is_some_and(|k| k.is_tls()) {
                return Err(KindError::PlainTcp { rule: r.id.clone() });
            }
            if let Some(k) = kind
                && rights.contains(Rights::LISTEN)
                && k.is_tls()
                && !k.serves_tls()
            {
                return Err(KindError::NoCertificate {
                    rule: r.id.clone(),
                    kind: k.name.clone(),
                });
            }
        }
        Ok(p)
    }

    /// This policy with `rules` and `kinds` added (the embedder's own
    /// grants, such as those of listeners it opened), checked as
    /// [`Policy::with_kinds`] checks.
    pub fn with_more(
        &self,
        rules: impl IntoIterator<Item = Rule>,
        kinds: impl IntoIterator<Item = Kind>,
    ) -> Result<Self, KindError> {
        let all_rules = self.rules.iter().cloned().chain(rules);
        let all_kinds = self.kinds.values().map(|k| Kind::clone(k)).chain(kinds);
        Policy::with_kinds(all_rules, all_kinds, self.require_tls)
    }

    /// Whether every connect grant must have a TLS kind.
    pub fn requires_tls(&self) -> bool {
        self.require_tls
    }

    /// The connection kind called `name`.
    pub fn kind(&self, name: &str) -> Option<&Arc<Kind>> {
        self.kinds.get(name)
    }

    /// Every connection kind, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<Kind>> {
        let mut all: Vec<_> = self.kinds.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.into_iter()
    }

    /// Rule `i` as decisions quote it.
    fn quote(&self, i: u32) -> &Arc<Quoted> {
        &self.quotes[i as usize]
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

    /// The exact host names that deny rules name. A deny on a name covers
    /// the addresses it resolves to: the host resolves these names itself
    /// and passes their answers as [`Known::address_of`].
    pub fn denied_names(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().filter_map(|(name, rules)| {
            rules
                .iter()
                .any(|&i| self.rules[i as usize].effect == Effect::Deny)
                .then_some(name.as_str())
        })
    }

    /// Which transports any grant of this policy could use.
    pub fn transports(&self) -> Transports {
        self.transports
    }

    /// Decide whether `action` on `target` is allowed, knowing nothing more
    /// about the target than itself.
    pub fn decide(&self, action: Action, target: &Target) -> Decision {
        self.decide_known(action, target, &Known::default())
    }

    /// Decide, with what the host knows about the target address (see
    /// [`Known`]). Pins and denied names' addresses count only for traffic
    /// to a peer (connect, http-request, udp-send, udp-recv).
    pub fn decide_known(&self, action: Action, target: &Target, known: &Known<'_>) -> Decision {
        match target {
            Target::Addr(addr) => self.decide_addr(action, *addr, known),
            Target::Name { host, port } => match ip_literal(host) {
                Some(ip) if action == Action::Resolve => {
                    Decision::allow(&self.ip_literal, Why::IpLiteral { ip }, None)
                }
                Some(ip) => self.decide_addr(action, SocketAddr::new(ip, port.unwrap_or(0)), known),
                None => self.decide_name(action, target, host, *port),
            },
        }
    }

    fn decide_addr(&self, action: Action, addr: SocketAddr, known: &Known<'_>) -> Decision {
        let ip = canonical_ip(addr.ip());
        let port = addr.port();
        let shown = SocketAddr::new(ip, port);
        let need = Rights::for_action(action);
        let special = rule::special(ip);
        let table = if ip.is_ipv4() { &self.v4 } else { &self.v6 };
        let mut allow: Option<u32> = None;
        let mut deny: Option<u32> = None;
        let mut too_wide: Option<u32> = None;
        table.for_each_match(rule::ip_bits(ip), |i| {
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
                        unreachable!("only address rules are in the tables")
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
            let rule = self.quote(i);
            return Decision::deny(rule, Why::AddrDenied { shown }, None);
        }
        let traffic = action.follows_pins();
        if traffic {
            if let Some(why) = known.denied_names_unknown {
                return Decision::deny(
                    &self.default_deny,
                    Why::DeniedNamesUnknown {
                        shown,
                        why: why.into(),
                    },
                    None,
                );
            }
            for name in known.resolved_from {
                if let Some(i) = self.name_match(name, Some(port), need).deny {
                    let rule = self.quote(i);
                    return Decision::deny(
                        rule,
                        Why::ResolvedFromDenied {
                            shown,
                            name: (*name).into(),
                        },
                        Some((*name).into()),
                    );
                }
            }
            for name in known.address_of {
                if let Some(i) = self.name_match(name, Some(port), need).deny {
                    let rule = self.quote(i);
                    return Decision::deny(
                        rule,
                        Why::AddressOfDenied {
                            shown,
                            name: (*name).into(),
                        },
                        Some((*name).into()),
                    );
                }
            }
        }
        if let Some(i) = allow {
            let rule = self.quote(i);
            return Decision::allow(rule, Why::AddrAllowed { action, shown }, None);
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
            let rule = self.quote(i);
            return Decision::allow(rule, Why::Ephemeral { shown }, None);
        }
        let resolved_from = if traffic { known.resolved_from } else { &[] };
        if special.is_none() {
            let internal = rule::internal_range(ip);
            for name in resolved_from {
                if let Some(i) = self.name_match(name, Some(port), need).allow {
                    let rule = self.quote(i);
                    let name: Arc<str> = (*name).into();
                    if let Some(range) = internal
                        && !self.rules[i as usize].internal
                    {
                        return Decision::deny(
                            rule,
                            Why::Internal {
                                shown,
                                name: name.clone(),
                                range,
                            },
                            Some(name),
                        );
                    }
                    return Decision::allow(
                        rule,
                        Why::PinAllowed {
                            action,
                            ip,
                            name: name.clone(),
                            port,
                        },
                        Some(name),
                    );
                }
            }
        }
        let why = match (special, too_wide) {
            (Some((kind, _)), Some(i)) => Why::SpecialTooWide {
                ip,
                kind,
                rule: self.quote(i).clone(),
            },
            _ if ephemeral && matches!(action, Action::Bind | Action::UdpBind) => {
                Why::EphemeralNoTraffic { action, shown }
            }
            _ => Why::NoGrant {
                action,
                shown: Shown::Addr(shown),
            },
        };
        Decision::deny(
            &self.default_deny,
            why,
            resolved_from.first().map(|n| (*n).into()),
        )
    }

    fn decide_name(
        &self,
        action: Action,
        target: &Target,
        host: &str,
        port: Option<u16>,
    ) -> Decision {
        let Some(name) = normalize_name(host) else {
            let shown = Shown::of(target);
            let Shown::Name { host, .. } = &shown else {
                unreachable!("a name target shows as a name")
            };
            let host = host.clone();
            return Decision::deny(
                &self.default_deny,
                Why::InvalidName { host: shown },
                Some(host),
            );
        };
        let shown = Shown::of(target);
        let m = self.name_match(&name, port, Rights::for_action(action));
        let name: Arc<str> = name.into();
        if let Some(i) = m.deny {
            let rule = self.quote(i);
            return Decision::deny(rule, Why::NameDenied { shown }, Some(name));
        }
        if let Some(i) = m.allow {
            let rule = self.quote(i);
            return Decision::allow(rule, Why::NameAllowed { action, shown }, Some(name));
        }
        Decision::deny(
            &self.default_deny,
            Why::NoGrant { action, shown },
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
                assert_eq!(d.verdict(), Verdict::Deny, "{action} {target}");
                assert!(!d.is_allowed());
                assert_eq!(d.rule(), DEFAULT_DENY);
                assert!(
                    d.reason().to_string().contains(action.as_str()),
                    "{}",
                    d.reason().to_string()
                );
                assert!(
                    d.reason().to_string().contains(&target.to_string()),
                    "{}",
                    d.reason().to_string()
                );
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
    fn a_listener_grants_its_address_and_accepts_from_any_peer() {
        let (t, ports) = parse_target_ports("127.0.0.1:8080").unwrap();
        let rules = Rule::listening("--listen 127.0.0.1:8080", t, ports, Some("listen:web"));
        assert_eq!(rules[0].kind.as_deref(), Some("listen:web"));
        let p = Policy::new(rules.clone());
        for action in [Action::Bind, Action::Listen] {
            assert!(addr(&p, action, "127.0.0.1:8080").is_allowed());
            // The deny twins: another port, another address, another right.
            assert!(!addr(&p, action, "127.0.0.1:8081").is_allowed());
            assert!(!addr(&p, action, "127.0.0.2:8080").is_allowed());
        }
        assert!(!addr(&p, Action::Connect, "127.0.0.1:8080").is_allowed());
        for peer in ["10.1.2.3:5000", "[2001:db8::1]:443"] {
            assert!(addr(&p, Action::Accept, peer).is_allowed());
            assert!(!addr(&p, Action::Connect, peer).is_allowed());
        }
        // A deny still refuses a peer.
        let mut with_deny = rules;
        let (t, ports) = parse_target_ports("10.0.0.0/8:*").unwrap();
        with_deny.push(Rule::deny("no", t, ports));
        let p = Policy::new(with_deny);
        assert!(!addr(&p, Action::Accept, "10.1.2.3:5000").is_allowed());
        assert!(addr(&p, Action::Accept, "192.0.2.1:5000").is_allowed());
    }

    #[test]
    fn grants_allow_only_their_rights_and_ports() {
        let p = rules(&[("web", "10.0.0.0/8:80-89", Some(Rights::CONNECT))]);
        let d = addr(&p, Action::Connect, "10.1.2.3:80");
        assert!(d.is_allowed());
        assert_eq!(d.rule(), "web");
        assert_eq!(
            d.reason().to_string(),
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
            assert_eq!(d.rule(), DEFAULT_DENY);
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
            assert_eq!(d.rule(), "no-meta");
            assert_eq!(
                d.reason().to_string(),
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
            assert_eq!(addr(&p, Action::Connect, a).rule(), "no-66", "{a}");
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
                d.reason()
                    .to_string()
                    .contains("only a rule naming it explicitly"),
                "{a}: {}",
                d.reason()
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
        assert_eq!((d.verdict(), d.rule()), (Verdict::Deny, "bad"));
        assert!(!name(&p, Action::Resolve, "db.internal", None).is_allowed());
        assert!(name(&p, Action::Connect, "db.internal", Some(5432)).is_allowed());
        let d = name(&p, Action::Resolve, "not a name", None);
        assert_eq!(
            d.reason().to_string(),
            "`not a name` is not a valid host name"
        );
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
            name(&p, Action::Connect, "mx.example.com", Some(25)).rule(),
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
            ("no-66", "1.2.3.66:*", None),
        ]);
        let pin = |a: &str, action: Action, names: &[&str]| {
            p.decide_known(
                action,
                &Target::Addr(a.parse().unwrap()),
                &Known {
                    resolved_from: names,
                    ..Known::default()
                },
            )
        };
        let d = pin("1.2.3.5:8000", Action::Connect, &["api.test"]);
        assert!(d.is_allowed());
        assert_eq!(d.name(), Some("api.test"));
        assert_eq!(
            d.reason().to_string(),
            "1.2.3.5 was resolved from api.test; rule api (allow connect,resolve api.test:8000-8001) allows connect to api.test:8000"
        );
        assert!(!pin("1.2.3.5:8002", Action::Connect, &["api.test"]).is_allowed());
        assert!(!pin("1.2.3.5:8000", Action::Connect, &[]).is_allowed());
        assert!(!pin("1.2.3.5:8000", Action::Bind, &["api.test"]).is_allowed());
        assert_eq!(
            pin("1.2.3.66:8000", Action::Connect, &["api.test"]).rule(),
            "no-66"
        );
        assert_eq!(
            pin("1.2.3.5:8000", Action::Connect, &["api.test", "bad.test"]).rule(),
            "bad"
        );
        assert!(!pin("0.0.0.0:8000", Action::Connect, &["api.test"]).is_allowed());
    }

    #[test]
    fn names_reach_internal_addresses_only_through_grants_that_say_so() {
        let mut granted = Rule::allow(
            "lan",
            "*.corp.test".parse().unwrap(),
            Ports::ANY,
            Rights::CONNECT,
        );
        let plain = Rule::allow(
            "web",
            "*.example.test".parse().unwrap(),
            Ports::ANY,
            Rights::CONNECT | Rights::UDP_SEND,
        );
        granted.internal = true;
        let by_addr = Rule::allow(
            "metrics",
            "10.1.2.3/32".parse().unwrap(),
            Ports::one(9100),
            Rights::CONNECT,
        );
        let p = Policy::new([plain, granted, by_addr]);
        let pin = |a: &str, action: Action, name: &str| {
            p.decide_known(
                action,
                &Target::Addr(a.parse().unwrap()),
                &Known {
                    resolved_from: &[name],
                    ..Known::default()
                },
            )
        };
        for (ip, range) in [
            ("127.0.0.1", "loopback (127.0.0.0/8)"),
            ("169.254.169.254", "link-local (169.254.0.0/16)"),
            ("10.0.0.7", "private (10.0.0.0/8)"),
            ("172.31.0.1", "private (172.16.0.0/12)"),
            ("192.168.1.1", "private (192.168.0.0/16)"),
            ("100.100.100.200", "shared address space (100.64.0.0/10)"),
            ("0.1.2.3", "this-network (0.0.0.0/8)"),
            ("198.51.100.7", "documentation (198.51.100.0/24)"),
            ("240.0.0.1", "reserved (240.0.0.0/4)"),
            ("[::1]", "loopback (::1)"),
            ("[fe80::1]", "link-local (fe80::/10)"),
            ("[fd00:ec2::254]", "unique local (fc00::/7)"),
            ("[2001:db8::1]", "documentation (2001:db8::/32)"),
            ("[2002:a9fe:a9fe::1]", "6to4 (2002::/16)"),
            // Other spellings of an internal IPv4 address are that address.
            ("[::ffff:127.0.0.1]", "loopback (127.0.0.0/8)"),
            ("[64:ff9b::a9fe:a9fe]", "link-local (169.254.0.0/16)"),
        ] {
            let a = format!("{ip}:443");
            let d = pin(&a, Action::Connect, "x.example.test");
            assert!(!d.is_allowed(), "{a}");
            assert_eq!(d.rule(), "web", "{a}");
            assert_eq!(d.internal_range(), Some(range), "{a}");
            assert!(!d.by_deny_rule(), "a grant on the address allows it");
            assert!(
                d.reason().to_string().contains("marked internal"),
                "{}",
                d.reason()
            );
            // Datagrams too.
            assert!(!pin(&a, Action::UdpSend, "x.example.test").is_allowed());
            // A grant marked internal reaches it.
            assert!(pin(&a, Action::Connect, "db.corp.test").is_allowed(), "{a}");
        }
        // Public addresses are what name grants are for.
        for ip in ["93.184.216.34", "[2606:4700::1111]", "1.1.1.1"] {
            let a = format!("{ip}:443");
            assert!(
                pin(&a, Action::Connect, "x.example.test").is_allowed(),
                "{a}"
            );
        }
        // An address grant that names the address reaches it, whatever
        // name it came from.
        assert!(pin("10.1.2.3:9100", Action::Connect, "x.example.test").is_allowed());
        assert!(!pin("10.1.2.3:9101", Action::Connect, "x.example.test").is_allowed());
        // Rules say so when shown.
        assert_eq!(
            p.rules()[1].to_string(),
            "allow connect *.corp.test:* internal"
        );
    }

    #[test]
    fn traffic_grants_allow_the_ephemeral_bind_they_need_and_no_more() {
        let p = rules(&[("out", "10.0.0.0/8:443", Some(Rights::CONNECT))]);
        for a in ["0.0.0.0:0", "[::]:0"] {
            let d = addr(&p, Action::Bind, a);
            assert!(d.is_allowed(), "{a}");
            assert_eq!(d.rule(), "out");
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
        assert_eq!(addr(&p, Action::UdpBind, "0.0.0.0:0").rule(), "no-any");
        assert!(!addr(&p, Action::Bind, "[::]:0").is_allowed());
        let d =
            Policy::deny_all().decide(Action::Bind, &Target::Addr("0.0.0.0:0".parse().unwrap()));
        assert!(!d.is_allowed());
        assert_eq!(
            d.reason().to_string(),
            "no grant allows bind to 0.0.0.0:0, the ephemeral local port a socket binds before its first connect; a grant for that traffic allows this bind"
        );
        assert_eq!(
            Remedy::for_denial(Action::Bind, &Target::Addr("0.0.0.0:0".parse().unwrap())),
            None
        );
    }

    #[test]
    fn nat64_spellings_decide_as_ipv4() {
        let p = rules(&[
            ("v6", "[::/0]:*", Some(Rights::CONNECT)),
            ("lo", "127.0.0.0/8:*", Some(Rights::CONNECT)),
            ("no-66", "127.0.0.66:*", None),
        ]);
        // The IPv6 allow-all does not reach an IPv4 address denied by rule
        // through either NAT64 prefix.
        for a in [
            "[64:ff9b::7f00:42]:80",
            "[64:ff9b:1::7f00:42]:80",
            "[64:ff9b:1:abcd::7f00:42]:80",
        ] {
            let d = addr(&p, Action::Connect, a);
            assert_eq!(d.rule(), "no-66", "{a}");
        }
        assert_eq!(
            addr(&p, Action::Connect, "[64:ff9b::7f00:1]:80").rule(),
            "lo"
        );
        // An IPv4 address no rule grants stays denied in NAT64 form.
        let d = addr(&p, Action::Connect, "[64:ff9b::a00:1]:80");
        assert!(!d.is_allowed());
        assert_eq!(
            d.reason().to_string(),
            "no grant allows connect to 10.0.0.1:80; network access is denied by default"
        );
        // A rule written in the well-known NAT64 form is an IPv4 rule.
        assert_eq!(
            "[64:ff9b::a00:0/104]".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!("[64:ff9b:1::/48]".parse::<Cidr>().is_err());
    }

    #[test]
    fn resolving_an_ip_literal_needs_no_grant() {
        let d = name(&Policy::deny_all(), Action::Resolve, "127.0.0.1", None);
        assert!(d.is_allowed());
        assert_eq!(d.rule(), IP_LITERAL);
        assert_eq!(
            d.reason().to_string(),
            "127.0.0.1 is an IP literal: it resolves to itself and no lookup leaves the host"
        );
        assert!(name(&Policy::deny_all(), Action::Resolve, "[::1]", None).is_allowed());
        assert!(!name(&Policy::deny_all(), Action::Connect, "127.0.0.1", Some(80)).is_allowed());
    }

    #[test]
    fn traffic_from_a_peer_is_from_it() {
        let p = rules(&[(
            "peers",
            "127.0.0.0/8:*",
            Some(Rights::ACCEPT | Rights::UDP_RECV),
        )]);
        for action in [Action::Accept, Action::UdpRecv] {
            let d = addr(&p, action, "127.0.0.2:4000");
            assert_eq!(
                d.reason().to_string(),
                format!(
                    "rule peers (allow accept,udp-recv 127.0.0.0/8:*) allows {action} from 127.0.0.2:4000"
                )
            );
            let d = addr(&p, action, "10.0.0.2:4000");
            assert_eq!(
                d.reason().to_string(),
                format!(
                    "no grant allows {action} from 10.0.0.2:4000; network access is denied by default"
                )
            );
        }
    }

    #[test]
    fn a_deny_on_a_name_covers_the_addresses_the_host_resolved_it_to() {
        let p = rules(&[
            (
                "corp",
                "*.corp.test:*",
                Some(Rights::CONNECT | Rights::RESOLVE),
            ),
            ("lo", "127.0.0.0/8:*", Some(Rights::CONNECT)),
            ("secret", "secret.corp.test:*", None),
            ("db", "db.corp.test:5432", None),
        ]);
        let mut names: Vec<_> = p.denied_names().collect();
        names.sort();
        assert_eq!(names, ["db.corp.test", "secret.corp.test"]);
        let t = Target::Addr("127.0.0.9:443".parse().unwrap());
        let known = |resolved_from, address_of| Known {
            resolved_from,
            address_of,
            denied_names_unknown: None,
        };
        // alias.corp.test resolved to secret's address: still secret's.
        let d = p.decide_known(
            Action::Connect,
            &t,
            &known(&["alias.corp.test"], &["secret.corp.test"]),
        );
        assert_eq!(d.rule(), "secret");
        assert_eq!(d.name(), Some("secret.corp.test"));
        assert_eq!(
            d.reason().to_string(),
            "127.0.0.9 is an address of secret.corp.test, which rule secret denies (deny secret.corp.test:*); a deny on a name covers the addresses it resolves to"
        );
        // Even reached through an address grant.
        assert_eq!(
            p.decide_known(Action::Connect, &t, &known(&[], &["secret.corp.test"]))
                .rule(),
            "secret"
        );
        // A deny on some ports covers the address at those ports only.
        assert!(
            p.decide_known(Action::Connect, &t, &known(&[], &["db.corp.test"]))
                .is_allowed()
        );
        let db = Target::Addr("127.0.0.9:5432".parse().unwrap());
        assert_eq!(
            p.decide_known(Action::Connect, &db, &known(&[], &["db.corp.test"]))
                .rule(),
            "db"
        );
        // Listening on an address is not traffic to the denied host.
        let p2 = rules(&[
            ("web", "127.0.0.9:443", Some(Rights::BIND)),
            ("secret", "secret.corp.test:*", None),
        ]);
        assert!(
            p2.decide_known(Action::Bind, &t, &known(&[], &["secret.corp.test"]))
                .is_allowed()
        );
        // Unknown denied names: traffic fails closed.
        let unknown = Known {
            denied_names_unknown: Some("no DNS server answered"),
            ..Known::default()
        };
        let d = p.decide_known(Action::Connect, &t, &unknown);
        assert!(!d.is_allowed());
        assert!(
            d.reason()
                .to_string()
                .contains("cannot resolve now (no DNS server answered)")
        );
        assert!(p2.decide_known(Action::Bind, &t, &unknown).is_allowed());
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
        // Accepting from every peer is what a listener does: no warning.
        let p = rules(&[("peers", "0.0.0.0/0:*", Some(Rights::ACCEPT))]);
        assert_eq!(p.allow_all_rules().count(), 0);
    }
}
