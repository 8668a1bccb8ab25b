//! Warden's policy: pure data and decisions.
//!
//! This crate answers one question: *may this guest do this network action to
//! this target?* It holds no sockets, performs no I/O and knows nothing of
//! wasmtime; the gate in `warden-net` asks it and enforces the answer.
//!
//! A [`Policy`] starts empty, and the empty policy denies everything: a guest
//! gets no network authority unless the operator grants it. Every
//! [`Decision`] names the rule that decided it and a human-readable reason, so
//! that denials can be explained and audited.

use std::fmt;
use std::net::SocketAddr;

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

/// The answer to one question, with the rule that gave it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// The id of the rule that decided ([`DEFAULT_DENY`] when none matched).
    pub rule: String,
    /// Why, in words an operator can act on.
    pub reason: String,
}

impl Decision {
    /// Whether the action may proceed.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
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
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Policy {}

impl Policy {
    /// The empty policy, which denies every action.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// Decide whether `action` on `target` is allowed.
    pub fn decide(&self, action: Action, target: &Target) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            rule: DEFAULT_DENY.to_string(),
            reason: format!(
                "no grant allows {action} to {target}; network access is denied by default"
            ),
        }
    }

    /// Which transports any grant of this policy could use.
    pub fn transports(&self) -> Transports {
        Transports::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: [Action; 9] = [
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
}
