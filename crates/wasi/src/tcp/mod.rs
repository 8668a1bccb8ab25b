//! `wasi:sockets` TCP for components, Warden's own: the 0.2 `tcp` and
//! `tcp-create-socket` interfaces and the TCP half of 0.3's `types`, over
//! the ABI-neutral sockets of `warden_net::socket::component` (which put every address
//! to the gate, hand over pre-opened listeners, and keep the byte stream
//! on the host).
//!
//! wasmtime-wasi's TCP has no hook for either, so its functions are
//! shadowed in the linker after wasmtime-wasi is linked: every
//! `tcp-socket` function and the resource's destructor are Warden's, and
//! the table holds Warden's socket under the handle type wasmtime's
//! bindings know (as the gated name lookup does). Nothing of wasmtime's TCP
//! is reachable; UDP stays wasmtime-wasi's, with its addresses checked by
//! the gate through wasmtime's socket address check.

mod p2;
mod p3;
mod streams;

use warden_net::socket::Family;
use warden_net::socket::component::{ErrorCode, Sockets};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::{ComponentAbi, HasComponentCtx};

/// What the TCP functions work on: the resource table and the instance's
/// sockets context.
pub(crate) struct TcpView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) sockets: &'a Sockets,
}

/// The generated bindings' view of a store: its [`TcpView`].
struct Faces;

impl HasData for Faces {
    type Data<'a> = TcpView<'a>;
}

/// What the generated `add_to_linker`s take to reach a store's [`TcpView`].
fn view<T: HasComponentCtx>(t: &mut T) -> TcpView<'_> {
    t.component_ctx().tcp_view()
}

/// Shadow wasmtime-wasi's TCP with Warden's, for 0.2 (and 0.3). The linker
/// must allow shadowing.
pub(crate) fn link<T: HasComponentCtx>(
    linker: &mut Linker<T>,
    abi: ComponentAbi,
) -> wasmtime::Result<()> {
    p2::link(linker)?;
    if abi == ComponentAbi::P3 {
        p3::link(linker)?;
    }
    Ok(())
}

/// The same rep under another handle type (see the module docs).
fn retype<A: 'static, B: 'static>(r: &Resource<A>) -> Resource<B> {
    if r.owned() {
        Resource::new_own(r.rep())
    } else {
        Resource::new_borrow(r.rep())
    }
}

/// Warden's error code as wasmtime-wasi's, which converts to 0.2's (the
/// 0.3 face converts to its generated one itself).
fn code(e: ErrorCode) -> wasmtime_wasi::sockets::ErrorCode {
    use wasmtime_wasi::sockets::ErrorCode as W;
    match e {
        ErrorCode::AccessDenied => W::AccessDenied,
        ErrorCode::NotSupported => W::NotSupported,
        ErrorCode::InvalidArgument => W::InvalidArgument,
        ErrorCode::OutOfMemory => W::OutOfMemory,
        ErrorCode::Timeout => W::Timeout,
        ErrorCode::InvalidState => W::InvalidState,
        ErrorCode::AddressNotBindable => W::AddressNotBindable,
        ErrorCode::AddressInUse => W::AddressInUse,
        ErrorCode::RemoteUnreachable => W::RemoteUnreachable,
        ErrorCode::ConnectionRefused => W::ConnectionRefused,
        ErrorCode::ConnectionBroken => W::ConnectionBroken,
        ErrorCode::ConnectionReset => W::ConnectionReset,
        ErrorCode::ConnectionAborted => W::ConnectionAborted,
        _ => W::Other,
    }
}

/// An I/O error on a connection's bytes as an error code.
fn io_code(kind: std::io::ErrorKind) -> ErrorCode {
    ErrorCode::from(std::io::Error::from(kind))
}

fn family_v6(v6: bool) -> Family {
    if v6 { Family::V6 } else { Family::V4 }
}
