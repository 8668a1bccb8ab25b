//! Network flags and the manifest, resolved into one policy.
//!
//! Every flag becomes rules whose id is the flag as written (so a denial
//! names the flag that would have to change); the manifest's rules come
//! first, with their own ids. A `--deny` wins over every grant wherever it
//! comes from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use warden_host::Network;
use warden_host::manifest::{Loaded, audit_dest};
use warden_net::{DnsConfig, Policy, Pool};
use warden_policy::manifest::Listen;
use warden_policy::{
    Cidr, Kind, KindError, NamePattern, Ports, Protocol, Rights, Rule, RuleTarget,
    parse_target_ports,
};

/// A flag's target and ports, with the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    text: String,
    target: RuleTarget,
    ports: Ports,
}

fn flag(s: &str) -> Result<Flag, String> {
    let (target, ports) = parse_target_ports(s)?;
    Ok(Flag {
        text: s.to_string(),
        target,
        ports,
    })
}

fn listen_flag(s: &str) -> Result<Flag, String> {
    let f = flag(s)?;
    match f.target {
        RuleTarget::Net(_) => Ok(f),
        RuleTarget::Name(_) => Err(format!(
            "`{s}`: a listening address is an IP or a CIDR (127.0.0.1:8080, [::1]:8000-8999, 0.0.0.0:443), not a name"
        )),
    }
}

fn pattern(s: &str) -> Result<NamePattern, String> {
    s.parse()
}

fn dns_server(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("expected IP:PORT, like 127.0.0.1:53 or [::1]:53, not `{s}`"))
}

/// The network flags `run` and `explain` share.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Network (nothing is allowed unless granted)")]
pub struct NetworkArgs {
    /// Read grants, denies, listeners, the DNS server and the audit file
    /// from a TOML manifest (see `warden check`). Flags add to it.
    /// Example: --manifest warden.toml
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Allow TCP connections (and wasi:http requests) to TARGET: HOST:PORTS,
    /// CIDR:PORTS or [IPv6]:PORTS, PORTS being N, N-M or *. A HOST may be
    /// *.suffix; a host name is also allowed to resolve, and addresses it
    /// resolves to are reachable at PORTS while the answer lives.
    /// Repeatable. Example: --allow-connect api.example.com:443
    #[arg(long = "allow-connect", value_name = "TARGET", value_parser = flag)]
    pub allow_connect: Vec<Flag>,

    /// Allow TCP connections to TARGET (as for --allow-connect), made as
    /// TLS by Warden: the program writes and reads plaintext, Warden does
    /// the handshake, sends the name the address was resolved from as SNI
    /// and checks the server's certificate against it (or against
    /// --tls-server-name) and against the webpki roots (or --tls-ca). A
    /// certificate that fails refuses the program's connect. Repeatable.
    /// Example: --connect-tls db.example.com:5432
    #[arg(long = "connect-tls", value_name = "TARGET", value_parser = flag)]
    pub connect_tls: Vec<Flag>,

    /// For --connect-tls: trust exactly the CA certificates in FILE (PEM)
    /// instead of the webpki roots. Example: --tls-ca ca.pem
    #[arg(long = "tls-ca", value_name = "FILE", requires = "connect_tls")]
    pub tls_ca: Option<PathBuf>,

    /// For --connect-tls: present the client certificate chain in FILE
    /// (PEM; mutual TLS). Needs --tls-client-key. Example: --tls-client-cert client.pem
    #[arg(long = "tls-client-cert", value_name = "FILE", requires_all = ["connect_tls", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,

    /// For --connect-tls: the private key (PEM) of --tls-client-cert.
    /// Example: --tls-client-key client.key
    #[arg(
        long = "tls-client-key",
        value_name = "FILE",
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<PathBuf>,

    /// For --connect-tls: the name every server's certificate must carry
    /// (and SNI sends), instead of the name its address was resolved
    /// from; needed when TARGET is an address. Example: --tls-server-name db.internal
    #[arg(
        long = "tls-server-name",
        value_name = "NAME",
        requires = "connect_tls"
    )]
    pub tls_server_name: Option<String>,

    /// Refuse to start unless every grant that allows outgoing TCP
    /// connections makes them TLS (--connect-tls, or a TLS kind in the
    /// manifest). Example: --require-tls
    #[arg(long = "require-tls")]
    pub require_tls: bool,

    /// Allow binding and listening on ADDR:PORTS (an IP or CIDR) and
    /// accepting connections from any peer that no --deny refuses.
    /// Repeatable. Example: --allow-listen 127.0.0.1:8080
    #[arg(long = "allow-listen", value_name = "ADDR:PORTS", value_parser = listen_flag)]
    pub allow_listen: Vec<Flag>,

    /// Allow UDP: binding an ephemeral local port, sending to and
    /// receiving from TARGET (as for --allow-connect). Repeatable.
    /// Example: --allow-udp 127.0.0.1:5353
    #[arg(long = "allow-udp", value_name = "TARGET", value_parser = flag)]
    pub allow_udp: Vec<Flag>,

    /// Allow binding UDP sockets to ADDR:PORTS (an IP or CIDR), as a UDP
    /// server does; what it may send to and receive from still needs
    /// --allow-udp. Repeatable. Example: --allow-udp-bind 127.0.0.1:5353
    #[arg(long = "allow-udp-bind", value_name = "ADDR:PORTS", value_parser = listen_flag)]
    pub allow_udp_bind: Vec<Flag>,

    /// Allow resolving names matching PATTERN: a name, *.suffix (whole
    /// labels: *.example.com matches a.example.com, not example.com nor
    /// evilexample.com) or *. Repeatable. Example: --allow-resolve *.example.com
    #[arg(long = "allow-resolve", value_name = "PATTERN", value_parser = pattern)]
    pub allow_resolve: Vec<NamePattern>,

    /// Let the name grants made by flags (--allow-connect, --connect-tls,
    /// --allow-udp on a HOST) reach internal addresses their names resolve
    /// to: loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7),
    /// link-local (169.254/16, fe80::/10, where cloud metadata lives),
    /// shared (100.64/10), unspecified, multicast, broadcast, documentation
    /// and reserved ranges. Without it, whoever answers DNS for a granted
    /// name cannot point it inside the host or its network: such traffic
    /// is refused, and the denial names the range. A grant on an address
    /// reaches what it names either way. In a manifest: `internal = true`
    /// on the grant. Example: --allow-internal
    #[arg(long = "allow-internal")]
    pub allow_internal: bool,

    /// Refuse TARGET (as for --allow-connect) for every action, whatever any
    /// grant says. Repeatable. Example: --deny 169.254.0.0/16:*
    #[arg(long, value_name = "TARGET", value_parser = flag)]
    pub deny: Vec<Flag>,

    /// Resolve permitted names with this DNS server instead of the
    /// system's (/etc/resolv.conf). Example: --dns-server 127.0.0.1:53
    #[arg(long = "dns-server", value_name = "ADDR:PORT", value_parser = dns_server)]
    pub dns_server: Option<SocketAddr>,

    /// Pre-open an address pool for a preview1 program's sockets
    /// (sock_open takes its descriptor): NAME=RIGHTS@TARGETS, RIGHTS being
    /// rights joined by + (connect, bind, listen, accept, udp-bind,
    /// udp-send, udp-recv) and TARGETS TARGET:PORTS joined by commas. A
    /// socket opened from a pool may do only what the pool AND the other
    /// grants allow: a pool never grants anything by itself. Pools are
    /// descriptors after the listeners, announced as WARDEN_POOLS=NAME=FD,...
    /// Repeatable. Example: --pool db=connect@127.0.0.1:5432
    #[arg(long = "pool", value_name = "NAME=RIGHTS@TARGETS", value_parser = pool_flag)]
    pub pool: Vec<Arc<Pool>>,

    /// Refuse sock_open without a pool descriptor (a program built for
    /// WAMR passes -1, which otherwise means "the other grants alone").
    /// Example: --strict-pools
    #[arg(long = "strict-pools")]
    pub strict_pools: bool,

    /// enforce (the default): what the policy denies is denied. audit:
    /// nothing is denied; every decision the policy would deny is
    /// recorded in the audit log as `would-deny` (with its rule and
    /// reason) and allowed, and Warden says how many at the end. For
    /// learning a policy (`warden learn`) with a program you trust; never
    /// for strangers' code. Overrides the manifest's `mode`.
    /// Example: --policy-mode audit --audit learn.jsonl
    #[arg(long = "policy-mode", value_name = "enforce|audit", value_parser = warden_policy::Mode::parse)]
    pub policy_mode: Option<warden_policy::Mode>,

    /// Hold at most N outgoing connections open at once (every ABI's
    /// connect, and wasi:http requests). Past it the connect is refused
    /// (ECONNREFUSED, connection-refused), said once and audited; closing
    /// one frees its place. Default: no quota. Under `serve`: each app's
    /// (all its instances together), and all apps' together.
    /// Example: --max-conns-out 64
    #[arg(long = "max-conns-out", value_name = "N", value_parser = warden_host::units::quota)]
    pub max_conns_out: Option<u32>,

    /// Hold at most N accepted connections open at once (listeners the
    /// guest opened or was given). A peer past it is reset before the
    /// guest sees it, said once and audited. Default: no quota.
    /// Example: --max-conns-in 256
    #[arg(long = "max-conns-in", value_name = "N", value_parser = warden_host::units::quota)]
    pub max_conns_in: Option<u32>,

    /// Hold at most N UDP sockets open at once. Past it, making one fails
    /// (EMFILE, new-socket-limit), said once and audited. Default: no
    /// quota. Example: --max-udp-sockets 8
    #[arg(long = "max-udp-sockets", value_name = "N", value_parser = warden_host::units::quota)]
    pub max_udp_sockets: Option<u32>,

    /// Limit the bytes per second the guest sends, on every ABI, TLS or
    /// not (the plaintext it writes; under `serve`, an app's instances
    /// together, response bodies included). The guest is slowed, never
    /// failed; a burst of 0.1 s of the rate (at least 16KiB) passes at
    /// once. Default: no limit. Example: --max-egress-rate 2MiB/s
    #[arg(long = "max-egress-rate", value_name = "RATE", value_parser = warden_host::units::rate)]
    pub max_egress_rate: Option<u64>,

    /// Limit the bytes per second the guest receives (as
    /// --max-egress-rate; under `serve`, request bodies included).
    /// Example: --max-ingress-rate 8MiB/s
    #[arg(long = "max-ingress-rate", value_name = "RATE", value_parser = warden_host::units::rate)]
    pub max_ingress_rate: Option<u64>,

    /// Give the program a workload identity: a short-lived certificate
    /// (SPIFFE X.509-SVID) naming its module's SHA-256,
    /// spiffe://TD/wasm/sha256/HEX, signed by this CA certificate (PEM; an
    /// intermediate under your trust bundle, say) and presented where
    /// Warden does TLS for it (--tls-identity, a kind's identity = true).
    /// Its key is made in memory and never leaves Warden.
    /// Example: --identity-ca ca.pem --identity-ca-key ca.key --trust-domain example.org
    #[arg(long = "identity-ca", value_name = "FILE", requires_all = ["identity_ca_key", "trust_domain"])]
    pub identity_ca: Option<PathBuf>,

    /// The private key (PEM, PKCS#8) of --identity-ca.
    #[arg(
        long = "identity-ca-key",
        value_name = "FILE",
        requires = "identity_ca"
    )]
    pub identity_ca_key: Option<PathBuf>,

    /// The SPIFFE trust domain of the identities --identity-ca signs.
    #[arg(long = "trust-domain", value_name = "TD", requires = "identity_ca")]
    pub trust_domain: Option<String>,

    /// How long each identity certificate lives (default 1h); it is
    /// renewed at half its life. Example: --identity-ttl 10m
    #[arg(long = "identity-ttl", value_name = "DURATION", requires = "identity_ca", value_parser = crate::values::duration)]
    pub identity_ttl: Option<std::time::Duration>,

    /// The ID's path (default /wasm/sha256/{sha256}); it must keep
    /// {sha256} and may add {app} (an app's name under serve).
    /// Example: --identity-template '/app/{app}/wasm/sha256/{sha256}'
    #[arg(
        long = "identity-template",
        value_name = "PATH",
        requires = "identity_ca"
    )]
    pub identity_template: Option<String>,
}

impl NetworkArgs {
    /// The identity issuer the flags (else the manifest's `[identity]`)
    /// configure, its CA read and checked.
    pub fn issuer(
        &self,
        manifest: Option<warden_net::identity::IdentityConfig>,
    ) -> Result<Option<Arc<warden_net::identity::Issuer>>, String> {
        let config = match (&self.identity_ca, &self.identity_ca_key, &self.trust_domain) {
            (Some(ca), Some(key), Some(td)) => Some(warden_net::identity::IdentityConfig {
                ca_cert: ca.clone(),
                ca_key: key.clone(),
                trust_domain: td.clone(),
                ttl: self
                    .identity_ttl
                    .unwrap_or(warden_net::identity::DEFAULT_TTL),
                template: self.identity_template.clone(),
            }),
            _ => manifest,
        };
        config
            .map(|c| warden_net::identity::Issuer::load(&c).map_err(|e| e.to_string()))
            .transpose()
    }
}

fn pool_flag(s: &str) -> Result<Arc<Pool>, String> {
    Pool::parse(s).map(Arc::new).map_err(|e| e.to_string())
}

/// The network part of a run, resolved from the manifest and the flags.
pub struct Resolved {
    /// Policy, DNS and audit destination.
    pub network: Network,
    /// The manifest's listeners.
    pub listen: Vec<Listen>,
    /// Warnings for the operator (allow-all grants).
    pub warnings: Vec<String>,
    /// The manifest's `[limits]` (flags win over them).
    pub limits: warden_host::manifest::ManifestLimits,
    /// The manifest's `[time]` and `[random]` (flags win over them).
    pub time: warden_host::manifest::ManifestTime,
    /// The manifest's `[[plug]]` and `[world]` (flags add to them).
    pub imports: warden_host::Imports,
    /// The manifest's `[config]` and `[keyvalue]` (flags win).
    pub providers: warden_host::manifest::ManifestProviders,
    /// The manifest's `[telemetry]` (flags win).
    pub telemetry: Option<warden_policy::manifest::TelemetryTable>,
}

/// The kind `--connect-tls` grants carry (a kind name no manifest can
/// take: manifest kinds are named by words, and this one is the flag).
pub const CONNECT_TLS_KIND: &str = "--connect-tls";

impl NetworkArgs {
    /// The flags' rules, each with the flag text as its id; grants on
    /// names marked internal when --allow-internal says so.
    fn rules(&self) -> Vec<Rule> {
        let mut rules = self.grants();
        if self.allow_internal {
            for r in &mut rules {
                if matches!(r.effect, warden_policy::Effect::Allow(_))
                    && matches!(r.target, RuleTarget::Name(_))
                {
                    r.internal = true;
                }
            }
        }
        rules
    }

    fn grants(&self) -> Vec<Rule> {
        let mut rules = Vec::new();
        for f in &self.allow_connect {
            let id = format!("--allow-connect {}", f.text);
            let mut rights = Rights::CONNECT;
            if matches!(f.target, RuleTarget::Name(_)) {
                rights = rights | Rights::RESOLVE;
            }
            rules.push(Rule::allow(id, f.target.clone(), f.ports, rights));
        }
        for f in &self.connect_tls {
            let id = format!("--connect-tls {}", f.text);
            let mut rights = Rights::CONNECT;
            if matches!(f.target, RuleTarget::Name(_)) {
                rights = rights | Rights::RESOLVE;
            }
            rules.push(
                Rule::allow(id, f.target.clone(), f.ports, rights).with_kind(CONNECT_TLS_KIND),
            );
        }
        for f in &self.allow_listen {
            let id = format!("--allow-listen {}", f.text);
            rules.extend(Rule::listening(&id, f.target.clone(), f.ports, None));
        }
        for f in &self.allow_udp {
            let id = format!("--allow-udp {}", f.text);
            let mut rights = Rights::UDP_SEND | Rights::UDP_RECV;
            if matches!(f.target, RuleTarget::Name(_)) {
                rights = rights | Rights::RESOLVE;
            }
            rules.push(Rule::allow(&id, f.target.clone(), f.ports, rights));
            // An ephemeral local port on any interface comes with the send
            // right (see `Policy`); one on an address of the target's own
            // block is granted here (127.0.0.1:0 to talk to 127.0.0.1).
            if let RuleTarget::Net(_) = f.target {
                rules.push(Rule::allow(
                    &id,
                    f.target.clone(),
                    Ports::one(0),
                    Rights::UDP_BIND,
                ));
            }
        }
        for f in &self.allow_udp_bind {
            rules.push(Rule::allow(
                format!("--allow-udp-bind {}", f.text),
                f.target.clone(),
                f.ports,
                Rights::UDP_BIND,
            ));
        }
        for p in &self.allow_resolve {
            let id = format!("--allow-resolve {p}");
            rules.push(Rule::allow(
                id,
                RuleTarget::Name(p.clone()),
                Ports::ANY,
                Rights::RESOLVE,
            ));
        }
        for f in &self.deny {
            rules.push(Rule::deny(
                format!("--deny {}", f.text),
                f.target.clone(),
                f.ports,
            ));
        }
        rules
    }

    /// The manifest (if any) and the flags, as one network configuration.
    /// `audit` is the `--audit` flag, which wins over the manifest's.
    pub fn resolve(&self, audit: Option<&str>) -> Result<Resolved, String> {
        self.resolve_with(self.manifest.as_deref(), audit)
    }

    /// As [`NetworkArgs::resolve`], with `manifest` in place of
    /// `--manifest` (an app's own policy under `warden serve`).
    pub fn resolve_with(
        &self,
        manifest_path: Option<&Path>,
        audit: Option<&str>,
    ) -> Result<Resolved, String> {
        let Loaded {
            identity,
            telemetry,
            mut rules,
            mut kinds,
            listen,
            mut pools,
            require_tls,
            mode,
            mut dns,
            audit: mut audit_to,
            limits,
            time,
            imports,
            providers,
            apps: _,
            base: _,
        } = match manifest_path {
            // Relative paths in a manifest are relative to its directory.
            Some(path) => Loaded::read(path).map_err(|e| e.to_string())?,
            None => Loaded::default(),
        };
        let require_tls = require_tls || self.require_tls;
        rules.extend(self.rules());
        for p in &self.pool {
            if pools.iter().any(|q| q.name() == p.name()) {
                return Err(format!(
                    "--pool {}: a pool named `{}` is defined already",
                    p.text(),
                    p.name()
                ));
            }
            pools.push(p.clone());
        }
        if !self.connect_tls.is_empty() {
            kinds.push(Kind {
                name: CONNECT_TLS_KIND.into(),
                protocol: Protocol::Tls,
                server_name: self.tls_server_name.clone(),
                ca: self.tls_ca.clone(),
                client_cert: self.tls_client_cert.clone(),
                client_key: self.tls_client_key.clone(),
                ..Kind::default()
            });
        }
        if let Some(addr) = self.dns_server {
            dns = DnsConfig::Server(addr);
        }
        if let Some(a) = audit {
            audit_to = Some(audit_dest(a, Path::new("")));
        }
        let policy = Policy::with_kinds(rules, kinds, require_tls).map_err(|e| kind_error(&e))?;
        let mode = self.policy_mode.unwrap_or(mode);
        // One warning per rule id (a flag makes several rules).
        let mut warnings: Vec<String> = Vec::new();
        if mode == warden_policy::Mode::Audit {
            warnings.push(
                "warden: WARNING: policy mode is audit: NOTHING IS DENIED. Every network action the policy would deny is recorded as would-deny in the audit log and allowed. Use it only to learn a policy for a program you trust (warden learn AUDIT.jsonl); --policy-mode enforce is the default.".to_string(),
            );
            if audit_to.is_none() {
                warnings.push("warden: warning: audit mode without --audit (or the manifest's audit): what would be denied is only counted, not recorded".to_string());
            }
        }
        let mut warned: Vec<&str> = Vec::new();
        for r in policy.allow_all_rules() {
            if warned.contains(&r.id.as_str()) {
                continue;
            }
            warned.push(&r.id);
            warnings.push(format!(
                "warden: warning: rule {} ({r}) allows {} everywhere; grant only what the program needs",
                r.id,
                match r.effect {
                    warden_policy::Effect::Allow(rights) => rights.to_string(),
                    warden_policy::Effect::Deny => String::new(),
                }
            ));
        }
        Ok(Resolved {
            network: Network {
                policy,
                dns,
                audit: audit_to,
                audit_max_size: None,
                reporter: None,
                handshake_timeout: None,
                pools,
                strict_pools: self.strict_pools,
                mode,
                // A flag wins over the manifest's [limits].
                quotas: warden_net::Quotas {
                    conns_out: self.max_conns_out,
                    conns_in: self.max_conns_in,
                    udp_sockets: self.max_udp_sockets,
                }
                .or(limits.quotas),
                egress_rate: self.max_egress_rate.or(limits.egress_rate),
                ingress_rate: self.max_ingress_rate.or(limits.ingress_rate),
                identity: self.issuer(identity)?,
            },
            listen,
            warnings,
            limits,
            time,
            imports,
            providers,
            telemetry,
        })
    }
}

/// A disagreement between grants and kinds, in the words of the flags
/// when a flag made the rule.
pub(crate) fn kind_error(e: &KindError) -> String {
    match e {
        KindError::PlainTcp { rule } if rule.starts_with("--") => format!(
            "{rule} allows plain TCP connections, but --require-tls (or require_tls) says every connection must be TLS: use --connect-tls instead"
        ),
        KindError::PlainTcp { rule } => format!(
            "rule {rule} allows plain TCP connections, but --require-tls (or require_tls) says every connection must be TLS: give it a TLS kind"
        ),
        KindError::NoServerName { rule, .. } if rule.starts_with("--") => format!(
            "{rule}: TLS to an address needs the name the server's certificate carries: add --tls-server-name NAME, or connect by host name"
        ),
        other => other.to_string(),
    }
}

/// Parse what `explain` is asked about: `HOST:PORT`, `IP:PORT`,
/// `[IPv6]:PORT`, or for `resolve` a bare name.
pub fn explain_target(
    action: warden_policy::Action,
    s: &str,
) -> Result<warden_policy::Target, String> {
    use warden_policy::{Action, Target};
    if action == Action::Resolve {
        return Ok(Target::Name {
            host: s.to_string(),
            port: None,
        });
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(Target::Addr(addr));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}`: expected HOST:PORT, IP:PORT or [IPv6]:PORT"))?;
    if host.contains(':') || host.starts_with('[') {
        return Err(format!("`{s}`: expected [IPv6]:PORT"));
    }
    if host.parse::<Cidr>().is_ok() && host.contains('/') {
        return Err(format!("`{s}`: explain one address, not a block"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{s}`: `{port}` is not a port (0-65535)"))?;
    Ok(Target::Name {
        host: host.to_string(),
        port: Some(port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_policy::{Action, Target};

    fn args(
        allow_connect: &[&str],
        allow_listen: &[&str],
        allow_udp: &[&str],
        deny: &[&str],
    ) -> NetworkArgs {
        NetworkArgs {
            allow_connect: allow_connect.iter().map(|s| flag(s).unwrap()).collect(),
            allow_listen: allow_listen
                .iter()
                .map(|s| listen_flag(s).unwrap())
                .collect(),
            allow_udp: allow_udp.iter().map(|s| flag(s).unwrap()).collect(),
            deny: deny.iter().map(|s| flag(s).unwrap()).collect(),
            ..NetworkArgs::default()
        }
    }

    fn decide(p: &Policy, action: Action, t: &str) -> (bool, String) {
        let d = p.decide(action, &explain_target(action, t).unwrap());
        (d.is_allowed(), d.rule().to_string())
    }

    #[test]
    fn flags_expand_to_their_rights() {
        let a = args(
            &["api.test:8080", "127.0.0.1:9000-9001"],
            &["127.0.0.1:7000"],
            &["127.0.0.1:5353"],
            &["127.0.0.1:9001"],
        );
        let p = a.resolve(None).unwrap().network.policy;
        assert_eq!(
            decide(&p, Action::Connect, "api.test:8080"),
            (true, "--allow-connect api.test:8080".into())
        );
        assert!(decide(&p, Action::Resolve, "api.test").0);
        assert!(decide(&p, Action::Connect, "127.0.0.1:9000").0);
        assert_eq!(
            decide(&p, Action::Connect, "127.0.0.1:9001"),
            (false, "--deny 127.0.0.1:9001".into())
        );
        assert!(!decide(&p, Action::Resolve, "127.0.0.1.nip.io").0);
        assert!(decide(&p, Action::Bind, "127.0.0.1:7000").0);
        assert!(decide(&p, Action::Listen, "127.0.0.1:7000").0);
        assert!(!decide(&p, Action::Connect, "127.0.0.1:7000").0);
        assert!(decide(&p, Action::Accept, "127.0.0.9:41000").0);
        assert!(decide(&p, Action::Accept, "[::1]:41000").0);
        assert!(decide(&p, Action::UdpBind, "0.0.0.0:0").0);
        assert!(decide(&p, Action::UdpBind, "127.0.0.1:0").0);
        assert!(!decide(&p, Action::UdpBind, "127.0.0.1:5353").0);
        assert!(decide(&p, Action::UdpSend, "127.0.0.1:5353").0);
        assert!(decide(&p, Action::UdpRecv, "127.0.0.1:5353").0);
        assert!(!decide(&p, Action::UdpSend, "127.0.0.1:5354").0);
        assert!(!decide(&p, Action::Connect, "127.0.0.1:5353").0);
    }

    #[test]
    fn allow_all_draws_a_warning() {
        let r = args(&["0.0.0.0/0:*", "10.0.0.0/8:*"], &[], &[], &[])
            .resolve(None)
            .unwrap();
        assert_eq!(
            r.warnings,
            [
                "warden: warning: rule --allow-connect 0.0.0.0/0:* (allow connect 0.0.0.0/0:*) allows connect everywhere; grant only what the program needs"
            ]
        );
        assert!(
            args(&["10.0.0.0/8:*"], &[], &[], &[])
                .resolve(None)
                .unwrap()
                .warnings
                .is_empty()
        );
        // A narrow listener accepts from every peer: no warning for that.
        assert!(
            args(&[], &["127.0.0.1:7777"], &[], &[])
                .resolve(None)
                .unwrap()
                .warnings
                .is_empty()
        );
        // A wide one is warned about once.
        let r = args(&[], &["0.0.0.0/0:*"], &[], &[]).resolve(None).unwrap();
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    }

    #[test]
    fn bad_flag_values_say_what_was_expected() {
        assert_eq!(
            listen_flag("example.com:80").unwrap_err(),
            "`example.com:80`: a listening address is an IP or a CIDR (127.0.0.1:8080, [::1]:8000-8999, 0.0.0.0:443), not a name"
        );
        assert!(
            flag("api.example.com")
                .unwrap_err()
                .contains("expected TARGET:PORTS")
        );
        assert!(pattern("a*.b").is_err());
        assert_eq!(
            dns_server("dns:53").unwrap_err(),
            "expected IP:PORT, like 127.0.0.1:53 or [::1]:53, not `dns:53`"
        );
        assert!(explain_target(Action::Connect, "api.test").is_err());
        assert!(explain_target(Action::Connect, "api.test:x").is_err());
        assert_eq!(
            explain_target(Action::Connect, "[::1]:80").unwrap(),
            Target::Addr("[::1]:80".parse().unwrap())
        );
    }
}
