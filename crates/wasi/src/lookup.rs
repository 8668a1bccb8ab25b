//! `wasi:sockets/ip-name-lookup` (0.2 and 0.3), Warden's own.
//!
//! wasmtime-wasi's lookup is all or nothing. This one puts every name to
//! the gate first (a denied name fails with `access-denied` and nothing is
//! sent anywhere), then resolves on the host through [`Gate::lookup`], which
//! pins the answer so that connects to it are decided by the name's rule.

use std::net::IpAddr;
use std::sync::Arc;

use warden_net::{Gate, LookupError, ResolveError};
use wasmtime::component::{Accessor, HasData, Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets as p2;
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi::p3::bindings::sockets as p3;
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use crate::{ComponentAbi, HasComponentCtx};

/// wasmtime's socket view, with the gate beside it.
pub(crate) struct GatedLookup<'a> {
    pub(crate) sockets: WasiSocketsCtxView<'a>,
    pub(crate) gate: &'a Arc<Gate>,
}

/// A WASI 0.2 `resolve-address-stream`: the host lookup running, then its
/// answer handed out one address at a time.
enum Lookup {
    Running(tokio::task::JoinHandle<Result<Vec<IpAddr>, p2::network::ErrorCode>>),
    Done(Result<std::vec::IntoIter<IpAddr>, p2::network::ErrorCode>),
}

#[async_trait::async_trait]
impl Pollable for Lookup {
    async fn ready(&mut self) {
        if let Lookup::Running(task) = self {
            let result = match task.await {
                Ok(r) => r,
                Err(_) => Err(p2::network::ErrorCode::TemporaryResolverFailure),
            };
            *self = Lookup::Done(result.map(Vec::into_iter));
        }
    }
}

fn p2_code(e: &LookupError) -> p2::network::ErrorCode {
    match e {
        LookupError::NotFound(_) => p2::network::ErrorCode::NameUnresolvable,
        _ => p2::network::ErrorCode::TemporaryResolverFailure,
    }
}

fn p3_code(e: &ResolveError) -> p3::ip_name_lookup::ErrorCode {
    use p3::ip_name_lookup::ErrorCode;
    match e {
        ResolveError::InvalidName(_) => ErrorCode::InvalidArgument,
        ResolveError::Denied(_) => ErrorCode::AccessDenied,
        ResolveError::Lookup(LookupError::NotFound(_)) => ErrorCode::NameUnresolvable,
        _ => ErrorCode::TemporaryResolverFailure,
    }
}

/// The table keeps our [`Lookup`] under the handle the bindings know as
/// wasmtime's stream type; these convert between the two views of it.
fn ours(r: &Resource<p2::ip_name_lookup::ResolveAddressStream>) -> Resource<Lookup> {
    if r.owned() {
        Resource::new_own(r.rep())
    } else {
        Resource::new_borrow(r.rep())
    }
}

/// The `HasData` marker for [`GatedLookup`].
pub(crate) struct Gated;

impl HasData for Gated {
    type Data<'a> = GatedLookup<'a>;
}

pub(crate) fn link<T: HasComponentCtx>(
    linker: &mut Linker<T>,
    abi: ComponentAbi,
) -> wasmtime::Result<()> {
    fn view<T: HasComponentCtx>(t: &mut T) -> GatedLookup<'_> {
        t.component_ctx().lookup_view()
    }
    p2::ip_name_lookup::add_to_linker::<T, Gated>(linker, view::<T>)?;
    if abi == ComponentAbi::P3 {
        p3::ip_name_lookup::add_to_linker::<T, Gated>(linker, view::<T>)?;
    }
    Ok(())
}

// The generated bindings want the `network` interface's host trait beside
// the lookup (for error conversion); it is wasmtime's.
impl p2::network::Host for GatedLookup<'_> {
    fn convert_error_code(
        &mut self,
        error: wasmtime_wasi::p2::SocketError,
    ) -> wasmtime::Result<p2::network::ErrorCode> {
        self.sockets.convert_error_code(error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<p2::network::Error>,
    ) -> wasmtime::Result<Option<p2::network::ErrorCode>> {
        self.sockets.network_error_code(err)
    }
}

impl p2::network::HostNetwork for GatedLookup<'_> {
    fn drop(&mut self, network: Resource<p2::network::Network>) -> wasmtime::Result<()> {
        p2::network::HostNetwork::drop(&mut self.sockets, network)
    }
}

impl p2::ip_name_lookup::Host for GatedLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<p2::network::Network>,
        name: String,
    ) -> Result<Resource<p2::ip_name_lookup::ResolveAddressStream>, wasmtime_wasi::p2::SocketError>
    {
        // The network resource is the capability to look up at all.
        self.sockets.table.get(&network)?;
        let permit = self
            .gate
            .permit_resolve(&name)
            .map_err(|e| p2_resolve_code(&e))?;
        let gate = self.gate.clone();
        let task = tokio::spawn(async move { gate.lookup(permit).await.map_err(|e| p2_code(&e)) });
        let lookup = self.sockets.table.push(Lookup::Running(task))?;
        Ok(Resource::new_own(lookup.rep()))
    }
}

fn p2_resolve_code(e: &ResolveError) -> p2::network::ErrorCode {
    match e {
        ResolveError::InvalidName(_) => p2::network::ErrorCode::InvalidArgument,
        ResolveError::Denied(_) => p2::network::ErrorCode::AccessDenied,
        ResolveError::Lookup(l) => p2_code(l),
        _ => p2::network::ErrorCode::TemporaryResolverFailure,
    }
}

impl p2::ip_name_lookup::HostResolveAddressStream for GatedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<p2::ip_name_lookup::ResolveAddressStream>,
    ) -> Result<Option<p2::network::IpAddress>, wasmtime_wasi::p2::SocketError> {
        let lookup: &mut Lookup = self.sockets.table.get_mut(&ours(&stream))?;
        if let Lookup::Running(task) = lookup {
            if !task.is_finished() {
                return Err(p2::network::ErrorCode::WouldBlock.into());
            }
            // Finished: taking the result cannot wait.
            let result = match futures_now(task) {
                Some(Ok(r)) => r,
                _ => Err(p2::network::ErrorCode::TemporaryResolverFailure),
            };
            *lookup = Lookup::Done(result.map(Vec::into_iter));
        }
        match lookup {
            Lookup::Done(Ok(addrs)) => Ok(addrs.next().map(Into::into)),
            Lookup::Done(Err(code)) => Err((*code).into()),
            Lookup::Running(_) => Err(p2::network::ErrorCode::WouldBlock.into()),
        }
    }

    fn subscribe(
        &mut self,
        stream: Resource<p2::ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.sockets.table, ours(&stream))
    }

    fn drop(
        &mut self,
        stream: Resource<p2::ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<()> {
        if let Lookup::Running(task) = self.sockets.table.delete(ours(&stream))? {
            task.abort();
        }
        Ok(())
    }
}

/// The output of a finished task, without waiting.
fn futures_now<T>(
    task: &mut tokio::task::JoinHandle<T>,
) -> Option<Result<T, tokio::task::JoinError>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(task).poll(&mut cx) {
        std::task::Poll::Ready(r) => Some(r),
        std::task::Poll::Pending => None,
    }
}

impl p3::ip_name_lookup::Host for GatedLookup<'_> {}

impl<U: HasComponentCtx> p3::ip_name_lookup::HostWithStore<U> for Gated {
    async fn resolve_addresses(
        store: &Accessor<U, Self>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<p3::types::IpAddress>, p3::ip_name_lookup::ErrorCode>> {
        let gate = store.with(|mut access| access.get().gate.clone());
        Ok(match gate.resolve(&name).await {
            Ok(addrs) => Ok(addrs.into_iter().map(Into::into).collect()),
            Err(e) => Err(p3_code(&e)),
        })
    }
}
