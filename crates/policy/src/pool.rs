//! Address pools: capabilities a guest holds as descriptors (the design of
//! WASI PR #312's preview1 socket API). A pool names what sockets opened
//! from it may do: targets (address blocks or names), ports, rights.
//!
//! A pool never widens the instance's policy: a socket opened from a pool
//! may do an action only when the policy allows it **and** the pool does
//! ([`Pool::confine`]). A pool's refusal is a decision like a deny rule's,
//! quoted as `pool:NAME`, so it is audited and reported with no grant
//! suggested (widening the policy would not help).
//!
//! A pool can be narrowed ([`Pool::narrow`]): the narrower pool keeps the
//! one it came from, and an action must pass both, so handing a narrowed
//! pool on never hands on more than the original.

use std::fmt;
use std::sync::Arc;

use crate::decision::{Quoted, Shown, Why};
use crate::{Action, Decision, Known, Policy, Ports, Rights, Rule, RuleTarget, Target};

/// An address pool: a name and what it allows.
#[derive(Debug, Clone)]
pub struct Pool {
    name: String,
    policy: Policy,
    quoted: Arc<Quoted>,
    /// The pool this one was narrowed from, which confines it too.
    within: Option<Arc<Pool>>,
    /// How many pools confine it (1 for an original).
    depth: usize,
}

/// The most pools one can be narrowed through: each decision passes them
/// all, so a guest may not stack them without end.
pub const MAX_NARROWING: usize = 8;

/// Why a pool could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The name is empty or has characters other than letters, digits,
    /// `-`, `_` and `.`.
    #[error("`{0}` is not a pool name (letters, digits, `-`, `_` and `.`)")]
    BadName(String),
    /// No rights, or no targets.
    #[error("pool `{0}` grants nothing: it needs at least one right and one target")]
    Empty(String),
    /// Unreadable text.
    #[error("{0}")]
    Syntax(String),
    /// Narrowed more than [`MAX_NARROWING`] times.
    #[error("pool `{0}` is narrowed {MAX_NARROWING} times already")]
    TooDeep(String),
}

impl Pool {
    /// A pool called `name` granting `rights` on each of `targets`.
    pub fn new(
        name: &str,
        rights: Rights,
        targets: impl IntoIterator<Item = (RuleTarget, Ports)>,
    ) -> Result<Pool, PoolError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(PoolError::BadName(crate::shorten(name).into_owned()));
        }
        let id = format!("pool:{name}");
        let rules: Vec<Rule> = targets
            .into_iter()
            .map(|(t, p)| Rule::allow(&id, t, p, rights))
            .collect();
        if rights.is_empty() || rules.is_empty() {
            return Err(PoolError::Empty(name.to_string()));
        }
        let text = format!(
            "pool {name}: {} on {}",
            rights.names().collect::<Vec<_>>().join("+"),
            rules
                .iter()
                .map(|r| format!("{}:{}", r.target, r.ports))
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(Pool {
            name: name.to_string(),
            policy: Policy::new(rules),
            quoted: Arc::new(Quoted {
                id: id.into(),
                text: text.into(),
                kind: None,
            }),
            within: None,
            depth: 1,
        })
    }

    /// `narrower` confined to `self` as well: it allows an action only
    /// when both do, so it never allows more than `self`.
    pub fn narrow(self: &Arc<Pool>, mut narrower: Pool) -> Result<Pool, PoolError> {
        if self.depth >= MAX_NARROWING {
            return Err(PoolError::TooDeep(self.name.clone()));
        }
        narrower.depth = self.depth + 1;
        narrower.within = Some(self.clone());
        Ok(narrower)
    }

    /// The pool it was narrowed from, if any.
    pub fn within(&self) -> Option<&Arc<Pool>> {
        self.within.as_ref()
    }

    /// Parse `NAME=RIGHT[+RIGHT...]@TARGET:PORTS[,TARGET:PORTS...]`, for
    /// example `db=connect@127.0.0.1:5432` or
    /// `lan=connect+udp-send@10.0.0.0/8:*,*.lan:443`.
    pub fn parse(spec: &str) -> Result<Pool, PoolError> {
        let syntax = |why: String| PoolError::Syntax(format!("`{spec}`: {why}"));
        let (name, rest) = spec.split_once('=').ok_or_else(|| {
            syntax("expected NAME=RIGHTS@TARGETS, for example db=connect@127.0.0.1:5432".into())
        })?;
        let (rights_text, targets_text) = rest.split_once('@').ok_or_else(|| {
            syntax("expected RIGHTS@TARGETS after the name, for example connect+resolve@db.internal:5432".into())
        })?;
        let mut rights = Rights::NONE;
        for r in rights_text.split('+') {
            rights = rights
                | Rights::from_name(r.trim()).ok_or_else(|| {
                    syntax(format!(
                        "unknown right `{r}`; expected one of {}",
                        Rights::all_names()
                    ))
                })?;
        }
        let mut targets = Vec::new();
        for t in targets_text.split(',') {
            targets.push(crate::parse_target_ports(t.trim()).map_err(PoolError::Syntax)?);
        }
        Pool::new(name, rights, targets)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the pool grants, in words.
    pub fn text(&self) -> &str {
        &self.quoted.text
    }

    /// Confine `decision` (the instance policy's on `action` and `target`)
    /// to the pool: an allowed action the pool does not also allow is
    /// denied, quoting the pool. Denials stand as they are.
    pub fn confine(
        &self,
        action: Action,
        target: &Target,
        known: &Known<'_>,
        decision: Decision,
    ) -> Decision {
        // The outer pools first: a refusal names the widest pool that
        // refuses.
        let decision = match &self.within {
            Some(outer) => outer.confine(action, target, known, decision),
            None => decision,
        };
        if !decision.is_allowed() || self.policy.decide_known(action, target, known).is_allowed() {
            return decision;
        }
        Decision::deny(
            &self.quoted,
            Why::OutsidePool {
                action,
                shown: Shown::of(target),
            },
            None,
        )
    }
}

impl PartialEq for Pool {
    fn eq(&self, other: &Pool) -> bool {
        self.name == other.name && self.quoted == other.quoted && self.within == other.within
    }
}

impl Eq for Pool {}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Target {
        Target::Addr(s.parse().unwrap())
    }

    /// A policy allowing connect and bind anywhere in 127.0.0.0/8.
    fn wide() -> Policy {
        Policy::new([Rule::allow(
            "wide",
            "127.0.0.0/8".parse().unwrap(),
            Ports::ANY,
            Rights::CONNECT | Rights::BIND,
        )])
    }

    #[test]
    fn a_pool_narrows_and_never_widens() {
        let pool = Pool::parse("db=connect@127.0.0.1:5432").unwrap();
        let wide = wide();
        let known = Known::default();
        let decide = |p: &Policy, a: Action, t: &Target| {
            pool.confine(a, t, &known, p.decide_known(a, t, &known))
        };
        assert!(decide(&wide, Action::Connect, &addr("127.0.0.1:5432")).is_allowed());
        // The policy allows it; the pool does not.
        let d = decide(&wide, Action::Connect, &addr("127.0.0.1:5433"));
        assert!(!d.is_allowed());
        assert_eq!(d.rule(), "pool:db");
        assert!(
            d.by_deny_rule(),
            "no grant is suggested for a pool's refusal"
        );
        assert!(d.reason().to_string().contains("pool db"), "{}", d.reason());
        let d = decide(&wide, Action::Bind, &addr("127.0.0.1:5432"));
        assert_eq!(d.rule(), "pool:db");
        // The pool allows it; the policy does not.
        let narrow = Policy::deny_all();
        let d = decide(&narrow, Action::Connect, &addr("127.0.0.1:5432"));
        assert!(!d.is_allowed());
        assert_eq!(d.rule(), crate::DEFAULT_DENY);
        // Mapped IPv4 is its IPv4 address.
        assert!(decide(&wide, Action::Connect, &addr("[::ffff:127.0.0.1]:5432")).is_allowed());
        assert!(!decide(&wide, Action::Connect, &addr("[::ffff:127.0.0.2]:5432")).is_allowed());
    }

    #[test]
    fn a_narrowed_pool_allows_only_what_both_allow() {
        let wide = wide();
        let known = Known::default();
        let outer = Arc::new(Pool::parse("db=connect@127.0.0.0/24:5000-5999").unwrap());
        // Narrower in ports, but asks for a wider block and another right.
        let inner = outer
            .narrow(Pool::parse("one=connect+bind@127.0.0.0/8:5432").unwrap())
            .unwrap();
        assert_eq!(inner.within().map(|p| p.name()), Some("db"));
        let decide =
            |a: Action, t: &Target| inner.confine(a, t, &known, wide.decide_known(a, t, &known));
        assert!(decide(Action::Connect, &addr("127.0.0.1:5432")).is_allowed());
        // Inside the outer pool, outside the narrowed one.
        assert_eq!(
            decide(Action::Connect, &addr("127.0.0.1:5433")).rule(),
            "pool:one"
        );
        // Inside the narrowed one, outside the outer: never wider.
        assert_eq!(
            decide(Action::Connect, &addr("127.0.1.1:5432")).rule(),
            "pool:db"
        );
        assert_eq!(
            decide(Action::Bind, &addr("127.0.0.1:5432")).rule(),
            "pool:db"
        );
        // Stacking is bounded.
        let mut p = outer;
        for _ in 1..MAX_NARROWING {
            p = Arc::new(
                p.narrow(Pool::parse("n=connect@127.0.0.1:*").unwrap())
                    .unwrap(),
            );
        }
        let e = p.narrow(Pool::parse("n=connect@127.0.0.1:*").unwrap());
        assert!(matches!(e, Err(PoolError::TooDeep(_))), "{e:?}");
    }

    #[test]
    fn specs_are_checked() {
        let p = Pool::parse("lan=connect+udp-send@10.0.0.0/8:*,*.lan:443").unwrap();
        assert_eq!(p.name(), "lan");
        assert_eq!(
            p.text(),
            "pool lan: connect+udp-send on 10.0.0.0/8:*,*.lan:443"
        );
        for (bad, says) in [
            ("db", "expected NAME=RIGHTS@TARGETS"),
            ("db=connect", "expected RIGHTS@TARGETS"),
            ("db=fly@1.2.3.4:1", "unknown right `fly`"),
            ("db=connect@1.2.3.4", "expected TARGET:PORTS"),
            ("d b=connect@1.2.3.4:1", "is not a pool name"),
            ("=connect@1.2.3.4:1", "is not a pool name"),
        ] {
            let e = Pool::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
