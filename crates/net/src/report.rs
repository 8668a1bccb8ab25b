//! What the gate tells the operator, as data.
//!
//! The gate reports each kind of denial once, through a [`Reporter`] the
//! embedder provides; the `warden` binary words a [`Notice`] (and the
//! [`Remedy`] it carries) as the flag that would allow the action, while
//! this library knows no flag names and writes no line itself (the gate's
//! default reporter is [`silent`]). [`plain`] words a notice without flags,
//! for an embedder that has none to name.
//!
//! Reports are bounded twice over: [`MAX_REPORTED`] different denials of
//! what the guest itself tried (keyed by action and target), and
//! [`MAX_REMOTE_REPORTED`] of what remote peers did (accepts and received
//! datagrams, keyed by action and the peer's address without its port), so
//! that neither a guest sweeping ports nor peers connecting from many
//! ports can flood stderr, grow the sets, or hide the other's denials.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use warden_policy::{Action, Decision, Remedy, Target};

/// How many different denials of the guest's own actions are reported.
pub const MAX_REPORTED: usize = 1024;

/// How many different denied peers (accepts, received datagrams) are
/// reported.
pub const MAX_REMOTE_REPORTED: usize = 256;

/// Something the operator should hear about once.
#[derive(Debug)]
#[non_exhaustive]
pub enum Notice<'a> {
    /// An action was refused (said once per kind, see the module docs).
    Denied {
        /// What was tried.
        action: Action,
        /// On what.
        target: &'a Target,
        /// The decision, with its rule and reason.
        decision: &'a Decision,
        /// The grant that would allow it, when the default refused it and
        /// a rule can express one.
        remedy: Option<Remedy>,
    },
    /// A TLS handshake (or its preamble) failed: an outgoing connection
    /// the guest made (it sees its connect refused) or one a peer made to
    /// a TLS listener (closed before the guest saw it). Said once per
    /// destination, or per peer address.
    Tls {
        /// `connect` (outgoing) or `accept` (incoming).
        action: Action,
        /// The peer.
        peer: std::net::SocketAddr,
        /// What happened.
        outcome: &'a crate::tls::Handshake,
    },
    /// A kind's connection cap refused an outgoing connection. Said once
    /// per kind.
    Cap {
        /// The kind.
        kind: &'a str,
        /// Its `max_connections`.
        max: u32,
        /// Where the refused connection was going.
        target: &'a Target,
    },
    /// A quota refused a socket or connection (an outgoing connection to
    /// `target`, a peer accepted from `target`, a UDP socket). Said once
    /// per quota.
    Quota {
        /// Which.
        quota: crate::quota::Quota,
        /// Its bound.
        max: u32,
        /// Whose bound it is.
        scope: crate::quota::Scope,
        /// What the refused one was to (or from).
        target: &'a Target,
    },
    /// An outgoing HTTP request whose authority carries userinfo
    /// (`user@host`) was refused: only `host[:port]` may name the
    /// destination. Said once per authority.
    Userinfo {
        /// The authority, as the guest wrote it (shortened).
        authority: &'a str,
    },
    /// The budget of reports is spent; further denials of this kind go
    /// only to the audit log.
    Quiet {
        /// Whether it is the budget for remote peers' actions.
        remote: bool,
        /// How many were reported.
        budget: usize,
    },
}

/// Where the gate's notices go.
pub type Reporter = Arc<dyn Fn(&Notice<'_>) + Send + Sync>;

/// A reporter that tells nobody: the gate's default, since a library
/// writes no line of its own (the audit log, when there is one, still
/// records every decision). The embedder says where notices go.
pub fn silent() -> Reporter {
    Arc::new(|_| {})
}

/// A notice in words, without flags.
pub fn plain(n: &Notice<'_>) -> String {
    match n {
        Notice::Denied {
            action,
            target,
            decision,
            remedy,
        } => {
            let mut line = denied_line(*action, target, decision);
            if let Some(r) = remedy {
                line.push_str(&format!(
                    "; to allow it, grant {} on {}:{}",
                    r.rights, r.target, r.ports
                ));
            }
            line
        }
        Notice::Quiet { remote, budget } => quiet_line(*remote, *budget),
        Notice::Tls {
            action,
            peer,
            outcome,
        } => tls_line(*action, *peer, outcome),
        Notice::Userinfo { authority } => format!(
            "warden: refused an outgoing HTTP request whose authority carries userinfo ({authority}): only host[:port] may name the destination"
        ),
        Notice::Quota {
            quota,
            max,
            scope,
            target,
        } => quota_line(*quota, *max, *scope, target, quota.key()),
        Notice::Cap { kind, max, target } => format!(
            "warden: refused a connection to {target}: kind {kind} allows {max} connections open at once (max_connections), and that many are open"
        ),
    }
}

/// `warden: refused ...: N ... open at once (HOW_TO_RAISE)`: a quota's
/// notice, with `raise` naming how the operator raises it (a manifest key
/// here, a flag in the binary).
pub fn quota_line(
    quota: crate::quota::Quota,
    max: u32,
    scope: crate::quota::Scope,
    target: &Target,
    raise: &str,
) -> String {
    use crate::quota::{Quota, Scope};
    let what = match quota {
        Quota::ConnsOut => format!("a connection to {target}"),
        Quota::ConnsIn => format!("a connection from {target}: the peer was reset"),
        Quota::UdpSockets => "a UDP socket".to_string(),
    };
    let whose = match scope {
        Scope::Own => "the guest",
        Scope::Server => "all apps together",
    };
    format!(
        "warden: refused {what}: {whose} may hold {max} {} open at once ({raise}), and that many are open",
        quota.counts()
    )
}

/// `warden: TLS with ... failed: WHY; ...`.
pub fn tls_line(action: Action, peer: std::net::SocketAddr, o: &crate::tls::Handshake) -> String {
    let kind = o
        .kind
        .as_deref()
        .map(|k| format!(", kind {k}"))
        .unwrap_or_default();
    let why = o.failure.as_deref().unwrap_or("failed");
    match action {
        Action::Accept => format!(
            "warden: TLS handshake with client {peer}{kind} failed: {why}; the connection was closed before the guest saw it"
        ),
        _ => {
            let name = o
                .name
                .as_deref()
                .map(warden_policy::shorten)
                .unwrap_or_default();
            format!(
                "warden: TLS to {name} ({peer}{kind}) failed: {why}; the guest's connection was refused"
            )
        }
    }
}

/// `warden: denied ACTION TARGET (rule R): REASON`.
pub fn denied_line(action: Action, target: &Target, decision: &Decision) -> String {
    let shown = match target {
        Target::Name { host, port } => {
            let host = warden_policy::shorten(host);
            match port {
                Some(p) => format!("{host}:{p}"),
                None => host.into_owned(),
            }
        }
        Target::Addr(a) => a.to_string(),
    };
    let mut line = format!(
        "warden: denied {action} {shown} (rule {}): {}",
        decision.rule(),
        decision.reason()
    );
    if decision.rule().starts_with("pool:") {
        line.push_str("; widening the pool, not the grants, allows it");
    } else if decision.by_deny_rule() {
        line.push_str("; a deny rule wins over every grant");
    }
    line
}

/// The line said when a report budget is spent.
pub fn quiet_line(remote: bool, budget: usize) -> String {
    let whose = if remote {
        "peers (accepts and received datagrams)"
    } else {
        "the guest's actions"
    };
    format!(
        "warden: {budget} different denials of {whose} reported; further ones are not shown here (the audit log has every decision)"
    )
}

/// What a report is keyed by: remote peers by address alone (their ports
/// are their own ephemeral ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Guest(Action, Target),
    Remote(Action, IpAddr),
    /// Something other than a denial, said once: a TLS failure or a cap.
    Said(Action, String),
}

/// The two bounded sets of what was reported.
#[derive(Default)]
pub(crate) struct Reported {
    guest: Mutex<HashSet<Key>>,
    remote: Mutex<HashSet<Key>>,
}

impl Reported {
    /// Whether this denial should be reported: `None` when it was already
    /// or its budget is spent; `Some(true)` when it is the last one the
    /// budget allows (then say [`Notice::Quiet`] after it).
    pub(crate) fn first(&self, action: Action, target: &Target) -> Option<bool> {
        let (key, set, budget) = match (action, target) {
            (Action::Accept | Action::UdpRecv, Target::Addr(a)) => (
                Key::Remote(action, warden_policy::canonical_ip(a.ip())),
                &self.remote,
                MAX_REMOTE_REPORTED,
            ),
            // Keys hold at most a shortened name: a guest cannot grow the
            // set by megabytes.
            (_, Target::Name { host, port }) => (
                Key::Guest(
                    action,
                    Target::Name {
                        host: warden_policy::shorten(host).into_owned(),
                        port: *port,
                    },
                ),
                &self.guest,
                MAX_REPORTED,
            ),
            _ => (
                Key::Guest(action, target.clone()),
                &self.guest,
                MAX_REPORTED,
            ),
        };
        Self::insert(set, key, budget)
    }

    /// Whether a notice other than a denial should be said: once per
    /// `what` (a destination, a kind), on the guest's budget, or once per
    /// peer address on the remote one.
    pub(crate) fn first_said(&self, action: Action, what: Result<String, IpAddr>) -> Option<bool> {
        match what {
            Ok(what) => Self::insert(
                &self.guest,
                Key::Said(action, warden_policy::shorten(&what).into_owned()),
                MAX_REPORTED,
            ),
            Err(ip) => Self::insert(
                &self.remote,
                Key::Remote(action, warden_policy::canonical_ip(ip)),
                MAX_REMOTE_REPORTED,
            ),
        }
    }

    fn insert(set: &Mutex<HashSet<Key>>, key: Key, budget: usize) -> Option<bool> {
        let mut set = crate::sync::lock(set);
        if set.len() >= budget || set.contains(&key) {
            return None;
        }
        set.insert(key);
        Some(set.len() == budget)
    }
}
