//! `serve`: host wasi:http components (WASI 0.2 proxies, WASI 0.3
//! services) behind an HTTP/1.1 and HTTP/2 server hardened for a public
//! address.
//!
//! The order: take over the signals; bind every address (a busy or
//! privileged port fails here, but nothing listens yet: a client that
//! comes early is refused at once, never left waiting); read the server's
//! TLS material; compile each app (or load it from the cache) and build
//! its gate (policy, TLS, DNS, audit); only then listen and say where it
//! serves (the first stderr line is `warden: serving http://HOST:PORT/`).
//! Listeners a service manager handed over already listen: their clients
//! wait in the backlog until the apps are ready. Then tick the epoch;
//! accept until SIGTERM or SIGINT, then stop accepting,
//! let requests in flight finish within the shutdown grace, flush the
//! audit and access logs, and return. SIGHUP reloads the certificate.
//!
//! Files: `app` (one application and its instances), `http` (connections,
//! routing, the hardening limits, the access log), `metrics`.

mod app;
mod http;
mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use warden_net::{AuditDest, LineLog, Tls};
use warden_wasi::Grants;

use crate::compile::{self, Compiled};
use crate::load::GuestKind;
use crate::{CacheSetting, Event, HostError, Limits, ListenSpec, Network};

pub use http::{
    CLOSE_GRACE, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY,
    DEFAULT_MAX_HEADER, DEFAULT_WRITE_TIMEOUT,
};

/// The per-request time limit when none is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections open at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The most requests in flight at once, by default.
pub const DEFAULT_MAX_REQUESTS: usize = 256;

/// How long a shutdown waits for requests in flight, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where requests go: a path prefix and, optionally, a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The path prefix (`/` matches every path); matched at segment
    /// boundaries (`/api` matches `/api` and `/api/x`, not `/apix`).
    pub prefix: String,
    /// The host (without port), matched without regard to case.
    pub host: Option<String>,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            prefix: "/".into(),
            host: None,
        }
    }
}

/// How a WASI 0.3 app's instances are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Requests one instance serves before it is dropped (1: a fresh
    /// instance per request).
    pub max_reuse: usize,
    /// Requests one instance serves at once.
    pub max_concurrency: usize,
}

impl Default for Reuse {
    fn default() -> Self {
        Reuse {
            max_reuse: 1,
            max_concurrency: 1,
        }
    }
}

/// One application: a component, its route, and what it is granted.
#[derive(Clone)]
pub struct AppSpec {
    /// Its name (in the access log, the audit log and metrics).
    pub name: String,
    /// The component file.
    pub file: PathBuf,
    /// Which requests it gets.
    pub route: Route,
    /// Directories and environment (its arguments are its file name).
    pub grants: Grants,
    /// Its network policy, DNS and audit log.
    pub network: Network,
    /// Its limits; `timeout`, `fuel` and `max_memory` are per request.
    pub limits: Limits,
    /// WASI 0.3 instance reuse.
    pub reuse: Reuse,
    /// Its plugs and the operator's world.
    pub imports: crate::Imports,
}

impl std::fmt::Debug for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSpec")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// The server's own TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeTls {
    /// Certificate chain (PEM); `None` with `identity`.
    pub cert: Option<PathBuf>,
    /// Its key (PEM); `None` with `identity`.
    pub key: Option<PathBuf>,
    /// CAs whose client certificates are required, if any.
    pub client_ca: Option<PathBuf>,
    /// Present the (one) app's identity certificate instead.
    pub identity: bool,
    /// Admit only clients whose certificate names one of these SPIFFE IDs.
    pub peer_ids: Vec<String>,
}

/// The server's protocol limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time to receive a request's headers.
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection stays open.
    pub idle_timeout: Duration,
    /// Time a response may make no progress (its client reads none of it)
    /// before it is cut.
    pub write_timeout: Duration,
    /// Bytes of request headers.
    pub max_header: usize,
    /// Bytes of request body.
    pub max_body: u64,
    /// Connections open at once.
    pub max_connections: usize,
    /// Requests in flight at once.
    pub max_requests: usize,
    /// Time requests in flight get to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_header: DEFAULT_MAX_HEADER,
            max_body: DEFAULT_MAX_BODY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests: DEFAULT_MAX_REQUESTS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// A validated request to serve.
#[derive(Clone)]
pub struct ServeConfig {
    /// The applications, routed by longest match.
    pub apps: Vec<AppSpec>,
    /// Addresses to bind.
    pub addrs: Vec<SocketAddr>,
    /// Listeners a service manager handed over (or addresses as `--listen`).
    pub listeners: Vec<ListenSpec>,
    /// HTTPS on every listener.
    pub tls: Option<ServeTls>,
    /// Protocol limits.
    pub limits: ServeLimits,
    /// Where the access log goes.
    pub access_log: Option<AuditDest>,
    /// The largest the access log file grows before it is rotated.
    pub access_log_max_size: u64,
    /// Where metrics are served.
    pub metrics: Option<SocketAddr>,
    /// The compile cache.
    pub cache: CacheSetting,
    /// Use the pooling allocator when the machine allows.
    pub pooling: bool,
    /// How long the server's own TLS handshakes may take.
    pub handshake_timeout: Duration,
    /// Tell progress (the apps, the cache, timings) too.
    pub verbose: bool,
    /// Where the operator is told what happens (see [`crate::Event`]).
    pub events: crate::Events,
    /// The server's bound over what all apps together hold open (each
    /// app's own quotas are in its [`crate::Network`]).
    pub quota_ceiling: warden_net::Quotas,
    /// OpenTelemetry export, when on: every request a trace.
    pub telemetry: Option<Arc<warden_telemetry::Telemetry>>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("apps", &self.apps)
            .field("addrs", &self.addrs)
            .field("listeners", &self.listeners)
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .field("access_log", &self.access_log)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// How a server ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSummary {
    /// Requests answered.
    pub requests: u64,
    /// Requests still running when the grace ran out.
    pub abandoned: usize,
}

/// Serve until SIGTERM or SIGINT (see the module docs).
pub fn serve(cfg: &ServeConfig) -> Result<ServeSummary, HostError> {
    let stop = crate::signals::install_serving(cfg.events.clone())
        .map_err(|e| HostError::Engine(format!("cannot set up signal handling: {e}")))?;
    crate::limits::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("warden-serve")
        .build()
        .map_err(|e| HostError::Engine(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(serve_async(cfg, stop));
    runtime.shutdown_timeout(Duration::from_millis(200));
    crate::signals::claim_exit();
    result
}

async fn serve_async(
    cfg: &ServeConfig,
    mut stop: crate::signals::Stop,
) -> Result<ServeSummary, HostError> {
    let log = crate::compile::Log::new(&cfg.events, cfg.verbose);
    let tell = |e: &Event<'_>| (cfg.events)(e);
    // Bind first: a port in use or a privileged port fails here. Nothing
    // listens before the apps can answer.
    let mut bound = Vec::new();
    let addrs = if cfg.addrs.is_empty() && cfg.listeners.is_empty() {
        vec![SocketAddr::from(([127, 0, 0, 1], 8080))]
    } else {
        cfg.addrs.clone()
    };
    for addr in &addrs {
        let on = warden_net::socket::ListenOn::Addr(*addr);
        let b = warden_net::socket::Bound::new(*addr)
            .map_err(|source| HostError::Listen { on, source })?;
        bound.push(b);
    }
    let mut handed = Vec::new();
    for spec in &cfg.listeners {
        let (l, _) =
            warden_net::socket::open_listener(&spec.on).map_err(|source| HostError::Listen {
                on: spec.on.clone(),
                source,
            })?;
        handed.push(l);
    }
    let metrics_listener = match cfg.metrics {
        Some(addr) => Some(metrics::bind(addr).map_err(|source| HostError::Listen {
            on: warden_net::socket::ListenOn::Addr(addr),
            source,
        })?),
        None => None,
    };
    let identity_tls = cfg.tls.as_ref().is_some_and(|t| t.identity);
    if identity_tls && cfg.apps.len() != 1 {
        return Err(HostError::Policy(format!(
            "the server presents one app's identity certificate, and there are {} apps: serve the app alone",
            cfg.apps.len()
        )));
    }
    let mut tls = if identity_tls {
        None
    } else {
        server_tls(cfg, None)?
    };
    let names: Vec<&str> = cfg.apps.iter().map(|a| a.name.as_str()).collect();
    let metrics = Arc::new(metrics::Metrics::new(
        cfg.telemetry.as_ref().map(|t| t.meter()),
        &names,
    ));
    let instances = u32::try_from(cfg.limits.max_requests)
        .unwrap_or(u32::MAX)
        .saturating_mul(2);
    let fuel = cfg.apps.iter().any(|a| a.limits.fuel.is_some());
    let (engine, note) = compile::serve_engine(fuel, cfg.pooling, instances)?;
    if let Some(note) = note {
        tell(&Event::Note(&note));
    }
    let mut apps = Vec::with_capacity(cfg.apps.len());
    let ceiling =
        (!cfg.quota_ceiling.is_empty()).then(|| warden_net::Tally::new(cfg.quota_ceiling));
    for spec in &cfg.apps {
        apps.push(build_app(&engine, spec, cfg, &metrics, &log, &ceiling)?);
    }
    if identity_tls {
        let identity = apps[0].core.gate().tls().identity().cloned();
        if identity.is_none() {
            return Err(HostError::Policy(
                "the server is to present the app's identity certificate, and no identity issuer is configured".into(),
            ));
        }
        tls = server_tls(cfg, identity)?;
    }
    let apps = Arc::new(apps);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The apps are ready: listen.
    let mut listeners = Vec::with_capacity(bound.len() + handed.len());
    for b in bound {
        let on = warden_net::socket::ListenOn::Addr(
            b.local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        );
        listeners.push(
            b.listen()
                .map_err(|source| HostError::Listen { on, source })?,
        );
    }
    listeners.extend(handed);
    let mut bound = Vec::with_capacity(listeners.len());
    for l in listeners {
        let local = l.local_addr().map_err(|source| HostError::Listen {
            on: warden_net::socket::ListenOn::Addr(SocketAddr::from(([0, 0, 0, 0], 0))),
            source,
        })?;
        bound.push((l, local));
    }
    for (_, local) in &bound {
        tell(&Event::Serving {
            scheme,
            addr: *local,
        });
    }
    if let Some(m) = &metrics_listener
        && let Ok(addr) = m.local_addr()
    {
        tell(&Event::Metrics(addr));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    spawn_epoch_ticker(&engine, stop_rx.clone());
    if let Some(m) = metrics_listener {
        tokio::spawn(metrics::serve_metrics(m, metrics.clone(), stop_rx.clone()));
    }
    // What no app answers is traced on the server's own scope.
    let server_tracer = match &cfg.telemetry {
        Some(t) => Some(
            *t.scope(None)
                .map_err(|e| HostError::Engine(e.to_string()))?
                .tracer(),
        ),
        None => None,
    };
    let server = http::Server::new(
        apps.clone(),
        cfg.events.clone(),
        cfg.limits,
        tls.clone(),
        access_log(cfg)?,
        metrics,
        server_tracer,
    );
    let mut accepting = Vec::new();
    for (l, local) in bound {
        let l = tokio::net::TcpListener::from_std(l).map_err(|source| HostError::Listen {
            on: warden_net::socket::ListenOn::Addr(local),
            source,
        })?;
        accepting.push(tokio::spawn(server.clone().accept(
            l,
            local,
            stop_rx.clone(),
        )));
    }
    // Until a signal says stop; SIGHUP reloads the certificate meanwhile.
    loop {
        match stop.next().await {
            crate::signals::Event::Reload => match &tls {
                Some(side) => match side.reload() {
                    Ok(info) => tell(&Event::CertificateReloaded {
                        subject: &info.subject,
                        expires: &info.expires(),
                    }),
                    Err(e) => tell(&Event::CertificateKept(&e.to_string())),
                },
                None => tell(&Event::NoCertificate),
            },
            crate::signals::Event::Stop(name) => {
                tell(&Event::Stopping {
                    signal: name,
                    grace: cfg.limits.shutdown_grace,
                });
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    for a in accepting {
        let _ = a.await;
    }
    let abandoned = server.drain(cfg.limits.shutdown_grace).await;
    if abandoned > 0 {
        tell(&Event::Abandoned(abandoned));
    }
    for app in apps.iter() {
        crate::events::report_audit(&cfg.events, app.finish_audit());
        if let Some(count) = app.would_denied() {
            tell(&Event::WouldDenied {
                app: Some(app.name()),
                count,
            });
        }
    }
    server.finish_access_log();
    warden_net::conn::settle(Duration::from_secs(1)).await;
    Ok(ServeSummary {
        requests: server.answered(),
        abandoned,
    })
}

/// The server's TLS: a kind of its own with the certificate, serving h2
/// and http/1.1.
fn server_tls(
    cfg: &ServeConfig,
    identity: Option<Arc<warden_net::identity::Identity>>,
) -> Result<Option<Arc<warden_net::tls::ServerSide>>, HostError> {
    let Some(t) = &cfg.tls else {
        return Ok(None);
    };
    let kind = Arc::new(warden_policy::Kind {
        name: "serve".into(),
        protocol: warden_policy::Protocol::Tls,
        cert: t.cert.clone(),
        key: t.key.clone(),
        client_ca: t.client_ca.clone(),
        identity: t.identity,
        peer_ids: t.peer_ids.clone(),
        alpn: vec!["h2".into(), "http/1.1".into()],
        ..warden_policy::Kind::default()
    });
    let tls = Tls::load_with([&kind], cfg.handshake_timeout, identity)?;
    Ok(tls.server("serve").cloned())
}

fn access_log(cfg: &ServeConfig) -> Result<Option<Arc<LineLog>>, HostError> {
    match &cfg.access_log {
        Some(dest) => Ok(Some(Arc::new(
            LineLog::open(dest, cfg.access_log_max_size).map_err(HostError::Audit)?,
        ))),
        None => Ok(None),
    }
}

fn build_app(
    engine: &wasmtime::Engine,
    spec: &AppSpec,
    cfg: &ServeConfig,
    metrics: &Arc<metrics::Metrics>,
    log: &compile::Log,
    ceiling: &Option<Arc<warden_net::Tally>>,
) -> Result<app::App, HostError> {
    let progress = compile::Log::new(&cfg.events, cfg.verbose);
    let program = compile::prepare(
        engine,
        &spec.file,
        &spec.limits,
        &cfg.cache,
        None,
        &spec.imports.plugs,
        &progress,
    )?;
    let (component, abi) = match (&program.guest.kind, program.compiled) {
        (GuestKind::Http(abi), Compiled::Component(c, _)) => (c, *abi),
        (kind, _) => {
            return Err(HostError::Unsupported {
                path: spec.file.clone(),
                what: format!(
                    "a {}; warden serve takes wasi:http/proxy 0.2 components (exporting wasi:http/incoming-handler@0.2.x) and wasi:http/service 0.3 components (wasi:http/handler@0.3.x); use `warden run` for commands",
                    kind.describe()
                ),
            });
        }
    };
    let sha256 = hex::encode(program.guest.sha256);
    let network = &spec.network;
    let identity = network.identity(&sha256, Some(&spec.name))?;
    let tls = network.tls(&network.policy, identity)?;
    let mut builder = network
        .gate(network.policy.clone(), tls)
        .observer(metrics.clone());
    if let Some(ceiling) = ceiling {
        builder = builder.ceiling(ceiling.clone());
    }
    let scope = match &cfg.telemetry {
        Some(t) => Some(
            t.scope(Some(&warden_telemetry::AppInfo {
                name: spec.name.clone(),
                sha256: sha256.clone(),
            }))
            .map_err(|e| HostError::Engine(e.to_string()))?,
        ),
        None => None,
    };
    let mirror = scope.as_ref().and_then(warden_telemetry::Scope::audit_logs);
    let audit = network.audit_log(&spec.name, &sha256, mirror)?;
    // The app's own gate records nothing; each instance's gate records to
    // a child of the app's audit log.
    let gate = builder.build();
    log.progress(&format!(
        "app {} ({}) at {}{}",
        spec.name,
        program.guest.kind.describe(),
        spec.route.host.as_deref().unwrap_or(""),
        spec.route.prefix
    ));
    let core = app::Core::new(
        spec.clone(),
        sha256,
        engine,
        gate,
        audit,
        metrics.clone(),
        cfg.events.clone(),
    )
    .traced(scope);
    app::App::new(core, &component, abi)
}

/// Tick the engine's epoch every [`crate::instance::EPOCH_TICK`] until
/// the server stops.
fn spawn_epoch_ticker(engine: &wasmtime::Engine, stop: tokio::sync::watch::Receiver<bool>) {
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("warden-epoch".into())
        .spawn(move || {
            while !*stop.borrow() {
                std::thread::sleep(crate::instance::EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
}
