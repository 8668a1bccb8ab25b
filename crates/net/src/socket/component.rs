//! The wasi:sockets face of the socket core: TCP sockets of WASI 0.2 and
//! 0.3 guests, as resources with a state machine.
//!
//! Warden owns its guests' TCP sockets instead of wasmtime-wasi, for two
//! reasons: every use of an address is put to the [`Gate`] here (bind,
//! listen, each accepted peer, connect, whose grant covers the ephemeral
//! bind before it), and the host keeps the byte stream, so it can hand
//! over sockets the operator pre-opened and (with connection kinds) wrap
//! streams in TLS. A listening socket is the core's [`Listener`], as every
//! ABI's is. The 0.2 and 0.3 faces in `warden-wasi` translate calls to
//! this and nothing more.
//!
//! A socket goes Default → (bound) → Listening, or Default → Connecting →
//! Connected; a failure leaves it Closed with the error. A connected
//! socket's bytes are a [`Reader`] and a [`Writer`] the faces take once
//! each; a dup of its descriptor stays with the socket for addresses and
//! options, so they work whoever holds the halves.
//!
//! **Socket activation.** A listener the operator pre-opened
//! ([`Activation`]) is handed to the first guest socket that binds exactly
//! its address: the bind and the listen that follows take the pre-opened
//! socket instead of making a new one, so a guest serves a port only the
//! operator could bind (below 1024, say), and no other process can take
//! the port in between. Both are decided by the gate like any bind and
//! listen (a pre-opened listener's grant allows them).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite};

use super::bind::Binding;
use super::connect::{self, Decided};
use super::operator::Activation;
use super::{Family, Interest, Listener};
use crate::conn::Connection;
use crate::{Action, Gate};

/// The bytes a connected socket receives.
pub type Reader = Pin<Box<dyn AsyncRead + Send + Sync>>;

/// Where a connected socket's bytes go.
pub type Writer = Pin<Box<dyn AsyncWrite + Send + Sync>>;

/// The listen backlog when the guest sets none (as Rust's std).
pub const DEFAULT_BACKLOG: u32 = 128;

/// Whether a socket of `family` may use `ip`: wasi:sockets IPv6 sockets
/// are IPv6-only, and IPv4-compatible and IPv4-mapped IPv6 addresses are
/// refused on them (deprecated, or not IPv6 traffic at all).
fn holds(family: Family, ip: IpAddr) -> bool {
    match (family, ip) {
        (Family::V4, IpAddr::V4(_)) => true,
        (Family::V6, IpAddr::V6(v6)) => {
            let compatible = matches!(v6.segments(), [0, 0, 0, 0, 0, 0, _, _])
                && v6 != Ipv6Addr::UNSPECIFIED
                && v6 != Ipv6Addr::LOCALHOST;
            !compatible && v6.to_ipv4_mapped().is_none()
        }
        _ => false,
    }
}

/// The wasi:sockets error codes this core produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Refused by the gate, or by the system's permissions.
    AccessDenied,
    /// Not supported.
    NotSupported,
    /// A bad argument (wrong family, a multicast address, ...).
    InvalidArgument,
    /// Out of memory or buffers.
    OutOfMemory,
    /// Timed out.
    Timeout,
    /// Not in a state for this operation.
    InvalidState,
    /// The address is not one of this host's.
    AddressNotBindable,
    /// The address is taken.
    AddressInUse,
    /// No route to the peer.
    RemoteUnreachable,
    /// The peer refused.
    ConnectionRefused,
    /// The connection broke (a write after the peer went away).
    ConnectionBroken,
    /// The peer reset the connection.
    ConnectionReset,
    /// The connection was aborted.
    ConnectionAborted,
    /// Anything else.
    Other,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for ErrorCode {}

impl From<io::Error> for ErrorCode {
    fn from(e: io::Error) -> Self {
        ErrorCode::from(&e)
    }
}

impl From<&io::Error> for ErrorCode {
    fn from(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => ErrorCode::AccessDenied,
            Some(libc::EADDRINUSE) => ErrorCode::AddressInUse,
            Some(libc::EADDRNOTAVAIL) => ErrorCode::AddressNotBindable,
            Some(libc::ETIMEDOUT) => ErrorCode::Timeout,
            Some(libc::EPIPE) => ErrorCode::ConnectionBroken,
            Some(libc::ECONNREFUSED) => ErrorCode::ConnectionRefused,
            Some(libc::ECONNRESET) => ErrorCode::ConnectionReset,
            Some(libc::ECONNABORTED) => ErrorCode::ConnectionAborted,
            Some(libc::EINVAL) => ErrorCode::InvalidArgument,
            Some(
                libc::EHOSTUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::ENONET,
            ) => ErrorCode::RemoteUnreachable,
            Some(libc::EISCONN | libc::ENOTCONN | libc::EDESTADDRREQ) => ErrorCode::InvalidState,
            Some(libc::ENOMEM | libc::ENOBUFS) => ErrorCode::OutOfMemory,
            Some(
                libc::EOPNOTSUPP
                | libc::ENOPROTOOPT
                | libc::EPFNOSUPPORT
                | libc::EPROTONOSUPPORT
                | libc::EPROTOTYPE
                | libc::ESOCKTNOSUPPORT
                | libc::EAFNOSUPPORT,
            ) => ErrorCode::NotSupported,
            Some(_) => ErrorCode::Other,
            None => match e.kind() {
                io::ErrorKind::PermissionDenied => ErrorCode::AccessDenied,
                io::ErrorKind::TimedOut => ErrorCode::Timeout,
                io::ErrorKind::ConnectionRefused => ErrorCode::ConnectionRefused,
                io::ErrorKind::ConnectionReset => ErrorCode::ConnectionReset,
                io::ErrorKind::ConnectionAborted => ErrorCode::ConnectionAborted,
                io::ErrorKind::BrokenPipe => ErrorCode::ConnectionBroken,
                io::ErrorKind::InvalidInput => ErrorCode::InvalidArgument,
                io::ErrorKind::NotConnected => ErrorCode::InvalidState,
                _ => ErrorCode::Other,
            },
        }
    }
}

/// What a guest's TCP sockets need from the instance: the gate, and the
/// listeners waiting to be handed over.
#[derive(Clone)]
pub struct Sockets {
    /// Decides every address use.
    pub gate: Arc<Gate>,
    /// Pre-opened listeners.
    pub activation: Arc<Activation>,
}

/// A future running on its own task, aborted when dropped.
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T: Send + 'static> Task<T> {
    fn spawn(f: impl Future<Output = T> + Send + 'static) -> Self {
        Task(tokio::spawn(f))
    }
}

impl<T> Task<T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        Pin::new(&mut self.0).poll(cx).map(Result::ok)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connected socket's parts.
pub struct Connected {
    /// A duplicate of the socket's descriptor, for addresses and options.
    fd: OwnedFd,
    reader: Option<Reader>,
    writer: Option<Writer>,
    /// A plain stream's place under a connection quota (a shared
    /// session holds its own).
    _quota: Option<crate::quota::Held>,
}

impl Connected {
    /// The halves of `conn`: a plain TCP stream's own (no lock between
    /// them), or a shared session's (TLS) through a lock.
    pub fn new(conn: Connection) -> io::Result<Self> {
        let fd = conn.as_fd().try_clone_to_owned()?;
        let (reader, writer, quota): (Reader, Writer, _) = match conn.into_plain() {
            Ok((stream, quota)) => {
                let (r, w) = stream.into_split();
                (Box::pin(r), Box::pin(w), quota)
            }
            Err(conn) => {
                let (r, w) = tokio::io::split(conn);
                (Box::pin(r), Box::pin(w), None)
            }
        };
        Ok(Connected {
            fd,
            reader: Some(reader),
            writer: Some(writer),
            _quota: quota,
        })
    }
}

/// A connect under way.
enum Connecting {
    /// A plain connection: the kernel makes it, and it is done when the
    /// socket is writable (`SO_ERROR` says how it ended). Taken when done,
    /// with its place under the outgoing-connections quota.
    Kernel(Option<tokio::net::TcpStream>, Option<crate::quota::Held>),
    /// A host task waits for the kernel's connect, then does what the
    /// connection's kind says (TLS; a place under its cap).
    Task(Task<Result<Connected, ErrorCode>>),
}

impl Connecting {
    /// Make the kernel's connect to `addr` on `socket` now, to be finished
    /// as `plan` says (see `socket::connect`). An error is the connect's
    /// outcome.
    fn start(
        gate: &Arc<Gate>,
        mut plan: crate::Plan,
        socket: tokio::net::TcpSocket,
        addr: SocketAddr,
    ) -> Result<Connecting, ErrorCode> {
        connect::start(SockRef::from(&socket), addr)?;
        // SAFETY: the descriptor comes from `socket`, which gives it up.
        let stream = unsafe {
            std::net::TcpStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(socket))
        };
        let stream = tokio::net::TcpStream::from_std(stream)?;
        if plan.is_plain() {
            return Ok(Connecting::Kernel(Some(stream), plan.take_quota()));
        }
        let gate = gate.clone();
        Ok(Connecting::Task(Task::spawn(async move {
            let conn = connect::establish(gate, plan, stream, addr).await?;
            Ok(Connected::new(conn)?)
        })))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Connected, ErrorCode>> {
        let (slot, quota) = match self {
            Connecting::Task(task) => {
                return task.poll(cx).map(|r| r.unwrap_or(Err(ErrorCode::Other)));
            }
            Connecting::Kernel(slot, quota) => (slot, quota),
        };
        let Some(stream) = slot else {
            return Poll::Ready(Err(ErrorCode::InvalidState));
        };
        // The kernel's own word first: a connect on this host is often
        // done before the reactor has heard of it.
        while !connect_done(stream) {
            ready!(stream.poll_write_ready(cx))?;
            match stream.try_io(tokio::io::Interest::WRITABLE, || {
                if connect_done(stream) {
                    Ok(())
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(ErrorCode::from(&e))),
            }
        }
        if let Some(e) = stream.take_error()? {
            return Poll::Ready(Err(ErrorCode::from(&e)));
        }
        let stream = slot.take().expect("present above");
        let conn = Connection::plain(stream, None).with_quota(quota.take());
        Poll::Ready(Connected::new(conn).map_err(ErrorCode::from))
    }
}

/// Whether the kernel has finished a connect on `stream` (it is writable,
/// or has an error or a hang-up to report), asked without waiting.
fn connect_done(stream: &tokio::net::TcpStream) -> bool {
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(stream),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor `stream` owns; no waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0
}

enum State {
    Default(tokio::net::TcpSocket),
    /// Bound by taking a pre-opened listener.
    Activated(std::net::TcpListener),
    Listening(Arc<Listener>),
    Connecting(Connecting),
    Connected(Connected),
    Closed(ErrorCode),
}

/// A guest's TCP socket.
pub struct TcpSocket {
    state: State,
    family: Family,
    backlog: u32,
    ctx: Sockets,
    bound: bool,
}

impl TcpSocket {
    /// A new, unbound socket of `family`. Creating a socket is no network
    /// access: nothing is decided until an address is used.
    pub fn new(ctx: &Sockets, family: Family) -> Result<Self, ErrorCode> {
        let socket = match family {
            Family::V4 => tokio::net::TcpSocket::new_v4()?,
            Family::V6 => {
                let s = tokio::net::TcpSocket::new_v6()?;
                // WASI: IPv6 sockets are IPv6-only.
                SockRef::from(&s).set_only_v6(true)?;
                s
            }
        };
        Ok(TcpSocket {
            state: State::Default(socket),
            family,
            backlog: DEFAULT_BACKLOG,
            ctx: ctx.clone(),
            bound: false,
        })
    }

    fn connected(ctx: &Sockets, family: Family, conn: Connected) -> Self {
        TcpSocket {
            state: State::Connected(conn),
            family,
            backlog: DEFAULT_BACKLOG,
            ctx: ctx.clone(),
            bound: true,
        }
    }

    fn closed(ctx: &Sockets, family: Family, e: ErrorCode) -> Self {
        TcpSocket {
            state: State::Closed(e),
            family,
            backlog: DEFAULT_BACKLOG,
            ctx: ctx.clone(),
            bound: true,
        }
    }

    fn fd(&self) -> Result<std::os::fd::BorrowedFd<'_>, ErrorCode> {
        match &self.state {
            State::Default(s) => Ok(s.as_fd()),
            State::Activated(l) => Ok(l.as_fd()),
            State::Listening(l) => Ok(l.fd()),
            State::Connected(c) => Ok(c.fd.as_fd()),
            State::Connecting(_) => Err(ErrorCode::InvalidState),
            State::Closed(e) => Err(*e),
        }
    }

    /// Whether the socket has a local address.
    pub fn is_bound(&mut self) -> bool {
        if !self.bound {
            self.bound = match &self.state {
                State::Default(s) => s.local_addr().is_ok_and(|a| a != self.family.unspecified()),
                _ => true,
            };
        }
        self.bound
    }

    /// Bind to `addr` (decided: `bind`). An address the operator pre-opened
    /// takes the pre-opened listener.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), ErrorCode> {
        if self.is_bound() {
            return Err(ErrorCode::InvalidState);
        }
        let State::Default(socket) = &self.state else {
            return Err(ErrorCode::InvalidState);
        };
        if !is_unicast(addr.ip()) || !holds(self.family, addr.ip()) {
            return Err(ErrorCode::InvalidArgument);
        }
        if let Binding::Operator(listener) = bind(&self.ctx, socket, addr)? {
            self.state = State::Activated(listener);
            self.bound = true;
        }
        Ok(())
    }

    /// Start connecting to `addr`: the connect is decided now (its grant
    /// covers the ephemeral local port an unbound socket binds as it
    /// connects; call [`Gate::prepare`] for `connect` first), and the
    /// kernel's connect is made at once, so what the kernel knows at once
    /// (no route, a refusing peer on this host) is known when the guest
    /// first asks. A denial is this call's error; everything after it (a
    /// kind's cap, the kernel's answer, a TLS handshake) is the outcome
    /// [`TcpSocket::poll_finish_connect`] reports.
    pub fn start_connect(&mut self, addr: SocketAddr) -> Result<(), ErrorCode> {
        let State::Default(_) = &self.state else {
            return Err(ErrorCode::InvalidState);
        };
        if !is_unicast(addr.ip())
            || addr.ip().to_canonical().is_unspecified()
            || addr.port() == 0
            || !holds(self.family, addr.ip())
        {
            return Err(ErrorCode::InvalidArgument);
        }
        let gate = self.ctx.gate.clone();
        // A kind that refuses it (its cap, its TLS) is the first
        // finish-connect's answer, as a refusing peer is.
        let plan = match connect::decide(&gate, None, addr) {
            Decided::Denied => return Err(ErrorCode::AccessDenied),
            Decided::Refused => Err(ErrorCode::ConnectionRefused),
            Decided::Allowed(plan) => Ok(plan),
        };
        let State::Default(socket) =
            std::mem::replace(&mut self.state, State::Closed(ErrorCode::Other))
        else {
            unreachable!("checked above");
        };
        self.state = match plan.and_then(|plan| Connecting::start(&gate, plan, socket, addr)) {
            Ok(connecting) => State::Connecting(connecting),
            Err(e) => State::Closed(e),
        };
        Ok(())
    }

    /// Finish connecting: ready when the connection is made or failed.
    pub fn poll_finish_connect(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ErrorCode>> {
        let result = match &mut self.state {
            State::Connecting(connecting) => ready!(connecting.poll(cx)),
            State::Connected(_) => return Poll::Ready(Ok(())),
            State::Closed(e) => return Poll::Ready(Err(*e)),
            _ => return Poll::Ready(Err(ErrorCode::InvalidState)),
        };
        match result {
            Ok(conn) => {
                self.state = State::Connected(conn);
                self.bound = true;
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                self.state = State::Closed(e);
                Poll::Ready(Err(e))
            }
        }
    }

    /// Whether a connect is under way.
    pub fn is_connecting(&self) -> bool {
        matches!(self.state, State::Connecting(_))
    }

    /// Listen (decided: `listen` on the local address; an unbound socket is
    /// first bound to an ephemeral port, decided as `bind`). When the
    /// grant's kind has a certificate, the host terminates TLS: the guest
    /// accepts only connections whose handshake finished.
    pub fn listen(&mut self) -> Result<Incoming, ErrorCode> {
        let bound = self.is_bound();
        let gate = self.ctx.gate.clone();
        let listener = match std::mem::replace(&mut self.state, State::Closed(ErrorCode::Other)) {
            // The operator's listener listens already (with its backlog).
            State::Activated(l) => {
                let decided = l
                    .local_addr()
                    .and_then(|local| super::listener::decide_listen(&gate, None, local));
                match decided {
                    Ok(tls) => Listener::open(l, tls.map(|side| (side, gate)), None)?,
                    Err(e) => {
                        self.state = State::Activated(l);
                        return Err(ErrorCode::from(e));
                    }
                }
            }
            State::Default(socket) => {
                let backlog = i32::try_from(self.backlog).unwrap_or(i32::MAX);
                let listening = if bound {
                    Ok(())
                } else {
                    // Never the operator's listener: those have
                    // addresses of their own, not the unspecified one.
                    let implicit = self.family.unspecified();
                    bind(&self.ctx, &socket, implicit).map(drop)
                }
                .and_then(|()| {
                    Ok(super::listener::listen_bound(
                        &gate,
                        None,
                        SockRef::from(&socket),
                        backlog,
                    )?)
                });
                match listening {
                    Ok(listener) => listener,
                    Err(e) => {
                        self.state = State::Default(socket);
                        return Err(e);
                    }
                }
            }
            other => {
                self.state = other;
                return Err(ErrorCode::InvalidState);
            }
        };
        let listener = Arc::new(listener);
        self.state = State::Listening(listener.clone());
        self.bound = true;
        Ok(Incoming {
            listener,
            family: self.family,
            ctx: self.ctx.clone(),
            accepted: None,
        })
    }

    /// Take the connection's reader (once).
    pub fn take_reader(&mut self) -> Result<Reader, ErrorCode> {
        match &mut self.state {
            State::Connected(c) => {
                let reader = c.reader.take().ok_or(ErrorCode::InvalidState)?;
                Ok(match &self.ctx.gate.rates().ingress {
                    None => reader,
                    Some(b) => Box::pin(crate::rate::Paced::new(reader, Some(b.clone()), None)),
                })
            }
            State::Closed(e) => Err(*e),
            _ => Err(ErrorCode::InvalidState),
        }
    }

    /// Take the connection's writer (once).
    pub fn take_writer(&mut self) -> Result<Writer, ErrorCode> {
        match &mut self.state {
            State::Connected(c) => {
                let writer = c.writer.take().ok_or(ErrorCode::InvalidState)?;
                Ok(match &self.ctx.gate.rates().egress {
                    None => writer,
                    Some(b) => Box::pin(crate::rate::Paced::new(writer, None, Some(b.clone()))),
                })
            }
            State::Closed(e) => Err(*e),
            _ => Err(ErrorCode::InvalidState),
        }
    }

    /// Shut down one or both directions of a connected socket at the OS
    /// level (the stream layers above also stop).
    pub fn shutdown(&self, how: std::net::Shutdown) -> Result<(), ErrorCode> {
        match &self.state {
            State::Connected(c) => {
                // A peer that already went away makes this fail; the
                // direction is down either way.
                let _ = SockRef::from(&c.fd).shutdown(how);
                Ok(())
            }
            State::Closed(e) => Err(*e),
            _ => Err(ErrorCode::InvalidState),
        }
    }

    /// The local address.
    pub fn local_address(&mut self) -> Result<SocketAddr, ErrorCode> {
        if !self.is_bound() {
            return Err(ErrorCode::InvalidState);
        }
        sock_addr(SockRef::from(&self.fd()?).local_addr()?)
    }

    /// The peer's address.
    pub fn remote_address(&self) -> Result<SocketAddr, ErrorCode> {
        match &self.state {
            State::Connected(c) => sock_addr(SockRef::from(&c.fd).peer_addr()?),
            State::Closed(e) => Err(*e),
            _ => Err(ErrorCode::InvalidState),
        }
    }

    /// Whether it is listening.
    pub fn is_listening(&self) -> bool {
        matches!(self.state, State::Listening(_))
    }

    /// Its address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Set the listen backlog (clamped to what the OS takes; 0 is invalid).
    pub fn set_listen_backlog_size(&mut self, value: u64) -> Result<(), ErrorCode> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        let value = u32::try_from(value)
            .unwrap_or(i32::MAX as u32)
            .clamp(1, i32::MAX as u32);
        match &self.state {
            State::Default(_) | State::Activated(_) => {
                self.backlog = value;
                Ok(())
            }
            State::Listening(l) => {
                // Listening again with another backlog updates it on Linux.
                // SAFETY: a valid listening socket descriptor.
                let r =
                    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l.fd()), value as i32) };
                if r != 0 {
                    return Err(ErrorCode::NotSupported);
                }
                self.backlog = value;
                Ok(())
            }
            State::Closed(e) => Err(*e),
            _ => Err(ErrorCode::InvalidState),
        }
    }

    /// Whether keep-alive is on.
    pub fn keep_alive_enabled(&self) -> Result<bool, ErrorCode> {
        Ok(SockRef::from(&self.fd()?).keepalive()?)
    }

    /// Switch keep-alive on or off.
    pub fn set_keep_alive_enabled(&self, value: bool) -> Result<(), ErrorCode> {
        Ok(SockRef::from(&self.fd()?).set_keepalive(value)?)
    }

    /// Keep-alive idle time, nanoseconds.
    pub fn keep_alive_idle_time(&self) -> Result<u64, ErrorCode> {
        nanos(SockRef::from(&self.fd()?).tcp_keepalive_time()?)
    }

    /// Set the keep-alive idle time (nanoseconds; 0 is invalid, the value
    /// is clamped to 1 s ..= 32767 s).
    pub fn set_keep_alive_idle_time(&self, value: u64) -> Result<(), ErrorCode> {
        let d = keep_alive_time(value)?;
        let ka = TcpKeepalive::new().with_time(d);
        Ok(SockRef::from(&self.fd()?).set_tcp_keepalive(&ka)?)
    }

    /// Keep-alive interval, nanoseconds.
    pub fn keep_alive_interval(&self) -> Result<u64, ErrorCode> {
        nanos(SockRef::from(&self.fd()?).tcp_keepalive_interval()?)
    }

    /// Set the keep-alive interval (as the idle time).
    pub fn set_keep_alive_interval(&self, value: u64) -> Result<(), ErrorCode> {
        let d = keep_alive_time(value)?;
        let ka = TcpKeepalive::new().with_interval(d);
        Ok(SockRef::from(&self.fd()?).set_tcp_keepalive(&ka)?)
    }

    /// Keep-alive probes before giving up.
    pub fn keep_alive_count(&self) -> Result<u32, ErrorCode> {
        Ok(SockRef::from(&self.fd()?).tcp_keepalive_retries()?)
    }

    /// Set the keep-alive probe count (0 is invalid; clamped to 127).
    pub fn set_keep_alive_count(&self, value: u32) -> Result<(), ErrorCode> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        let ka = TcpKeepalive::new().with_retries(value.clamp(1, i8::MAX as u32));
        Ok(SockRef::from(&self.fd()?).set_tcp_keepalive(&ka)?)
    }

    /// The unicast hop limit (TTL).
    pub fn hop_limit(&self) -> Result<u8, ErrorCode> {
        let fd = self.fd()?;
        let sock = SockRef::from(&fd);
        let v = match self.family {
            Family::V4 => sock.ttl_v4()?,
            Family::V6 => sock.unicast_hops_v6()?,
        };
        u8::try_from(v).map_err(|_| ErrorCode::NotSupported)
    }

    /// Set the unicast hop limit (0 is invalid).
    pub fn set_hop_limit(&self, value: u8) -> Result<(), ErrorCode> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        let fd = self.fd()?;
        let sock = SockRef::from(&fd);
        match self.family {
            Family::V4 => sock.set_ttl_v4(value.into())?,
            Family::V6 => sock.set_unicast_hops_v6(value.into())?,
        }
        Ok(())
    }

    /// The receive buffer size (as the guest set it: Linux reports double).
    pub fn receive_buffer_size(&self) -> Result<u64, ErrorCode> {
        Ok((SockRef::from(&self.fd()?).recv_buffer_size()? / 2) as u64)
    }

    /// Set the receive buffer size (a hint; 0 is invalid).
    pub fn set_receive_buffer_size(&self, value: u64) -> Result<(), ErrorCode> {
        let size = buffer_size(value)?;
        ignore_nobufs(SockRef::from(&self.fd()?).set_recv_buffer_size(size))
    }

    /// The send buffer size (as the guest set it).
    pub fn send_buffer_size(&self) -> Result<u64, ErrorCode> {
        Ok((SockRef::from(&self.fd()?).send_buffer_size()? / 2) as u64)
    }

    /// Set the send buffer size (a hint; 0 is invalid).
    pub fn set_send_buffer_size(&self, value: u64) -> Result<(), ErrorCode> {
        let size = buffer_size(value)?;
        ignore_nobufs(SockRef::from(&self.fd()?).set_send_buffer_size(size))
    }
}

/// A listening socket's stream of accepted connections, as wasi:sockets
/// hands them out: one at a time, each a new socket.
pub struct Incoming {
    listener: Arc<Listener>,
    family: Family,
    ctx: Sockets,
    accepted: Option<Result<Connection, ErrorCode>>,
}

impl Incoming {
    /// Ready when a connection can be accepted (or accepting failed).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.accepted.is_some() {
            return Poll::Ready(());
        }
        let result = loop {
            match self.listener.try_accept_connection(&self.ctx.gate) {
                Ok((conn, _peer)) => break Ok(conn),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = ready!(self.listener.poll_ready(Interest::Read, cx)) {
                        break Err(accept_error(e));
                    }
                }
                Err(e) => break Err(accept_error(e)),
            }
        };
        self.accepted = Some(result);
        Poll::Ready(())
    }

    /// Accept a connection that passed the gate (and, on a TLS listener,
    /// the handshake), if one is ready.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<TcpSocket> {
        ready!(self.poll_ready(cx));
        let result = self.accepted.take().expect("ready means accepted");
        Poll::Ready(
            match result.and_then(|c| Connected::new(c).map_err(ErrorCode::from)) {
                Ok(conn) => TcpSocket::connected(&self.ctx, self.family, conn),
                Err(e) => TcpSocket::closed(&self.ctx, self.family, e),
            },
        )
    }
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
    }
}

/// The one bind (see `bind`) as WASI has it: not held up by `TIME_WAIT`
/// (`SO_REUSEADDR`), a family the socket cannot hold an invalid argument,
/// and the operator's listener at `addr` handed over.
fn bind(
    ctx: &Sockets,
    socket: &tokio::net::TcpSocket,
    addr: SocketAddr,
) -> Result<Binding, ErrorCode> {
    let _ = socket.set_reuseaddr(true);
    let sock = SockRef::from(socket);
    super::bind::bind(
        &ctx.gate,
        None,
        Action::Bind,
        sock,
        addr,
        Some(&ctx.activation),
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => ErrorCode::InvalidArgument,
        _ => ErrorCode::from(&e),
    })
}

/// Linux reports some pending network errors from accept; they are the
/// new connection's, and the listener goes on.
fn accept_error(e: io::Error) -> ErrorCode {
    match e.raw_os_error() {
        Some(
            libc::ECONNRESET
            | libc::ENETRESET
            | libc::EHOSTUNREACH
            | libc::EHOSTDOWN
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::EPROTO
            | libc::ENOPROTOOPT
            | libc::ENONET
            | libc::EOPNOTSUPP,
        ) => ErrorCode::ConnectionAborted,
        _ => ErrorCode::from(&e),
    }
}

fn sock_addr(a: socket2::SockAddr) -> Result<SocketAddr, ErrorCode> {
    a.as_socket().ok_or(ErrorCode::NotSupported)
}

fn nanos(d: Duration) -> Result<u64, ErrorCode> {
    Ok(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn keep_alive_time(value: u64) -> Result<Duration, ErrorCode> {
    if value == 0 {
        return Err(ErrorCode::InvalidArgument);
    }
    const SEC: u64 = 1_000_000_000;
    Ok(Duration::from_nanos(
        value.clamp(SEC, i16::MAX as u64 * SEC),
    ))
}

fn buffer_size(value: u64) -> Result<usize, ErrorCode> {
    if value == 0 {
        return Err(ErrorCode::InvalidArgument);
    }
    Ok(usize::try_from(value)
        .unwrap_or(usize::MAX)
        .clamp(1, i32::MAX as usize))
}

fn ignore_nobufs(r: io::Result<()>) -> Result<(), ErrorCode> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(()),
        other => Ok(other?),
    }
}
