//! Warden's per-instance network context: the gate, and the sockets.
//!
//! Every network action a guest attempts (a socket bind or connect, a name
//! lookup, an outgoing HTTP request), whatever ABI it arrives through, is
//! decided by one function: [`Gate::decide`]. The gate asks the instance's
//! [`Policy`] and tells the operator about each kind of denial once on
//! stderr, naming the rule that decided it, so that a refused guest is never
//! a mystery. The ABI layers in `warden-wasi` only translate; they hold no
//! policy of their own.
//!
//! [`sockets`] holds the host side of the sockets Warden gives guests
//! (listeners it binds for them, the connections accepted on them), with no
//! ABI in it, so preview1 today and wasi:sockets later share one machinery.

pub mod sockets;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use warden_policy::{Action, Decision, Policy, Target, Transports, Verdict};

/// Where the gate reports denials for the operator.
pub type Reporter = Box<dyn Fn(&str) + Send + Sync>;

/// The single chokepoint for one guest instance's network actions.
pub struct Gate {
    policy: Policy,
    /// (action, target) pairs already reported, so each is said once.
    reported: Mutex<HashSet<(Action, Target)>>,
    reporter: Reporter,
}

impl Gate {
    /// A gate over `policy` that reports denials to stderr.
    pub fn new(policy: Policy) -> Arc<Self> {
        Self::with_reporter(policy, Box::new(|line| eprintln!("{line}")))
    }

    /// A gate over `policy` that reports denials through `reporter`.
    pub fn with_reporter(policy: Policy, reporter: Reporter) -> Arc<Self> {
        Arc::new(Self {
            policy,
            reported: Mutex::new(HashSet::new()),
            reporter,
        })
    }

    /// Which transports the policy could ever allow; the rest stay switched
    /// off in the runtime.
    pub fn transports(&self) -> Transports {
        self.policy.transports()
    }

    /// Decide one action. Every ABI calls this and nothing else.
    pub fn decide(&self, action: Action, target: Target) -> Decision {
        let decision = self.policy.decide(action, &target);
        if !decision.is_allowed() {
            self.report_once(action, target, &decision);
        }
        decision
    }

    /// Decide a socket action on an address.
    pub fn allows_addr(&self, action: Action, addr: SocketAddr) -> bool {
        self.decide(action, Target::Addr(addr)).is_allowed()
    }

    fn report_once(&self, action: Action, target: Target, decision: &Decision) {
        let line = format!(
            "warden: denied {action} {target} (rule {}): {}",
            decision.rule, decision.reason
        );
        // A poisoned set only means another thread panicked mid-insert; the
        // set itself is still a valid set, so keep using it.
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if reported.insert((action, target)) {
            drop(reported);
            (self.reporter)(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording_gate() -> (Arc<Gate>, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let gate = Gate::with_reporter(
            Policy::deny_all(),
            Box::new(move |l| sink.lock().unwrap().push(l.to_string())),
        );
        (gate, lines)
    }

    #[test]
    fn empty_policy_gate_denies_and_reports_each_denial_once() {
        let (gate, lines) = recording_gate();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(!gate.allows_addr(Action::Connect, addr));
        assert!(!gate.allows_addr(Action::Connect, addr));
        assert!(!gate.allows_addr(Action::Bind, addr));
        let http = gate.decide(
            Action::HttpRequest,
            Target::Name {
                host: "example.com".into(),
                port: Some(80),
            },
        );
        assert_eq!(http.verdict, Verdict::Deny);
        let lines = lines.lock().unwrap();
        assert_eq!(
            *lines,
            [
                "warden: denied connect 127.0.0.1:9 (rule default-deny): no grant allows connect to 127.0.0.1:9; network access is denied by default",
                "warden: denied bind 127.0.0.1:9 (rule default-deny): no grant allows bind to 127.0.0.1:9; network access is denied by default",
                "warden: denied http-request example.com:80 (rule default-deny): no grant allows http-request to example.com:80; network access is denied by default",
            ]
        );
    }

    #[test]
    fn empty_policy_switches_every_transport_off() {
        let (gate, _) = recording_gate();
        assert_eq!(gate.transports(), Transports::default());
    }
}
