//! `wasi:sockets/tcp@0.2` and `tcp-create-socket@0.2` over
//! `warden_net::socket::component`: the start/finish protocol, pollables, and the
//! socket's input and output streams.

use std::net::{Shutdown, SocketAddr};
use std::task::{Context, Poll};

use warden_net::Action;
use warden_net::socket::component::{self as tcp, ErrorCode, Incoming};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode as P2Code, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::ShutdownType;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, Pollable};

use super::streams::{WriteCloser, WriteStream};
use super::{TcpView, code, family_v6, retype};
use crate::HasComponentCtx;

/// The handle type wasmtime's 0.2 bindings know for `tcp-socket`.
type Handle = wasmtime_wasi::p2::TcpSocket;

/// The 0.2 start/finish operation under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Bind,
    Connect,
    Listen,
}

/// A 0.2 TCP socket: Warden's socket and the 0.2 bookkeeping.
pub(crate) struct Socket {
    inner: tcp::TcpSocket,
    op: Option<Op>,
    listener: Option<Incoming>,
    /// Shuts the output stream's writer down, once streams exist.
    closer: Option<WriteCloser>,
}

impl Socket {
    fn new(inner: tcp::TcpSocket) -> Self {
        Socket {
            inner,
            op: None,
            listener: None,
            closer: None,
        }
    }

    /// Take the connection's bytes as 0.2 streams.
    fn take_streams(&mut self) -> Result<(DynInputStream, DynOutputStream), ErrorCode> {
        let reader = self.inner.take_reader()?;
        let writer = self.inner.take_writer()?;
        let (output, closer) = WriteStream::new(writer);
        self.closer = Some(closer);
        let input: DynInputStream = Box::new(wasmtime_wasi::p2::pipe::AsyncReadStream::new(reader));
        Ok((input, Box::new(output)))
    }
}

#[async_trait::async_trait]
impl Pollable for Socket {
    async fn ready(&mut self) {
        match self.op {
            Some(Op::Connect) => {
                let _ = std::future::poll_fn(|cx| self.inner.poll_finish_connect(cx)).await;
            }
            None if self.listener.is_some() => {
                if let Some(l) = self.listener.as_mut() {
                    std::future::poll_fn(|cx| l.poll_ready(cx)).await;
                }
            }
            _ => {}
        }
    }
}

type R<T> = wasmtime::Result<(Result<T, P2Code>,)>;

fn err<T>(e: ErrorCode) -> R<T> {
    Ok((Err(P2Code::from(code(e))),))
}

fn ok<T>(v: T) -> R<T> {
    Ok((Ok(v),))
}

fn noop() -> Context<'static> {
    Context::from_waker(std::task::Waker::noop())
}

/// The socket behind `this`.
fn socket<'a>(
    view: &'a mut TcpView<'_>,
    this: &Resource<Handle>,
) -> wasmtime::Result<&'a mut Socket> {
    Ok(view.table.get_mut(&retype::<Handle, Socket>(this))?)
}

fn view<'a, T: HasComponentCtx>(store: &'a mut StoreContextMut<'_, T>) -> TcpView<'a> {
    store.data_mut().component_ctx().tcp_view()
}

/// Link the 0.2 TCP interfaces (see the module docs of `tcp`).
pub(crate) fn link<T: HasComponentCtx>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker
        .instance("wasi:sockets/tcp-create-socket@0.2.12")?
        .func_wrap(
            "create-tcp-socket",
            |mut store: StoreContextMut<'_, T>,
             (family,): (IpAddressFamily,)|
             -> R<Resource<Handle>> {
                let v = view(&mut store);
                let family = family_v6(matches!(family, IpAddressFamily::Ipv6));
                match tcp::TcpSocket::new(v.sockets, family) {
                    Ok(s) => {
                        let r = v.table.push(Socket::new(s))?;
                        ok(retype(&r))
                    }
                    Err(e) => err(e),
                }
            },
        )?;

    let mut i = linker.instance("wasi:sockets/tcp@0.2.12")?;
    i.resource(
        "tcp-socket",
        ResourceType::host::<Handle>(),
        |mut store: StoreContextMut<'_, T>, rep| {
            let v = view(&mut store);
            v.table.delete::<Socket>(Resource::new_own(rep))?;
            Ok(())
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.start-bind",
        |mut store: StoreContextMut<'_, T>,
         (this, network, addr): (Resource<Handle>, Resource<Network>, IpSocketAddress)|
         -> R<()> {
            let mut v = view(&mut store);
            // The network resource is the capability to use the method.
            v.table.get(&network)?;
            let s = socket(&mut v, &this)?;
            if s.op.is_some() {
                return Ok((Err(P2Code::ConcurrencyConflict),));
            }
            match s.inner.bind(SocketAddr::from(addr)) {
                Ok(()) => {
                    s.op = Some(Op::Bind);
                    ok(())
                }
                Err(e) => err(e),
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.finish-bind",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<()> {
            let mut v = view(&mut store);
            let s = socket(&mut v, &this)?;
            if s.op != Some(Op::Bind) {
                return Ok((Err(P2Code::NotInProgress),));
            }
            s.op = None;
            ok(())
        },
    )?;
    i.func_wrap_async(
        "[method]tcp-socket.start-connect",
        |mut store: StoreContextMut<'_, T>,
         (this, network, addr): (Resource<Handle>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                // The denied names' addresses, if stale, before deciding.
                let gate = view(&mut store).sockets.gate.clone();
                gate.prepare(Action::Connect).await;
                let mut v = view(&mut store);
                v.table.get(&network)?;
                let s = socket(&mut v, &this)?;
                if s.op.is_some() {
                    return Ok((Err(P2Code::ConcurrencyConflict),));
                }
                match s.inner.start_connect(SocketAddr::from(addr)) {
                    Ok(()) => {
                        s.op = Some(Op::Connect);
                        ok(())
                    }
                    Err(e) => err(e),
                }
            })
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.finish-connect",
        |mut store: StoreContextMut<'_, T>,
         (this,): (Resource<Handle>,)|
         -> R<(Resource<DynInputStream>, Resource<DynOutputStream>)> {
            let mut v = view(&mut store);
            let s = socket(&mut v, &this)?;
            if s.op != Some(Op::Connect) {
                return Ok((Err(P2Code::NotInProgress),));
            }
            let Poll::Ready(result) = s.inner.poll_finish_connect(&mut noop()) else {
                return Ok((Err(P2Code::WouldBlock),));
            };
            s.op = None;
            let streams = result.and_then(|()| s.take_streams());
            let (input, output) = match streams {
                Ok(pair) => pair,
                Err(e) => return err(e),
            };
            let parent = retype::<Handle, Socket>(&this);
            let input = v.table.push_child(input, &parent)?;
            let output = v.table.push_child(output, &parent)?;
            ok((input, output))
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.start-listen",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<()> {
            let mut v = view(&mut store);
            let s = socket(&mut v, &this)?;
            if s.op.is_some() {
                return Ok((Err(P2Code::ConcurrencyConflict),));
            }
            // WASI 0.2: a socket is bound explicitly before it listens.
            if !s.inner.is_bound() {
                return Ok((Err(P2Code::InvalidState),));
            }
            match s.inner.listen() {
                Ok(l) => {
                    s.listener = Some(l);
                    s.op = Some(Op::Listen);
                    ok(())
                }
                Err(e) => err(e),
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.finish-listen",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<()> {
            let mut v = view(&mut store);
            let s = socket(&mut v, &this)?;
            if s.op != Some(Op::Listen) {
                return Ok((Err(P2Code::NotInProgress),));
            }
            s.op = None;
            ok(())
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.accept",
        |mut store: StoreContextMut<'_, T>,
         (this,): (Resource<Handle>,)|
         -> R<(
            Resource<Handle>,
            Resource<DynInputStream>,
            Resource<DynOutputStream>,
        )> {
            let mut v = view(&mut store);
            let s = socket(&mut v, &this)?;
            let Some(listener) = s.listener.as_mut() else {
                return Ok((Err(P2Code::InvalidState),));
            };
            let Poll::Ready(accepted) = listener.poll_accept(&mut noop()) else {
                return Ok((Err(P2Code::WouldBlock),));
            };
            let mut accepted = Socket::new(accepted);
            let (input, output) = match accepted.take_streams() {
                Ok(pair) => pair,
                Err(e) => return err(e),
            };
            let sock = v.table.push(accepted)?;
            let input = v.table.push_child(input, &sock)?;
            let output = v.table.push_child(output, &sock)?;
            ok((retype(&sock), input, output))
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.local-address",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<IpSocketAddress> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.inner.local_address() {
                Ok(a) => ok(a.into()),
                Err(e) => err(e),
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.remote-address",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<IpSocketAddress> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.inner.remote_address() {
                Ok(a) => ok(a.into()),
                Err(e) => err(e),
            }
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.is-listening",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| {
            let mut v = view(&mut store);
            Ok((socket(&mut v, &this)?.inner.is_listening(),))
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.address-family",
        |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| {
            let mut v = view(&mut store);
            Ok((match socket(&mut v, &this)?.inner.family() {
                warden_net::socket::Family::V4 => IpAddressFamily::Ipv4,
                warden_net::socket::Family::V6 => IpAddressFamily::Ipv6,
            },))
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.set-listen-backlog-size",
        |mut store: StoreContextMut<'_, T>, (this, value): (Resource<Handle>, u64)| -> R<()> {
            let mut v = view(&mut store);
            match socket(&mut v, &this)?.inner.set_listen_backlog_size(value) {
                Ok(()) => ok(()),
                Err(e) => err(e),
            }
        },
    )?;
    // The options: a getter and a setter each, straight to the core.
    macro_rules! option {
        ($get:literal, $set:literal, $ty:ty, $getter:ident, $setter:ident) => {
            i.func_wrap(
                $get,
                |mut store: StoreContextMut<'_, T>, (this,): (Resource<Handle>,)| -> R<$ty> {
                    let mut v = view(&mut store);
                    match socket(&mut v, &this)?.inner.$getter() {
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
                    match socket(&mut v, &this)?.inner.$setter(value) {
                        Ok(()) => ok(()),
                        Err(e) => err(e),
                    }
                },
            )?;
        };
    }
    option!(
        "[method]tcp-socket.keep-alive-enabled",
        "[method]tcp-socket.set-keep-alive-enabled",
        bool,
        keep_alive_enabled,
        set_keep_alive_enabled
    );
    option!(
        "[method]tcp-socket.keep-alive-idle-time",
        "[method]tcp-socket.set-keep-alive-idle-time",
        u64,
        keep_alive_idle_time,
        set_keep_alive_idle_time
    );
    option!(
        "[method]tcp-socket.keep-alive-interval",
        "[method]tcp-socket.set-keep-alive-interval",
        u64,
        keep_alive_interval,
        set_keep_alive_interval
    );
    option!(
        "[method]tcp-socket.keep-alive-count",
        "[method]tcp-socket.set-keep-alive-count",
        u32,
        keep_alive_count,
        set_keep_alive_count
    );
    option!(
        "[method]tcp-socket.hop-limit",
        "[method]tcp-socket.set-hop-limit",
        u8,
        hop_limit,
        set_hop_limit
    );
    option!(
        "[method]tcp-socket.receive-buffer-size",
        "[method]tcp-socket.set-receive-buffer-size",
        u64,
        receive_buffer_size,
        set_receive_buffer_size
    );
    option!(
        "[method]tcp-socket.send-buffer-size",
        "[method]tcp-socket.set-send-buffer-size",
        u64,
        send_buffer_size,
        set_send_buffer_size
    );
    i.func_wrap(
        "[method]tcp-socket.subscribe",
        |mut store: StoreContextMut<'_, T>,
         (this,): (Resource<Handle>,)|
         -> wasmtime::Result<(Resource<DynPollable>,)> {
            let v = view(&mut store);
            Ok((wasmtime_wasi::p2::subscribe(
                v.table,
                retype::<Handle, Socket>(&this),
            )?,))
        },
    )?;
    i.func_wrap(
        "[method]tcp-socket.shutdown",
        |mut store: StoreContextMut<'_, T>,
         (this, how): (Resource<Handle>, ShutdownType)|
         -> R<()> {
            let mut v = view(&mut store);
            let s = socket(&mut v, &this)?;
            // Only a connection with its streams taken can be shut down.
            let Some(closer) = s.closer.clone() else {
                return Ok((Err(P2Code::InvalidState),));
            };
            let how = match how {
                ShutdownType::Receive => Shutdown::Read,
                ShutdownType::Send => Shutdown::Write,
                ShutdownType::Both => Shutdown::Both,
            };
            if matches!(how, Shutdown::Write | Shutdown::Both) {
                // Send what is queued, then close (FIN; close_notify under
                // TLS).
                closer.close();
            }
            if matches!(how, Shutdown::Read | Shutdown::Both)
                && let Err(e) = s.inner.shutdown(Shutdown::Read)
            {
                return err(e);
            }
            ok(())
        },
    )?;
    Ok(())
}
