//! The TCP half of `wasi:sockets/types@0.3.0` over `warden_net::socket::component`:
//! `connect` is an async function, `listen` a stream of accepted sockets,
//! and a connection's bytes are 0.3 streams (`send` consumes one,
//! `receive` produces one), each with a future saying how it ended.
//!
//! One function per WIT method, as in the 0.2 face: the host traits are
//! generated from `crates/wasi/wit/p3`, wasmtime-wasi 48's 0.3 text cut to
//! the TCP half of `types`, so the generated `add_to_linker` links
//! `tcp-socket` and nothing else of the interface (its `udp-socket` stays
//! wasmtime-wasi's). Only resources can be mapped to another crate's type,
//! so the interface's records and variants are generated here too, and
//! converted at this edge.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::pin::Pin;
use std::task::{Context, Poll};

use warden_net::Action;
use warden_net::socket::Family;
use warden_net::socket::component::{self as tcp, ErrorCode, Incoming};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Access, Accessor, Destination, FutureReader, Linker, Resource, StreamProducer, StreamReader,
    StreamResult,
};

use self::bindings::wasi::sockets::types::{
    self as face, ErrorCode as P3Code, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress,
    Ipv6SocketAddress,
};
use super::streams::{ReceiveProducer, SendConsumer};
use super::{Faces, TcpView, io_code, retype};
use crate::HasComponentCtx;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/p3",
        world: "warden:faces/tcp-p3",
        imports: {
            "wasi:sockets/types.[method]tcp-socket.listen": store | trappable,
            "wasi:sockets/types.[method]tcp-socket.send": store | trappable,
            "wasi:sockets/types.[method]tcp-socket.receive": store | trappable,
            default: trappable,
        },
        with: {
            "wasi:sockets/types.tcp-socket": super::Handle,
        },
        require_store_data_send: true,
    });
}

/// The handle type wasmtime's 0.3 bindings know for `tcp-socket`.
pub type Handle = wasmtime_wasi::sockets::TcpSocket;

/// Link the TCP functions of `wasi:sockets/types@0.3.0` (see the module
/// docs of `tcp`).
pub(crate) fn link<T: HasComponentCtx>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    face::add_to_linker::<T, Faces>(linker, super::view::<T>)
}

type R<T> = wasmtime::Result<Result<T, P3Code>>;

/// Warden's error code as 0.3's.
fn p3(e: ErrorCode) -> P3Code {
    match e {
        ErrorCode::AccessDenied => P3Code::AccessDenied,
        ErrorCode::NotSupported => P3Code::NotSupported,
        ErrorCode::InvalidArgument => P3Code::InvalidArgument,
        ErrorCode::OutOfMemory => P3Code::OutOfMemory,
        ErrorCode::Timeout => P3Code::Timeout,
        ErrorCode::InvalidState => P3Code::InvalidState,
        ErrorCode::AddressNotBindable => P3Code::AddressNotBindable,
        ErrorCode::AddressInUse => P3Code::AddressInUse,
        ErrorCode::RemoteUnreachable => P3Code::RemoteUnreachable,
        ErrorCode::ConnectionRefused => P3Code::ConnectionRefused,
        ErrorCode::ConnectionBroken => P3Code::ConnectionBroken,
        ErrorCode::ConnectionReset => P3Code::ConnectionReset,
        ErrorCode::ConnectionAborted => P3Code::ConnectionAborted,
        _ => P3Code::Other(None),
    }
}

fn addr_in(a: IpSocketAddress) -> SocketAddr {
    match a {
        IpSocketAddress::Ipv4(a) => {
            let (x, y, z, w) = a.address;
            SocketAddrV4::new(Ipv4Addr::new(x, y, z, w), a.port).into()
        }
        IpSocketAddress::Ipv6(a) => {
            let (s0, s1, s2, s3, s4, s5, s6, s7) = a.address;
            let ip = Ipv6Addr::new(s0, s1, s2, s3, s4, s5, s6, s7);
            SocketAddrV6::new(ip, a.port, a.flow_info, a.scope_id).into()
        }
    }
}

fn addr_out(a: SocketAddr) -> IpSocketAddress {
    match a {
        SocketAddr::V4(a) => {
            let [x, y, z, w] = a.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: a.port(),
                address: (x, y, z, w),
            })
        }
        SocketAddr::V6(a) => {
            let [s0, s1, s2, s3, s4, s5, s6, s7] = a.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: a.port(),
                flow_info: a.flowinfo(),
                address: (s0, s1, s2, s3, s4, s5, s6, s7),
                scope_id: a.scope_id(),
            })
        }
    }
}

fn socket<'a>(
    view: &'a mut TcpView<'_>,
    this: &Resource<Handle>,
) -> wasmtime::Result<&'a mut tcp::TcpSocket> {
    Ok(view
        .table
        .get_mut(&retype::<Handle, tcp::TcpSocket>(this))?)
}

/// A listening socket's accepted connections, as a 0.3 stream of sockets.
struct Accepted<T: 'static> {
    listener: Incoming,
    view: fn(&mut T) -> TcpView<'_>,
}

impl<T: 'static> StreamProducer<T> for Accepted<T> {
    type Item = Resource<Handle>;
    type Buffer = Option<Self::Item>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, T>,
        mut dst: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        // A zero-length read asks whether a connection is waiting.
        if dst.remaining(&mut store) == Some(0) {
            return match self.listener.poll_ready(cx) {
                Poll::Ready(()) => Poll::Ready(Ok(StreamResult::Completed)),
                Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
                Poll::Pending => Poll::Pending,
            };
        }
        let accepted = match self.listener.poll_accept(cx) {
            Poll::Ready(s) => s,
            Poll::Pending if finish => return Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => return Poll::Pending,
        };
        let pushed = (self.view)(store.data_mut()).table.push(accepted)?;
        dst.set_buffer(Some(retype(&pushed)));
        Poll::Ready(Ok(StreamResult::Completed))
    }
}

/// How a byte stream ended, as the future `send` and `receive` return.
async fn ended(
    rx: tokio::sync::oneshot::Receiver<Result<(), std::io::ErrorKind>>,
) -> wasmtime::Result<Result<(), P3Code>> {
    Ok(match rx.await {
        Ok(Ok(())) | Err(_) => Ok(()),
        Ok(Err(kind)) => Err(p3(io_code(kind))),
    })
}

/// A future that is already over, with `e`.
fn failed<T: 'static>(
    store: &mut Access<'_, T, Faces>,
    e: ErrorCode,
) -> wasmtime::Result<FutureReader<Result<(), P3Code>>> {
    let e = p3(e);
    FutureReader::new(store, async move { wasmtime::error::Ok(Err(e)) })
}

impl face::Host for TcpView<'_> {}

impl<T: Send + 'static> face::HostTcpSocketWithStore<T> for Faces {
    async fn connect(
        store: &Accessor<T, Self>,
        this: Resource<Handle>,
        remote: IpSocketAddress,
    ) -> R<()> {
        // The denied names' addresses, if stale, before deciding.
        let gate = store.with(|mut access| access.get().sockets.gate.clone());
        gate.prepare(Action::Connect).await;
        let started = store.with(|mut access| -> wasmtime::Result<_> {
            Ok(socket(&mut access.get(), &this)?.start_connect(addr_in(remote)))
        })?;
        if let Err(e) = started {
            return Ok(Err(p3(e)));
        }
        let done = std::future::poll_fn(|cx| {
            store.with(
                |mut access| -> Poll<wasmtime::Result<Result<(), ErrorCode>>> {
                    match socket(&mut access.get(), &this) {
                        Ok(s) => s.poll_finish_connect(cx).map(Ok),
                        Err(e) => Poll::Ready(Err(e)),
                    }
                },
            )
        })
        .await?;
        Ok(done.map_err(p3))
    }

    fn listen(
        mut store: Access<'_, T, Self>,
        this: Resource<Handle>,
    ) -> R<StreamReader<Resource<Handle>>> {
        let view = store.getter();
        let listener = match socket(&mut store.get(), &this)?.listen() {
            Ok(l) => l,
            Err(e) => return Ok(Err(p3(e))),
        };
        Ok(Ok(StreamReader::new(
            &mut store,
            Accepted { listener, view },
        )?))
    }

    fn send(
        mut store: Access<'_, T, Self>,
        this: Resource<Handle>,
        mut data: StreamReader<u8>,
    ) -> wasmtime::Result<FutureReader<Result<(), P3Code>>> {
        match socket(&mut store.get(), &this)?.take_writer() {
            Ok(writer) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                data.pipe(&mut store, SendConsumer::new(writer, tx))?;
                FutureReader::new(&mut store, ended(rx))
            }
            Err(e) => {
                data.close(&mut store)?;
                failed(&mut store, e)
            }
        }
    }

    fn receive(
        mut store: Access<'_, T, Self>,
        this: Resource<Handle>,
    ) -> wasmtime::Result<(StreamReader<u8>, FutureReader<Result<(), P3Code>>)> {
        match socket(&mut store.get(), &this)?.take_reader() {
            Ok(reader) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let bytes = StreamReader::new(&mut store, ReceiveProducer::new(reader, tx))?;
                Ok((bytes, FutureReader::new(&mut store, ended(rx))?))
            }
            Err(e) => {
                let bytes = StreamReader::new(&mut store, std::iter::empty())?;
                Ok((bytes, failed(&mut store, e)?))
            }
        }
    }
}

/// A socket option: its getter and setter, each Warden's socket's own
/// method of the same name with the error made 0.3's.
macro_rules! option {
    ($get:ident, $set:ident, $ty:ty, $getter:ident, $setter:ident) => {
        fn $get(&mut self, this: Resource<Handle>) -> R<$ty> {
            Ok(socket(self, &this)?.$getter().map_err(p3))
        }

        fn $set(&mut self, this: Resource<Handle>, value: $ty) -> R<()> {
            Ok(socket(self, &this)?.$setter(value).map_err(p3))
        }
    };
}

impl face::HostTcpSocket for TcpView<'_> {
    fn create(&mut self, family: IpAddressFamily) -> R<Resource<Handle>> {
        let family = match family {
            IpAddressFamily::Ipv4 => Family::V4,
            IpAddressFamily::Ipv6 => Family::V6,
        };
        match tcp::TcpSocket::new(self.sockets, family) {
            Ok(s) => Ok(Ok(retype(&self.table.push(s)?))),
            Err(e) => Ok(Err(p3(e))),
        }
    }

    fn bind(&mut self, this: Resource<Handle>, local: IpSocketAddress) -> R<()> {
        Ok(socket(self, &this)?.bind(addr_in(local)).map_err(p3))
    }

    fn get_local_address(&mut self, this: Resource<Handle>) -> R<IpSocketAddress> {
        Ok(socket(self, &this)?
            .local_address()
            .map(addr_out)
            .map_err(p3))
    }

    fn get_remote_address(&mut self, this: Resource<Handle>) -> R<IpSocketAddress> {
        Ok(socket(self, &this)?
            .remote_address()
            .map(addr_out)
            .map_err(p3))
    }

    fn get_is_listening(&mut self, this: Resource<Handle>) -> wasmtime::Result<bool> {
        Ok(socket(self, &this)?.is_listening())
    }

    fn get_address_family(&mut self, this: Resource<Handle>) -> wasmtime::Result<IpAddressFamily> {
        Ok(match socket(self, &this)?.family() {
            Family::V4 => IpAddressFamily::Ipv4,
            Family::V6 => IpAddressFamily::Ipv6,
        })
    }

    fn set_listen_backlog_size(&mut self, this: Resource<Handle>, value: u64) -> R<()> {
        Ok(socket(self, &this)?
            .set_listen_backlog_size(value)
            .map_err(p3))
    }

    option!(
        get_keep_alive_enabled,
        set_keep_alive_enabled,
        bool,
        keep_alive_enabled,
        set_keep_alive_enabled
    );
    option!(
        get_keep_alive_idle_time,
        set_keep_alive_idle_time,
        u64,
        keep_alive_idle_time,
        set_keep_alive_idle_time
    );
    option!(
        get_keep_alive_interval,
        set_keep_alive_interval,
        u64,
        keep_alive_interval,
        set_keep_alive_interval
    );
    option!(
        get_keep_alive_count,
        set_keep_alive_count,
        u32,
        keep_alive_count,
        set_keep_alive_count
    );
    option!(get_hop_limit, set_hop_limit, u8, hop_limit, set_hop_limit);
    option!(
        get_receive_buffer_size,
        set_receive_buffer_size,
        u64,
        receive_buffer_size,
        set_receive_buffer_size
    );
    option!(
        get_send_buffer_size,
        set_send_buffer_size,
        u64,
        send_buffer_size,
        set_send_buffer_size
    );

    fn drop(&mut self, this: Resource<Handle>) -> wasmtime::Result<()> {
        self.table.delete::<tcp::TcpSocket>(retype(&this))?;
        Ok(())
    }
}
