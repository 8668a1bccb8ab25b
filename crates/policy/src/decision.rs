//! What a decision says: allow or deny, the rule that decided, and why.
//!
//! A [`Decision`] is made on every socket call a guest makes, so it carries
//! only cheap data (the rule's id and text are shared, addresses are
//! copied); the reason is put into words only when someone reads it
//! ([`Decision::reason`]), as the audit log and the denial report do.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::{Action, Ports, Rights, RuleTarget, Target};

/// The rule id reported when no grant matched and the default applied.
pub const DEFAULT_DENY: &str = "default-deny";

/// The rule id reported for resolving an IP literal, which needs no grant:
/// it resolves to itself and nothing leaves the host.
pub const IP_LITERAL: &str = "ip-literal";

/// The longest host name shown in a reason or a record; longer text is cut
/// and its length said, so a guest cannot make Warden echo megabytes.
pub const MAX_SHOWN: usize = 256;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The action may proceed.
    Allow,
    /// The action is refused.
    Deny,
    /// The policy refuses it, and it proceeds anyway: the operator's
    /// audit mode, which records what enforcing would deny.
    WouldDeny,
}

impl Verdict {
    /// `allow`, `deny` or `would-deny`, as the audit log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::WouldDeny => "would-deny",
        }
    }
}

/// A rule as a decision quotes it: its id, its text and its kind. The
/// policy holds each behind an `Arc` that decisions share, so making a
/// decision copies one pointer, whatever it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quoted {
    pub(crate) id: Box<str>,
    pub(crate) text: Box<str>,
    /// The connection kind the rule's connections are made as.
    pub(crate) kind: Option<Box<str>>,
}

impl Quoted {
    /// A rule that is no rule of the operator's (the default, the IP
    /// literal), quoted by its name.
    pub(crate) fn named(id: &str) -> Arc<Quoted> {
        Arc::new(Quoted {
            id: id.into(),
            text: id.into(),
            kind: None,
        })
    }
}

/// Why a decision went the way it did, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    /// A deny rule covers the address.
    AddrDenied { shown: SocketAddr },
    /// The address was resolved from a name a deny rule covers.
    ResolvedFromDenied { shown: SocketAddr, name: Arc<str> },
    /// The address is one a denied name resolves to (the host resolved
    /// the denied name itself).
    AddressOfDenied { shown: SocketAddr, name: Arc<str> },
    /// The host could not tell which addresses a denied name has, so
    /// traffic is refused until it can (fail closed).
    DeniedNamesUnknown { shown: SocketAddr, why: Arc<str> },
    /// A grant covers the address.
    AddrAllowed { action: Action, shown: SocketAddr },
    /// The ephemeral local bind that outgoing traffic needs.
    Ephemeral { shown: SocketAddr },
    /// The address was resolved from a name a grant covers.
    PinAllowed {
        action: Action,
        ip: IpAddr,
        name: Arc<str>,
        port: u16,
    },
    /// The address was resolved from a name a grant covers, and lies in
    /// an internal range the grant does not reach (it is not `internal`).
    Internal {
        shown: SocketAddr,
        name: Arc<str>,
        range: &'static str,
    },
    /// A special address (unspecified, broadcast, multicast) and a grant
    /// wider than it.
    SpecialTooWide {
        ip: IpAddr,
        kind: &'static str,
        rule: Arc<Quoted>,
    },
    /// Nothing granted it.
    NoGrant { action: Action, shown: Shown },
    /// The ephemeral local bind before outgoing traffic, with no grant for
    /// any such traffic.
    EphemeralNoTraffic { action: Action, shown: SocketAddr },
    /// A name that is not a DNS name.
    InvalidName { host: Shown },
    /// A deny rule covers the name.
    NameDenied { shown: Shown },
    /// A grant covers the name.
    NameAllowed { action: Action, shown: Shown },
    /// An IP literal resolves to itself.
    IpLiteral { ip: IpAddr },
    /// The instance's policy allows it, and the address pool the socket
    /// was opened from does not.
    OutsidePool { action: Action, shown: Shown },
}

/// A target as a reason shows it: an address, or a (bounded) name with an
/// optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shown {
    Addr(SocketAddr),
    Name { host: Arc<str>, port: Option<u16> },
}

impl Shown {
    pub(crate) fn of(target: &Target) -> Shown {
        match target {
            Target::Addr(a) => Shown::Addr(*a),
            Target::Name { host, port } => Shown::Name {
                host: shorten(host).into(),
                port: *port,
            },
        }
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Addr(a) => write!(f, "{a}"),
            Shown::Name {
                host,
                port: Some(p),
            } => write!(f, "{host}:{p}"),
            Shown::Name { host, port: None } => f.write_str(host),
        }
    }
}

/// `text`, or its first [`MAX_SHOWN`] bytes (at a character boundary) and
/// how long it was.
pub fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_SHOWN {
        return text.into();
    }
    let mut end = MAX_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len()).into()
}

/// The answer to one question, with the rule that gave it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    verdict: Verdict,
    rule: Arc<Quoted>,
    name: Option<Arc<str>>,
    why: Why,
}

/// The preposition between an action and its target: traffic from a peer
/// (accept, udp-recv) comes *from* it.
fn towards(action: Action) -> &'static str {
    match action {
        Action::Accept | Action::UdpRecv => "from",
        _ => "to",
    }
}

impl Decision {
    pub(crate) fn allow(rule: &Arc<Quoted>, why: Why, name: Option<Arc<str>>) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            rule: rule.clone(),
            name,
            why,
        }
    }

    pub(crate) fn deny(rule: &Arc<Quoted>, why: Why, name: Option<Arc<str>>) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            rule: rule.clone(),
            name,
            why,
        }
    }

    /// For an allowed action, the connection kind of the grant that
    /// allowed it (`None`: plain TCP).
    pub fn kind(&self) -> Option<&str> {
        match self.verdict {
            Verdict::Allow => self.rule.kind.as_deref(),
            Verdict::Deny | Verdict::WouldDeny => None,
        }
    }

    /// A denial let through: the same rule and reason, recorded as
    /// [`Verdict::WouldDeny`] and allowed (audit mode). An allowed
    /// decision stays as it is.
    pub fn let_through(mut self) -> Decision {
        if self.verdict == Verdict::Deny {
            self.verdict = Verdict::WouldDeny;
        }
        self
    }

    /// Whether the policy refused it (enforced or not).
    pub fn policy_denies(&self) -> bool {
        self.verdict != Verdict::Allow
    }

    /// Allow or deny.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Whether the action may proceed.
    pub fn is_allowed(&self) -> bool {
        self.verdict != Verdict::Deny
    }

    /// The id of the rule that decided ([`DEFAULT_DENY`] when none matched).
    pub fn rule(&self) -> &str {
        &self.rule.id
    }

    /// The host name the decision turned on: the target's own, or the name
    /// an address was resolved from when that name's rule decided.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether a deny rule (not the default) refused it. A name grant
    /// that refuses an internal address it does not reach is no deny
    /// rule: a grant on the address would allow it.
    pub fn by_deny_rule(&self) -> bool {
        self.policy_denies()
            && &*self.rule.id != DEFAULT_DENY
            && !matches!(self.why, Why::Internal { .. })
    }

    /// For traffic refused because a name's answer lies in an internal
    /// range its grant does not reach: the range, by name (see
    /// [`internal_range`](crate::internal_range)).
    pub fn internal_range(&self) -> Option<&'static str> {
        match self.why {
            Why::Internal { range, .. } => Some(range),
            _ => None,
        }
    }

    /// Why, in words an operator can act on.
    pub fn reason(&self) -> impl fmt::Display + '_ {
        Reason(self)
    }
}

struct Reason<'a>(&'a Decision);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = &*self.0.rule;
        match &self.0.why {
            Why::AddrDenied { shown } => {
                write!(f, "{shown} is denied by rule {} ({})", rule.id, rule.text)
            }
            Why::ResolvedFromDenied { shown, name } => write!(
                f,
                "{shown} was resolved from {name}, which rule {} denies ({})",
                rule.id, rule.text
            ),
            Why::AddressOfDenied { shown, name } => write!(
                f,
                "{} is an address of {name}, which rule {} denies ({}); a deny on a name covers the addresses it resolves to",
                shown.ip(),
                rule.id,
                rule.text
            ),
            Why::DeniedNamesUnknown { shown, why } => write!(
                f,
                "{shown} might be an address of a denied name, which the host cannot resolve now ({why}); traffic is refused until it can"
            ),
            Why::AddrAllowed { action, shown } => write!(
                f,
                "rule {} ({}) allows {action} {} {shown}",
                rule.id,
                rule.text,
                towards(*action)
            ),
            Why::Ephemeral { shown } => write!(
                f,
                "rule {} ({}) allows outgoing traffic, which binds an ephemeral local port ({shown})",
                rule.id, rule.text
            ),
            Why::PinAllowed {
                action,
                ip,
                name,
                port,
            } => write!(
                f,
                "{ip} was resolved from {name}; rule {} ({}) allows {action} {} {name}:{port}",
                rule.id,
                rule.text,
                towards(*action)
            ),
            Why::Internal { shown, name, range } => write!(
                f,
                "{} was resolved from {name} and is a {range} address; rule {} ({}) grants {name}, but a name grant reaches internal addresses only when it is marked internal",
                shown.ip(),
                rule.id,
                rule.text
            ),
            Why::SpecialTooWide { ip, kind, rule } => write!(
                f,
                "{ip} is a {kind} address, which only a rule naming it explicitly allows; rule {} ({}) is wider than that",
                rule.id, rule.text
            ),
            Why::NoGrant { action, shown } => write!(
                f,
                "no grant allows {action} {} {shown}; network access is denied by default",
                towards(*action)
            ),
            Why::EphemeralNoTraffic { action, shown } => write!(
                f,
                "no grant allows {action} to {shown}, the ephemeral local port a socket binds before its first {}; a grant for that traffic allows this bind",
                if *action == Action::Bind {
                    "connect"
                } else {
                    "datagram"
                }
            ),
            Why::InvalidName { host } => write!(f, "`{host}` is not a valid host name"),
            Why::NameDenied { shown } => {
                write!(f, "{shown} is denied by rule {} ({})", rule.id, rule.text)
            }
            Why::NameAllowed { action, shown } => write!(
                f,
                "rule {} ({}) allows {action} {} {shown}",
                rule.id,
                rule.text,
                towards(*action)
            ),
            Why::IpLiteral { ip } => write!(
                f,
                "{ip} is an IP literal: it resolves to itself and no lookup leaves the host"
            ),
            Why::OutsidePool { action, shown } => write!(
                f,
                "the socket was opened from {}, which does not allow {action} {} {shown} (a pool narrows the policy; it never widens it)",
                rule.text,
                towards(*action)
            ),
        }
    }
}

/// What would allow a denied action: a grant of `rights` on `target` at
/// `ports`. Libraries hand this on as data; the command line words it as
/// the flag that makes such a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remedy {
    /// The rights the grant needs.
    pub rights: Rights,
    /// What it is about.
    pub target: RuleTarget,
    /// Which ports.
    pub ports: Ports,
}

impl Remedy {
    /// The grant that would allow `action` on `target`, when there is one a
    /// rule can express (not for a name that is not a valid host name).
    /// A peer's port is its own ephemeral one, so grants for peers (accept,
    /// udp-recv) cover every port of the peer's address.
    pub fn for_denial(action: Action, target: &Target) -> Option<Remedy> {
        // The ephemeral bind before outgoing traffic is granted by a grant
        // for the traffic, which this denial cannot name.
        if let (Action::Bind | Action::UdpBind, Target::Addr(a)) = (action, target)
            && a.port() == 0
            && a.ip().is_unspecified()
        {
            return None;
        }
        let rights = Rights::for_action(action);
        let (target, ports) = match target {
            Target::Addr(a) => {
                let ports = match action {
                    Action::Accept | Action::UdpRecv => Ports::ANY,
                    _ => Ports::one(a.port()),
                };
                (RuleTarget::Net(crate::Cidr::host(a.ip())), ports)
            }
            Target::Name { host, port } => {
                let target = match crate::ip_literal(host) {
                    Some(ip) => RuleTarget::Net(crate::Cidr::host(ip)),
                    None => RuleTarget::Name(host.parse().ok()?),
                };
                (target, port.map_or(Ports::ANY, Ports::one))
            }
        };
        Some(Remedy {
            rights,
            target,
            ports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_and_measured() {
        let long = "a".repeat(1_000_000);
        let s = shorten(&long);
        assert!(s.len() < MAX_SHOWN + 32, "{}", s.len());
        assert!(s.ends_with("… (1000000 bytes)"), "{s}");
        assert_eq!(shorten("short"), "short");
        // Never cut inside a character.
        let wide = "é".repeat(200);
        assert!(shorten(&wide).starts_with("éé"));
    }

    #[test]
    fn remedies_are_grants_a_rule_can_express() {
        let t = |s: &str| Target::Addr(s.parse().unwrap());
        let r = Remedy::for_denial(Action::Accept, &t("127.0.0.2:41000")).unwrap();
        assert_eq!(
            (r.target.to_string(), r.ports),
            ("127.0.0.2/32".into(), Ports::ANY)
        );
        let r = Remedy::for_denial(Action::Connect, &t("[::1]:80")).unwrap();
        assert_eq!(format!("{}:{}", r.target, r.ports), "[::1/128]:80");
        let name = |h: &str| Target::Name {
            host: h.into(),
            port: None,
        };
        assert!(Remedy::for_denial(Action::Resolve, &name("a*b.example.com")).is_none());
        assert!(Remedy::for_denial(Action::Resolve, &name("api.example.com")).is_some());
    }
}
