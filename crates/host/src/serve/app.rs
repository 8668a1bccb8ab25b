//! One application `serve` hosts: a compiled wasi:http component, its
//! grants, policy, limits and audit, and how a request reaches an instance
//! of it.
//!
//! A WASI 0.2 proxy gets a fresh instance per request: a store with the
//! request's own gate (its audit records carry the request id), the
//! request and its response-outparam, and `handle`. A WASI 0.3 service
//! goes through wasmtime-wasi-http's `ProxyHandler`, which keeps an
//! instance running while its response streams and can reuse it for more
//! requests (`--max-instance-reuse`, `--max-instance-concurrency`; by
//! default one request per instance, as for 0.2).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    self, HandlerState, ProxyHandler, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use warden_net::trace::Trace;
use warden_net::{AuditLog, Gate};
use warden_wasi::{ComponentAbi, ComponentCtx};

use super::metrics::Metrics;
use super::{AppSpec, Reuse};
use crate::HostError;
use crate::instance::{self, State};
use crate::traces::AppLabels;

/// How long an idle 0.3 instance kept for reuse lives.
const IDLE_INSTANCE: Duration = Duration::from_secs(1);

/// What serving a request can end in, short of a response.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The request's time ran out (504).
    Timeout,
    /// The guest trapped or panicked, or gave no response (500).
    Guest(String),
    /// The host could not make an instance (500).
    Host(String),
}

/// How the instance behind a response ended, for a response whose body
/// still streams after its headers went out: a body that ends because its
/// instance trapped or ran out of time was cut, however cleanly the bytes
/// stopped. The instance's side records the outcome *before* its store (and
/// so the body's sending end) is dropped, so the body's reader sees it by
/// the time it sees the end.
#[derive(Default)]
pub(crate) struct Ending {
    outcome: std::sync::OnceLock<Result<(), Failure>>,
    task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Ending {
    /// Record how the instance ended (the first word stays).
    fn set(&self, outcome: Result<(), Failure>) {
        let _ = self.outcome.set(outcome);
    }

    /// Whether the instance failed, and how (`None`: it has not ended, or
    /// ended well).
    pub(crate) fn failure(&self) -> Option<&Failure> {
        self.outcome.get().and_then(|o| o.as_ref().err())
    }

    /// Stop the instance now, if it still runs (the response was cut: no
    /// one will read what it writes).
    pub(crate) fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// A guest's response and how its instance ends.
pub(crate) struct Answer {
    pub(crate) response: GuestResponse,
    pub(crate) ending: Arc<Ending>,
}

/// The parts of an app its instances share.
pub(crate) struct Core {
    pub(crate) spec: AppSpec,
    pub(crate) sha256: String,
    engine: Engine,
    gate: Arc<Gate>,
    audit: Option<AuditLog>,
    metrics: Arc<Metrics>,
    events: crate::Events,
    instances: AtomicU64,
    /// Its telemetry (tracer, audit logs), when export is on.
    pub(crate) scope: Option<warden_telemetry::Scope>,
    /// Its name and route as span and metric values, made once: a
    /// request's attributes then share them rather than copy them.
    pub(crate) labels: AppLabels,
}

impl Core {
    /// What the app's instances share: `spec`, the component's `sha256`,
    /// the `engine`, the app's `gate` (instances get gates of their own
    /// over its policy) and `audit` log, and the server's `metrics` and
    /// `events`.
    pub(crate) fn new(
        spec: AppSpec,
        sha256: String,
        engine: &Engine,
        gate: Arc<Gate>,
        audit: Option<AuditLog>,
        metrics: Arc<Metrics>,
        events: crate::Events,
    ) -> Core {
        let labels = AppLabels::new(&spec.name, &spec.route.prefix);
        Core {
            spec,
            sha256,
            engine: engine.clone(),
            gate,
            audit,
            metrics,
            events,
            instances: AtomicU64::new(0),
            scope: None,
            labels,
        }
    }

    /// The same, its requests traced with `scope`.
    pub(crate) fn traced(mut self, scope: Option<warden_telemetry::Scope>) -> Core {
        self.scope = scope;
        self
    }

    /// The app's gate: its policy, quotas and bandwidth limits, which its
    /// instances share.
    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// A store for one instance, with a gate of its own over the app's
    /// policy, recording as instance `id` with `extra` audit fields.
    ///
    /// With `trace` (the handler's span), the instance's network work goes
    /// on it, and its audit records carry its ids.
    fn store(
        &self,
        id: &str,
        extra: &[(&str, &str)],
        deadline: Instant,
        trace: Option<Trace>,
    ) -> Result<Store<State<ComponentCtx>>, HostError> {
        let audit = self.audit.as_ref().map(|a| {
            let log = a.child(id, &self.sha256, extra);
            // Its records carry the ids of the span they belong to.
            match &trace {
                Some(t) => {
                    let (trace_id, span_id) = t.ids();
                    log.with_field("trace_id", &trace_id)
                        .with_field("span_id", &span_id)
                }
                None => log,
            }
        });
        let gate = self.gate.instance_traced(audit, trace);
        let activation = Arc::new(warden_net::socket::Activation::default());
        let ctx = ComponentCtx::new(&self.spec.grants, &gate, activation)?;
        self.metrics.instance_created(&self.spec.name);
        instance::request_store(&self.engine, ctx, &self.spec.limits, deadline)
    }

    fn next_instance(&self) -> u64 {
        self.instances.fetch_add(1, Ordering::Relaxed)
    }
}

enum Entry {
    P2(wasmtime_wasi_http::p2::bindings::ProxyPre<State<ComponentCtx>>),
    P3(ProxyHandler<P3Host>),
}

/// An application, ready to serve.
pub(crate) struct App {
    pub(crate) core: Arc<Core>,
    entry: Entry,
}

/// A request as the guest gets it: absolute URI (scheme and authority as
/// the client reached Warden), its id among its headers.
pub(crate) type GuestRequest = http::Request<WasiBody>;

/// A response from the guest.
pub(crate) type GuestResponse = http::Response<WasiBody>;

impl App {
    /// Prepare `component` (of `abi`) for serving as `core` says.
    pub(crate) fn new(
        core: Core,
        component: &wasmtime::component::Component,
        abi: ComponentAbi,
    ) -> Result<App, HostError> {
        let path = core.spec.file.clone();
        let start_error = |e: wasmtime::Error| HostError::Start {
            path: path.clone(),
            reason: format!("{e:#}"),
        };
        crate::imports::check_world(
            &path,
            core.spec.imports.world.as_ref(),
            &core.engine,
            component,
        )?;
        let linker = instance::component_linker(&core.engine, abi, &core.spec.grants)?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| crate::imports::explain(&path, &core.engine, &linker, component, e))?;
        let core = Arc::new(core);
        let entry = match abi {
            ComponentAbi::P2 => Entry::P2(
                wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(start_error)?,
            ),
            ComponentAbi::P3 => Entry::P3(ProxyHandler::new(P3Host {
                core: core.clone(),
                pre: handler::ProxyPre::P3(
                    wasmtime_wasi_http::p3::bindings::ServicePre::new(pre).map_err(start_error)?,
                ),
            })),
        };
        Ok(App { core, entry })
    }

    /// Flush and close the app's audit log, if it has one.
    pub(crate) fn finish_audit(&self) -> Option<warden_net::AuditSummary> {
        self.core.audit.as_ref().map(AuditLog::finish)
    }

    /// In audit mode, how many denials its instances' gates let through.
    pub(crate) fn would_denied(&self) -> Option<u64> {
        (self.core.gate.mode() == warden_policy::Mode::Audit).then(|| self.core.gate.would_denied())
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.core.spec.name
    }

    /// The deadline of a request arriving now: the app's per-request time.
    pub(crate) fn deadline(&self) -> Instant {
        let limit = self
            .core
            .spec
            .limits
            .timeout
            .unwrap_or(super::DEFAULT_TIMEOUT);
        Instant::now() + limit
    }

    /// Serve `request` (id `request_id`, https or not) by `deadline`. A
    /// failure once the deadline has passed is a timeout, however the
    /// deadline caught the guest (the epoch, a host call, the runtime).
    ///
    /// With `trace` (the request's span), getting the instance and the
    /// guest's handler are child spans of it.
    pub(crate) async fn handle(
        &self,
        request: GuestRequest,
        request_id: &str,
        https: bool,
        deadline: Instant,
        trace: Option<&Trace>,
    ) -> Result<Answer, Failure> {
        let ending = Arc::new(Ending::default());
        let work = async {
            match &self.entry {
                Entry::P2(pre) => {
                    self.handle_p2(pre, request, request_id, https, deadline, &ending, trace)
                        .await
                }
                Entry::P3(h) => {
                    // A 0.3 instance serves many requests at once, so its
                    // network work is not any one request's: only the
                    // handler's time shows on the request's trace.
                    let _handler = trace.map(|t| t.child("handler", SpanKind::Internal, vec![]));
                    h.handle((deadline, ending.clone()), request)
                        .await
                        .map_err(p3_failure)
                }
            }
        };
        let result = match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        match result {
            Ok(response) => Ok(Answer { response, ending }),
            Err(_) if Instant::now() >= deadline => Err(Failure::Timeout),
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle_p2(
        &self,
        pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<State<ComponentCtx>>,
        request: GuestRequest,
        request_id: &str,
        https: bool,
        deadline: Instant,
        ending: &Arc<Ending>,
        trace: Option<&Trace>,
    ) -> Result<GuestResponse, Failure> {
        use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
        let core = &self.core;
        let n = core.next_instance();
        let instance_id = format!("{}-{n}", core.spec.name);
        // A fresh instance per request: its span covers making the store
        // and instantiating (from the pool's slots when pooling is on).
        let instance_span = trace.map(|t| {
            t.child(
                "instance",
                SpanKind::Internal,
                vec![
                    KeyValue::new("warden.instance.id", instance_id.clone()),
                    KeyValue::new("warden.instance.reused", false),
                ],
            )
        });
        let handler = trace.map(|t| t.child("handler", SpanKind::Internal, vec![]));
        let mut store = core
            .store(
                &instance_id,
                &[("app", &core.spec.name), ("request_id", request_id)],
                deadline,
                handler.as_ref().map(|h| h.trace().clone()),
            )
            .map_err(|e| Failure::Host(e.to_string()))?;
        let proxy = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| guest_failure(&e))?;
        drop(instance_span);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let data = store.data_mut();
        let req = data
            .http()
            .new_incoming_request(scheme, request)
            .map_err(|e| Failure::Host(e.to_string()))?;
        let out = data
            .http()
            .new_response_outparam(tx)
            .map_err(|e| Failure::Host(e.to_string()))?;
        // The guest runs on a task of its own: after it set the response,
        // it goes on writing the body, which streams to the client from
        // here. The task ends by the deadline whatever the guest waits on,
        // and says how it ended before its store (and the body's sending
        // end) goes.
        let end = ending.clone();
        let task = tokio::spawn(async move {
            let call = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out);
            let outcome = match tokio::time::timeout_at(deadline.into(), call).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(guest_failure(&e)),
                Err(_) => Err(Failure::Timeout),
            };
            if let Some(h) = &handler {
                // A memory growth the limit refused, and how it ended.
                if let Some(refused) = store.data().limiter.first_refusal() {
                    let reason = match refused {
                        crate::RefusedGrowth::Memory(n) => {
                            format!("a memory would have grown to {n} bytes")
                        }
                        crate::RefusedGrowth::Table(n) => {
                            format!("a table would have grown to {n} elements")
                        }
                    };
                    h.trace().limit("memory", &reason);
                }
                match &outcome {
                    Ok(()) => {}
                    Err(Failure::Timeout) => h.fail("timeout", "the request's time ran out"),
                    Err(Failure::Guest(why) | Failure::Host(why)) => h.fail("trap", why.clone()),
                }
            }
            drop(handler);
            end.set(outcome.clone());
            drop(store);
            outcome
        });
        *ending.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        match rx.await {
            Ok(Ok(response)) => Ok(response.map(|b| b)),
            Ok(Err(code)) => Err(Failure::Guest(format!(
                "the handler answered with an error: {code:?}"
            ))),
            // The guest returned (or trapped) without setting a response.
            Err(_) => match task.await {
                Ok(Ok(())) => Err(Failure::Guest(
                    "the handler returned without a response".into(),
                )),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(Failure::Host(format!("the handler's task failed: {e}"))),
            },
        }
    }
}

/// A guest error as a failure: a timeout when the epoch deadline stopped
/// it, else its trap (or panic) message.
fn guest_failure(e: &wasmtime::Error) -> Failure {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Failure::Timeout,
        Some(t) => Failure::Guest(t.to_string()),
        None => Failure::Guest(crate::instance::root_message(e)),
    }
}

fn p3_failure(e: wasmtime::Error) -> Failure {
    p3_failure_ref(&e)
}

fn p3_failure_ref(e: &wasmtime::Error) -> Failure {
    if e.downcast_ref::<handler::ExpirationError>().is_some() {
        Failure::Timeout
    } else if e
        .downcast_ref::<handler::InstantiationError<(Instant, Arc<Ending>)>>()
        .is_some()
    {
        Failure::Host(format!("{e:#}"))
    } else {
        guest_failure(e)
    }
}

/// The 0.3 handler's state: makes instances of the app.
struct P3Host {
    core: Arc<Core>,
    pre: handler::ProxyPre<State<ComponentCtx>>,
}

impl HandlerState for P3Host {
    type StoreData = State<ComponentCtx>;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<
        handler::Instance<Self::StoreData, Self::WorkerExpiration, Self::WorkerState>,
    > {
        let core = &self.core;
        let n = core.next_instance();
        let id = format!("{}-{n}", core.spec.name);
        // Reused instances live across requests: they yield at each epoch
        // tick and never trap on time; each request's own deadline expires
        // it (and then the instance).
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut store = core
            .store(&id, &[("app", &core.spec.name)], far, None)
            .map_err(wasmtime::Error::msg)?;
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(handler::Instance {
            store,
            proxy,
            view: |s: &mut State<ComponentCtx>| s.http(),
            expiration: Expiry::new(core.spec.limits.timeout.unwrap_or(super::DEFAULT_TIMEOUT)),
            state: Worker {
                core: core.clone(),
                requests: std::sync::Mutex::default(),
            },
        })
    }
}

/// When a 0.3 worker ends: its requests' time ran out, or it was idle.
struct Expiry {
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Expiry {
    fn new(timeout: Duration) -> Self {
        Expiry {
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        state: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let limit = match state {
            WorkerStatus::Idle => IDLE_INSTANCE,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.timeout,
        };
        let at = start + limit;
        if Instant::now() >= at {
            return Poll::Ready(());
        }
        self.sleep.as_mut().reset(at.into());
        self.sleep.as_mut().poll(cx)
    }
}

/// A 0.3 worker's state: how many requests it takes, and the endings of
/// those it accepted (told how the instance ended when it is dropped).
struct Worker {
    core: Arc<Core>,
    requests: std::sync::Mutex<Vec<(Instant, std::sync::Weak<Ending>)>>,
}

impl WorkerState for Worker {
    type StoreData = State<ComponentCtx>;
    type RequestData = (Instant, Arc<Ending>);

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        let Reuse {
            max_reuse,
            max_concurrency,
        } = self.core.spec.reuse;
        if total >= max_reuse {
            ShouldAccept::Never
        } else if concurrent >= max_concurrency {
            ShouldAccept::No
        } else {
            if total > 0 {
                self.core.metrics.instance_reused(&self.core.spec.name);
            }
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, Self::StoreData>,
        (deadline, ending): (Instant, Arc<Ending>),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync + 'static>> {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.retain(|(_, r)| r.strong_count() > 0);
        requests.push((deadline, Arc::downgrade(&ending)));
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn drop(&self, store: Store<Self::StoreData>, result: wasmtime::Result<()>) {
        // Tell the responses still streaming how their instance ended
        // before the store (and their bodies' sending ends) goes; they say
        // it, with their request ids. An instance ended after a request's
        // deadline ended by it (the handler words an expiry as a message).
        let now = Instant::now();
        let mut told = false;
        for (deadline, r) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            if let Some(ending) = r.upgrade() {
                ending.set(match &result {
                    Ok(()) => Ok(()),
                    Err(_) if now >= deadline => Err(Failure::Timeout),
                    Err(e) => Err(p3_failure_ref(e)),
                });
                told = true;
            }
        }
        drop(store);
        if let (Err(e), false) = (result, told) {
            (self.core.events)(&crate::Event::InstanceFailed {
                app: &self.core.spec.name,
                why: &crate::instance::root_message(&e),
            });
        }
    }
}
