//! The gate: the single chokepoint for one guest instance's network
//! actions ([`Gate::decide`]), what it knows beyond the policy (DNS pins,
//! the addresses of denied names), what it records (the audit log) and
//! tells (a [`Reporter`](crate::Reporter), an [`Observer`]), and how it
//! makes the connections it allows ([`Gate::plan`], [`Gate::establish`]).
//! The HTTP egress dialer is `dial.rs`.

mod dial;

pub(crate) use dial::connect_span;

use crate::sync::lock;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::denied::DeniedNames;
use crate::quota::{self, Held, Quota, Quotas, Tally};
use crate::report::{self, MAX_REMOTE_REPORTED, MAX_REPORTED, Notice, Reported, Reporter};
use crate::resolve::{DnsConfig, LookupError, Pins, Resolver};
use crate::{
    Action, AuditLog, AuditSummary, Connection, Decision, Policy, Pool, Refusal, Remedy,
    ResolveError, Target, Tls, Transports, tls,
};

/// A lookup the gate has allowed, from [`Gate::permit_resolve`]; only the
/// gate makes these, so no lookup happens undecided.
#[derive(Debug)]
pub struct ResolvePermit(PermitKind);

#[derive(Debug)]
enum PermitKind {
    Literal(IpAddr),
    Name(String),
}

/// How an allowed outgoing connection is to be made, from [`Gate::plan`]:
/// its place under its kind's cap, and the TLS to do on it.
pub struct Plan {
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Its place under the outgoing-connections quota, if one is set.
    quota: Option<Held>,
    tls: Option<(Arc<tls::ClientSide>, rustls::pki_types::ServerName<'static>)>,
}

impl Plan {
    /// Whether the host will speak TLS on the connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the connection is plain TCP that holds no place under a
    /// kind's cap: nothing for the host to do once it is connected.
    pub fn is_plain(&self) -> bool {
        self.tls.is_none() && self.slot.is_none()
    }

    /// Take its place under the outgoing-connections quota, for a face
    /// that keeps it on the socket (a plain connect the kernel makes,
    /// with no connection object of the host's to hold it).
    pub fn take_quota(&mut self) -> Option<Held> {
        self.quota.take()
    }
}

/// The most outgoing HTTP requests one instance has in flight at once;
/// more wait for one to finish.
pub const MAX_HTTP_IN_FLIGHT: usize = 64;

/// What a gate tells an embedder that counts (metrics): every decision,
/// and every TLS handshake it does.
pub trait Observer: Send + Sync {
    /// A decision on `action` was made.
    fn decision(&self, action: Action, allowed: bool);
    /// A TLS handshake for `action` (`connect` or `accept`) ended.
    fn tls(&self, action: Action, ok: bool);
}

/// Builds a [`Gate`]. Defaults: denials told to nobody ([`report::silent`]),
/// no audit log, the system's DNS configuration.
pub struct GateBuilder {
    policy: Policy,
    reporter: Reporter,
    audit: Option<AuditLog>,
    dns: DnsConfig,
    tls: Option<Arc<Tls>>,
    observer: Option<Arc<dyn Observer>>,
    mode: warden_policy::Mode,
    quotas: Quotas,
    ceiling: Option<Arc<Tally>>,
    rates: crate::rate::Rates,
    trace: Option<crate::trace::Trace>,
}

impl GateBuilder {
    /// Limit the bytes per second the gate's instances send and receive,
    /// together (see [`crate::rate`]); by default no limit.
    pub fn rates(mut self, rates: crate::rate::Rates) -> Self {
        self.rates = rates;
        self
    }

    /// Bound what the gate's instances hold open together (see
    /// [`crate::quota`]); by default nothing but the descriptor table.
    pub fn quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// Count what the gate's instances hold under `ceiling` too: a
    /// server's bound over every app.
    pub fn ceiling(mut self, ceiling: Arc<Tally>) -> Self {
        self.ceiling = Some(ceiling);
        self
    }

    /// Enforce the policy (the default), or only audit it: in
    /// [`warden_policy::Mode::Audit`] a decision the policy denies is
    /// recorded as `would-deny`, counted ([`Gate::would_denied`]) and
    /// let through.
    pub fn mode(mut self, mode: warden_policy::Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Report denials through `reporter` (by default nobody is told).
    pub fn reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = reporter;
        self
    }

    /// Put the gate's work on `trace` (see [`Gate::instance_traced`]).
    pub fn trace(mut self, trace: Option<crate::trace::Trace>) -> Self {
        self.trace = trace;
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

    /// Tell `observer` about every decision and TLS handshake.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Make connections of the policy's kinds with `tls` (built from the
    /// same kinds, see [`Tls::load`]). Without it, a TLS kind's connection
    /// is refused.
    pub fn tls(mut self, tls: Arc<Tls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The gate.
    pub fn build(self) -> Arc<Gate> {
        let denied = DeniedNames::new(self.policy.denied_names().map(str::to_string).collect());
        let shared = Arc::new(Shared {
            tls: self.tls.unwrap_or_default(),
            policy: self.policy,
            pins: Mutex::new(Pins::default()),
            denied,
            reported: Reported::default(),
            reporter: self.reporter,
            resolver: Resolver::new(self.dns),
            observer: self.observer,
            mode: self.mode,
            would_denied: std::sync::atomic::AtomicU64::new(0),
            tally: Tally::new(self.quotas),
            ceiling: self.ceiling,
            rates: self.rates,
        });
        Gate::with_shared(shared, self.audit, self.trace)
    }
}

/// The single chokepoint for one guest instance's network actions.
///
/// What does not depend on the instance (the policy, its TLS, the
/// resolver and its pins, the denied names' addresses, what was reported)
/// is shared by every instance made with [`Gate::instance`], as `warden
/// serve` makes one per request; what does (the kinds' connection caps,
/// the HTTP requests in flight, the audit log's instance) is not.
pub struct Gate {
    shared: Arc<Shared>,
    caps: std::collections::HashMap<String, (u32, Arc<tokio::sync::Semaphore>)>,
    audit: Option<AuditLog>,
    http: Arc<tokio::sync::Semaphore>,
    /// The span this instance's work belongs to, when tracing is on.
    trace: Option<crate::trace::Trace>,
}

/// The parts of a gate its instances share.
struct Shared {
    tls: Arc<Tls>,
    policy: Policy,
    pins: Mutex<Pins>,
    denied: DeniedNames,
    reported: Reported,
    reporter: Reporter,
    resolver: Resolver,
    observer: Option<Arc<dyn Observer>>,
    mode: warden_policy::Mode,
    /// Decisions let through in audit mode.
    would_denied: std::sync::atomic::AtomicU64,
    /// What every instance holds open, against the quotas.
    tally: Arc<Tally>,
    /// A server's tally over every app, if it bounds them.
    ceiling: Option<Arc<Tally>>,
    /// The bandwidth limits every instance shares.
    rates: crate::rate::Rates,
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
            reporter: report::silent(),
            audit: None,
            dns: DnsConfig::System,
            tls: None,
            observer: None,
            mode: warden_policy::Mode::Enforce,
            quotas: Quotas::default(),
            ceiling: None,
            rates: crate::rate::Rates::default(),
            trace: None,
        }
    }

    fn with_shared(
        shared: Arc<Shared>,
        audit: Option<AuditLog>,
        trace: Option<crate::trace::Trace>,
    ) -> Arc<Gate> {
        let caps = shared
            .policy
            .kinds()
            .filter_map(|k| {
                let max = k.max_connections?;
                let sem = Arc::new(tokio::sync::Semaphore::new(max as usize));
                Some((k.name.clone(), (max, sem)))
            })
            .collect();
        Arc::new(Gate {
            shared,
            caps,
            audit,
            http: Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_IN_FLIGHT)),
            trace,
        })
    }

    /// Another instance's gate over the same policy, TLS, resolver, pins
    /// and reports, with caps and HTTP slots of its own, recording to
    /// `audit` (an instance of the same log, say).
    pub fn instance(&self, audit: Option<AuditLog>) -> Arc<Gate> {
        Gate::with_shared(self.shared.clone(), audit, None)
    }

    /// [`Gate::instance`], its work on `trace`: every denial and limit an
    /// event on its span, every connect and handshake a child span.
    pub fn instance_traced(
        &self,
        audit: Option<AuditLog>,
        trace: Option<crate::trace::Trace>,
    ) -> Arc<Gate> {
        Gate::with_shared(self.shared.clone(), audit, trace)
    }

    /// The span this gate's work belongs to, when tracing is on.
    pub fn trace(&self) -> Option<&crate::trace::Trace> {
        self.trace.as_ref()
    }

    /// The audit log this gate records to.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// The TLS configurations connections are made with.
    pub fn tls(&self) -> &Tls {
        &self.shared.tls
    }

    /// The policy the gate decides with.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// Which transports the policy could ever allow; the rest stay switched
    /// off in the runtime.
    pub fn transports(&self) -> Transports {
        self.shared.policy.transports()
    }

    /// Get ready to decide `action`: for traffic to a peer, make sure the
    /// addresses of denied names are known (see the `denied` module). ABI
    /// layers that can wait call this before [`Gate::decide`]; one that
    /// does not gets decisions that fail closed until they are known.
    pub async fn prepare(self: &Arc<Self>, action: Action) {
        if action.follows_pins() && !self.shared.denied.is_fresh() {
            // On a task of its own: the resolver's futures are not `Sync`,
            // and socket checks must be.
            let gate = self.clone();
            let _ = tokio::spawn(
                async move { gate.shared.denied.refresh(&gate.shared.resolver).await },
            )
            .await;
        }
    }

    /// Decide one action. Every ABI calls this and nothing else; every call
    /// is one audit record.
    pub fn decide(&self, action: Action, target: Target) -> Decision {
        self.decide_as(action, target, None)
    }

    /// Decide, with the names the target address was resolved from given
    /// (`Some`) rather than looked up in the pin table. Audited and
    /// reported like every decision.
    fn decide_as(&self, action: Action, target: Target, pinned: Option<&[&str]>) -> Decision {
        self.decide_within(None, action, target, pinned, self.trace.as_ref())
    }

    /// Decide an action of a socket opened from address pool `pool`: the
    /// policy and the pool must both allow it (see [`Pool::confine`]).
    /// Audited and reported like every decision.
    pub fn decide_in(&self, pool: Option<&Pool>, action: Action, target: Target) -> Decision {
        self.decide_within(pool, action, target, None, self.trace.as_ref())
    }

    /// Decide; a denial is an event on `trace` (the span of the work it
    /// belongs to, say an outgoing request's).
    fn decide_within(
        &self,
        pool: Option<&Pool>,
        action: Action,
        target: Target,
        pinned: Option<&[&str]>,
        trace: Option<&crate::trace::Trace>,
    ) -> Decision {
        // Only traffic to a peer can go through a pin or hit a denied
        // name's address; binds, listens and accepts (a server's hot path)
        // skip both tables.
        let looked_up;
        let mut resolved_from: Vec<&str> = Vec::new();
        let decision = match &target {
            Target::Addr(addr) if action.follows_pins() => {
                resolved_from = match pinned {
                    Some(names) => names.to_vec(),
                    None => {
                        looked_up = lock(&self.shared.pins).names_for(addr.ip(), Instant::now());
                        looked_up.iter().map(String::as_str).collect()
                    }
                };
                let owners = self.shared.denied.owners(addr.ip());
                let address_of: Vec<&str> = owners.names.iter().map(|n| &**n).collect();
                let known = warden_policy::Known {
                    resolved_from: &resolved_from,
                    address_of: &address_of,
                    denied_names_unknown: owners.unknown.as_deref(),
                };
                let d = self.shared.policy.decide_known(action, &target, &known);
                match pool {
                    Some(p) => p.confine(action, &target, &known, d),
                    None => d,
                }
            }
            _ => {
                let d = self.shared.policy.decide(action, &target);
                match pool {
                    Some(p) => p.confine(action, &target, &Default::default(), d),
                    None => d,
                }
            }
        };
        // Audit mode: what the policy denies is recorded as such, and
        // goes ahead.
        let decision = if self.shared.mode == warden_policy::Mode::Audit && !decision.is_allowed() {
            self.shared
                .would_denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            decision.let_through()
        } else {
            decision
        };
        if let Some(audit) = &self.audit {
            audit.record(action, &target, &decision, &resolved_from);
        }
        if let Some(observer) = &self.shared.observer {
            observer.decision(action, decision.is_allowed());
        }
        if let Some(trace) = trace
            && decision.verdict() != warden_policy::Verdict::Allow
        {
            crate::trace::denial(trace, action, &target, &decision);
        }
        if !decision.is_allowed() {
            self.report_once(action, &target, &decision);
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
    /// needs no decision: it resolves to itself and nothing leaves the
    /// host. A string that is not a host name is refused before anything
    /// is decided, recorded or reported.
    pub fn permit_resolve(&self, name: &str) -> Result<ResolvePermit, ResolveError> {
        if let Some(ip) = warden_policy::ip_literal(name) {
            return Ok(ResolvePermit(PermitKind::Literal(ip)));
        }
        if warden_policy::normalize_name(name).is_none() {
            return Err(ResolveError::InvalidName(
                warden_policy::shorten(name).into_owned(),
            ));
        }
        let decision = self.decide(
            Action::Resolve,
            Target::Name {
                host: name.to_string(),
                port: None,
            },
        );
        if !decision.is_allowed() {
            return Err(ResolveError::Denied(Box::new(decision)));
        }
        let name = decision.name().unwrap_or(name).to_string();
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
        if let Some(addrs) = lock(&self.shared.pins).get(name, Instant::now()) {
            return Ok(addrs);
        }
        let (addrs, valid_until) = self.shared.resolver.lookup(name).await?;
        let now = Instant::now();
        let mut pins = lock(&self.shared.pins);
        if let Some(pinned) = pins.get(name, now) {
            return Ok(pinned);
        }
        pins.insert(name, addrs.clone(), valid_until, now);
        Ok(addrs)
    }

    /// A place among this instance's outgoing HTTP requests in flight
    /// (at most [`MAX_HTTP_IN_FLIGHT`]); hold it for the request's life.
    pub async fn http_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.http
            .clone()
            .acquire_owned()
            .await
            .expect("the HTTP semaphore is never closed")
    }

    /// How to make the outgoing connection to `target` that `decision`
    /// allowed: take a place under its kind's cap (refused at once, said
    /// once per kind and audited, when the cap is reached), and pick the
    /// TLS configuration and the server name (the kind's `server_name`,
    /// else the name the decision was made on or the address was pinned
    /// from). `https` (an `https://` request) makes it TLS even when the
    /// kind is not, with the target's host as the server name.
    pub fn plan(&self, decision: &Decision, target: &Target, https: bool) -> Result<Plan, Refusal> {
        let kind = decision.kind().and_then(|k| self.shared.policy.kind(k));
        let slot = match kind.and_then(|k| self.caps.get(&k.name).map(|c| (k, c))) {
            Some((k, (max, sem))) => match sem.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let refusal = Refusal::Cap {
                        kind: k.name.clone(),
                        max: *max,
                    };
                    if let Some(audit) = &self.audit {
                        audit.record_limit("max_connections", &refusal.to_string());
                    }
                    self.say_once(
                        Action::Connect,
                        Ok(format!("cap {}", k.name)),
                        &Notice::Cap {
                            kind: &k.name,
                            max: *max,
                            target,
                        },
                    );
                    return Err(refusal);
                }
            },
            None => None,
        };
        let quota = self.quota(Quota::ConnsOut, target)?;
        let side = match kind {
            Some(k) if k.is_tls() => Some(
                self.shared
                    .tls
                    .client(&k.name)
                    .cloned()
                    .ok_or_else(|| Refusal::Unloaded(k.name.clone()))?,
            ),
            _ if https => Some(self.shared.tls.default_client()),
            _ => None,
        };
        let tls = match side {
            None => None,
            Some(side) => {
                let host = match target {
                    Target::Name { host, .. } if https => Some(host.clone()),
                    _ => None,
                };
                let name = side
                    .kind
                    .as_ref()
                    .and_then(|k| k.server_name.clone())
                    .or_else(|| decision.name().map(str::to_string))
                    .or(host)
                    .and_then(|n| rustls::pki_types::ServerName::try_from(n).ok())
                    .ok_or(Refusal::NoServerName)?;
                Some((side, name))
            }
        };
        Ok(Plan { slot, quota, tls })
    }

    /// Make the connection to `peer` on `stream` what `plan` says: as it
    /// is, or TLS (the kind's preamble, then the handshake, within the
    /// handshake timeout). A TLS outcome is audited (`tls-connect`) and a
    /// failure said once.
    pub async fn establish(
        &self,
        plan: Plan,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        trace: Option<&crate::trace::Trace>,
    ) -> Result<Connection, Refusal> {
        let Plan { slot, quota, tls } = plan;
        let Some((side, name)) = tls else {
            return Ok(Connection::plain(stream, slot).with_quota(quota));
        };
        let _ = stream.set_nodelay(true);
        let timeout = self.shared.tls.handshake_timeout();
        let shown = name.to_str().into_owned();
        let span = trace.map(|t| {
            use opentelemetry::KeyValue;
            let mut attrs = vec![
                KeyValue::new("server.address", shown.clone()),
                KeyValue::new("network.peer.address", peer.ip().to_string()),
                KeyValue::new("network.peer.port", i64::from(peer.port())),
            ];
            if let Some(k) = &side.kind {
                attrs.push(KeyValue::new("warden.tls.kind", k.name.clone()));
            }
            t.child(
                "tls handshake",
                opentelemetry::trace::SpanKind::Internal,
                attrs,
            )
        });
        let (session, outcome) =
            match tokio::time::timeout(timeout, tls::handshake(&side, stream, name)).await {
                Ok(done) => done,
                Err(_) => (
                    None,
                    tls::Handshake {
                        name: Some(shown),
                        kind: side.kind.as_ref().map(|k| k.name.clone()),
                        failure: Some(format!(
                            "the handshake did not finish within {}s",
                            timeout.as_secs_f64()
                        )),
                        ..tls::Handshake::default()
                    },
                ),
            };
        self.tls_outcome(Action::Connect, peer, &outcome);
        if let Some(span) = span {
            match &outcome.failure {
                Some(why) => span.fail("tls", why.clone()),
                None => {
                    if let Some(v) = &outcome.version {
                        span.set(opentelemetry::KeyValue::new(
                            "tls.protocol.version",
                            v.clone(),
                        ));
                    }
                }
            }
        }
        match session {
            Some(s) => {
                let conn =
                    Connection::tls(tokio_rustls::TlsStream::Client(s), slot).with_quota(quota);
                Ok(match side.preamble {
                    tls::Preamble::Postgres => conn.with_postgres_auth(),
                    _ => conn,
                })
            }
            None => Err(Refusal::Tls {
                reason: outcome.failure.unwrap_or_default(),
                certificate: outcome.certificate_refused,
            }),
        }
    }

    /// The listening TLS configuration for a listener `decision` allowed,
    /// if its grant's kind has one.
    pub fn listener_tls(
        &self,
        decision: &Decision,
    ) -> Result<Option<Arc<tls::ServerSide>>, Refusal> {
        match decision.kind().and_then(|k| self.shared.policy.kind(k)) {
            Some(k) if k.serves_tls() => self
                .shared
                .tls
                .server(&k.name)
                .cloned()
                .map(Some)
                .ok_or_else(|| Refusal::Unloaded(k.name.clone())),
            _ => Ok(None),
        }
    }

    /// Audit a TLS outcome, and say a failure once (per destination, or
    /// per peer address for incoming connections).
    pub(crate) fn tls_outcome(&self, action: Action, peer: SocketAddr, outcome: &tls::Handshake) {
        if let Some(audit) = &self.audit {
            let event = match action {
                Action::Accept => "tls-accept",
                _ => "tls-connect",
            };
            match self.shared.tls.local_id(outcome.kind.as_deref()) {
                Some(id) => {
                    let mut o = outcome.clone();
                    o.local_id = Some(id);
                    audit.record_tls(event, peer, &o);
                }
                None => audit.record_tls(event, peer, outcome),
            }
        }
        if let Some(observer) = &self.shared.observer {
            observer.tls(action, outcome.failure.is_none());
        }
        // An incoming handshake finishes before the guest sees the peer,
        // so it is an event on the instance's span (an outgoing one has a
        // span of its own, made where it is done).
        if action == Action::Accept
            && let Some(trace) = &self.trace
        {
            crate::trace::tls_accept(trace, peer, outcome);
        }
        if outcome.failure.is_some() {
            let what = match action {
                Action::Accept => Err(peer.ip()),
                _ => Ok(format!(
                    "tls {} {peer}",
                    outcome.name.as_deref().unwrap_or_default()
                )),
            };
            self.say_once(
                action,
                what,
                &Notice::Tls {
                    action,
                    peer,
                    outcome,
                },
            );
        }
    }

    /// Say (once per authority) that an outgoing HTTP request naming its
    /// destination with userinfo was refused.
    pub fn refuse_userinfo(&self, authority: &str) {
        let authority = crate::shorten(authority);
        self.say_once(
            Action::HttpRequest,
            Ok(format!("userinfo {authority}")),
            &Notice::Userinfo {
                authority: &authority,
            },
        );
    }

    fn say_once(&self, action: Action, what: Result<String, IpAddr>, notice: &Notice<'_>) {
        let remote = what.is_err();
        let Some(last) = self.shared.reported.first_said(action, what) else {
            return;
        };
        (self.shared.reporter)(notice);
        if last {
            let budget = if remote {
                MAX_REMOTE_REPORTED
            } else {
                MAX_REPORTED
            };
            (self.shared.reporter)(&Notice::Quiet { remote, budget });
        }
    }

    /// A place under quota `q` for a socket or connection the guest is to
    /// hold (`target`: what it is to, or from), or `Ok(None)` when no
    /// quota bounds `q`. Past the quota it is refused: audited (a `limit`
    /// record), and said once per quota.
    pub fn quota(&self, q: Quota, target: &Target) -> Result<Option<Held>, Refusal> {
        match quota::take(q, &self.shared.tally, self.shared.ceiling.as_ref()) {
            Ok(held) => Ok(held),
            Err((scope, max)) => {
                let refusal = Refusal::Quota {
                    quota: q,
                    max,
                    scope,
                };
                if let Some(audit) = &self.audit {
                    let reason = match q {
                        Quota::ConnsOut => format!("{refusal} (a connection to {target})"),
                        Quota::ConnsIn => format!("{refusal} (a connection from {target})"),
                        Quota::UdpSockets => refusal.to_string(),
                    };
                    audit.record_limit(q.key(), &reason);
                }
                let action = match q {
                    Quota::ConnsOut => Action::Connect,
                    Quota::ConnsIn => Action::Accept,
                    Quota::UdpSockets => Action::UdpBind,
                };
                self.say_once(
                    action,
                    Ok(format!("quota {}", q.key())),
                    &Notice::Quota {
                        quota: q,
                        max,
                        scope,
                        target,
                    },
                );
                Err(refusal)
            }
        }
    }

    /// The bandwidth limits the gate's instances share.
    pub fn rates(&self) -> &crate::rate::Rates {
        &self.shared.rates
    }

    /// What the gate's instances hold open now, against their quotas.
    pub fn tally(&self) -> &Tally {
        &self.shared.tally
    }

    /// Record that a limit stopped the guest (`limit` names it: `timeout`,
    /// `fuel`, ...; `reason` says what happened).
    pub fn record_limit(&self, limit: &str, reason: &str) {
        if let Some(audit) = &self.audit {
            audit.record_limit(limit, reason);
        }
        if let Some(trace) = &self.trace {
            trace.limit(limit, reason);
        }
    }

    /// How many decisions audit mode let through that enforcing would
    /// have denied (by this gate and every instance of it).
    pub fn would_denied(&self) -> u64 {
        self.shared
            .would_denied
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The policy mode.
    pub fn mode(&self) -> warden_policy::Mode {
        self.shared.mode
    }

    /// Flush and close the audit log, if there is one, and say what
    /// happened to its records.
    pub fn finish(&self) -> Option<AuditSummary> {
        self.audit.as_ref().map(AuditLog::finish)
    }

    fn report_once(&self, action: Action, target: &Target, decision: &Decision) {
        let Some(last) = self.shared.reported.first(action, target) else {
            return;
        };
        let remedy = if decision.by_deny_rule() {
            None
        } else {
            Remedy::for_denial(action, target)
        };
        (self.shared.reporter)(&Notice::Denied {
            action,
            target,
            decision,
            remedy,
        });
        if last {
            let remote = matches!(action, Action::Accept | Action::UdpRecv);
            let budget = if remote {
                MAX_REMOTE_REPORTED
            } else {
                MAX_REPORTED
            };
            (self.shared.reporter)(&Notice::Quiet { remote, budget });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    fn recording_gate(policy: Policy) -> (Arc<Gate>, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let gate = Gate::builder(policy)
            .reporter(Arc::new(move |n| {
                sink.lock().unwrap().push(report::plain(n))
            }))
            .build();
        (gate, lines)
    }

    #[test]
    fn empty_policy_gate_denies_and_reports_each_denial_once() {
        let (gate, lines) = recording_gate(Policy::deny_all());
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
        assert_eq!(http.verdict(), Verdict::Deny);
        let lines = lines.lock().unwrap();
        assert_eq!(
            *lines,
            [
                "warden: denied connect 127.0.0.1:9 (rule default-deny): no grant allows connect to 127.0.0.1:9; network access is denied by default; to allow it, grant connect on 127.0.0.1/32:9",
                "warden: denied bind 127.0.0.1:9 (rule default-deny): no grant allows bind to 127.0.0.1:9; network access is denied by default; to allow it, grant bind on 127.0.0.1/32:9",
                "warden: denied http-request example.com:80 (rule default-deny): no grant allows http-request to example.com:80; network access is denied by default; to allow it, grant connect on example.com:80",
            ]
        );
    }

    #[test]
    fn audit_mode_lets_denials_through_counted_and_unreported_and_enforce_does_not() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let gate = Gate::builder(Policy::deny_all())
            .reporter(Arc::new(move |n| {
                sink.lock().unwrap().push(report::plain(n))
            }))
            .mode(warden_policy::Mode::Audit)
            .build();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let d = gate.decide(Action::Connect, Target::Addr(addr));
        assert_eq!(d.verdict(), Verdict::WouldDeny);
        assert!(d.is_allowed() && d.policy_denies());
        assert_eq!(
            d.rule(),
            warden_policy::DEFAULT_DENY,
            "the rule a denial would quote"
        );
        assert!(gate.allows_addr(Action::Bind, addr));
        // Instances share the count.
        assert!(gate.instance(None).allows_addr(Action::UdpSend, addr));
        assert_eq!(gate.would_denied(), 3);
        assert!(
            lines.lock().unwrap().is_empty(),
            "nothing is reported as denied"
        );
        // The twin: enforced, the same is denied and nothing is counted.
        let (enforced, _) = recording_gate(Policy::deny_all());
        assert!(!enforced.allows_addr(Action::Connect, addr));
        assert_eq!(enforced.would_denied(), 0);
    }

    #[test]
    fn denial_reports_are_bounded() {
        let (gate, lines) = recording_gate(Policy::deny_all());
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
    fn peers_are_reported_once_per_address_on_their_own_budget() {
        let (gate, lines) = recording_gate(Policy::deny_all());
        // One peer connecting from 30 ports: one line.
        for port in 40_000..40_030 {
            assert!(!gate.allows_addr(Action::Accept, SocketAddr::from(([127, 0, 0, 2], port))));
        }
        assert_eq!(lines.lock().unwrap().len(), 1);
        assert!(lines.lock().unwrap()[0].contains("accept from 127.0.0.2:40000"));
        // Many peers exhaust only the remote budget...
        for i in 0..(MAX_REMOTE_REPORTED as u32 + 50) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            assert!(!gate.allows_addr(Action::UdpRecv, SocketAddr::from((ip, 53))));
        }
        let n = lines.lock().unwrap().len();
        // The accept above shares the remote budget; then the budget line.
        assert_eq!(n, MAX_REMOTE_REPORTED + 1);
        // ...and the guest's own denials are still told.
        assert!(!gate.allows_addr(Action::Connect, SocketAddr::from(([127, 0, 0, 1], 9))));
        assert_eq!(lines.lock().unwrap().len(), n + 1);
    }

    #[test]
    fn an_invalid_name_is_refused_before_any_decision() {
        let (gate, lines) = recording_gate(Policy::deny_all());
        let huge = "a".repeat(1 << 20);
        let e = gate.permit_resolve(&huge).unwrap_err();
        assert!(matches!(e, ResolveError::InvalidName(_)));
        assert!(e.to_string().len() < 400);
        let long_label = format!("{}.test", "a".repeat(64));
        assert!(matches!(
            gate.permit_resolve(&long_label).unwrap_err(),
            ResolveError::InvalidName(_)
        ));
        assert!(
            lines.lock().unwrap().is_empty(),
            "nothing decided, nothing said"
        );
        // An IP literal needs no decision either.
        assert!(gate.permit_resolve("127.0.0.1").is_ok());
    }

    #[test]
    fn without_their_addresses_denied_names_fail_closed() {
        let (t, p) = warden_policy::parse_target_ports("127.0.0.0/8:*").unwrap();
        let (dt, dp) = warden_policy::parse_target_ports("secret.test:*").unwrap();
        let policy = Policy::new([
            warden_policy::Rule::allow(
                "lo",
                t,
                p,
                warden_policy::Rights::CONNECT | warden_policy::Rights::BIND,
            ),
            warden_policy::Rule::deny("secret", dt, dp),
        ]);
        let (gate, _) = recording_gate(policy);
        let addr = SocketAddr::from(([127, 0, 0, 1], 80));
        // Not prepared: the denied name's addresses are unknown.
        let d = gate.decide(Action::Connect, Target::Addr(addr));
        assert!(!d.is_allowed());
        assert!(
            d.reason().to_string().contains("not resolved yet"),
            "{}",
            d.reason()
        );
        // Binds are no traffic to a peer.
        assert!(gate.allows_addr(Action::Bind, addr));
    }

    #[test]
    fn empty_policy_switches_every_transport_off() {
        let (gate, _) = recording_gate(Policy::deny_all());
        assert_eq!(gate.transports(), Transports::default());
    }
}
