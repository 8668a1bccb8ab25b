//! The operator's manifest: a versioned TOML file that says everything the
//! network flags say, each right separately, with an id per rule.
//!
//! ```toml
//! version = 1
//! dns_server = "127.0.0.1:53"     # optional; default: the system's resolvers
//! audit = "audit.jsonl"           # optional; "-" is stderr
//!
//! [[allow]]
//! id = "api"
//! target = "api.example.com"      # IP, CIDR, host name, *.suffix or *
//! ports = "443"                   # N, N-M or *; may be left out only for resolve
//! rights = ["connect", "resolve"]
//! internal = false                # true: the names may reach internal addresses
//!                                 # (loopback, private, link-local, ...)
//!
//! [[deny]]
//! id = "metadata"
//! target = "169.254.0.0/16"
//! ports = "*"                     # optional; default *
//!
//! [[listen]]
//! name = "http"                   # optional; default tcpN
//! addr = "127.0.0.1:8080"         # IP:PORT, fd:N or fd:NAME
//! cert = "server.pem"             # optional: terminate TLS for the guest
//! key = "server.key"
//! client_ca = "clients.pem"       # optional: require client certificates
//! # identity = true               # instead of cert and key: the workload's SVID
//! # peer_ids = ["spiffe://td/*"]  # with client_ca: admit only these SPIFFE IDs
//!
//! [[pool]]                        # an address pool a preview1 guest opens sockets from
//! name = "db"                     # announced in WARDEN_POOLS as db=FD
//! rights = ["connect"]
//! targets = ["127.0.0.1:5432", "db.internal:5432"]
//!
//! require_tls = false             # true: every connect grant needs a TLS kind
//! mode = "enforce"                # or "audit": record what would be denied, allow it
//!
//! [[kind]]                        # a connection kind, which grants name
//! name = "db"
//! protocol = "postgres-tls"       # tcp, tls or postgres-tls
//! server_name = "db.internal"     # optional; default: the resolved name
//! ca = "ca.pem"                   # optional; default: the webpki roots
//! client_cert = "client.pem"      # optional, with client_key: mutual TLS
//! client_key = "client.key"
//! alpn = ["h2", "http/1.1"]       # optional
//! min_version = "1.3"             # optional; default 1.2
//! max_connections = 16            # optional
//! identity = false                # optional; true: present the workload's SVID
//! peer_ids = []                   # optional: the peer must name one of these SPIFFE IDs
//! # cert, key, client_ca: for a kind named by a listen grant
//!
//! [limits]                        # for `warden run` (flags win) and the containerd shim
//! timeout = "30s"                 # as the flags take them
//! max_memory = "128MiB"
//! fuel = 1000000000
//! max_conns_out = 64              # quotas: open at once (in serve: per app,
//! max_conns_in = 256              #   and the server's ceiling over all apps)
//! max_udp_sockets = 8
//! max_egress_rate = "2MiB/s"      # bandwidth the guest sends / receives
//! max_ingress_rate = "8MiB/s"
//!
//! [time]                          # the guest's clocks (flags win)
//! wall_clock = "frozen:2024-05-01T12:00:00Z"  # real, frozen[:TIME] or start:TIME
//! monotonic_clock = "virtual"     # virtual (from the instance's start) or real
//!
//! [random]
//! seed = 42                       # every random source a fixed stream: tests, replay
//!
//! [[plug]]                        # a component satisfying the guest's imports
//! file = "kv-mock.wasm"
//! sha256 = "9f2c..."              # optional pin: a plug with another digest is refused
//!
//! [world]                         # what a component may import (after its plugs)
//! imports = ["wasi:cli/*", "wasi:io/*", "example:kv/store"]
//!
//! [config]                        # the built-in wasi:config/store's values
//! greeting = "hello"
//!
//! [keyvalue]                      # the built-in in-memory wasi:keyvalue
//! store = "memory:4MiB"           # memory or memory:SIZE
//!
//! [identity]                      # each instance's identity certificate (SPIFFE)
//! ca = "identity-ca.pem"          # the CA that signs them (an intermediate, say)
//! ca_key = "identity-ca.key"
//! trust_domain = "example.org"
//! ttl = "1h"                      # optional; renewed at half its life
//! template = "/wasm/sha256/{sha256}"  # optional; may add {app}, keeps {sha256}
//!
//! [telemetry]                     # OpenTelemetry export (off without an endpoint)
//! endpoint = "http://127.0.0.1:4318"  # the collector's OTLP/HTTP base URL
//! audit = false                   # true: audit records also as OTLP logs
//!
//! [[app]]                         # an application `warden serve` hosts
//! name = "api"
//! component = "api.wasm"
//! path = "/api"                   # route: path prefix (default /) ...
//! host = "api.example.com"        # ... and optionally a host
//! manifest = "api-policy.toml"    # optional: its own policy
//! env = ["MODE=prod"]
//! dirs = ["./data::/data"]        # dirs, dirs_ro: HOST[::GUEST]
//! max_memory = "64MiB"            # per request, as the flags
//! timeout = "5s"
//! fuel = 100000000
//! max_conns_out = 16              # its quotas and rates, all its instances together
//! max_egress_rate = "1MiB/s"
//! wall_clock = "start:2030-01-01T00:00:00Z"   # wall_clock, monotonic_clock,
//! random_seed = 7                 # random_seed: as [time] and [random], per app
//! plugs = [{ file = "kv-mock.wasm" }]         # its own plugs and world (instead
//! world_imports = ["wasi:cli/*"]              #   of the server's)
//! config = { greeting = "hi" }    # its own config values and store (shared by
//! keyvalue = "memory:1MiB"        #   its instances), instead of the server's
//! ```
//!
//! A grant names a kind with `kind = "db"`. Unknown keys, a wrong type, an
//! unknown right, protocol or kind, a bad target or a repeated id are errors
//! that carry the line and column where they are, and say what was expected.
//! Parsing does no I/O: files are named, and read by whoever loads them.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::world::{ImportPattern, World};
use crate::{Kind, KindError, Policy, Pool, Ports, Protocol, Rights, Rule, RuleTarget, TlsVersion};

/// The manifest version this Warden reads.
pub const VERSION: i64 = 1;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Manifest {
    /// Grants in file order, then denies in file order.
    pub rules: Vec<Rule>,
    /// The DNS server to resolve with, instead of the system's.
    pub dns_server: Option<SocketAddr>,
    /// Where to write the audit log (`-` for stderr), as written.
    pub audit: Option<String>,
    /// Listeners the host binds for the guest, in order.
    pub listen: Vec<Listen>,
    /// Connection kinds, which grants name.
    pub kinds: Vec<Kind>,
    /// Whether every connect grant must have a TLS kind.
    pub require_tls: bool,
    /// Enforce the policy, or only audit it.
    pub mode: crate::Mode,
    /// Applications `warden serve` hosts, each on its route.
    pub apps: Vec<App>,
    /// Address pools pre-opened for a preview1 guest, in order.
    pub pools: Vec<Pool>,
    /// Limits for a run, as written (the binary reads them as it reads
    /// its flags).
    pub limits: LimitsTable,
    /// The guest's clocks and random seed (`[time]`, `[random]`), as
    /// written.
    pub time: TimeTable,
    /// Plugs (`[[plug]]`) and the world (`[world]`).
    pub imports: ImportsTable,
    /// The built-in providers (`[config]`, `[keyvalue]`).
    pub providers: ProvidersTable,
    /// The workload identity issuer (`[identity]`), as written.
    pub identity: Option<IdentityTable>,
    /// OpenTelemetry export (`[telemetry]`), as written.
    pub telemetry: Option<TelemetryTable>,
}

/// `[telemetry]`: where OpenTelemetry data goes, and whether audit
/// records go too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryTable {
    /// The collector's OTLP/HTTP base URL (`--otlp-endpoint`).
    pub endpoint: Option<String>,
    /// Audit records also as OTLP log records (`--otlp-audit`).
    pub audit: bool,
}

/// `[identity]`: the CA that signs each instance's (each app's)
/// identity certificate. Paths as written; the TTL as `--identity-ttl`
/// takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityTable {
    /// The CA certificate (PEM).
    pub ca: String,
    /// The CA's key (PEM).
    pub ca_key: String,
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// How long each certificate lives (default 1h).
    pub ttl: Option<String>,
    /// The path template (default `/wasm/sha256/{sha256}`).
    pub template: Option<String>,
}

/// The built-in providers a manifest (or an app) turns on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvidersTable {
    /// `wasi:config/store`'s values, in key order (`None`: not provided).
    pub config: Option<Vec<(String, String)>>,
    /// The in-memory `wasi:keyvalue` store, as `--keyvalue` takes it
    /// (`memory` or `memory:SIZE`; `None`: not provided).
    pub keyvalue: Option<String>,
}

/// What a component may import and what satisfies its imports: plugs and
/// the operator's world (see [`crate::world`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportsTable {
    /// Plugs, in order; files as written.
    pub plugs: Vec<PlugEntry>,
    /// The world's patterns, if given.
    pub world: Option<World>,
}

/// A `[[plug]]` entry: a component whose exports satisfy the guest's
/// imports of the same interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlugEntry {
    /// The component file, as written.
    pub file: PathBuf,
    /// The SHA-256 it must have, if pinned.
    pub sha256: Option<[u8; 32]>,
}

/// A SHA-256 digest written as 64 hexadecimal digits.
pub fn parse_sha256(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    let bad = || {
        format!(
            "`{s}` is not a SHA-256 digest: expected 64 hexadecimal digits (as sha256sum prints)"
        )
    };
    if s.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The `[time]` and `[random]` tables: the guest's clocks as the flags
/// take them, and its random seed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeTable {
    /// As `--wall-clock` takes it.
    pub wall_clock: Option<String>,
    /// As `--monotonic-clock` takes it.
    pub monotonic_clock: Option<String>,
    /// As `--random-seed` takes it.
    pub random_seed: Option<u64>,
}

/// The `[limits]` table: a run's bounds, as text the flags take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsTable {
    /// As `--timeout` takes it.
    pub timeout: Option<String>,
    /// As `--max-memory` takes it.
    pub max_memory: Option<String>,
    /// As `--fuel` takes it.
    pub fuel: Option<u64>,
    /// As `--max-conns-out` takes it.
    pub max_conns_out: Option<u32>,
    /// As `--max-conns-in` takes it.
    pub max_conns_in: Option<u32>,
    /// As `--max-udp-sockets` takes it.
    pub max_udp_sockets: Option<u32>,
    /// As `--max-egress-rate` takes it.
    pub max_egress_rate: Option<String>,
    /// As `--max-ingress-rate` takes it.
    pub max_ingress_rate: Option<String>,
}

/// An `[[app]]` entry: one application `warden serve` hosts. Paths are as
/// written (relative to the manifest); sizes and durations are the text the
/// binary parses as it parses its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Its name: a word, unique among the apps.
    pub name: String,
    /// The component file.
    pub component: PathBuf,
    /// The path prefix it serves (default `/`).
    pub path: String,
    /// The host it serves, if only one.
    pub host: Option<String>,
    /// Its own policy manifest (rules, kinds, DNS, audit), if any.
    pub manifest: Option<PathBuf>,
    /// `NAME=VALUE` environment variables.
    pub env: Vec<(String, String)>,
    /// Read-write directories, `HOST[::GUEST]`.
    pub dirs: Vec<String>,
    /// Read-only directories, `HOST[::GUEST]`.
    pub dirs_ro: Vec<String>,
    /// Memory per request, as `--max-memory` takes it.
    pub max_memory: Option<String>,
    /// Time per request, as `--timeout` takes it.
    pub timeout: Option<String>,
    /// Its quotas and rates, all its instances together, as the flags
    /// take them.
    pub max_conns_out: Option<u32>,
    /// See `max_conns_out`.
    pub max_conns_in: Option<u32>,
    /// See `max_conns_out`.
    pub max_udp_sockets: Option<u32>,
    /// See `max_conns_out`.
    pub max_egress_rate: Option<String>,
    /// See `max_conns_out`.
    pub max_ingress_rate: Option<String>,
    /// Fuel per request.
    pub fuel: Option<u64>,
    /// Its clocks and random seed, as written.
    pub time: TimeTable,
    /// Its own plugs and world (empty and `None`: the server's).
    pub imports: ImportsTable,
    /// Its own built-in providers (`None`: the server's).
    pub providers: ProvidersTable,
}

impl Manifest {
    /// The policy this manifest says (its rules and kinds, checked
    /// against each other).
    pub fn policy(&self) -> Result<Policy, KindError> {
        Policy::with_kinds(self.rules.clone(), self.kinds.clone(), self.require_tls)
    }
}

/// A `[[listen]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The name the guest sees, if given.
    pub name: Option<String>,
    /// Where the listener comes from.
    pub on: ListenOn,
    /// TLS the host terminates for the guest, if any.
    pub tls: Option<ListenTls>,
}

impl Listen {
    /// How it is written and quoted, as the id of the grant that lets it
    /// be used: `listen NAME=ON`, or `listen ON` when unnamed.
    pub fn id(&self) -> String {
        match &self.name {
            Some(n) => format!("listen {n}={}", self.on),
            None => format!("listen {}", self.on),
        }
    }
}

/// TLS a pre-opened listener terminates: the guest accepts decrypted
/// connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTls {
    /// The server certificate chain (PEM); `None` with `identity`.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM); `None` with `identity`.
    pub key: Option<PathBuf>,
    /// PEM CAs whose client certificates are required, if any.
    pub client_ca: Option<PathBuf>,
    /// Present the workload's identity certificate instead of a file's.
    pub identity: bool,
    /// Admit only peers whose verified certificate carries one of these
    /// SPIFFE IDs (needs `client_ca`).
    pub peer_ids: Vec<String>,
}

impl ListenTls {
    /// The connection kind a TLS listener named `listener` is given:
    /// `listen:NAME`, serving this certificate (and asking for client
    /// certificates signed by `client_ca`, if given).
    pub fn kind(&self, listener: &str) -> Kind {
        Kind {
            name: format!("listen:{listener}"),
            protocol: Protocol::Tls,
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: self.client_ca.clone(),
            identity: self.identity,
            peer_ids: self.peer_ids.clone(),
            ..Kind::default()
        }
    }
}

/// The name of the `index`th pre-opened listener (from 0) when none is
/// given: `tcpN`.
pub fn default_listener_name(index: usize) -> String {
    format!("tcp{index}")
}

/// Where a pre-opened listener comes from: an address Warden binds, or a
/// listening socket a service manager handed to Warden itself (systemd's
/// `LISTEN_FDS` protocol), by descriptor number or by its name in
/// `LISTEN_FDNAMES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenOn {
    /// Bind and listen on this address.
    Addr(SocketAddr),
    /// The inherited listening socket at this descriptor (3 or above).
    Fd(u32),
    /// The inherited listening socket with this name.
    FdName(String),
}

impl ListenOn {
    /// The name of the `index`th listener (from 0) given none, when that
    /// is known before its socket is opened: [`default_listener_name`]
    /// for an address; `None` for an inherited socket, which keeps the
    /// name its service manager gave it (and the default otherwise).
    pub fn default_name(&self, index: usize) -> Option<String> {
        match self {
            ListenOn::Addr(_) => Some(default_listener_name(index)),
            ListenOn::Fd(_) | ListenOn::FdName(_) => None,
        }
    }
}

impl fmt::Display for ListenOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenOn::Addr(a) => write!(f, "{a}"),
            ListenOn::Fd(n) => write!(f, "fd:{n}"),
            ListenOn::FdName(n) => write!(f, "fd:{n}"),
        }
    }
}

impl std::str::FromStr for ListenOn {
    type Err = String;

    /// `IP:PORT`, `fd:N` or `fd:NAME`.
    fn from_str(s: &str) -> Result<ListenOn, String> {
        if let Some(fd) = s.strip_prefix("fd:") {
            if let Ok(n) = fd.parse::<u32>() {
                return if n >= 3 {
                    Ok(ListenOn::Fd(n))
                } else {
                    Err(format!(
                        "`{s}`: an inherited listener is at fd 3 or above (0-2 are stdio)"
                    ))
                };
            }
            let ok = !fd.is_empty()
                && fd.len() <= 255
                && fd
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            return if ok {
                Ok(ListenOn::FdName(fd.to_string()))
            } else {
                Err(format!(
                    "`{s}`: expected fd:N or fd:NAME, NAME as in LISTEN_FDNAMES"
                ))
            };
        }
        s.parse::<SocketAddr>()
            .map(ListenOn::Addr)
            .map_err(|_| format!("expected IP:PORT (127.0.0.1:8080), fd:N or fd:NAME, not `{s}`"))
    }
}

/// Why a manifest was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct ManifestError {
    /// The file (or other origin) the text came from.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: Spanned<i64>,
    dns_server: Option<Spanned<String>>,
    audit: Option<Spanned<String>>,
    #[serde(default)]
    allow: Vec<RawAllow>,
    #[serde(default)]
    deny: Vec<RawDeny>,
    #[serde(default)]
    listen: Vec<RawListen>,
    #[serde(default)]
    kind: Vec<RawKind>,
    require_tls: Option<Spanned<bool>>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    app: Vec<RawApp>,
    #[serde(default)]
    pool: Vec<RawPool>,
    limits: Option<RawLimits>,
    time: Option<RawTime>,
    random: Option<RawRandom>,
    #[serde(default)]
    plug: Vec<RawPlug>,
    world: Option<RawWorld>,
    config: Option<std::collections::BTreeMap<String, String>>,
    keyvalue: Option<RawKeyValue>,
    identity: Option<RawIdentity>,
    telemetry: Option<RawTelemetry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    endpoint: Option<Spanned<String>>,
    audit: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    ca: Spanned<String>,
    ca_key: String,
    trust_domain: Spanned<String>,
    ttl: Option<String>,
    template: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyValue {
    store: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlug {
    file: Spanned<String>,
    sha256: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorld {
    imports: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    wall_clock: Option<String>,
    monotonic_clock: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRandom {
    seed: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout: Option<String>,
    max_memory: Option<String>,
    fuel: Option<u64>,
    max_conns_out: Option<u32>,
    max_conns_in: Option<u32>,
    max_udp_sockets: Option<u32>,
    max_egress_rate: Option<String>,
    max_ingress_rate: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Spanned<String>,
    rights: Spanned<Vec<Spanned<String>>>,
    targets: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Spanned<String>,
    component: Spanned<String>,
    path: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    manifest: Option<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    #[serde(default)]
    dirs: Vec<Spanned<String>>,
    #[serde(default)]
    dirs_ro: Vec<Spanned<String>>,
    max_memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    fuel: Option<Spanned<u64>>,
    max_conns_out: Option<u32>,
    max_conns_in: Option<u32>,
    max_udp_sockets: Option<u32>,
    max_egress_rate: Option<String>,
    max_ingress_rate: Option<String>,
    wall_clock: Option<Spanned<String>>,
    monotonic_clock: Option<Spanned<String>>,
    random_seed: Option<Spanned<u64>>,
    #[serde(default)]
    plugs: Vec<RawPlug>,
    world_imports: Option<Vec<Spanned<String>>>,
    config: Option<std::collections::BTreeMap<String, String>>,
    keyvalue: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    name: Spanned<String>,
    protocol: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    #[serde(default)]
    alpn: Vec<Spanned<String>>,
    min_version: Option<Spanned<String>>,
    max_connections: Option<Spanned<u32>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    identity: Option<bool>,
    #[serde(default)]
    peer_ids: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    id: Spanned<String>,
    target: Spanned<String>,
    ports: Option<Spanned<String>>,
    rights: Spanned<Vec<Spanned<String>>>,
    kind: Option<Spanned<String>>,
    internal: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeny {
    id: Spanned<String>,
    target: Spanned<String>,
    ports: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    name: Option<Spanned<String>>,
    addr: Spanned<String>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    identity: Option<bool>,
    #[serde(default)]
    peer_ids: Vec<Spanned<String>>,
}

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ManifestError {
        let at = span.start.min(self.text.len());
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ManifestError {
            origin: self.origin.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    fn parse<T>(
        &self,
        v: &Spanned<String>,
        what: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ManifestError> {
        f(v.get_ref()).map_err(|e| self.error(v.span(), format!("{what}: {e}")))
    }

    /// Plugs and a world as written.
    fn imports(
        &self,
        plugs: &[RawPlug],
        world: Option<&[Spanned<String>]>,
    ) -> Result<ImportsTable, ManifestError> {
        let mut out = Vec::new();
        for p in plugs {
            out.push(PlugEntry {
                file: PathBuf::from(p.file.get_ref()),
                sha256: match &p.sha256 {
                    Some(d) => Some(self.parse(d, "sha256", parse_sha256)?),
                    None => None,
                },
            });
        }
        let world = match world {
            Some(patterns) => {
                let mut imports = Vec::new();
                for p in patterns {
                    imports.push(self.parse(p, "imports", |v| {
                        ImportPattern::parse(v).map_err(|e| e.to_string())
                    })?);
                }
                Some(World { imports })
            }
            None => None,
        };
        Ok(ImportsTable { plugs: out, world })
    }

    /// The rights a list names.
    fn rights(&self, list: &Spanned<Vec<Spanned<String>>>) -> Result<Rights, ManifestError> {
        let mut rights = Rights::NONE;
        for r in list.get_ref() {
            rights = rights
                | Rights::from_name(r.get_ref()).ok_or_else(|| {
                    self.error(
                        r.span(),
                        format!(
                            "unknown right `{}`; expected one of {}",
                            r.get_ref(),
                            Rights::all_names()
                        ),
                    )
                })?;
        }
        Ok(rights)
    }

    fn id(
        &self,
        id: &Spanned<String>,
        seen: &mut HashSet<String>,
    ) -> Result<String, ManifestError> {
        let s = id.get_ref();
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.error(
                id.span(),
                "expected a rule id: a non-empty word without spaces",
            ));
        }
        if !seen.insert(s.clone()) {
            return Err(self.error(
                id.span(),
                format!("rule id `{s}` is used twice; ids must be unique"),
            ));
        }
        Ok(s.clone())
    }
}

/// Parse and validate a manifest. `origin` names the file in errors.
pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
    let cx = Ctx { text, origin };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        cx.error(span, e.message().trim_end())
    })?;
    if *raw.version.get_ref() != VERSION {
        return Err(cx.error(
            raw.version.span(),
            format!(
                "unsupported manifest version {}; this Warden reads version {VERSION}",
                raw.version.get_ref()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut rules = Vec::new();
    for a in &raw.allow {
        let id = cx.id(&a.id, &mut seen)?;
        let target: RuleTarget = cx.parse(&a.target, "target", str::parse)?;
        let rights = cx.rights(&a.rights)?;
        if rights.is_empty() {
            return Err(cx.error(
                a.rights.span(),
                format!(
                    "a grant needs at least one right; expected some of {}",
                    Rights::all_names()
                ),
            ));
        }
        let ports = match &a.ports {
            Some(p) => cx.parse(p, "ports", str::parse)?,
            None if rights == Rights::RESOLVE => Ports::ANY,
            None => {
                return Err(cx.error(
                    a.id.span(),
                    format!("grant `{id}` needs `ports` (N, N-M or *); only a resolve-only grant may leave it out"),
                ));
            }
        };
        let internal = a.internal.as_ref().is_some_and(|i| *i.get_ref());
        if internal && !matches!(target, RuleTarget::Name(_)) {
            let span = a.internal.as_ref().map_or(a.id.span(), |i| i.span());
            return Err(cx.error(
                span,
                format!("grant `{id}`: `internal` is for grants on names (an address grant reaches the addresses it names already)"),
            ));
        }
        let mut rule = Rule::allow(id, target, ports, rights);
        rule.kind = a.kind.as_ref().map(|k| k.get_ref().clone());
        rule.internal = internal;
        rules.push(rule);
    }
    for d in &raw.deny {
        let id = cx.id(&d.id, &mut seen)?;
        let target: RuleTarget = cx.parse(&d.target, "target", str::parse)?;
        let ports = match &d.ports {
            Some(p) => cx.parse(p, "ports", str::parse)?,
            None => Ports::ANY,
        };
        rules.push(Rule::deny(id, target, ports));
    }
    let dns_server = match &raw.dns_server {
        Some(s) => Some(cx.parse(s, "dns_server", |v| {
            v.parse::<SocketAddr>().map_err(|_| {
                format!("expected IP:PORT, for example 127.0.0.1:53 or [::1]:53, not `{v}`")
            })
        })?),
        None => None,
    };
    let audit = match &raw.audit {
        Some(a) if a.get_ref().is_empty() => {
            return Err(cx.error(a.span(), "audit: expected a file path, or - for stderr"));
        }
        Some(a) => Some(a.get_ref().clone()),
        None => None,
    };
    let mut listen = Vec::new();
    let mut names = HashSet::new();
    for l in &raw.listen {
        let on = cx.parse(&l.addr, "addr", |v| v.parse::<ListenOn>())?;
        let name = match &l.name {
            Some(n) => {
                let s = n.get_ref();
                if s.is_empty() || s.contains([':', '=']) || s.chars().any(char::is_whitespace) {
                    return Err(
                        cx.error(n.span(), "name: expected a word without `:`, `=` or spaces")
                    );
                }
                if !names.insert(s.clone()) {
                    return Err(cx.error(n.span(), format!("listener name `{s}` is used twice")));
                }
                Some(s.clone())
            }
            None => None,
        };
        let path = |v: &Option<Spanned<String>>| v.as_ref().map(|p| PathBuf::from(p.get_ref()));
        let identity = l.identity.unwrap_or(false);
        let mut peer_ids = Vec::new();
        for p in &l.peer_ids {
            peer_ids.push(cx.parse(p, "peer_ids", |v| {
                crate::spiffe::pattern(v)
                    .map(str::to_string)
                    .map_err(|e| e.to_string())
            })?);
        }
        let tls = match (path(&l.cert), path(&l.key), identity) {
            (cert @ Some(_), key @ Some(_), false) | (cert @ None, key @ None, true) => {
                Some(ListenTls {
                    cert,
                    key,
                    client_ca: path(&l.client_ca),
                    identity,
                    peer_ids,
                })
            }
            (None, None, false) if l.client_ca.is_none() && peer_ids.is_empty() => None,
            _ => {
                let at = l.cert.as_ref().or(l.key.as_ref()).or(l.client_ca.as_ref());
                let span = at.map_or(l.addr.span(), |v| v.span());
                return Err(cx.error(
                    span,
                    "a TLS listener needs both `cert` and `key`, or `identity = true` (and `client_ca` and `peer_ids` only with them)",
                ));
            }
        };
        if let Some(t) = &tls
            && !t.peer_ids.is_empty()
            && t.client_ca.is_none()
        {
            return Err(cx.error(
                l.addr.span(),
                "`peer_ids` needs `client_ca`: the trust bundle peers' certificates are verified against",
            ));
        }
        listen.push(Listen { name, on, tls });
    }
    let mut kinds = Vec::new();
    let mut kind_names = HashSet::new();
    for k in &raw.kind {
        let name = k.name.get_ref();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(cx.error(k.name.span(), "name: expected a word without spaces"));
        }
        if !kind_names.insert(name.clone()) {
            return Err(cx.error(k.name.span(), format!("kind `{name}` is defined twice")));
        }
        let path = |v: &Option<Spanned<String>>| v.as_ref().map(|p| PathBuf::from(p.get_ref()));
        let server_name = match &k.server_name {
            Some(n) => Some(cx.parse(n, "server_name", |v| {
                crate::normalize_name(v)
                    .or_else(|| crate::ip_literal(v).map(|_| v.to_string()))
                    .ok_or_else(|| format!("`{v}` is not a host name or IP address"))
            })?),
            None => None,
        };
        let kind = Kind {
            name: name.clone(),
            protocol: match &k.protocol {
                Some(p) => cx.parse(p, "protocol", str::parse::<Protocol>)?,
                None => Protocol::Tcp,
            },
            server_name,
            ca: path(&k.ca),
            client_cert: path(&k.client_cert),
            client_key: path(&k.client_key),
            alpn: k.alpn.iter().map(|a| a.get_ref().clone()).collect(),
            min_version: match &k.min_version {
                Some(v) => cx.parse(v, "min_version", str::parse::<TlsVersion>)?,
                None => TlsVersion::V1_2,
            },
            max_connections: k.max_connections.as_ref().map(|n| *n.get_ref()),
            cert: path(&k.cert),
            key: path(&k.key),
            client_ca: path(&k.client_ca),
            identity: k.identity.unwrap_or(false),
            peer_ids: k
                .peer_ids
                .iter()
                .map(|p| {
                    cx.parse(p, "peer_ids", |v| {
                        crate::spiffe::pattern(v)
                            .map(str::to_string)
                            .map_err(|e| e.to_string())
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if kind.max_connections == Some(0) {
            let span = k
                .max_connections
                .as_ref()
                .map_or(k.name.span(), |n| n.span());
            return Err(cx.error(span, "max_connections: expected 1 or more"));
        }
        kinds.push(kind);
    }
    let require_tls = raw.require_tls.as_ref().is_some_and(|r| *r.get_ref());
    let mode = match &raw.mode {
        Some(m) => cx.parse(m, "mode", crate::Mode::parse)?,
        None => crate::Mode::Enforce,
    };
    let mut apps = Vec::new();
    let mut app_names = HashSet::new();
    for a in &raw.app {
        let name = a.name.get_ref();
        let word = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !word {
            return Err(cx.error(
                a.name.span(),
                "name: expected letters, digits, `-`, `_` and `.` (at most 64)",
            ));
        }
        if !app_names.insert(name.clone()) {
            return Err(cx.error(a.name.span(), format!("app `{name}` is defined twice")));
        }
        if a.component.get_ref().is_empty() {
            return Err(cx.error(a.component.span(), "component: expected a file"));
        }
        let path = match &a.path {
            Some(p) => cx.parse(p, "path", |v| {
                if v.starts_with('/') && !v.contains(['?', '#', ' ']) {
                    Ok(v.to_string())
                } else {
                    Err(format!("`{v}` is not a path prefix (it starts with `/`)"))
                }
            })?,
            None => "/".to_string(),
        };
        let host = match &a.host {
            Some(h) => Some(cx.parse(h, "host", |v| {
                crate::normalize_name(v).ok_or_else(|| format!("`{v}` is not a host name"))
            })?),
            None => None,
        };
        let mut env = Vec::new();
        for e in &a.env {
            env.push(cx.parse(e, "env", |v| match v.split_once('=') {
                Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
                _ => Err(format!("`{v}` is not NAME=VALUE")),
            })?);
        }
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        let texts = |v: &[Spanned<String>]| v.iter().map(|s| s.get_ref().clone()).collect();
        apps.push(App {
            name: name.clone(),
            component: PathBuf::from(a.component.get_ref()),
            path,
            host,
            manifest: a.manifest.as_ref().map(|m| PathBuf::from(m.get_ref())),
            env,
            dirs: texts(&a.dirs),
            dirs_ro: texts(&a.dirs_ro),
            max_memory: text(&a.max_memory),
            timeout: text(&a.timeout),
            fuel: a.fuel.as_ref().map(|f| *f.get_ref()),
            max_conns_out: a.max_conns_out,
            max_conns_in: a.max_conns_in,
            max_udp_sockets: a.max_udp_sockets,
            max_egress_rate: a.max_egress_rate.clone(),
            max_ingress_rate: a.max_ingress_rate.clone(),
            time: TimeTable {
                wall_clock: text(&a.wall_clock),
                monotonic_clock: text(&a.monotonic_clock),
                random_seed: a.random_seed.as_ref().map(|f| *f.get_ref()),
            },
            imports: cx.imports(&a.plugs, a.world_imports.as_deref())?,
            providers: ProvidersTable {
                config: a.config.as_ref().map(|c| c.clone().into_iter().collect()),
                keyvalue: a.keyvalue.clone(),
            },
        });
    }
    let mut pools: Vec<Pool> = Vec::new();
    for p in &raw.pool {
        let rights = cx.rights(&p.rights)?;
        let mut targets = Vec::new();
        for t in p.targets.get_ref() {
            targets.push(cx.parse(t, "targets", crate::parse_target_ports)?);
        }
        let name = p.name.get_ref();
        if pools.iter().any(|q| q.name() == name) {
            return Err(cx.error(p.name.span(), format!("pool `{name}` is defined twice")));
        }
        let pool = Pool::new(name, rights, targets).map_err(|e| {
            let span = match e {
                crate::PoolError::Empty(_) if rights.is_empty() => p.rights.span(),
                crate::PoolError::Empty(_) => p.targets.span(),
                _ => p.name.span(),
            };
            cx.error(span, e.to_string())
        })?;
        pools.push(pool);
    }
    let limits = raw
        .limits
        .as_ref()
        .map_or_else(LimitsTable::default, |l| LimitsTable {
            timeout: l.timeout.clone(),
            max_memory: l.max_memory.clone(),
            fuel: l.fuel,
            max_conns_out: l.max_conns_out,
            max_conns_in: l.max_conns_in,
            max_udp_sockets: l.max_udp_sockets,
            max_egress_rate: l.max_egress_rate.clone(),
            max_ingress_rate: l.max_ingress_rate.clone(),
        });
    let time = TimeTable {
        wall_clock: raw.time.as_ref().and_then(|t| t.wall_clock.clone()),
        monotonic_clock: raw.time.as_ref().and_then(|t| t.monotonic_clock.clone()),
        random_seed: raw.random.as_ref().and_then(|r| r.seed),
    };
    let imports = cx.imports(&raw.plug, raw.world.as_ref().map(|w| w.imports.as_slice()))?;
    let providers = ProvidersTable {
        config: raw.config.as_ref().map(|c| c.clone().into_iter().collect()),
        keyvalue: raw.keyvalue.as_ref().map(|k| k.store.clone()),
    };
    let identity = match &raw.identity {
        None => None,
        Some(i) => {
            cx.parse(&i.trust_domain, "trust_domain", |v| {
                crate::spiffe::trust_domain(v)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })?;
            if let Some(t) = &i.template {
                cx.parse(t, "template", |v| {
                    crate::spiffe::workload_id(
                        i.trust_domain.get_ref(),
                        Some(v),
                        &"0".repeat(64),
                        Some("app"),
                    )
                    .map(|_| ())
                    .map_err(|e| e.to_string())
                })?;
            }
            Some(IdentityTable {
                ca: i.ca.get_ref().clone(),
                ca_key: i.ca_key.clone(),
                trust_domain: i.trust_domain.get_ref().clone(),
                ttl: i.ttl.clone(),
                template: i.template.as_ref().map(|t| t.get_ref().clone()),
            })
        }
    };
    let telemetry = match &raw.telemetry {
        None => None,
        Some(t) => {
            if let Some(e) = &t.endpoint {
                cx.parse(e, "endpoint", |v| {
                    if v.starts_with("http://") {
                        Ok(())
                    } else {
                        Err("expected the collector's OTLP/HTTP URL, http://host:port".to_string())
                    }
                })?;
            }
            Some(TelemetryTable {
                endpoint: t.endpoint.as_ref().map(|e| e.get_ref().clone()),
                audit: t.audit.unwrap_or(false),
            })
        }
    };
    let manifest = Manifest {
        identity,
        telemetry,
        mode,
        limits,
        time,
        imports,
        providers,
        pools,
        rules,
        dns_server,
        audit,
        listen,
        kinds,
        require_tls,
        apps,
    };
    // The grants and kinds must agree; an error points at the rule (or the
    // kind) it is about.
    if let Err(e) = manifest.policy() {
        let span = match &e {
            KindError::Unknown { rule, .. }
            | KindError::NoServerName { rule, .. }
            | KindError::NoCertificate { rule, .. }
            | KindError::PlainTcp { rule } => raw
                .allow
                .iter()
                .find(|a| a.id.get_ref() == rule)
                .map(|a| a.kind.as_ref().map_or(a.id.span(), |k| k.span())),
            KindError::HalfClientAuth { kind } | KindError::HalfServerAuth { kind } => raw
                .kind
                .iter()
                .find(|k| k.name.get_ref() == kind)
                .map(|k| k.name.span()),
        };
        return Err(cx.error(span.unwrap_or(0..0), e.to_string()));
    }
    Ok(manifest)
}

impl fmt::Display for Manifest {
    /// The resolved policy, one rule per line with its id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            writeln!(f, "{}\t{r}", r.id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "w.toml").unwrap_err().to_string()
    }

    #[test]
    fn listeners_are_named_and_their_tls_is_a_kind_of_their_own() {
        let addr: ListenOn = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(addr.default_name(2).as_deref(), Some("tcp2"));
        // An inherited socket keeps the name its service manager gave it.
        assert_eq!(ListenOn::Fd(3).default_name(0), None);
        assert_eq!(ListenOn::FdName("web".into()).default_name(0), None);
        let tls = ListenTls {
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            client_ca: Some("ca.pem".into()),
            identity: false,
            peer_ids: Vec::new(),
        };
        let kind = tls.kind("web");
        assert_eq!(kind.name, "listen:web");
        assert!(kind.serves_tls());
        assert_eq!(kind.cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(
            kind.client_ca.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
    }

    #[test]
    fn full_manifest_parses() {
        let m = parse(
            r#"
version = 1
dns_server = "127.0.0.1:5353"
audit = "-"

[[allow]]
id = "api"
target = "api.example.com"
ports = "443"
rights = ["connect", "resolve"]

[[allow]]
id = "names"
target = "*.example.com"
rights = ["resolve"]

[[deny]]
id = "metadata"
target = "169.254.0.0/16"

[[listen]]
name = "http"
addr = "127.0.0.1:8080"
"#,
            "w.toml",
        )
        .unwrap();
        let lines: Vec<String> = m.rules.iter().map(|r| format!("{} {r}", r.id)).collect();
        assert_eq!(
            lines,
            [
                "api allow connect,resolve api.example.com:443",
                "names allow resolve *.example.com:*",
                "metadata deny 169.254.0.0/16:*",
            ]
        );
        assert_eq!(m.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(m.audit.as_deref(), Some("-"));
        assert_eq!(
            m.listen,
            [Listen {
                name: Some("http".into()),
                on: ListenOn::Addr("127.0.0.1:8080".parse().unwrap()),
                tls: None,
            }]
        );
    }

    #[test]
    fn bad_manifests_say_where_and_what() {
        assert_eq!(
            err("version = 1\nlisten_on = 3\n"),
            "w.toml:2:1: unknown field `listen_on`, expected one of `version`, `dns_server`, `audit`, `allow`, `deny`, `listen`, `kind`, `require_tls`, `mode`, `app`, `pool`, `limits`, `time`, `random`, `plug`, `world`, `config`, `keyvalue`, `identity`, `telemetry`"
        );
        assert_eq!(
            err(
                "version = 1\n[[allow]]\nid = \"a\"\ntarget = \"10.0.0.0/8\"\nports = \"1\"\nrights = [\"connect\"]\nport = 3\n"
            ),
            "w.toml:7:1: unknown field `port`, expected one of `id`, `target`, `ports`, `rights`, `kind`, `internal`"
        );
        assert_eq!(
            err("version = 2\n"),
            "w.toml:1:11: unsupported manifest version 2; this Warden reads version 1"
        );
        assert_eq!(
            err("dns_server = \"1.1.1.1:53\"\n"),
            "w.toml:1:1: missing field `version`"
        );
        assert_eq!(
            err(
                "version = 1\n[[allow]]\nid = \"a\"\ntarget = \"10.0.0.0/8\"\nports = \"1\"\nrights = [\"connect\", \"fly\"]\n"
            ),
            "w.toml:6:22: unknown right `fly`; expected one of connect, bind, listen, accept, udp-bind, udp-send, udp-recv, resolve"
        );
        assert_eq!(
            err(
                "version = 1\n[[allow]]\nid = \"a\"\ntarget = \"10.0.0.0/33\"\nports = \"1\"\nrights = [\"connect\"]\n"
            ),
            "w.toml:4:10: target: `/33` is not a prefix length for 10.0.0.0 (0-32)"
        );
        assert_eq!(
            err(
                "version = 1\n[[allow]]\nid = \"a\"\ntarget = \"10.0.0.0/8\"\nrights = [\"connect\"]\n"
            ),
            "w.toml:3:6: grant `a` needs `ports` (N, N-M or *); only a resolve-only grant may leave it out"
        );
        assert_eq!(
            err(
                "version = 1\n[[deny]]\nid = \"x\"\ntarget = \"a.b\"\n[[deny]]\nid = \"x\"\ntarget = \"c.d\"\n"
            ),
            "w.toml:6:6: rule id `x` is used twice; ids must be unique"
        );
        assert_eq!(
            err("version = 1\n[[deny]]\nid = \"x\"\ntarget = \"a.b\"\nports = \"9-1\"\n"),
            "w.toml:5:9: ports: port range `9-1` is empty: 9 is above 1"
        );
        assert_eq!(
            err("version = 1\ndns_server = \"dns.local\"\n"),
            "w.toml:2:14: dns_server: expected IP:PORT, for example 127.0.0.1:53 or [::1]:53, not `dns.local`"
        );
        assert_eq!(
            err("version = 1\n[[listen]]\naddr = \"localhost:80\"\n"),
            "w.toml:3:8: addr: expected IP:PORT (127.0.0.1:8080), fd:N or fd:NAME, not `localhost:80`"
        );
        assert_eq!(
            err("version = \"1\"\n"),
            "w.toml:1:11: invalid type: string \"1\", expected i64"
        );
        assert!(err("version = 1\n[[allow]\n").starts_with("w.toml:2:"));
    }

    #[test]
    fn listeners_may_be_inherited() {
        let m = parse(
            "version = 1\n[[listen]]\naddr = \"fd:3\"\n[[listen]]\nname = \"web\"\naddr = \"fd:web\"\n",
            "w.toml",
        )
        .unwrap();
        assert_eq!(m.listen[0].on, ListenOn::Fd(3));
        assert_eq!(m.listen[1].on, ListenOn::FdName("web".into()));
        assert_eq!(m.listen[1].on.to_string(), "fd:web");
        assert_eq!(
            err("version = 1\n[[listen]]\naddr = \"fd:1\"\n"),
            "w.toml:3:8: addr: `fd:1`: an inherited listener is at fd 3 or above (0-2 are stdio)"
        );
    }

    #[test]
    fn kinds_and_the_grants_that_name_them() {
        let text = r#"
version = 1
require_tls = true

[[kind]]
name = "db"
protocol = "postgres-tls"
ca = "ca.pem"
client_cert = "c.pem"
client_key = "c.key"
alpn = ["postgresql"]
min_version = "1.3"
max_connections = 4

[[allow]]
id = "db"
target = "db.internal"
ports = "5432"
rights = ["connect", "resolve"]
kind = "db"

[[listen]]
addr = "127.0.0.1:8443"
cert = "s.pem"
key = "s.key"
"#;
        let m = parse(text, "w.toml").unwrap();
        assert!(m.require_tls);
        assert_eq!(m.kinds[0].protocol, Protocol::PostgresTls);
        assert_eq!(m.kinds[0].min_version, TlsVersion::V1_3);
        assert_eq!(m.rules[0].kind.as_deref(), Some("db"));
        assert_eq!(
            m.rules[0].to_string(),
            "allow connect,resolve db.internal:5432 kind db"
        );
        assert_eq!(
            m.listen[0].tls.as_ref().unwrap().cert,
            Some(PathBuf::from("s.pem"))
        );
        let p = m.policy().unwrap();
        let d = p.decide(
            crate::Action::Connect,
            &crate::Target::Name {
                host: "db.internal".into(),
                port: Some(5432),
            },
        );
        assert_eq!(d.kind(), Some("db"));
        // The kind's errors point at the grant that names it.
        let bad = text.replace("kind = \"db\"\n", "kind = \"nope\"\n");
        assert_eq!(
            err(&bad),
            "w.toml:20:8: rule db names kind `nope`, which is not defined"
        );
        let plain = text.replace("kind = \"db\"\n", "");
        assert!(err(&plain).contains(
            "rule db allows plain TCP connections, but every connection must be TLS (require_tls)"
        ));
        let by_ip = text.replace("target = \"db.internal\"", "target = \"10.0.0.0/8\"");
        assert!(
            err(&by_ip).contains("needs a server_name"),
            "{}",
            err(&by_ip)
        );
        assert!(
            err(&text.replace("\"postgres-tls\"", "\"smtp\"")).contains("unknown protocol `smtp`")
        );
        assert!(
            err(&text.replace("key = \"s.key\"\n", "")).contains("needs both `cert` and `key`")
        );
    }
    #[test]
    fn pools_are_read_and_checked() {
        let m = parse(
            "version = 1\n[[pool]]\nname = \"db\"\nrights = [\"connect\"]\ntargets = [\"127.0.0.1:5432\", \"db.internal:5432\"]\n",
            "w.toml",
        )
        .unwrap();
        assert_eq!(m.pools.len(), 1);
        assert_eq!(
            m.pools[0].text(),
            "pool db: connect on 127.0.0.1/32:5432,db.internal:5432"
        );
        let err = |t: &str| parse(t, "w.toml").unwrap_err().to_string();
        assert_eq!(
            err(
                "version = 1\n[[pool]]\nname = \"db\"\nrights = [\"fly\"]\ntargets = [\"1.2.3.4:1\"]\n"
            ),
            "w.toml:4:11: unknown right `fly`; expected one of connect, bind, listen, accept, udp-bind, udp-send, udp-recv, resolve"
        );
        assert!(
            err("version = 1\n[[pool]]\nname = \"db\"\nrights = []\ntargets = [\"1.2.3.4:1\"]\n")
                .starts_with("w.toml:4:10: pool `db` grants nothing")
        );
        assert!(
            err("version = 1\n[[pool]]\nname = \"db\"\nrights = [\"connect\"]\ntargets = [\"1.2.3.4\"]\n")
                .starts_with("w.toml:5:12: targets: `1.2.3.4`: expected TARGET:PORTS")
        );
        let twice = "version = 1\n[[pool]]\nname = \"db\"\nrights = [\"connect\"]\ntargets = [\"1.2.3.4:1\"]\n";
        assert!(err(&format!("{twice}{}", &twice[12..])).contains("pool `db` is defined twice"));
    }

    #[test]
    fn time_and_random_are_kept_as_written_for_the_run_and_each_app() {
        let m = parse(
            "version = 1\n[time]\nwall_clock = \"frozen\"\nmonotonic_clock = \"real\"\n[random]\nseed = 9\n\
             [[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nwall_clock = \"start:2030-01-01T00:00:00Z\"\nrandom_seed = 1\n",
            "w.toml",
        )
        .unwrap();
        assert_eq!(
            m.time,
            TimeTable {
                wall_clock: Some("frozen".into()),
                monotonic_clock: Some("real".into()),
                random_seed: Some(9),
            }
        );
        assert_eq!(
            m.apps[0].time,
            TimeTable {
                wall_clock: Some("start:2030-01-01T00:00:00Z".into()),
                monotonic_clock: None,
                random_seed: Some(1),
            }
        );
        assert_eq!(
            parse("version = 1\n", "w.toml").unwrap().time,
            TimeTable::default()
        );
        for bad in [
            "version = 1\n[time]\ntimezone = \"UTC\"\n",
            "version = 1\n[random]\nseed = -1\n",
            "version = 1\n[random]\nseed = \"7\"\n",
        ] {
            assert!(parse(bad, "w.toml").is_err(), "{bad}");
        }
    }

    #[test]
    fn plugs_and_worlds_are_read_for_the_run_and_each_app() {
        let digest = "ab".repeat(32);
        let m = parse(
            &format!(
                "version = 1\n[[plug]]\nfile = \"kv.wasm\"\nsha256 = \"{digest}\"\n[[plug]]\nfile = \"b.wasm\"\n\
                 [world]\nimports = [\"wasi:cli/*\", \"example:kv/store@0.1.*\"]\n\
                 [[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nplugs = [{{ file = \"m.wasm\" }}]\nworld_imports = [\"wasi:*/*\"]\n"
            ),
            "w.toml",
        )
        .unwrap();
        assert_eq!(
            m.imports.plugs,
            vec![
                PlugEntry {
                    file: "kv.wasm".into(),
                    sha256: Some([0xab; 32])
                },
                PlugEntry {
                    file: "b.wasm".into(),
                    sha256: None
                },
            ]
        );
        let world = m.imports.world.as_ref().unwrap();
        assert!(world.allows("example:kv/store@0.1.2") && !world.allows("example:kv/store@0.2.0"));
        assert_eq!(m.apps[0].imports.plugs[0].file, PathBuf::from("m.wasm"));
        assert!(
            m.apps[0]
                .imports
                .world
                .as_ref()
                .unwrap()
                .allows("wasi:sockets/tcp@0.2.0")
        );
        assert_eq!(
            parse("version = 1\n", "w.toml").unwrap().imports,
            ImportsTable::default()
        );
        for (bad, said) in [
            (
                "version = 1\n[[plug]]\nfile = \"a\"\nsha256 = \"xyz\"\n",
                "4:10: sha256: `xyz` is not a SHA-256 digest",
            ),
            (
                "version = 1\n[world]\nimports = [\"wasi:cli\"]\n",
                "3:12: imports: `wasi:cli` is not an import pattern",
            ),
            (
                "version = 1\n[[plug]]\npath = \"a\"\n",
                "unknown field `path`",
            ),
        ] {
            let e = parse(bad, "w.toml").unwrap_err().to_string();
            assert!(e.contains(said), "{bad}: {e}");
        }
    }

    #[test]
    fn limits_are_kept_as_written() {
        let m = parse(
            "version = 1\n[limits]\ntimeout = \"2s\"\nmax_memory = \"64MiB\"\nfuel = 5\n",
            "w.toml",
        )
        .unwrap();
        assert_eq!(
            m.limits,
            LimitsTable {
                timeout: Some("2s".into()),
                max_memory: Some("64MiB".into()),
                fuel: Some(5),
                ..LimitsTable::default()
            }
        );
        assert_eq!(
            parse("version = 1\n", "w.toml").unwrap().limits,
            LimitsTable::default()
        );
        let err = parse("version = 1\n[limits]\ncpu = 1\n", "w.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "w.toml:3:1: unknown field `cpu`, expected one of `timeout`, `max_memory`, `fuel`, `max_conns_out`, `max_conns_in`, `max_udp_sockets`, `max_egress_rate`, `max_ingress_rate`"
            ),
            "{err}"
        );
    }
}
