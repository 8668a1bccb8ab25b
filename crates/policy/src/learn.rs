//! `warden learn`: the smallest manifest that allows what an audit log
//! shows and nothing more. Pure: the binary reads the log into [`Seen`]
//! records; this turns them into grants and prints them.
//!
//! - One grant per target and port seen, with exactly the rights used
//!   there. The target is the name the guest used where the traffic went
//!   through a name (a lookup, an HTTP request to a host, a connection to
//!   an address the guest resolved from a name: the audit record's
//!   `via`), and the address otherwise.
//! - A name grant whose traffic reached an internal address (loopback,
//!   private, ...) is marked `internal = true`, or it would not reach it.
//! - Ports are exact, except an accepted peer's, which is ephemeral:
//!   `accept` grants take every port of the peer's address.
//! - Names are kept exact; only when [`COLLAPSE_AT`] or more names differ
//!   in their first label alone (with the same ports, rights and
//!   internal mark) do they become one `*.parent` pattern, never wider
//!   than that one label.
//! - What a pre-opened listener's own grant decided becomes that
//!   `[[listen]]` (by its rule id), not an `[[allow]]`.
//! - Each grant carries, as a comment, how many decisions it stands for.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::{Action, Rights};

/// How many names differing in their first label alone become one
/// `*.parent` pattern.
pub const COLLAPSE_AT: usize = 8;

/// One decision from an audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// What was decided.
    pub action: Action,
    /// The host name the action named (a lookup, an HTTP request), if any.
    pub name: Option<String>,
    /// The port of a named target, if it had one.
    pub port: Option<u16>,
    /// The address the action was aimed at, if it was an address.
    pub addr: Option<SocketAddr>,
    /// The names the address was resolved from (`via`).
    pub via: Vec<String>,
    /// The rule that decided (a pre-opened listener's grant is named for
    /// its flag or entry: `--listen ...`, `listen NAME=ADDR`).
    pub rule: String,
    /// How many decisions the record stands for.
    pub count: u64,
}

/// A learned grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// An address, a name or a `*.parent` pattern.
    pub target: String,
    /// `None`: a lookup grant (no ports); otherwise exact or `*`.
    pub ports: Option<String>,
    /// The rights used.
    pub rights: Rights,
    /// Whether its names reached internal addresses.
    pub internal: bool,
    /// The decisions it stands for.
    pub count: u64,
}

/// A learned manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    /// Pre-opened listeners, as their flags or entries named them.
    pub listen: Vec<Listener>,
    /// Grants, in a stable order (by target, then ports).
    pub grants: Vec<Grant>,
    /// Decisions read.
    pub decisions: u64,
}

/// A learned `[[listen]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its name, if the operator gave one.
    pub name: Option<String>,
    /// Its address (`IP:PORT`, `fd:N`).
    pub addr: String,
    /// Whether TLS was terminated on it (its certificate is not learned).
    pub tls: bool,
}

/// The listener a pre-opened listener's rule id names, if it is one.
fn listener(rule: &str) -> Option<Listener> {
    let (tls, spec) = if let Some(s) = rule.strip_prefix("--listen-tls ") {
        (true, s)
    } else if let Some(s) = rule.strip_prefix("--listen ") {
        (false, s)
    } else if let Some(s) = rule.strip_prefix("listen ") {
        (false, s)
    } else {
        return None;
    };
    let (name, addr) = match spec.split_once('=') {
        Some((n, a)) => (Some(n.to_string()), a.to_string()),
        None => (None, spec.to_string()),
    };
    Some(Listener { name, addr, tls })
}

/// The grants that allow everything in `seen`.
pub fn learn(seen: &[Seen]) -> Learned {
    let mut listen: Vec<Listener> = Vec::new();
    // (target, ports) -> (rights, internal, count)
    let mut grants: BTreeMap<(String, Option<String>), (Rights, bool, u64)> = BTreeMap::new();
    let mut decisions = 0;
    for s in seen {
        decisions += s.count;
        if let Some(l) = listener(&s.rule) {
            if !listen.contains(&l) {
                listen.push(l);
            }
            continue;
        }
        let right = Rights::for_action(s.action);
        let (target, ports, internal) = match (&s.addr, &s.name) {
            (Some(addr), _) => {
                let ip = crate::canonical_ip(addr.ip());
                let ports = if s.action == Action::Accept {
                    "*".to_string()
                } else {
                    addr.port().to_string()
                };
                match s.via.first() {
                    Some(name) if s.action.follows_pins() => (
                        name.clone(),
                        Some(ports),
                        crate::internal_range(ip).is_some(),
                    ),
                    _ => (ip.to_string(), Some(ports), false),
                }
            }
            (None, Some(name)) if s.action == Action::Resolve => (name.clone(), None, false),
            (None, Some(name)) => (name.clone(), s.port.map(|p| p.to_string()), false),
            (None, None) => continue,
        };
        let entry = grants
            .entry((target, ports))
            .or_insert((Rights::NONE, false, 0));
        entry.0 = entry.0 | right;
        entry.1 |= internal;
        entry.2 += s.count;
    }
    let mut list: Vec<Grant> = grants
        .into_iter()
        .map(|((target, ports), (rights, internal, count))| Grant {
            target,
            ports,
            rights,
            internal,
            count,
        })
        .collect();
    // A name lookup reached through an HTTP request or a connection on a
    // name that is internal needs no mark of its own: marks live on the
    // traffic's grants. Now collapse long runs of sibling names.
    list = collapse(list);
    Learned {
        listen,
        grants: list,
        decisions,
    }
}

/// Names that differ in their first label alone, when there are
/// [`COLLAPSE_AT`] or more of them with the same ports, rights and mark,
/// become one `*.parent` grant.
fn collapse(grants: Vec<Grant>) -> Vec<Grant> {
    let parent = |g: &Grant| -> Option<String> {
        if crate::ip_literal(&g.target).is_some() || g.target.starts_with("*.") {
            return None;
        }
        let (_, rest) = g.target.split_once('.')?;
        // Never a pattern over a top-level domain alone.
        rest.contains('.').then(|| rest.to_string())
    };
    let mut groups: BTreeMap<(String, Option<String>, String, bool), Vec<usize>> = BTreeMap::new();
    for (i, g) in grants.iter().enumerate() {
        if let Some(p) = parent(g) {
            groups
                .entry((p, g.ports.clone(), g.rights.to_string(), g.internal))
                .or_default()
                .push(i);
        }
    }
    let mut gone = vec![false; grants.len()];
    let mut out = Vec::new();
    for ((p, ports, _, internal), members) in groups {
        if members.len() < COLLAPSE_AT {
            continue;
        }
        for &i in &members {
            gone[i] = true;
        }
        out.push(Grant {
            target: format!("*.{p}"),
            ports,
            rights: grants[members[0]].rights,
            internal,
            count: members.iter().map(|&i| grants[i].count).sum(),
        });
    }
    out.extend(
        grants
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !gone[*i])
            .map(|(_, g)| g),
    );
    out.sort_by(|a, b| (&a.target, &a.ports).cmp(&(&b.target, &b.ports)));
    out
}

fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04x}", u32::from(c));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

impl Learned {
    /// The manifest, as TOML a run reads (`origin` names the log in its
    /// first comment).
    pub fn to_toml(&self, origin: &str) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# Learned by `warden learn` from {origin}: {} decisions.\n# Every grant is what the program did; review it before you use it.\nversion = 1",
            self.decisions
        );
        for l in &self.listen {
            t.push_str("\n[[listen]]\n");
            if let Some(n) = &l.name {
                let _ = writeln!(t, "name = {}", quote(n));
            }
            let _ = writeln!(t, "addr = {}", quote(&l.addr));
            if l.tls {
                t.push_str("# TLS was terminated here: add cert = \"...\" and key = \"...\"\n");
            }
        }
        for (i, g) in self.grants.iter().enumerate() {
            let _ = writeln!(
                t,
                "\n# {} decision{}",
                g.count,
                if g.count == 1 { "" } else { "s" }
            );
            let _ = writeln!(t, "[[allow]]\nid = \"learned-{}\"", i + 1);
            let _ = writeln!(t, "target = {}", quote(&g.target));
            if let Some(p) = &g.ports {
                let _ = writeln!(t, "ports = {}", quote(p));
            }
            let rights: Vec<String> = g.rights.names().map(quote).collect();
            let _ = writeln!(t, "rights = [{}]", rights.join(", "));
            if g.internal {
                t.push_str("internal = true\n");
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seen(
        action: Action,
        addr: Option<&str>,
        name: Option<&str>,
        via: &[&str],
        rule: &str,
    ) -> Seen {
        Seen {
            action,
            name: name.map(str::to_string),
            port: None,
            addr: addr.map(|a| a.parse().unwrap()),
            via: via.iter().map(|s| s.to_string()).collect(),
            rule: rule.to_string(),
            count: 1,
        }
    }

    #[test]
    fn one_grant_per_target_and_port_with_the_rights_used() {
        let mut http = seen(
            Action::HttpRequest,
            None,
            Some("api.test"),
            &[],
            "default-deny",
        );
        http.port = Some(8080);
        let l = learn(&[
            seen(Action::Resolve, None, Some("db.test"), &[], "default-deny"),
            seen(
                Action::Connect,
                Some("127.0.0.1:5432"),
                None,
                &["db.test"],
                "default-deny",
            ),
            seen(
                Action::Connect,
                Some("127.0.0.1:5432"),
                None,
                &["db.test"],
                "default-deny",
            ),
            seen(
                Action::Connect,
                Some("10.9.8.7:22"),
                None,
                &[],
                "default-deny",
            ),
            seen(
                Action::Accept,
                Some("127.0.0.1:53124"),
                None,
                &[],
                "default-deny",
            ),
            seen(
                Action::Bind,
                Some("127.0.0.1:7000"),
                None,
                &[],
                "default-deny",
            ),
            seen(
                Action::Listen,
                Some("127.0.0.1:7000"),
                None,
                &[],
                "default-deny",
            ),
            seen(
                Action::Accept,
                Some("127.0.0.1:40000"),
                None,
                &[],
                "--listen http=127.0.0.1:0",
            ),
            http,
        ]);
        assert_eq!(
            l.listen,
            vec![Listener {
                name: Some("http".into()),
                addr: "127.0.0.1:0".into(),
                tls: false
            }]
        );
        let shown: Vec<(String, Option<String>, String, bool, u64)> = l
            .grants
            .iter()
            .map(|g| {
                (
                    g.target.clone(),
                    g.ports.clone(),
                    g.rights.to_string(),
                    g.internal,
                    g.count,
                )
            })
            .collect();
        let s = |t: &str| t.to_string();
        assert_eq!(
            shown,
            vec![
                (s("10.9.8.7"), Some(s("22")), s("connect"), false, 1),
                (s("127.0.0.1"), Some(s("*")), s("accept"), false, 1),
                (s("127.0.0.1"), Some(s("7000")), s("bind,listen"), false, 2),
                (s("api.test"), Some(s("8080")), s("connect"), false, 1),
                (s("db.test"), None, s("resolve"), false, 1),
                (s("db.test"), Some(s("5432")), s("connect"), true, 2),
            ]
        );
        assert_eq!(l.decisions, 9);
        let toml = l.to_toml("a.jsonl");
        let m = crate::manifest::parse(&toml, "learned").unwrap();
        assert_eq!(m.rules.len(), 6);
        assert_eq!(m.listen.len(), 1);
    }

    #[test]
    fn many_sibling_names_become_one_pattern_of_one_label_and_few_stay_exact() {
        let names: Vec<String> = (0..COLLAPSE_AT).map(|i| format!("n{i}.cdn.test")).collect();
        let many: Vec<Seen> = names
            .iter()
            .map(|n| seen(Action::Resolve, None, Some(n), &[], "default-deny"))
            .collect();
        let l = learn(&many);
        assert_eq!(l.grants.len(), 1);
        assert_eq!(l.grants[0].target, "*.cdn.test");
        assert_eq!(l.grants[0].count, COLLAPSE_AT as u64);
        let few = learn(&many[..COLLAPSE_AT - 1]);
        assert_eq!(few.grants.len(), COLLAPSE_AT - 1);
        // Never a pattern over a top-level domain.
        let tld: Vec<Seen> = (0..COLLAPSE_AT)
            .map(|i| {
                seen(
                    Action::Resolve,
                    None,
                    Some(&format!("n{i}.test")),
                    &[],
                    "default-deny",
                )
            })
            .collect();
        assert_eq!(learn(&tld).grants.len(), COLLAPSE_AT);
    }

    proptest! {
        /// What was learned allows every decision it was learned from,
        /// and the policy made without any one grant denies something.
        #[test]
        fn the_learned_policy_allows_what_was_seen_and_each_grant_is_needed(
            picks in proptest::collection::vec((0usize..5, 1u8..4, 1u16..4), 1..12)
        ) {
            let actions = [Action::Connect, Action::UdpSend, Action::Bind, Action::Listen, Action::UdpBind];
            let all: Vec<Seen> = picks
                .iter()
                .map(|&(a, host, port)| {
                    let addr = format!("10.0.0.{host}:{}", 1000 + port);
                    seen(actions[a], Some(&addr), None, &[], "default-deny")
                })
                .collect();
            let l = learn(&all);
            let policy = |skip: Option<usize>| {
                let text = Learned {
                    grants: l.grants.iter().enumerate().filter(|(i, _)| Some(*i) != skip).map(|(_, g)| g.clone()).collect(),
                    ..l.clone()
                }
                .to_toml("p");
                crate::manifest::parse(&text, "p").unwrap().policy().unwrap()
            };
            let full = policy(None);
            let decide = |p: &crate::Policy, s: &Seen| {
                p.decide(s.action, &crate::Target::Addr(s.addr.unwrap())).is_allowed()
            };
            for s in &all {
                prop_assert!(decide(&full, s));
            }
            for i in 0..l.grants.len() {
                let less = policy(Some(i));
                prop_assert!(all.iter().any(|s| !decide(&less, s)), "grant {} is not needed", i);
            }
        }
    }
}
