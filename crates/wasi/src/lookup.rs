//! `wasi:sockets/ip-name-lookup` (0.2 and 0.3) behind the gate.
//!
//! wasmtime-wasi's own lookup is all or nothing, and when off it answers
//! `permanent-resolver-failure`. Here every name is first put to the gate:
//! a denied name fails with `access-denied` and resolves nothing; an allowed
//! one goes on to wasmtime's resolver.

use warden_net::{Action, Gate, Target};
use wasmtime::component::{Accessor, HasData, Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets as p2;
use wasmtime_wasi::p3::bindings::sockets as p3;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsCtxView};

use crate::{ComponentAbi, HasComponentCtx};

/// wasmtime's socket view, with the gate beside it.
pub(crate) struct GatedLookup<'a> {
    pub(crate) sockets: WasiSocketsCtxView<'a>,
    pub(crate) gate: &'a Gate,
}

impl GatedLookup<'_> {
    fn allows(&self, name: &str) -> bool {
        self.gate
            .decide(
                Action::Resolve,
                Target::Name {
                    host: name.to_string(),
                    port: None,
                },
            )
            .is_allowed()
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
        if !self.allows(&name) {
            return Err(p2::network::ErrorCode::AccessDenied.into());
        }
        self.sockets.resolve_addresses(network, name)
    }
}

impl p2::ip_name_lookup::HostResolveAddressStream for GatedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<p2::ip_name_lookup::ResolveAddressStream>,
    ) -> Result<Option<p2::network::IpAddress>, wasmtime_wasi::p2::SocketError> {
        self.sockets.resolve_next_address(stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<p2::ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<wasmtime_wasi::p2::DynPollable>> {
        self.sockets.subscribe(stream)
    }

    fn drop(
        &mut self,
        stream: Resource<p2::ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<()> {
        p2::ip_name_lookup::HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}

impl p3::ip_name_lookup::Host for GatedLookup<'_> {}

impl<U: HasComponentCtx> p3::ip_name_lookup::HostWithStore<U> for Gated {
    async fn resolve_addresses(
        store: &Accessor<U, Self>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<p3::types::IpAddress>, p3::ip_name_lookup::ErrorCode>> {
        let allowed = store.with(|mut access| access.get().allows(&name));
        if !allowed {
            return Ok(Err(p3::ip_name_lookup::ErrorCode::AccessDenied));
        }
        fn sockets<U: HasComponentCtx>(u: &mut U) -> WasiSocketsCtxView<'_> {
            u.component_ctx().lookup_view().sockets
        }
        let inner = store.with_getter::<WasiSockets>(sockets::<U>);
        <WasiSockets as p3::ip_name_lookup::HostWithStore<U>>::resolve_addresses(&inner, name).await
    }
}
