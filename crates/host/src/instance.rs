//! The one path from compiled code to a running instance: linkers with
//! WASI (every network path through the gate), a store with the guest's
//! context and its limits, and instantiation. `run` and `serve` both go
//! through here.

use std::sync::Arc;

use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use warden_net::Gate;
use warden_wasi::{ComponentAbi, ComponentCtx, Grants, HasComponentCtx, P1Ctx};

use crate::{HostError, Limits, MemoryLimiter};

/// Per-store state: the guest's WASI context and the limiter.
pub(crate) struct State<G> {
    pub(crate) guest: G,
    pub(crate) limiter: MemoryLimiter,
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

/// A store for `guest` with `limits`: the limiter, fuel, and an epoch
/// deadline that traps when a timeout's epoch tick comes.
pub(crate) fn store<G>(
    engine: &Engine,
    guest: G,
    limits: &Limits,
) -> Result<Store<State<G>>, HostError> {
    let mut store = Store::new(
        engine,
        State {
            guest,
            limiter: MemoryLimiter::new(limits),
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

/// A store for one request served by `serve`: the limiter and fuel as
/// [`store`], and a deadline: the epoch (ticked by the server every
/// [`EPOCH_TICK`]) makes a running guest yield to the runtime at each tick,
/// so that one guest computing never holds a worker thread, and trap once
/// `deadline` has passed.
pub(crate) fn request_store<G: Send + 'static>(
    engine: &Engine,
    guest: G,
    limits: &Limits,
    deadline: std::time::Instant,
) -> Result<Store<State<G>>, HostError> {
    let mut store = store(
        engine,
        guest,
        &Limits {
            timeout: None,
            ..*limits
        },
    )?;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if std::time::Instant::now() >= deadline {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });
    Ok(store)
}

/// How often `serve` ticks the engine's epoch.
pub(crate) const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// A linker for preview1 modules.
pub(crate) fn module_linker(engine: &Engine) -> Result<wasmtime::Linker<State<P1Ctx>>, HostError> {
    let mut linker = wasmtime::Linker::new(engine);
    warden_wasi::link_p1(&mut linker, |s: &mut State<P1Ctx>| &mut s.guest)?;
    Ok(linker)
}

/// A linker for components of `abi`, with the built-ins `grants` provide.
pub(crate) fn component_linker(
    engine: &Engine,
    abi: ComponentAbi,
    grants: &Grants,
) -> Result<wasmtime::component::Linker<State<ComponentCtx>>, HostError> {
    let mut linker = wasmtime::component::Linker::new(engine);
    warden_wasi::link_component(&mut linker, abi, grants)?;
    Ok(linker)
}

/// The store for a component with `grants`, its network through `gate`,
/// and the pre-opened listeners in `activation`.
pub(crate) fn component_store(
    engine: &Engine,
    grants: &Grants,
    gate: &Arc<Gate>,
    activation: Arc<warden_net::socket::Activation>,
    limits: &Limits,
) -> Result<Store<State<ComponentCtx>>, HostError> {
    store(engine, ComponentCtx::new(grants, gate, activation)?, limits)
}

/// The innermost cause of a wasmtime error: what a guest's failure is
/// told as.
pub(crate) fn root_message(e: &wasmtime::Error) -> String {
    e.chain()
        .last()
        .map_or_else(|| e.to_string(), |c| c.to_string())
}
