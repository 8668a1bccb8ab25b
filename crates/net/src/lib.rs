//! Warden's per-instance network context: the gate, name resolution, the
//! audit log, and the sockets.
//!
//! Every network action a guest attempts (a socket bind, listen, accept or
//! connect, a UDP datagram, a name lookup, an outgoing HTTP request),
//! whatever ABI it arrives through, is decided by one function:
//! [`Gate::decide`]. The gate asks the instance's [`Policy`], with the names
//! the address was resolved from while those answers live (DNS pins, see
//! [`resolve`]), writes every decision to the [`audit`] log, and tells the
//! operator about each kind of denial once on stderr, naming the rule that
//! decided it and the flag that would allow it. The ABI layers in
//! `warden-wasi` only translate; they hold no policy of their own.
//!
//! Host-side network work for the guest also lives here, behind the gate:
//! [`Gate::resolve`] (a permitted lookup, pinned), [`Gate::connect`] (the
//! HTTP egress path: decide on the name, resolve once, connect only to the
//! checked addresses), and [`sockets`] (listeners Warden binds for guests and
//! the connections accepted on them, each accept decided by the gate).

pub mod audit;
pub mod resolve;
pub mod sockets;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use audit::{AuditDest, AuditLog, AuditSummary};
pub use resolve::{DnsConfig, LookupError};
pub use warden_policy::{Action, Decision, Policy, Target, Transports, Verdict};

use resolve::{Pins, Resolver};

/// Why [`Gate::resolve`] gave no addresses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The policy refused the lookup.
    #[error("resolving {} is denied by rule {}", .0.name.as_deref().unwrap_or("the name"), .0.rule)]
    Denied(Decision),
    /// The lookup was allowed and failed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

/// A lookup the gate has allowed, from [`Gate::permit_resolve`]; only the
/// gate makes these, so no lookup happens undecided.
#[derive(Debug)]
pub struct ResolvePermit(PermitKind);

#[derive(Debug)]
enum PermitKind {
    Literal(IpAddr),
    Name(String),
}

/// Why [`Gate::connect`] gave no connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The policy refused the request or every address the name has.
    #[error("denied by rule {}: {}", .0.rule, .0.reason)]
    Denied(Decision),
    /// The name did not resolve.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Every permitted address refused or failed.
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// The last address tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No permitted address answered in time.
    #[error("connecting timed out")]
    Timeout,
}

/// How many different denials stderr is told about, so that a guest trying
/// many targets cannot flood it (or grow the set) without bound.
pub const MAX_REPORTED: usize = 1024;

/// Where the gate reports denials for the operator.
pub type Reporter = Box<dyn Fn(&str) + Send + Sync>;

/// Builds a [`Gate`]. Defaults: denials reported on stderr, no audit log,
/// the system's DNS configuration.
pub struct GateBuilder {
    policy: Policy,
    reporter: Reporter,
    audit: Option<AuditLog>,
    dns: DnsConfig,
}

impl GateBuilder {
    /// Report denials through `reporter` instead of stderr.
    pub fn reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = reporter;
        self
    }

    /// Write every decision to `audit`.
    pub fn audit(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Resolve names with `dns`.
    pub fn dns(mut self, dns: DnsConfig) -> Self {
        self.dns = dns;
        self
    }

    /// The gate.
    pub fn build(self) -> Arc<Gate> {
        Arc::new(Gate {
            policy: self.policy,
            pins: Mutex::new(Pins::default()),
            reported: Mutex::new(HashSet::new()),
            reporter: self.reporter,
            audit: self.audit,
            resolver: Resolver::new(self.dns),
        })
    }
}

/// The single chokepoint for one guest instance's network actions.
pub struct Gate {
    policy: Policy,
    pins: Mutex<Pins>,
    /// (action, target) pairs already reported, so each is said once.
    reported: Mutex<HashSet<(Action, Target)>>,
    reporter: Reporter,
    audit: Option<AuditLog>,
    resolver: Resolver,
}

/// A poisoned lock only means another thread panicked while holding it;
/// the data (a set, a pin table) is still valid, so keep using it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gate {
    /// A gate over `policy` with the defaults of [`GateBuilder`].
    pub fn new(policy: Policy) -> Arc<Self> {
        Self::builder(policy).build()
    }

    /// A builder for a gate over `policy`.
    pub fn builder(policy: Policy) -> GateBuilder {
        GateBuilder {
            policy,
            reporter: Box::new(|line| eprintln!("{line}")),
            audit: None,
            dns: DnsConfig::System,
        }
    }

    /// Which transports the policy could ever allow; the rest stay switched
    /// off in the runtime.
    pub fn transports(&self) -> Transports {
        self.policy.transports()
    }

    /// Decide one action. Every ABI calls this and nothing else; every call
    /// is one audit record.
    pub fn decide(&self, action: Action, target: Target) -> Decision {
        // Only traffic to a peer can go through a pin; binds, listens and
        // accepts (a server's hot path) skip the pin table.
        let names = match &target {
            Target::Addr(addr) if action.follows_pins() => {
                lock(&self.pins).names_for(addr.ip(), Instant::now())
            }
            _ => Vec::new(),
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.decide_as(action, target, &names)
    }

    /// Decide with `pinned` as the names the target address was resolved
    /// from; audited and reported like every decision.
    fn decide_as(&self, action: Action, target: Target, pinned: &[&str]) -> Decision {
        let decision = self.policy.decide_pinned(action, &target, pinned);
        if let Some(audit) = &self.audit {
            audit.record(action, &target, &decision);
        }
        if !decision.is_allowed() {
            self.report_once(action, target, &decision);
        }
        decision
    }

    /// Decide a socket action on an address.
    pub fn allows_addr(&self, action: Action, addr: SocketAddr) -> bool {
        self.decide(action, Target::Addr(addr)).is_allowed()
    }

    /// Resolve `name` for the guest: [`Gate::permit_resolve`], then
    /// [`Gate::lookup`].
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let permit = self.permit_resolve(name)?;
        Ok(self.lookup(permit).await?)
    }

    /// Decide a lookup of `name` for the guest (`resolve`). An IP literal
    /// needs no decision: it resolves to itself and nothing leaves the host.
    pub fn permit_resolve(&self, name: &str) -> Result<ResolvePermit, ResolveError> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(ResolvePermit(PermitKind::Literal(ip)));
        }
        let decision = self.decide(
            Action::Resolve,
            Target::Name {
                host: name.to_string(),
                port: None,
            },
        );
        if !decision.is_allowed() {
            return Err(ResolveError::Denied(decision));
        }
        let name = decision.name.unwrap_or_else(|| name.to_string());
        Ok(ResolvePermit(PermitKind::Name(name)))
    }

    /// Carry out a permitted lookup; the answer is pinned to the name.
    pub async fn lookup(&self, permit: ResolvePermit) -> Result<Vec<IpAddr>, LookupError> {
        match permit.0 {
            PermitKind::Literal(ip) => Ok(vec![ip]),
            PermitKind::Name(name) => self.lookup_pinned(&name).await,
        }
    }

    /// The live pin for `name`, or a fresh lookup pinned. A lookup racing
    /// another one keeps the first answer: nothing widens a live pin.
    async fn lookup_pinned(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        if let Some(addrs) = lock(&self.pins).get(name, Instant::now()) {
            return Ok(addrs);
        }
        let (addrs, valid_until) = self.resolver.lookup(name).await?;
        let now = Instant::now();
        let mut pins = lock(&self.pins);
        if let Some(pinned) = pins.get(name, now) {
            return Ok(pinned);
        }
        pins.insert(name, addrs.clone(), valid_until, now);
        Ok(addrs)
    }

    /// Open a TCP connection on the guest's behalf (the HTTP egress path):
    /// `action` on `host:port` is decided first; a name is then resolved
    /// once on the host (and pinned), and only the addresses the gate
    /// allows `connect` to are tried, in order, each within `timeout`.
    pub async fn connect(
        &self,
        action: Action,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, ConnectError> {
        let decision = self.decide(
            action,
            Target::Name {
                host: host.to_string(),
                port: Some(port),
            },
        );
        if !decision.is_allowed() {
            return Err(ConnectError::Denied(decision));
        }
        let candidates: Vec<SocketAddr> = match warden_policy::ip_literal(host) {
            // The decision above was on the address itself.
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => {
                let name = decision.name.as_deref().unwrap_or(host);
                let mut allowed = Vec::new();
                let mut last_denial = None;
                for ip in self.lookup_pinned(name).await? {
                    let addr = SocketAddr::new(ip, port);
                    // These addresses came from this name's pin: its rules,
                    // not those of other names sharing the address, decide.
                    let d = self.decide_as(Action::Connect, Target::Addr(addr), &[name]);
                    if d.is_allowed() {
                        allowed.push(addr);
                    } else {
                        last_denial = Some(d);
                    }
                }
                match (allowed.is_empty(), last_denial) {
                    (true, Some(d)) => return Err(ConnectError::Denied(d)),
                    _ => allowed,
                }
            }
        };
        let mut last = None;
        for addr in candidates {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(source)) => last = Some(ConnectError::Io { addr, source }),
                Err(_) => last = Some(ConnectError::Timeout),
            }
        }
        Err(last.unwrap_or(ConnectError::Timeout))
    }

    /// Flush and close the audit log, if there is one, and say what
    /// happened to its records.
    pub fn finish(&self) -> Option<AuditSummary> {
        self.audit.as_ref().map(AuditLog::finish)
    }

    fn report_once(&self, action: Action, target: Target, decision: &Decision) {
        let mut reported = lock(&self.reported);
        if reported.len() >= MAX_REPORTED || reported.contains(&(action, target.clone())) {
            return;
        }
        reported.insert((action, target.clone()));
        let full = reported.len() == MAX_REPORTED;
        drop(reported);
        let mut line = format!(
            "warden: denied {action} {target} (rule {}): {}",
            decision.rule, decision.reason
        );
        if decision.rule == warden_policy::DEFAULT_DENY {
            if let Some(hint) = hint(action, &target) {
                line.push_str("; to allow it: ");
                line.push_str(&hint);
            }
        } else {
            line.push_str("; a deny rule wins over every grant");
        }
        (self.reporter)(&line);
        if full {
            (self.reporter)(&format!(
                "warden: {MAX_REPORTED} different denials reported; further ones are not shown here (the audit log has every decision)"
            ));
        }
    }
}

/// The flag that would allow `action` on `target`.
fn hint(action: Action, target: &Target) -> Option<String> {
    let flag = match action {
        Action::Connect | Action::HttpRequest => "--allow-connect",
        Action::Bind | Action::Listen | Action::Accept => "--allow-listen",
        Action::UdpBind | Action::UdpSend | Action::UdpRecv => "--allow-udp",
        Action::Resolve => "--allow-resolve",
        _ => return None,
    };
    match target {
        Target::Name { host, port: None } => Some(format!("{flag} {host}")),
        Target::Name {
            host,
            port: Some(p),
        } if host.contains(':') && !host.starts_with('[') => Some(format!("{flag} [{host}]:{p}")),
        Target::Name {
            host,
            port: Some(p),
        } => Some(format!("{flag} {host}:{p}")),
        // A peer's port is its own ephemeral one; the grant is for the host.
        Target::Addr(a) if action == Action::Accept || action == Action::UdpRecv => {
            let ip = match a {
                SocketAddr::V4(v4) => v4.ip().to_string(),
                SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
            };
            Some(if action == Action::Accept {
                format!("a manifest grant with the accept right for {ip}")
            } else {
                format!("{flag} {ip}:*")
            })
        }
        Target::Addr(a) => Some(format!("{flag} {a}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording_gate() -> (Arc<Gate>, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let gate = Gate::builder(Policy::deny_all())
            .reporter(Box::new(move |l| sink.lock().unwrap().push(l.to_string())))
            .build();
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
                "warden: denied connect 127.0.0.1:9 (rule default-deny): no grant allows connect to 127.0.0.1:9; network access is denied by default; to allow it: --allow-connect 127.0.0.1:9",
                "warden: denied bind 127.0.0.1:9 (rule default-deny): no grant allows bind to 127.0.0.1:9; network access is denied by default; to allow it: --allow-listen 127.0.0.1:9",
                "warden: denied http-request example.com:80 (rule default-deny): no grant allows http-request to example.com:80; network access is denied by default; to allow it: --allow-connect example.com:80",
            ]
        );
    }

    #[test]
    fn denial_reports_are_bounded() {
        let (gate, lines) = recording_gate();
        for port in 0..(MAX_REPORTED as u16 + 100) {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            assert!(!gate.allows_addr(Action::Connect, addr));
        }
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), MAX_REPORTED + 1);
        assert!(
            lines[MAX_REPORTED].contains("further ones are not shown"),
            "{}",
            lines[MAX_REPORTED]
        );
    }

    #[test]
    fn empty_policy_switches_every_transport_off() {
        let (gate, _) = recording_gate();
        assert_eq!(gate.transports(), Transports::default());
    }
}
