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

use warden_net::{AuditLog, Gate};
use warden_wasi::{ComponentAbi, ComponentCtx};

use super::metrics::Metrics;
use super::{AppSpec, Reuse};
use crate::HostError;
use crate::instance::{self, State};

/// How long an idle 0.3 instance kept for reuse lives.
const IDLE_INSTANCE: Duration = Duration::from_secs(1);

/// What serving a request can end in, short of a response.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The request's time ran out (504).
    Timeout,
    /// The guest trapped or panicked, or gave no response (500).
    Guest(String),
    /// The host could not make an instance (500).
    Host(String),
}

/// The parts of an app its instances share.
pub(crate) struct Core {
    pub(crate) spec: AppSpec,
    pub(crate) sha256: String,
    engine: Engine,
    gate: Arc<Gate>,
    audit: Option<AuditLog>,
    metrics: Arc<Metrics>,
    instances: AtomicU64,
}

impl Core {
    /// What the app's instances share: `spec`, the component's `sha256`,
    /// the `engine`, the app's `gate` (instances get gates of their own
    /// over its policy) and `audit` log, and the server's `metrics`.
    pub(crate) fn new(
        spec: AppSpec,
        sha256: String,
        engine: &Engine,
        gate: Arc<Gate>,
        audit: Option<AuditLog>,
        metrics: Arc<Metrics>,
    ) -> Core {
        Core {
            spec,
            sha256,
            engine: engine.clone(),
            gate,
            audit,
            metrics,
            instances: AtomicU64::new(0),
        }
    }

    /// A store for one instance, with a gate of its own over the app's
    /// policy, recording as instance `id` with `extra` audit fields.
    fn store(
        &self,
        id: &str,
        extra: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<Store<State<ComponentCtx>>, HostError> {
        let audit = self
            .audit
            .as_ref()
            .map(|a| a.child(id, &self.sha256, extra));
        let gate = self.gate.instance(audit);
        let activation = Arc::new(warden_net::tcp::Activation::default());
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
        let linker = instance::component_linker(&core.engine, abi)?;
        let pre = linker.instantiate_pre(component).map_err(start_error)?;
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

    /// Serve `request` (id `request_id`, https or not) within the app's
    /// per-request time.
    pub(crate) async fn handle(
        &self,
        request: GuestRequest,
        request_id: &str,
        https: bool,
    ) -> Result<GuestResponse, Failure> {
        let limit = self
            .core
            .spec
            .limits
            .timeout
            .unwrap_or(super::DEFAULT_TIMEOUT);
        let deadline = Instant::now() + limit;
        let work = async {
            match &self.entry {
                Entry::P2(pre) => {
                    self.handle_p2(pre, request, request_id, https, deadline)
                        .await
                }
                Entry::P3(h) => h.handle(deadline, request).await.map_err(p3_failure),
            }
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn handle_p2(
        &self,
        pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<State<ComponentCtx>>,
        request: GuestRequest,
        request_id: &str,
        https: bool,
        deadline: Instant,
    ) -> Result<GuestResponse, Failure> {
        use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
        let core = &self.core;
        let n = core.next_instance();
        let instance_id = format!("{}-{n}", core.spec.name);
        let mut store = core
            .store(
                &instance_id,
                &[("app", &core.spec.name), ("request_id", request_id)],
                deadline,
            )
            .map_err(|e| Failure::Host(e.to_string()))?;
        let proxy = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| guest_failure(&e))?;
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
        // here; the store lives until `handle` returns.
        let task = tokio::spawn(async move {
            let r = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await;
            drop(store);
            r
        });
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
                Ok(Err(e)) => Err(guest_failure(&e)),
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
        None => Failure::Guest(crate::run::root_message(e)),
    }
}

fn p3_failure(e: wasmtime::Error) -> Failure {
    if e.downcast_ref::<handler::ExpirationError>().is_some() {
        Failure::Timeout
    } else if e
        .downcast_ref::<handler::InstantiationError<Instant>>()
        .is_some()
    {
        Failure::Host(format!("{e:#}"))
    } else {
        guest_failure(&e)
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
            .store(&id, &[("app", &core.spec.name)], far)
            .map_err(wasmtime::Error::msg)?;
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(handler::Instance {
            store,
            proxy,
            view: |s: &mut State<ComponentCtx>| s.http(),
            expiration: Expiry::new(core.spec.limits.timeout.unwrap_or(super::DEFAULT_TIMEOUT)),
            state: Worker { core: core.clone() },
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

/// A 0.3 worker's state: how many requests it takes.
struct Worker {
    core: Arc<Core>,
}

impl WorkerState for Worker {
    type StoreData = State<ComponentCtx>;
    type RequestData = Instant;

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
        deadline: Instant,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync + 'static>> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn drop(&self, _store: Store<Self::StoreData>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            warden_net::out::line(&format!(
                "warden: an instance of {} failed: {}",
                self.core.spec.name,
                crate::run::root_message(&e)
            ));
        }
    }
}
