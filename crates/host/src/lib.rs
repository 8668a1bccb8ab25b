//! Warden's wasmtime host.
//!
//! This crate owns everything between a validated run configuration and a
//! guest's exit: reading and classifying the guest file ([`read_guest`]),
//! the engine and its on-disk compilation cache ([`cache`]), the store with
//! its limits ([`Limits`]), linking WASI (through `warden-wasi`, whose network
//! paths all end at the `warden-net` gate), and turning however the guest
//! ended into an [`Outcome`]. It prints nothing but warnings and, when asked,
//! verbose progress; exit codes are the binary's business.

pub mod cache;
mod limits;
mod load;
mod signals;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Engine, Module, Store, Trap, WasmBacktrace};
use wasmtime_wasi::{I32Exit, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use warden_net::{AuditDest, AuditLog, DnsConfig, Gate, Policy};
use warden_policy::{Ports, Rights, Rule, RuleTarget};
use warden_wasi::{
    ComponentAbi, ComponentCtx, Grants, HasComponentCtx, NamedListener, P1Ctx, WasiError,
};

pub use limits::{Limits, MemoryLimiter};
pub use load::{Guest, GuestKind, read_guest};

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
    /// The program could not be instantiated (an import Warden does not
    /// provide, an initial memory larger than `--max-memory`, ...).
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
    /// A `--listen` address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why (in use, permission denied, ...).
        #[source]
        source: std::io::Error,
    },
    /// Pre-opened listeners were asked for a guest that cannot take them.
    #[error("{}: --listen works with preview1 modules only for now (this is a {kind}); a component binds through wasi:sockets", path.display())]
    ListenUnsupported {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
}

/// A listener the operator asks the host to bind for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The name the guest sees in `LISTEN_FDNAMES` / `FD_NAMES`.
    pub name: String,
    /// The address to bind.
    pub addr: std::net::SocketAddr,
}

/// The guest's network: what it may do, how names resolve, where decisions
/// are recorded. `Network::default()` denies everything, uses the system's
/// DNS configuration and keeps no audit log.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// The operator's grants and denies.
    pub policy: Policy,
    /// The DNS servers for permitted lookups.
    pub dns: DnsConfig,
    /// Where to write one JSON line per decision, if anywhere.
    pub audit: Option<AuditDest>,
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

/// A fully validated request to run one guest.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The guest file.
    pub file: PathBuf,
    /// Arguments, environment and directories.
    pub grants: Grants,
    /// Listeners to bind before the guest starts (preview1 fds 3, 4, ...).
    pub listeners: Vec<ListenSpec>,
    /// Network grants, name resolution and the audit log.
    pub network: Network,
    /// Resource limits.
    pub limits: Limits,
    /// The compilation cache.
    pub cache: CacheSetting,
    /// Print progress (cache use, timings) to stderr.
    pub verbose: bool,
}

/// A limit that ended the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// `--timeout` passed.
    Timeout(Duration),
    /// `--fuel` ran out.
    Fuel(u64),
}

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest exited with this code (0 when `run` returned normally).
    Exited(i32),
    /// The guest trapped.
    Trapped {
        /// The trap or error message.
        reason: String,
        /// The wasm backtrace, when wasmtime captured one.
        backtrace: Option<String>,
        /// The full error chain, for `--verbose`.
        detail: String,
    },
    /// A limit ended the guest.
    Limit(LimitHit),
}

/// Run a guest to completion on a fresh runtime. This is the process-level
/// entry point: it also takes over SIGINT and SIGTERM, which stop Warden
/// (exit status 130 or 143) after flushing the guest's audit log.
pub fn run(cfg: &RunConfig) -> Result<Outcome, HostError> {
    signals::install()
        .map_err(|e| HostError::Engine(format!("cannot set up signal handling: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| HostError::Engine(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(run_async(cfg));
    // A guest stopped by --timeout may leave a blocking host task behind (a
    // read of stdin that never returns); do not wait for it.
    runtime.shutdown_background();
    result
}

/// Run a guest to completion on the current tokio runtime.
pub async fn run_async(cfg: &RunConfig) -> Result<Outcome, HostError> {
    let started = Instant::now();
    let guest = read_guest(&cfg.file)?;
    let engine = engine(&cfg.limits)?;
    let log = |msg: &str| {
        if cfg.verbose {
            eprintln!("warden: {msg}");
        }
    };
    log(&format!(
        "{} is a {} (sha256 {})",
        cfg.file.display(),
        guest.kind.describe(),
        hex::encode(guest.sha256)
    ));
    if !cfg.listeners.is_empty() && guest.kind != GuestKind::Preview1 {
        return Err(HostError::ListenUnsupported {
            path: cfg.file.clone(),
            kind: guest.kind.describe(),
        });
    }
    // Bind first: a port in use or a privileged port fails here, with one
    // clear error, before anything is compiled or run.
    let mut bound = Vec::with_capacity(cfg.listeners.len());
    for (i, spec) in cfg.listeners.iter().enumerate() {
        let listener =
            warden_net::sockets::bind_listener(spec.addr).map_err(|source| HostError::Listen {
                addr: spec.addr,
                source,
            })?;
        let local = listener.local_addr().unwrap_or(spec.addr);
        eprintln!("warden: fd {} ({}) listening on {local}", 3 + i, spec.name);
        bound.push(listener);
    }
    let cache = open_cache(&cfg.cache, &log);
    let compiled = compile(&engine, &cfg.file, &guest, cache.as_ref(), &log)?;
    log(&format!("ready to start after {:?}", started.elapsed()));

    let gate = gate(cfg, &guest)?;
    signals::watch(&gate);
    let mut limiter_report = None;
    let run = execute(&engine, &compiled, cfg, &gate, bound, &mut limiter_report);
    let outcome = match cfg.limits.timeout {
        Some(limit) => {
            let engine = engine.clone();
            std::thread::spawn(move || {
                std::thread::sleep(limit);
                engine.increment_epoch();
            });
            // The epoch stops a guest running wasm code; the timer also
            // covers a guest blocked in a host call.
            match tokio::time::timeout(limit, run).await {
                Ok(r) => r,
                Err(_) => Ok(Outcome::Limit(LimitHit::Timeout(limit))),
            }
        }
        None => run.await,
    };
    report_audit(gate.finish());
    let outcome = outcome?;
    if let (Some(max), Some(wanted)) = (cfg.limits.max_memory, limiter_report) {
        eprintln!(
            "warden: --max-memory refused the guest's growth of linear memory to {wanted} bytes (limit {max} bytes)"
        );
    }
    Ok(outcome)
}

/// Say on stderr what the audit log could not write.
fn report_audit(summary: Option<warden_net::AuditSummary>) {
    let Some(summary) = summary else { return };
    if summary.dropped > 0 {
        eprintln!(
            "warden: audit: {} records dropped because the log writer fell behind ({} written)",
            summary.dropped, summary.written
        );
    }
    if let Some(error) = summary.error {
        eprintln!(
            "warden: audit: writing stopped after {} records: {error}",
            summary.written
        );
    }
}

/// The instance's gate: the operator's policy (plus, for pre-opened
/// listeners, accepting from any peer a deny does not refuse), its DNS
/// configuration and its audit log.
fn gate(cfg: &RunConfig, guest: &load::Guest) -> Result<Arc<Gate>, HostError> {
    let mut policy = cfg.network.policy.clone();
    if !cfg.listeners.is_empty() {
        let mut rules = policy.rules().to_vec();
        for spec in &cfg.listeners {
            for peer in RuleTarget::every_address() {
                rules.push(Rule::allow(
                    format!("--listen {}={}", spec.name, spec.addr),
                    peer,
                    Ports::ANY,
                    Rights::ACCEPT,
                ));
            }
        }
        policy = Policy::new(rules);
    }
    let mut builder = Gate::builder(policy).dns(cfg.network.dns.clone());
    if let Some(dest) = &cfg.network.audit {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let instance = format!("{:x}-{:x}", std::process::id(), now.as_nanos());
        let log = AuditLog::open(dest, &instance, &hex::encode(guest.sha256))
            .map_err(HostError::Audit)?;
        builder = builder.audit(log);
    }
    Ok(builder.build())
}

fn engine(limits: &Limits) -> Result<Engine, HostError> {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(limits.timeout.is_some())
        .consume_fuel(limits.fuel.is_some());
    Engine::new(&config).map_err(|e| HostError::Engine(e.to_string()))
}

fn open_cache(setting: &CacheSetting, log: &dyn Fn(&str)) -> Option<cache::Cache> {
    let dir = match setting {
        CacheSetting::Disabled => {
            log("compile cache disabled");
            return None;
        }
        CacheSetting::Dir(dir) => dir.clone(),
        CacheSetting::Default => match cache::default_dir() {
            Some(dir) => dir,
            None => {
                log("no user cache directory; compile cache disabled");
                return None;
            }
        },
    };
    match cache::Cache::open(&dir) {
        Ok(cache) => Some(cache),
        Err(why) => {
            eprintln!("warden: warning: not using the compile cache: {why}");
            None
        }
    }
}

/// Compiled code, ready to instantiate.
enum Compiled {
    Module(Module),
    Component(Component, ComponentAbi),
}

fn compile(
    engine: &Engine,
    path: &Path,
    guest: &Guest,
    cache: Option<&cache::Cache>,
    log: &dyn Fn(&str),
) -> Result<Compiled, HostError> {
    let kind_tag = match guest.kind {
        GuestKind::Preview1 => "module",
        GuestKind::Component(_) => "component",
    };
    let key = cache.map(|_| cache::Cache::key(engine, &guest.sha256, kind_tag));
    if let (Some(cache), Some(key)) = (cache, &key) {
        match cache.get(key) {
            cache::Lookup::Hit(artifact) => match deserialize(engine, guest.kind, &artifact) {
                Ok(compiled) => {
                    log(&format!("cache hit: {}", cache.path(key).display()));
                    return Ok(compiled);
                }
                Err(e) => eprintln!(
                    "warden: warning: ignoring compile cache entry {}: {e}; recompiling",
                    cache.path(key).display()
                ),
            },
            cache::Lookup::Miss => log(&format!("cache miss: {}", cache.path(key).display())),
            cache::Lookup::Rejected(why) => eprintln!(
                "warden: warning: ignoring compile cache entry {}: {why}; recompiling",
                cache.path(key).display()
            ),
        }
    }
    let t = Instant::now();
    let compile_error = |e: wasmtime::Error| HostError::Compile {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let (compiled, artifact) = match guest.kind {
        GuestKind::Preview1 => {
            let m = Module::new(engine, &guest.bytes).map_err(compile_error)?;
            let a = cache.map(|_| m.serialize()).transpose();
            (Compiled::Module(m), a)
        }
        GuestKind::Component(abi) => {
            let c = Component::new(engine, &guest.bytes).map_err(compile_error)?;
            let a = cache.map(|_| c.serialize()).transpose();
            (Compiled::Component(c, abi), a)
        }
    };
    log(&format!("compiled in {:?}", t.elapsed()));
    if let (Some(cache), Some(key)) = (cache, &key) {
        let stored = artifact
            .map_err(|e| e.to_string())
            .and_then(|a| a.map_or(Ok(()), |a| cache.put(key, &a).map_err(|e| e.to_string())));
        match stored {
            Ok(()) => log(&format!("cached at {}", cache.path(key).display())),
            Err(e) => eprintln!("warden: warning: cannot write the compile cache: {e}"),
        }
    }
    Ok(compiled)
}

fn deserialize(engine: &Engine, kind: GuestKind, artifact: &[u8]) -> wasmtime::Result<Compiled> {
    // SAFETY: wasmtime requires that the bytes came from its own
    // `serialize`. They did: the entry passed a SHA-256 check bound to its
    // key, it sits in a directory only this user can write, and wasmtime
    // itself refuses artifacts of another version or engine configuration.
    Ok(match kind {
        GuestKind::Preview1 => Compiled::Module(unsafe { Module::deserialize(engine, artifact)? }),
        GuestKind::Component(abi) => {
            Compiled::Component(unsafe { Component::deserialize(engine, artifact)? }, abi)
        }
    })
}

/// Per-store state: the guest's WASI context and the memory limiter.
struct State<G> {
    guest: G,
    limiter: MemoryLimiter,
}

impl WasiView for State<ComponentCtx> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.guest.ctx()
    }
}

impl WasiHttpView for State<ComponentCtx> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.guest.http()
    }
}

impl HasComponentCtx for State<ComponentCtx> {
    fn component_ctx(&mut self) -> &mut ComponentCtx {
        &mut self.guest
    }
}

fn store<G>(engine: &Engine, guest: G, limits: &Limits) -> Result<Store<State<G>>, HostError> {
    let mut store = Store::new(
        engine,
        State {
            guest,
            limiter: MemoryLimiter::new(limits.max_memory),
        },
    );
    store.limiter(|s| &mut s.limiter);
    if let Some(fuel) = limits.fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| HostError::Engine(e.to_string()))?;
    }
    if limits.timeout.is_some() {
        store.set_epoch_deadline(1);
        store.epoch_deadline_trap();
    }
    Ok(store)
}

async fn execute(
    engine: &Engine,
    compiled: &Compiled,
    cfg: &RunConfig,
    gate: &Arc<Gate>,
    listeners: Vec<std::net::TcpListener>,
    refused: &mut Option<u64>,
) -> Result<Outcome, HostError> {
    let start_error = |e: wasmtime::Error| HostError::Start {
        path: cfg.file.clone(),
        reason: format!("{e:#}"),
    };
    match compiled {
        Compiled::Module(module) => {
            let mut linker = wasmtime::Linker::new(engine);
            warden_wasi::link_p1(&mut linker, |s: &mut State<P1Ctx>| &mut s.guest)?;
            let mut named = Vec::with_capacity(listeners.len());
            for (spec, listener) in cfg.listeners.iter().zip(listeners) {
                let listener = warden_net::sockets::Listener::new(listener).map_err(|source| {
                    HostError::Listen {
                        addr: spec.addr,
                        source,
                    }
                })?;
                named.push(NamedListener {
                    name: spec.name.clone(),
                    listener,
                });
            }
            let ctx = warden_wasi::p1_ctx(&cfg.grants, gate, named)?;
            let mut store = store(engine, ctx, &cfg.limits)?;
            let result = async {
                let instance = match linker.instantiate_async(&mut store, module).await {
                    Ok(i) => i,
                    Err(e) if is_guest_failure(&e) => return Ok(Err(e)),
                    Err(e) => return Err(start_error(e)),
                };
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|_| HostError::Start {
                        path: cfg.file.clone(),
                        reason:
                            "the module exports no `_start` function, so it is not a WASI command"
                                .into(),
                    })?;
                Ok(start.call_async(&mut store, ()).await.map(|()| Ok(())))
            }
            .await;
            *refused = store.data().limiter.first_refusal();
            Ok(finish(result?, &cfg.limits))
        }
        Compiled::Component(component, abi) => {
            let mut linker = wasmtime::component::Linker::new(engine);
            warden_wasi::link_component(&mut linker, *abi)?;
            let ctx = ComponentCtx::new(&cfg.grants, gate)?;
            let mut store = store(engine, ctx, &cfg.limits)?;
            let result = match abi {
                ComponentAbi::P2 => {
                    let pre = linker
                        .instantiate_pre(component)
                        .and_then(wasmtime_wasi::p2::bindings::CommandPre::new)
                        .map_err(start_error)?;
                    match pre.instantiate_async(&mut store).await {
                        Ok(cmd) => cmd.wasi_cli_run().call_run(&mut store).await,
                        Err(e) if is_guest_failure(&e) => Err(e),
                        Err(e) => return Err(start_error(e)),
                    }
                }
                ComponentAbi::P3 => {
                    let pre = linker
                        .instantiate_pre(component)
                        .and_then(wasmtime_wasi::p3::bindings::CommandPre::new)
                        .map_err(start_error)?;
                    match pre.instantiate_async(&mut store).await {
                        Ok(cmd) => store
                            .run_concurrent(async move |a| cmd.wasi_cli_run().call_run(a).await)
                            .await
                            .and_then(|r| r),
                        Err(e) if is_guest_failure(&e) => Err(e),
                        Err(e) => return Err(start_error(e)),
                    }
                }
            };
            *refused = store.data().limiter.first_refusal();
            Ok(finish(result, &cfg.limits))
        }
    }
}

/// An error raised by running guest code (a trap or an exit during a start
/// function), as opposed to a failure to set the instance up.
fn is_guest_failure(e: &wasmtime::Error) -> bool {
    e.downcast_ref::<Trap>().is_some() || e.downcast_ref::<I32Exit>().is_some()
}

/// Turn the result of a `run`/`_start` call into an outcome.
fn finish(result: wasmtime::Result<Result<(), ()>>, limits: &Limits) -> Outcome {
    let e = match result {
        Ok(Ok(())) => return Outcome::Exited(0),
        Ok(Err(())) => return Outcome::Exited(1),
        Err(e) => e,
    };
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    let trap = e.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::Interrupt) => {
            Outcome::Limit(LimitHit::Timeout(limits.timeout.unwrap_or_default()))
        }
        Some(Trap::OutOfFuel) => Outcome::Limit(LimitHit::Fuel(limits.fuel.unwrap_or_default())),
        _ => Outcome::Trapped {
            reason: trap.map_or_else(|| root_message(&e), |t| t.to_string()),
            backtrace: e.downcast_ref::<WasmBacktrace>().map(backtrace_text),
            detail: format!("{e:?}"),
        },
    }
}

/// wasmtime's frame list under our own heading, one frame per line.
fn backtrace_text(bt: &WasmBacktrace) -> String {
    let text = bt.to_string();
    let frames = text.split_once('\n').map_or("", |(_, rest)| rest);
    format!("wasm backtrace:\n{}\n", frames.trim_end())
}

fn root_message(e: &wasmtime::Error) -> String {
    e.chain()
        .last()
        .map_or_else(|| e.to_string(), |c| c.to_string())
}
