//! A manifest file as a host takes it: read, parsed, and its relative
//! paths (TLS material, the audit log) resolved against its directory,
//! into one value, [`Loaded`]. `warden run` and `serve` add their flags'
//! grants to it; the containerd shim takes it as a workload's whole
//! policy; `warden check` prints it. Every way in is this one reading.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warden_net::{AuditDest, DnsConfig, Pool};
use warden_policy::manifest::{self, App, Listen, Manifest, ManifestError};
use warden_policy::{Kind, Rule};

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestLoadError {
    /// The file could not be read.
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It does not parse or is not valid (the error says where).
    #[error(transparent)]
    Invalid(#[from] ManifestError),
    /// A `[limits]` value does not read.
    #[error("{}: limits.{key}: {message}", path.display())]
    Limit {
        /// The manifest.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A `[time]`, `[random]` or `[keyvalue]` value (or an app's) does
    /// not read.
    #[error("{}: {key}: {message}", path.display())]
    Time {
        /// The manifest.
        path: PathBuf,
        /// The key, with its table (`time.wall_clock`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Read and parse the manifest at `path`.
pub fn read(path: &Path) -> Result<Manifest, ManifestLoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestLoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(manifest::parse(&text, &path.display().to_string())?)
}

/// What a manifest grants, with its paths resolved, before a policy is
/// built from it (a caller may add rules and kinds of its own first).
#[derive(Debug, Default)]
pub struct Loaded {
    /// `[identity]`, its paths resolved and its TTL read.
    pub identity: Option<warden_net::identity::IdentityConfig>,
    /// `[telemetry]`, as written.
    pub telemetry: Option<warden_policy::manifest::TelemetryTable>,
    /// Grants in file order, then denies.
    pub rules: Vec<Rule>,
    /// Connection kinds, their files resolved.
    pub kinds: Vec<Kind>,
    /// Listeners, their TLS files resolved.
    pub listen: Vec<Listen>,
    /// Address pools, in order.
    pub pools: Vec<Arc<Pool>>,
    /// Whether every connect grant must be TLS.
    pub require_tls: bool,
    /// Enforce the policy, or only audit it.
    pub mode: warden_policy::Mode,
    /// The DNS servers to use.
    pub dns: DnsConfig,
    /// Where the audit log goes, if anywhere.
    pub audit: Option<AuditDest>,
    /// The `[limits]` table, read.
    pub limits: ManifestLimits,
    /// The `[time]` and `[random]` tables, read.
    pub time: ManifestTime,
    /// `[[plug]]` (files resolved) and `[world]`.
    pub imports: crate::Imports,
    /// `[config]` and `[keyvalue]`, read.
    pub providers: ManifestProviders,
    /// The `[[app]]` entries, as written (`warden serve`); their files are
    /// relative to [`Loaded::base`].
    pub apps: Vec<App>,
    /// The manifest's directory, which its relative paths are taken from.
    pub base: PathBuf,
}

/// A manifest's `[limits]`, read (each `None` when not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Wall-clock time for the run.
    pub timeout: Option<std::time::Duration>,
    /// Memory for the instance.
    pub max_memory: Option<u64>,
    /// Fuel units.
    pub fuel: Option<u64>,
    /// How many sockets and connections the guest holds open at once.
    pub quotas: warden_net::Quotas,
    /// Bytes per second the guest may send.
    pub egress_rate: Option<u64>,
    /// Bytes per second the guest may receive.
    pub ingress_rate: Option<u64>,
}

impl ManifestLimits {
    fn read(l: &manifest::LimitsTable, origin: &Path) -> Result<Self, ManifestLoadError> {
        let bad = |key: &str, message: String| ManifestLoadError::Limit {
            path: origin.to_path_buf(),
            key: key.to_string(),
            message,
        };
        Ok(ManifestLimits {
            timeout: l
                .timeout
                .as_deref()
                .map(crate::units::duration)
                .transpose()
                .map_err(|e| bad("timeout", e))?,
            max_memory: l
                .max_memory
                .as_deref()
                .map(crate::units::size)
                .transpose()
                .map_err(|e| bad("max_memory", e))?,
            fuel: match l.fuel {
                Some(0) => return Err(bad("fuel", "expected 1 or more".into())),
                f => f,
            },
            quotas: quotas(l.max_conns_out, l.max_conns_in, l.max_udp_sockets)
                .map_err(|(key, e)| bad(key, e))?,
            egress_rate: l
                .max_egress_rate
                .as_deref()
                .map(crate::units::rate)
                .transpose()
                .map_err(|e| bad("max_egress_rate", e))?,
            ingress_rate: l
                .max_ingress_rate
                .as_deref()
                .map(crate::units::rate)
                .transpose()
                .map_err(|e| bad("max_ingress_rate", e))?,
        })
    }
}

/// Quotas as a manifest writes them (each checked: 1 or more), or the key
/// that is wrong and why.
pub fn quotas(
    conns_out: Option<u32>,
    conns_in: Option<u32>,
    udp_sockets: Option<u32>,
) -> Result<warden_net::Quotas, (&'static str, String)> {
    let check = |key: &'static str, v: Option<u32>| match v {
        Some(0) => Err((key, "expected 1 or more".to_string())),
        v => Ok(v),
    };
    Ok(warden_net::Quotas {
        conns_out: check("max_conns_out", conns_out)?,
        conns_in: check("max_conns_in", conns_in)?,
        udp_sockets: check("max_udp_sockets", udp_sockets)?,
    })
}

/// The guest's clocks and random seed as a manifest (`[time]`,
/// `[random]`) or an `[[app]]` gives them, read (each `None` when not
/// given, so that a flag or the server's setting can fill it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ManifestTime {
    /// The wall clock.
    pub wall: Option<warden_wasi::WallClock>,
    /// The monotonic clock.
    pub monotonic: Option<warden_wasi::MonotonicClock>,
    /// The random seed.
    pub random_seed: Option<u64>,
}

impl ManifestTime {
    /// Read `t`, from the manifest at `origin`; `table` names where it
    /// was written (`time` for `[time]` and `[random]`, `app NAME` for an
    /// app), for errors.
    pub fn read(
        t: &manifest::TimeTable,
        origin: &Path,
        table: &str,
    ) -> Result<Self, ManifestLoadError> {
        let bad = |key: &str, message: String| ManifestLoadError::Time {
            path: origin.to_path_buf(),
            key: format!("{table}.{key}"),
            message,
        };
        Ok(ManifestTime {
            wall: t
                .wall_clock
                .as_deref()
                .map(crate::virt_text::wall_clock)
                .transpose()
                .map_err(|e| bad("wall_clock", e))?,
            monotonic: t
                .monotonic_clock
                .as_deref()
                .map(crate::virt_text::monotonic_clock)
                .transpose()
                .map_err(|e| bad("monotonic_clock", e))?,
            random_seed: t.random_seed,
        })
    }

    /// `self` where given, `base` where not.
    pub fn over(self, base: warden_wasi::Virtual) -> warden_wasi::Virtual {
        warden_wasi::Virtual {
            wall: self.wall.unwrap_or(base.wall),
            monotonic: self.monotonic.unwrap_or(base.monotonic),
            random_seed: self.random_seed.or(base.random_seed),
        }
    }
}

/// The built-in providers a manifest (`[config]`, `[keyvalue]`) or an app
/// turns on, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestProviders {
    /// `wasi:config/store`'s values (`None`: not provided).
    pub config: Option<Vec<(String, String)>>,
    /// The bound of the in-memory `wasi:keyvalue` store (`None`: not
    /// provided).
    pub keyvalue: Option<u64>,
}

impl ManifestProviders {
    /// Read `t`, from the manifest at `origin`; `key` names the store
    /// setting in errors (`keyvalue` for `[keyvalue] store`, ``app `a`.keyvalue``).
    pub fn read(
        t: &manifest::ProvidersTable,
        origin: &Path,
        key: &str,
    ) -> Result<Self, ManifestLoadError> {
        Ok(ManifestProviders {
            config: t.config.clone(),
            keyvalue: t
                .keyvalue
                .as_deref()
                .map(crate::units::keyvalue_store)
                .transpose()
                .map_err(|message| ManifestLoadError::Time {
                    path: origin.to_path_buf(),
                    key: key.to_string(),
                    message,
                })?,
        })
    }
}

impl Loaded {
    /// The manifest at `path`, read, with its relative paths taken
    /// relative to its directory.
    pub fn read(path: &Path) -> Result<Loaded, ManifestLoadError> {
        let m = read(path)?;
        let limits = ManifestLimits::read(&m.limits, path)?;
        let time = ManifestTime::read(&m.time, path, "time")?;
        let providers = ManifestProviders::read(&m.providers, path, "keyvalue")?;
        let base = path.parent().unwrap_or(Path::new(""));
        let identity = match &m.identity {
            None => None,
            Some(i) => Some(warden_net::identity::IdentityConfig {
                ca_cert: base.join(&i.ca),
                ca_key: base.join(&i.ca_key),
                trust_domain: i.trust_domain.clone(),
                ttl: match &i.ttl {
                    None => warden_net::identity::DEFAULT_TTL,
                    Some(t) => {
                        crate::units::duration(t).map_err(|message| ManifestLoadError::Time {
                            path: path.to_path_buf(),
                            key: "identity.ttl".into(),
                            message,
                        })?
                    }
                },
                template: i.template.clone(),
            }),
        };
        Ok(Loaded {
            limits,
            time,
            providers,
            identity,
            ..Loaded::new(m, base)
        })
    }

    /// `m`, with relative paths taken relative to `base` (the manifest's
    /// directory); its `[limits]`, `[time]` and `[random]` are not read.
    fn new(m: Manifest, base: &Path) -> Loaded {
        let mut listen = m.listen;
        for l in &mut listen {
            if let Some(tls) = &mut l.tls {
                tls.cert = tls.cert.as_ref().map(|p| base.join(p));
                tls.key = tls.key.as_ref().map(|p| base.join(p));
                tls.client_ca = tls.client_ca.as_ref().map(|p| base.join(p));
            }
        }
        Loaded {
            identity: None,
            telemetry: m.telemetry,
            rules: m.rules,
            kinds: m.kinds.into_iter().map(|k| relative_to(k, base)).collect(),
            listen,
            pools: m.pools.into_iter().map(Arc::new).collect(),
            require_tls: m.require_tls,
            mode: m.mode,
            dns: m.dns_server.map_or(DnsConfig::System, DnsConfig::Server),
            audit: m.audit.map(|a| audit_dest(&a, base)),
            limits: ManifestLimits::default(),
            time: ManifestTime::default(),
            imports: imports_relative_to(&m.imports, base),
            providers: ManifestProviders::default(),
            apps: m.apps,
            base: base.to_path_buf(),
        }
    }
}

impl Loaded {
    /// The connection kinds of its TLS listeners (`listen:NAME`, a listener
    /// unnamed taking its default name), their files resolved: what a run
    /// of it loads beside [`Loaded::kinds`].
    pub fn listener_kinds(&self) -> Vec<Kind> {
        self.listen
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let tls = l.tls.as_ref()?;
                let name = l
                    .name
                    .clone()
                    .unwrap_or_else(|| manifest::default_listener_name(i));
                Some(tls.kind(&name))
            })
            .collect()
    }
}

/// Plugs and a world as a manifest (or an app) writes them, their files
/// relative to `base`.
pub fn imports_relative_to(t: &manifest::ImportsTable, base: &Path) -> crate::Imports {
    crate::Imports {
        plugs: t
            .plugs
            .iter()
            .map(|p| crate::compose::PlugSpec {
                file: base.join(&p.file),
                sha256: p.sha256,
            })
            .collect(),
        world: t.world.clone(),
    }
}

/// A kind with its files relative to `base`.
pub fn relative_to(mut k: Kind, base: &Path) -> Kind {
    for p in [
        &mut k.ca,
        &mut k.client_cert,
        &mut k.client_key,
        &mut k.cert,
        &mut k.key,
        &mut k.client_ca,
    ]
    .into_iter()
    .flatten()
    {
        *p = base.join(&*p);
    }
    k
}

/// An audit destination as written (`-` is stderr), relative to `base`.
pub fn audit_dest(s: &str, base: &Path) -> AuditDest {
    if s == "-" {
        AuditDest::Stderr
    } else {
        AuditDest::File(base.join(s))
    }
}
