//! The TCP half of `wasi:sockets/types@0.3.0` over `warden_net::socket::component`:
//! `connect` is an async function, `listen` a stream of accepted sockets,
//! and a connection's bytes are 0.3 streams (`send` consumes one,
//! `receive` produces one), each with a future saying how it ended.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use warden_net::Action;
use warden_net::socket::component::{self as tcp, ErrorCode, Incoming};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, Destination, FutureReader, Linker, Resource, ResourceType, StreamProducer,
    StreamReader, StreamResult,
};
use wasmtime_wasi::p3::bindings::sockets::types::{
    ErrorCode as P3Code, IpAddressFamily, IpSocketAddress,
};

use super::streams::{ReceiveProducer, SendConsumer};
use super::{TcpView, code, family_v6, io_code, retype};
use crate::HasComponentCtx;

/// The handle type wasmtime's 0.3 bindings know for `tcp-socket`.
type Handle = wasmtime_wasi::sockets::TcpSocket;

fn p3(e: ErrorCode) -> P3Code {
    P3Code::from(code(e))
}

type R<T> = wasmtime::Result<(Result<T, P3Code>,)>;

fn err<T>(e: ErrorCode) -> R<T> {
    Ok((Err(p3(e)),))
}

fn ok<T>(v: T) -> R<T> {
    Ok((Ok(v),))
}

fn view<'a, T: HasComponentCtx>(store: &'a mut StoreContextMut<'_, T>) -> TcpView<'a> {
    store.data_mut().component_ctx().tcp_view()
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
struct Accepted {
    listener: Incoming,
}

impl<D: HasComponentCtx> StreamProducer<D> for Accepted {
    type Item = Resource<Handle>;
    type Buffer = Option<Self::Item>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
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
        let v = view(&mut store);
        let pushed = v.table.push(accepted)?;
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

/// What `receive` returns: the bytes, and how they ended.
type Received = (StreamReader<u8>, FutureReader<Result<(), P3Code>>);

/// Link the TCP functions of `wasi:sockets/types@0.3.0` (see the module
/// docs of `tcp`).
pub(crate) fn link<T: HasComponentCtx>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut i = linker.instance("wasi:sockets/types@0.3.0")?;
    i.resource(
        "tcp-socket",
        ResourceType::host::<Handle>(),
        |mut store: StoreContextMut<'_, T>, rep| {
            let v = view(&mut store);
            v.table.delete::<tcp::TcpSocket>(Resource::new_own(rep))?;
            Ok(())
        },
    )?;
    i.func_wrap(
        "[static]tcp-socket.create",
        |mut store: StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| -> R<Resource<Handle>> {
            let v = view(&mut store);
            let family = family_v6(matches!(family, IpAddressFamily::Ipv6));
            match tcp::TcpSocket::new(v.sockets, family) {
                Ok(s) => {
                    let r = v.table.push(s)?;
                    ok(retype(&r))
                }
                Err(e) => err(e),
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.bind",
        |mut store: StoreContextMut<'_, T>,
         (this, addr): (Resource<Handle>, IpSocketAddress)|
         -> R<()> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.bind(SocketAddr::from(addr)) {
                Ok(()) => ok(()),
                Err(e) => err(e),
            }
        },
    )?;
    i.func_wrap_concurrent(
        "[method]tcp-socket.connect",
        |store: &Accessor<T>, (this, addr): (Resource<Handle>, IpSocketAddress)| {
            Box::pin(async move {
                // The denied names' addresses, if stale, before deciding.
                let gate = store.with(|mut access| {
                    access.get().component_ctx().tcp_view().sockets.gate.clone()
                });
                gate.prepare(Action::Connect).await;
                let started =
                    store.with(|mut access| -> wasmtime::Result<Result<(), ErrorCode>> {
                        let mut v = access.get().component_ctx().tcp_view();
                        Ok(socket(&mut v, &this)?.start_connect(SocketAddr::from(addr)))
                    })?;
                if let Err(e) = started {
                    return Ok((Err(p3(e)),));
                }
                let done = std::future::poll_fn(|cx| {
                    store.with(
                        |mut access| -> Poll<wasmtime::Result<Result<(), ErrorCode>>> {
                            let mut v = access.get().component_ctx().tcp_view();
                            match socket(&mut v, &this) {
                                Ok(s) => s.poll_finish_connect(cx).map(Ok),
                                Err(e) => Poll::Ready(Err(e)),
                            }
                        },
                    )
                })
                .await?;
                Ok((done.map_err(p3),))
            })
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.listen",
        |mut store: StoreContextMut<'_, T>,
         (this,): (Resource<Handle>,)|
         -> R<StreamReader<Resource<Handle>>> {
            let mut v = view(&mut store);
            let listener = match socket(&mut v, &this)?.listen() {
                Ok(l) => l,
                Err(e) => return err(e),
            };
            ok(StreamReader::new(&mut store, Accepted { listener })?)
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.send",
        |mut store: StoreContextMut<'_, T>,
         (this, mut data): (Resource<Handle>, StreamReader<u8>)|
         -> wasmtime::Result<(FutureReader<Result<(), P3Code>>,)> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.take_writer() {
                Ok(writer) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    data.pipe(&mut store, SendConsumer::new(writer, tx))?;
                    Ok((FutureReader::new(&mut store, ended(rx))?,))
                }
                Err(e) => {
                    data.close(&mut store)?;
                    let e = p3(e);
                    Ok((FutureReader::new(&mut store, async move {
                        wasmtime::error::Ok(Err(e))
                    })?,))
                }
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.receive",
        |mut store: StoreContextMut<'_, T>,
         (this,): (Resource<Handle>,)|
         -> wasmtime::Result<(Received,)> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.take_reader() {
                Ok(reader) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let stream = StreamReader::new(&mut store, ReceiveProducer::new(reader, tx))?;
                    Ok(((stream, FutureReader::new(&mut store, ended(rx))?),))
                }
                Err(e) => {
                    let e = p3(e);
                    let stream = StreamReader::new(&mut store, std::iter::empty())?;
                    let done =
                        FutureReader::new(&mut store, async move { wasmtime::error::Ok(Err(e)) })?;
                    Ok(((stream, done),))
                }
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.get-local-address",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<IpSocketAddress> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.local_address() {
                Ok(a) => ok(a.into()),
                Err(e) => err(e),
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.get-remote-address",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<IpSocketAddress> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.remote_address() {
                Ok(a) => ok(a.into()),
                Err(e) => err(e),
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.get-is-listening",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| {
            let mut v = view(&mut store);
            Ok((socket(&mut v, &this)?.is_listening(),))
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.get-address-family",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| {
            let mut v = view(&mut store);
            Ok((match socket(&mut v, &this)?.family() {
                warden_net::socket::Family::V4 => IpAddressFamily::Ipv4,
                warden_net::socket::Family::V6 => IpAddressFamily::Ipv6,
            },))
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.set-listen-backlog-size",
        |mut store: StoreContextMut<'_, T>, (this, value): (Resource<Handle>, u64)| -> R<()> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.set_listen_backlog_size(value) {
                Ok(()) => ok(()),
                Err(e) => err(e),
            }
        },
    )?;
    macro_rules! option {
        ($get:literal, $set:literal, $ty:ty, $getter:ident, $setter:ident) => {
            i.func_wrap(
                $get,
                |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<$ty> {
                    let mut v = view(&mut store);
                    match socket(&mut v, &this)?.$getter() {
                        Ok(x) => ok(x),
                        Err(e) => err(e),
                    }
                },
            )?;
            i.func_wrap(
                $set,
                |mut store: StoreContextMut<'_, T>,
                 (this, value): (Resource<Handle>, $ty)|
                 -> R<()> {
                    let mut v = view(&mut store);
                    match socket(&mut v, &this)?.$setter(value) {
                        Ok(()) => ok(()),
                        Err(e) => err(e),
                    }
                },
            )?;
        };
    }
    option!(
        "[method]tcp-socket.get-keep-alive-enabled",
        "[method]tcp-socket.set-keep-alive-enabled",
        bool,
        keep_alive_enabled,
        set_keep_alive_enabled
    );
    option!(
        "[method]tcp-socket.get-keep-alive-idle-time",
        "[method]tcp-socket.set-keep-alive-idle-time",
        u64,
        keep_alive_idle_time,
        set_keep_alive_idle_time
    );
    option!(
        "[method]tcp-socket.get-keep-alive-interval",
        "[method]tcp-socket.set-keep-alive-interval",
        u64,
        keep_alive_interval,
        set_keep_alive_interval
    );
    option!(
        "[method]tcp-socket.get-keep-alive-count",
        "[method]tcp-socket.set-keep-alive-count",
        u32,
        keep_alive_count,
        set_keep_alive_count
    );
    option!(
        "[method]tcp-socket.get-hop-limit",
        "[method]tcp-socket.set-hop-limit",
        u8,
        hop_limit,
        set_hop_limit
    );
    option!(
        "[method]tcp-socket.get-receive-buffer-size",
        "[method]tcp-socket.set-receive-buffer-size",
        u64,
        receive_buffer_size,
        set_receive_buffer_size
    );
    option!(
        "[method]tcp-socket.get-send-buffer-size",
        "[method]tcp-socket.set-send-buffer-size",
        u64,
        send_buffer_size,
        set_send_buffer_size
    );
    Ok(())
}
