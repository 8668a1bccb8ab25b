//! `wasi:sockets/tcp@0.2` and `tcp-create-socket@0.2` over
//! `warden_net::socket::component`: the start/finish protocol, pollables,
//! and the socket's input and output streams.
//!
//! One function per WIT method: the interfaces' host traits are generated
//! from the WASI 0.2 text (`crates/wasi/wit/p2`) and implemented here on
//! [`TcpView`], as wasmtime-wasi's own p2 host files do. Warden generates
//! its own rather than take wasmtime-wasi's because `start-connect` must
//! be `async` here (the gate refreshes the denied names' addresses before
//! it decides); every type but the socket is wasmtime-wasi's, so the
//! linker sees exactly the interfaces it would have.

use std::net::{Shutdown, SocketAddr};
use std::task::{Context, Poll};

use warden_net::Action;
use warden_net::socket::Family;
use warden_net::socket::component::{self as tcp, ErrorCode, Incoming};
use wasmtime::component::{Linker, Resource, ResourceTableError};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode as P2Code, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, DynPollable, Pollable, SocketError, SocketResult,
};

use self::bindings::wasi::sockets::tcp::ShutdownType;
use self::bindings::wasi::sockets::{tcp as tcp_face, tcp_create_socket};
use super::streams::{WriteCloser, WriteStream};
use super::{Faces, TcpView, code, family_v6, retype, view};
use crate::HasComponentCtx;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/p2",
        world: "warden:faces/tcp-p2",
        imports: {
            "wasi:sockets/tcp.[method]tcp-socket.start-connect": async | trappable,
            default: trappable,
        },
        trappable_error_type: {
            "wasi:sockets/network.error-code" => wasmtime_wasi::p2::SocketError,
        },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:sockets/network": wasmtime_wasi::p2::bindings::sockets::network,
            "wasi:sockets/tcp.tcp-socket": super::Handle,
        },
        require_store_data_send: true,
    });
}

/// The handle type wasmtime's 0.2 bindings know for `tcp-socket`.
pub type Handle = wasmtime_wasi::p2::TcpSocket;

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

/// Warden's error as the 0.2 error the trait methods return.
fn fail(e: ErrorCode) -> SocketError {
    P2Code::from(code(e)).into()
}

fn noop() -> Context<'static> {
    Context::from_waker(std::task::Waker::noop())
}

impl TcpView<'_> {
    /// The socket behind `this`.
    fn socket(&mut self, this: &Resource<Handle>) -> Result<&mut Socket, ResourceTableError> {
        self.table.get_mut(&retype::<Handle, Socket>(this))
    }
}

/// Link the 0.2 TCP interfaces (see the module docs of `tcp`).
pub(crate) fn link<T: HasComponentCtx>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    tcp_create_socket::add_to_linker::<T, Faces>(linker, view::<T>)?;
    tcp_face::add_to_linker::<T, Faces>(linker, view::<T>)?;
    Ok(())
}

impl tcp_create_socket::Host for TcpView<'_> {
    fn create_tcp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<Handle>> {
        let family = family_v6(matches!(family, IpAddressFamily::Ipv6));
        let s = tcp::TcpSocket::new(self.sockets, family).map_err(fail)?;
        let r = self.table.push(Socket::new(s))?;
        Ok(retype(&r))
    }
}

impl tcp_face::Host for TcpView<'_> {}

/// What the TCP interface's bindings need of `network`: turning a trait
/// method's error into the error code the guest gets. The interface's own
/// functions stay wasmtime-wasi's (this module links none of them).
impl network::Host for TcpView<'_> {
    fn convert_error_code(&mut self, e: SocketError) -> wasmtime::Result<P2Code> {
        e.downcast()
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<P2Code>> {
        let err = self.table.get(&err)?;
        Ok(err.downcast_ref::<std::io::Error>().map(P2Code::from))
    }
}

impl network::HostNetwork for TcpView<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl tcp_face::HostTcpSocket for TcpView<'_> {
    fn start_bind(
        &mut self,
        this: Resource<Handle>,
        network: Resource<Network>,
        addr: IpSocketAddress,
    ) -> SocketResult<()> {
        // The network resource is the capability to use the method.
        self.table.get(&network)?;
        let s = self.socket(&this)?;
        if s.op.is_some() {
            return Err(P2Code::ConcurrencyConflict.into());
        }
        s.inner.bind(SocketAddr::from(addr)).map_err(fail)?;
        s.op = Some(Op::Bind);
        Ok(())
    }

    fn finish_bind(&mut self, this: Resource<Handle>) -> SocketResult<()> {
        let s = self.socket(&this)?;
        if s.op != Some(Op::Bind) {
            return Err(P2Code::NotInProgress.into());
        }
        s.op = None;
        Ok(())
    }

    async fn start_connect(
        &mut self,
        this: Resource<Handle>,
        network: Resource<Network>,
        addr: IpSocketAddress,
    ) -> SocketResult<()> {
        // The denied names' addresses, if stale, before deciding.
        self.sockets.gate.prepare(Action::Connect).await;
        self.table.get(&network)?;
        let s = self.socket(&this)?;
        if s.op.is_some() {
            return Err(P2Code::ConcurrencyConflict.into());
        }
        s.inner
            .start_connect(SocketAddr::from(addr))
            .map_err(fail)?;
        s.op = Some(Op::Connect);
        Ok(())
    }

    fn finish_connect(
        &mut self,
        this: Resource<Handle>,
    ) -> SocketResult<(Resource<DynInputStream>, Resource<DynOutputStream>)> {
        let s = self.socket(&this)?;
        if s.op != Some(Op::Connect) {
            return Err(P2Code::NotInProgress.into());
        }
        let Poll::Ready(result) = s.inner.poll_finish_connect(&mut noop()) else {
            return Err(P2Code::WouldBlock.into());
        };
        s.op = None;
        let (input, output) = result.and_then(|()| s.take_streams()).map_err(fail)?;
        let parent = retype::<Handle, Socket>(&this);
        let input = self.table.push_child(input, &parent)?;
        let output = self.table.push_child(output, &parent)?;
        Ok((input, output))
    }

    fn start_listen(&mut self, this: Resource<Handle>) -> SocketResult<()> {
        let s = self.socket(&this)?;
        if s.op.is_some() {
            return Err(P2Code::ConcurrencyConflict.into());
        }
        // WASI 0.2: a socket is bound explicitly before it listens.
        if !s.inner.is_bound() {
            return Err(P2Code::InvalidState.into());
        }
        s.listener = Some(s.inner.listen().map_err(fail)?);
        s.op = Some(Op::Listen);
        Ok(())
    }

    fn finish_listen(&mut self, this: Resource<Handle>) -> SocketResult<()> {
        let s = self.socket(&this)?;
        if s.op != Some(Op::Listen) {
            return Err(P2Code::NotInProgress.into());
        }
        s.op = None;
        Ok(())
    }

    fn accept(
        &mut self,
        this: Resource<Handle>,
    ) -> SocketResult<(
        Resource<Handle>,
        Resource<DynInputStream>,
        Resource<DynOutputStream>,
    )> {
        let s = self.socket(&this)?;
        let Some(listener) = s.listener.as_mut() else {
            return Err(P2Code::InvalidState.into());
        };
        let Poll::Ready(accepted) = listener.poll_accept(&mut noop()) else {
            return Err(P2Code::WouldBlock.into());
        };
        let mut accepted = Socket::new(accepted);
        let (input, output) = accepted.take_streams().map_err(fail)?;
        let sock = self.table.push(accepted)?;
        let input = self.table.push_child(input, &sock)?;
        let output = self.table.push_child(output, &sock)?;
        Ok((retype(&sock), input, output))
    }

    fn local_address(&mut self, this: Resource<Handle>) -> SocketResult<IpSocketAddress> {
        let a = self.socket(&this)?.inner.local_address().map_err(fail)?;
        Ok(a.into())
    }

    fn remote_address(&mut self, this: Resource<Handle>) -> SocketResult<IpSocketAddress> {
        let a = self.socket(&this)?.inner.remote_address().map_err(fail)?;
        Ok(a.into())
    }

    fn is_listening(&mut self, this: Resource<Handle>) -> wasmtime::Result<bool> {
        Ok(self.socket(&this)?.inner.is_listening())
    }

    fn address_family(&mut self, this: Resource<Handle>) -> wasmtime::Result<IpAddressFamily> {
        Ok(match self.socket(&this)?.inner.family() {
            Family::V4 => IpAddressFamily::Ipv4,
            Family::V6 => IpAddressFamily::Ipv6,
        })
    }

    fn set_listen_backlog_size(&mut self, this: Resource<Handle>, value: u64) -> SocketResult<()> {
        let s = self.socket(&this)?;
        s.inner.set_listen_backlog_size(value).map_err(fail)
    }

    fn keep_alive_enabled(&mut self, this: Resource<Handle>) -> SocketResult<bool> {
        self.socket(&this)?.inner.keep_alive_enabled().map_err(fail)
    }

    fn set_keep_alive_enabled(&mut self, this: Resource<Handle>, value: bool) -> SocketResult<()> {
        let s = self.socket(&this)?;
        s.inner.set_keep_alive_enabled(value).map_err(fail)
    }

    fn keep_alive_idle_time(&mut self, this: Resource<Handle>) -> SocketResult<u64> {
        self.socket(&this)?
            .inner
            .keep_alive_idle_time()
            .map_err(fail)
    }

    fn set_keep_alive_idle_time(&mut self, this: Resource<Handle>, value: u64) -> SocketResult<()> {
        let s = self.socket(&this)?;
        s.inner.set_keep_alive_idle_time(value).map_err(fail)
    }

    fn keep_alive_interval(&mut self, this: Resource<Handle>) -> SocketResult<u64> {
        self.socket(&this)?
            .inner
            .keep_alive_interval()
            .map_err(fail)
    }

    fn set_keep_alive_interval(&mut self, this: Resource<Handle>, value: u64) -> SocketResult<()> {
        let s = self.socket(&this)?;
        s.inner.set_keep_alive_interval(value).map_err(fail)
    }

    fn keep_alive_count(&mut self, this: Resource<Handle>) -> SocketResult<u32> {
        self.socket(&this)?.inner.keep_alive_count().map_err(fail)
    }

    fn set_keep_alive_count(&mut self, this: Resource<Handle>, value: u32) -> SocketResult<()> {
        let s = self.socket(&this)?;
        s.inner.set_keep_alive_count(value).map_err(fail)
    }

    fn hop_limit(&mut self, this: Resource<Handle>) -> SocketResult<u8> {
        self.socket(&this)?.inner.hop_limit().map_err(fail)
    }

    fn set_hop_limit(&mut self, this: Resource<Handle>, value: u8) -> SocketResult<()> {
        self.socket(&this)?.inner.set_hop_limit(value).map_err(fail)
    }

    fn receive_buffer_size(&mut self, this: Resource<Handle>) -> SocketResult<u64> {
        self.socket(&this)?
            .inner
            .receive_buffer_size()
            .map_err(fail)
    }

    fn set_receive_buffer_size(&mut self, this: Resource<Handle>, value: u64) -> SocketResult<()> {
        let s = self.socket(&this)?;
        s.inner.set_receive_buffer_size(value).map_err(fail)
    }

    fn send_buffer_size(&mut self, this: Resource<Handle>) -> SocketResult<u64> {
        self.socket(&this)?.inner.send_buffer_size().map_err(fail)
    }

    fn set_send_buffer_size(&mut self, this: Resource<Handle>, value: u64) -> SocketResult<()> {
        let s = self.socket(&this)?;
        s.inner.set_send_buffer_size(value).map_err(fail)
    }

    fn subscribe(&mut self, this: Resource<Handle>) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.table, retype::<Handle, Socket>(&this))
    }

    fn shutdown(&mut self, this: Resource<Handle>, how: ShutdownType) -> SocketResult<()> {
        let s = self.socket(&this)?;
        // Only a connection with its streams taken can be shut down.
        let Some(closer) = s.closer.clone() else {
            return Err(P2Code::InvalidState.into());
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
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            s.inner.shutdown(Shutdown::Read).map_err(fail)?;
        }
        Ok(())
    }

    fn drop(&mut self, this: Resource<Handle>) -> wasmtime::Result<()> {
        self.table.delete::<Socket>(retype(&this))?;
        Ok(())
    }
}
