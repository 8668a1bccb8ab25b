//! `run`: one guest, to completion, in this process.
//!
//! The order: take over the signals; bind the pre-opened listeners (a
//! busy or privileged port fails here, before anything is compiled); read
//! and compile the program within its bounds; build the gate (policy, DNS,
//! audit log); run `_start` or `wasi:cli/run` under the limits; record a
//! limit that ended it in the audit log; flush the audit log and the
//! guest's output; say how it ended.
//!
//! `--timeout` works at three depths: the epoch stops a guest running wasm
//! code; a timer stops one waiting in an asynchronous host call (sockets,
//! DNS, HTTP, a full stdout, stdin); and a watchdog thread ends the process
//! [`WATCHDOG_GRACE`] after the limit if neither could (a host call that
//! blocked its thread), after flushing the audit log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use warden_net::{Gate, Policy, Tls};
use warden_policy::{Ports, Rule, RuleTarget};
use warden_wasi::{ComponentAbi, NamedListener};

use crate::compile::{self, Compiled, Program};
use crate::load::GuestKind;
use crate::{Event, HostError, LimitHit, Limits, Outcome, RefusedGrowth, RunConfig, signals};
use crate::{imports, instance};

/// How long after `--timeout` the watchdog ends the process when the
/// guest could not be stopped by the epoch or the timer.
pub const WATCHDOG_GRACE: Duration = Duration::from_millis(500);

/// How long Warden waits, after the guest ended, for its connections to
/// send what it wrote and end (FIN, TLS close_notify).
const SETTLE: Duration = Duration::from_secs(2);

/// How long Warden waits for the guest's buffered output after a limit
/// stopped it (the reader may have stopped reading).
const DRAIN_AFTER_LIMIT: Duration = Duration::from_millis(200);

/// How a run ended, with what the limiter refused on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// How the guest ended.
    pub outcome: Outcome,
    /// The first memory or table growth the limits refused, if any.
    pub refused: Option<RefusedGrowth>,
}

/// Run a guest to completion on a fresh runtime. This is the process-level
/// entry point: it also takes over SIGINT, SIGTERM, SIGHUP and SIGQUIT
/// (see the signals module), and may end the process itself when a limit
/// fires while the guest is stuck (see the module docs).
pub fn run(cfg: &RunConfig) -> Result<Finished, HostError> {
    signals::install(cfg.events.clone())
        .map_err(|e| HostError::Engine(format!("cannot set up signal handling: {e}")))?;
    crate::limits::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| HostError::Engine(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(run_async(cfg));
    // A guest stopped by a limit may leave a blocking host task behind (a
    // read of stdin that never returns); do not wait for it.
    runtime.shutdown_background();
    signals::claim_exit();
    result
}

/// Run a guest to completion on the current tokio runtime.
pub async fn run_async(cfg: &RunConfig) -> Result<Finished, HostError> {
    let started = Instant::now();
    let log = compile::Log::new(&cfg.events, cfg.verbose);
    let engine = compile::engine(&cfg.limits)?;
    // Bind first: a port in use or a privileged port fails here, with one
    // clear error, before anything is compiled or run.
    let mut bound: Vec<Bound> = Vec::with_capacity(cfg.listeners.len());
    for (i, spec) in cfg.listeners.iter().enumerate() {
        let listen_error = |source| HostError::Listen {
            on: spec.on.clone(),
            source,
        };
        let (listener, inherited_name) =
            warden_net::socket::open_listener(&spec.on).map_err(listen_error)?;
        let local = listener.local_addr().map_err(listen_error)?;
        let name = spec
            .name
            .clone()
            .or(inherited_name)
            .unwrap_or_else(|| warden_policy::manifest::default_listener_name(i));
        let tls_kind = spec.tls.as_ref().map(|tls| tls.kind(&name));
        bound.push(Bound {
            name,
            id: spec.id.clone(),
            local,
            listener,
            tls_kind,
        });
    }
    // TLS material is read and checked before anything is compiled, too
    // (with a workload identity, once the program's digest is known: the
    // issuer itself was checked when the configuration was made).
    let policy = run_policy(cfg, &bound)?;
    let early_tls = match cfg.network.identity {
        None => Some(cfg.network.tls(&policy, None)?),
        Some(_) => None,
    };
    let Program { guest, compiled } = compile::prepare(
        &engine,
        &cfg.file,
        &cfg.limits,
        &cfg.cache,
        cfg.prebuilt.as_ref(),
        &cfg.imports.plugs,
        &log,
    )?;
    if let GuestKind::Http(_) = guest.kind {
        return Err(HostError::Unsupported {
            path: cfg.file.clone(),
            what: format!(
                "a {}: it handles HTTP requests, so it is served, not run",
                guest.kind.describe()
            ),
        });
    }
    for (i, b) in bound.iter().enumerate() {
        (cfg.events)(&Event::Listening {
            fd: (guest.kind == GuestKind::Preview1).then_some(3 + i as u32),
            name: &b.name,
            addr: b.local,
            tls: b.tls_kind.is_some(),
        });
    }
    let tls = match early_tls {
        Some(tls) => tls,
        None => {
            let identity = cfg.network.identity(&hex::encode(guest.sha256), None)?;
            cfg.network.tls(&policy, identity)?
        }
    };
    log.progress(&format!("ready to start after {:?}", started.elapsed()));

    let sha256 = hex::encode(guest.sha256);
    let traced = match &cfg.telemetry {
        Some(t) => Some(crate::traces::run_span(t, &cfg.file, &sha256)?),
        None => None,
    };
    if let Some((trace, _)) = &traced {
        // A run a signal or the watchdog ends still ends its span.
        let trace = trace.clone();
        signals::on_forced_exit(move || crate::traces::end_forced(&trace));
    }
    let gate = gate(cfg, policy, tls, &sha256, traced.clone())?;
    signals::watch(&gate);
    let done = Arc::new(AtomicBool::new(false));
    let deadline = cfg.limits.timeout.map(|t| Instant::now() + t);
    if let Some(limit) = cfg.limits.timeout {
        watchdog(&engine, &gate, cfg, limit, done.clone());
    }
    let mut refused = None;
    let run = execute(&engine, &compiled, cfg, &gate, bound, &mut refused);
    let outcome = match cfg.limits.timeout {
        // The epoch stops a guest running wasm code; the timer also covers
        // a guest waiting in a host call.
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => Ok(Outcome::Limit(LimitHit::Timeout(limit))),
        },
        None => run.await,
    };
    // What the guest wrote before it ended still goes out (and a TLS
    // connection ends with close_notify), within a bound.
    warden_net::conn::settle(SETTLE).await;
    done.store(true, Ordering::SeqCst);
    if let Ok(Outcome::Limit(hit)) = &outcome {
        gate.record_limit(hit.name(), &hit.to_string());
    }
    if let Some((trace, _)) = &traced {
        crate::traces::end_run(trace, &outcome);
    }
    crate::events::report_gate(&cfg.events, &gate, None);
    let outcome = outcome?;
    let drain_until = match outcome {
        Outcome::Limit(_) => Some(Instant::now() + DRAIN_AFTER_LIMIT),
        _ => deadline,
    };
    warden_net::out::drain(drain_until);
    Ok(Finished { outcome, refused })
}

/// The last resort for `--timeout` (see the module docs).
fn watchdog(
    engine: &Engine,
    gate: &Arc<Gate>,
    cfg: &RunConfig,
    limit: Duration,
    done: Arc<AtomicBool>,
) {
    let engine = engine.clone();
    let gate = gate.clone();
    let last_words = cfg.last_words.clone();
    let events = cfg.events.clone();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        engine.increment_epoch();
        std::thread::sleep(WATCHDOG_GRACE);
        if done.load(Ordering::SeqCst) {
            return;
        }
        let hit = LimitHit::Timeout(limit);
        let finished = Finished {
            outcome: Outcome::Limit(hit),
            refused: None,
        };
        let code = match &last_words {
            Some(words) => i32::from(words(&finished)),
            None => {
                events(&Event::GuestStopped(&hit));
                124
            }
        };
        signals::exit(code, |_| {
            gate.record_limit(hit.name(), &hit.to_string());
            crate::events::report_gate(&events, &gate, None);
        });
    });
}

/// A pre-opened listener, bound (or adopted) and named.
pub(crate) struct Bound {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) local: std::net::SocketAddr,
    pub(crate) listener: std::net::TcpListener,
    /// The connection kind of its TLS, if Warden terminates TLS on it.
    pub(crate) tls_kind: Option<warden_policy::Kind>,
}

/// The instance's policy: the operator's, plus what pre-opened listeners
/// grant.
fn run_policy(cfg: &RunConfig, bound: &[Bound]) -> Result<Policy, HostError> {
    let mut rules = Vec::new();
    let mut kinds = Vec::new();
    // A pre-opened listener grants binding and listening on exactly its
    // address (a component's bind takes it over) and accepting from any
    // peer a deny does not refuse; a TLS listener's grant carries a kind
    // of its own with the certificate.
    for b in bound {
        let kind = b.tls_kind.as_ref();
        rules.extend(Rule::listening(
            &b.id,
            RuleTarget::Net(warden_policy::Cidr::host(b.local.ip())),
            Ports::one(b.local.port()),
            kind.map(|k| k.name.as_str()),
        ));
        kinds.extend(kind.cloned());
    }
    if rules.is_empty() {
        Ok(cfg.network.policy.clone())
    } else {
        cfg.network
            .policy
            .with_more(rules, kinds)
            .map_err(|e| HostError::Policy(e.to_string()))
    }
}

/// The instance's gate: the policy, its TLS, its DNS configuration, audit
/// log and reporter.
///
/// With `traced` (telemetry on), its work goes on the run's span, and its
/// audit records carry the span's ids (and go where the mirror says).
fn gate(
    cfg: &RunConfig,
    policy: Policy,
    tls: Arc<Tls>,
    sha256: &str,
    traced: Option<(
        warden_net::trace::Trace,
        Option<Arc<dyn warden_net::AuditSink>>,
    )>,
) -> Result<Arc<Gate>, HostError> {
    let (trace, mirror) = match traced {
        Some((t, m)) => (Some(t), m),
        None => (None, None),
    };
    let mut builder = cfg.network.gate(policy, tls).trace(trace.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let instance = format!("{:x}-{:x}", std::process::id(), now.as_nanos());
    if let Some(mut log) = cfg.network.audit_log(&instance, sha256, mirror)? {
        if let Some(t) = &trace {
            let (trace_id, span_id) = t.ids();
            log = log
                .with_field("trace_id", &trace_id)
                .with_field("span_id", &span_id);
        }
        builder = builder.audit(log);
    }
    Ok(builder.build())
}

async fn execute(
    engine: &Engine,
    compiled: &Compiled,
    cfg: &RunConfig,
    gate: &Arc<Gate>,
    listeners: Vec<Bound>,
    refused: &mut Option<RefusedGrowth>,
) -> Result<Outcome, HostError> {
    let start_error = |e: wasmtime::Error| HostError::Start {
        path: cfg.file.clone(),
        reason: format!("{e:#}"),
    };
    match compiled {
        Compiled::Module(module) => {
            let linker = instance::module_linker(engine)?;
            let mut named = Vec::with_capacity(listeners.len());
            for (spec, b) in cfg.listeners.iter().zip(listeners) {
                let side = b.tls_kind.as_ref().and_then(|k| gate.tls().server(&k.name));
                let tls = side.map(|side| (side.clone(), gate.clone()));
                let listener = warden_net::socket::Listener::open(b.listener, tls, None).map_err(
                    |source| HostError::Listen {
                        on: spec.on.clone(),
                        source,
                    },
                )?;
                named.push(NamedListener {
                    name: b.name,
                    listener,
                });
            }
            let ctx = warden_wasi::p1_ctx(
                &cfg.grants,
                gate,
                named,
                cfg.network.pools.clone(),
                cfg.network.strict_pools,
            )?;
            let mut store = instance::store(engine, ctx, &cfg.limits)?;
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
            imports::check_world(&cfg.file, cfg.imports.world.as_ref(), engine, component)?;
            let linker = instance::component_linker(engine, *abi, &cfg.grants)?;
            // Every import nothing provides is named, not only the first.
            let pre_instance = || {
                linker
                    .instantiate_pre(component)
                    .map_err(|e| imports::explain(&cfg.file, engine, &linker, component, e))
            };
            // Pre-opened listeners wait for the guest's bind of their
            // address.
            let activation = Arc::new(warden_net::socket::Activation::default());
            for (spec, b) in cfg.listeners.iter().zip(listeners) {
                activation
                    .add(b.listener)
                    .map_err(|source| HostError::Listen {
                        on: spec.on.clone(),
                        source,
                    })?;
            }
            let mut store =
                instance::component_store(engine, &cfg.grants, gate, activation, &cfg.limits)?;
            let result = match abi {
                ComponentAbi::P2 => {
                    let pre = wasmtime_wasi::p2::bindings::CommandPre::new(pre_instance()?)
                        .map_err(start_error)?;
                    match pre.instantiate_async(&mut store).await {
                        Ok(cmd) => cmd.wasi_cli_run().call_run(&mut store).await,
                        Err(e) if is_guest_failure(&e) => Err(e),
                        Err(e) => return Err(start_error(e)),
                    }
                }
                ComponentAbi::P3 => {
                    let pre = wasmtime_wasi::p3::bindings::CommandPre::new(pre_instance()?)
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
            reason: trap.map_or_else(|| instance::root_message(&e), |t| t.to_string()),
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
