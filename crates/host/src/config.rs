//! What the host is asked to do, and how that can fail before a guest
//! runs: the validated configuration the binary builds, and [`HostError`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use warden_net::{AuditDest, DnsConfig, Policy, Reporter};
use warden_wasi::{Grants, WasiError};

use crate::Limits;

/// Errors that stop Warden before or while starting a guest. These are the
/// operator's problems (a bad file, an unusable grant), not the guest's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The guest file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The guest file is larger than the operator allows.
    #[error("{}: the file is larger than the {limit}-byte limit on programs (it has {size} bytes or more)", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not a program Warden can run.
    #[error("{}: {what}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What was found, and what is supported.
        what: String,
    },
    /// wasmtime rejected the program.
    #[error("{}: cannot compile: {reason}", path.display())]
    Compile {
        /// The file.
        path: PathBuf,
        /// wasmtime's reason.
        reason: String,
    },
    /// Compiling took longer than the operator allows.
    #[error("{}: compiling took longer than the limit of {limit:?}; stopped", path.display())]
    CompileTimeout {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: Duration,
    },
    /// The program could not be instantiated (an import Warden does not
    /// provide, an initial memory larger than the memory limit, ...).
    #[error("cannot start {}: {reason}", path.display())]
    Start {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A grant could not be set up.
    #[error(transparent)]
    Wasi(#[from] WasiError),
    /// The engine could not be configured.
    #[error("cannot set up the wasmtime engine: {0}")]
    Engine(String),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(warden_net::audit::AuditError),
    /// A connection kind's TLS material is unusable (unreadable, not PEM,
    /// expired, a key that is not the certificate's).
    #[error(transparent)]
    Tls(#[from] warden_net::tls::TlsError),
    /// A workload identity could not be issued.
    #[error("workload identity: {0}")]
    Identity(warden_net::identity::IdentityError),
    /// The operator's policy and Warden's own grants disagree.
    #[error("{0}")]
    Policy(String),
    /// A plug could not be read or used, or composing failed.
    #[error("plug {}: {reason}", path.display())]
    Plug {
        /// The plug's file (or the guest's, when composing failed).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The component imports what the operator's world does not allow.
    #[error("{}: the operator's world does not allow its imports {}", path.display(), refused.join(", "))]
    OutsideWorld {
        /// The component.
        path: PathBuf,
        /// The imports refused, in the component's order.
        refused: Vec<String>,
    },
    /// The component imports what nothing provides (neither Warden nor
    /// a plug).
    #[error("{}: nothing provides its imports {}", path.display(), missing.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "))]
    MissingImports {
        /// The component.
        path: PathBuf,
        /// Each import nothing provides, in the component's order.
        missing: Vec<MissingImport>,
    },
    /// A listener could not be bound (or an inherited one adopted).
    #[error("cannot listen on {on}: {source}")]
    Listen {
        /// Where.
        on: warden_net::socket::ListenOn,
        /// Why (in use, permission denied, ...).
        #[source]
        source: std::io::Error,
    },
}

/// An import of a component that nothing provides, and what could.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingImport {
    /// The import's name (`example:kv/store@0.1.0`).
    pub name: String,
    /// wasmtime's reason, for verbose output.
    pub detail: String,
    /// What the operator could give to satisfy it.
    pub remedy: ImportRemedy,
}

/// What satisfies an import nothing provides yet, as data (the binary
/// words it as a flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportRemedy {
    /// A component that exports it (a plug).
    Plug,
    /// Warden's built-in `wasi:config/store`, given values.
    Config,
    /// Warden's built-in in-memory `wasi:keyvalue`.
    KeyValue,
}

/// What a component may import and what satisfies its imports beyond
/// what Warden provides: plugs, composed with it before it is compiled,
/// and the operator's world. The default: no plugs, no world (every
/// import Warden can satisfy is allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imports {
    /// Plugs, in order (see [`crate::compose`]).
    pub plugs: Vec<crate::compose::PlugSpec>,
    /// The interfaces it may import, if the operator said.
    pub world: Option<warden_policy::world::World>,
}

/// A listener the operator asks the host to bind (or adopt) for the
/// guest: a preview1 module finds it at fd 3, 4, ...; a component's TCP
/// socket that binds its address takes it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The name the guest sees in `LISTEN_FDNAMES` / `FD_NAMES` (`None`:
    /// the inherited socket's own name, else `tcpN`).
    pub name: Option<String>,
    /// Where it comes from.
    pub on: warden_net::socket::ListenOn,
    /// The id its grants carry in decisions (how the operator wrote it).
    pub id: String,
    /// TLS the host terminates on it, if any: the guest accepts
    /// decrypted connections.
    pub tls: Option<warden_policy::manifest::ListenTls>,
}

/// The guest's network: what it may do, how names resolve, where decisions
/// are recorded and told. `Network::default()` denies everything, uses the
/// system's DNS configuration, keeps no audit log and tells denials in
/// plain words on stderr.
#[derive(Clone, Default)]
pub struct Network {
    /// The operator's grants and denies.
    pub policy: Policy,
    /// The DNS servers for permitted lookups.
    pub dns: DnsConfig,
    /// Where to write one JSON line per decision, if anywhere.
    pub audit: Option<AuditDest>,
    /// The largest the audit file grows before it is rotated (`None`:
    /// [`warden_net::linelog::DEFAULT_MAX_SIZE`]).
    pub audit_max_size: Option<u64>,
    /// Where denials are told (`None`: nowhere; the audit log, if any,
    /// still records every decision).
    pub reporter: Option<Reporter>,
    /// How long a TLS handshake the host does may take (`None`:
    /// [`warden_net::tls::DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Option<Duration>,
    /// Address pools pre-opened for a preview1 guest, in order.
    pub pools: Vec<std::sync::Arc<warden_net::Pool>>,
    /// Whether a preview1 `sock_open` needs a pool descriptor.
    pub strict_pools: bool,
    /// Enforce the policy (the default) or only audit it.
    pub mode: warden_policy::Mode,
    /// How many sockets and connections the guest (under `serve`: all of
    /// an app's instances together) holds open at once.
    pub quotas: warden_net::Quotas,
    /// Bytes per second the guest (under `serve`: an app's instances
    /// together) may send (`None`: no limit).
    pub egress_rate: Option<u64>,
    /// Bytes per second it may receive.
    pub ingress_rate: Option<u64>,
    /// The issuer of workload identities (each instance's, each app's
    /// SVID), if there is one.
    pub identity: Option<Arc<warden_net::identity::Issuer>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("policy", &self.policy)
            .field("dns", &self.dns)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

/// Where compiled code is cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSetting {
    /// `<user cache dir>/warden`.
    Default,
    /// A directory of the operator's choice.
    Dir(PathBuf),
    /// No cache: compile on every start.
    Disabled,
}

/// Words for how a run ended, for the paths that end the process from
/// another thread (a limit that fired while the guest was stuck in the
/// host): the binary's own wording, and the exit status to use.
pub type LastWords = Arc<dyn Fn(&crate::Finished) -> u8 + Send + Sync>;

/// A fully validated request to run one guest.
#[derive(Clone)]
pub struct RunConfig {
    /// The guest file.
    pub file: PathBuf,
    /// Arguments, environment, directories and stdio.
    pub grants: Grants,
    /// Listeners to bind before the guest starts (preview1 fds 3, 4, ...).
    pub listeners: Vec<ListenSpec>,
    /// Network grants, name resolution, the audit log and denial reports.
    pub network: Network,
    /// Resource limits.
    pub limits: Limits,
    /// Plugs and the operator's world (components only).
    pub imports: Imports,
    /// The compilation cache.
    pub cache: CacheSetting,
    /// Code compiled ahead of time for `file` (see [`crate::Prebuilt`]),
    /// used when it fits; never for a file a user names.
    pub prebuilt: Option<crate::Prebuilt>,
    /// Tell progress (cache use, timings) too.
    pub verbose: bool,
    /// Where the operator is told what happens (see [`crate::Event`]).
    pub events: crate::Events,
    /// How the binary words an ending (see [`LastWords`]); `None`: an
    /// [`crate::Event::GuestStopped`], and the exit status 124 for a limit.
    pub last_words: Option<LastWords>,
    /// OpenTelemetry export, when on: the run is a span, its network work
    /// children of it.
    pub telemetry: Option<Arc<warden_telemetry::Telemetry>>,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("file", &self.file)
            .field("grants", &self.grants)
            .field("listeners", &self.listeners)
            .field("network", &self.network)
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .field("verbose", &self.verbose)
            .finish_non_exhaustive()
    }
}
