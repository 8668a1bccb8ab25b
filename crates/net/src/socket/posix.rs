//! The POSIX-style face of the socket core: sockets a guest opens itself
//! through an ABI that has no wasi:sockets resources (preview1's
//! Berkeley-style socket extension): a TCP socket before it connects or
//! listens, its connect under way, and UDP sockets. Once listening it is
//! the core's [`Listener`]; once connected, a [`Stream`].
//!
//! Every use of an address is put to the [`Gate`] within the socket's
//! address pool ([`Gate::decide_in`]): bind (also the implicit one before a
//! listen or a first datagram), listen, connect (its grant covers the
//! ephemeral bind), each datagram sent and each datagram received (one
//! from a refused peer is dropped, as a refused accepted peer is reset). A
//! connect is made as the allowing grant's connection kind says, so
//! transparent TLS applies here too.
//!
//! Errors are `io::Error`s carrying the errno a POSIX program expects
//! (`EACCES` for a denial, `ECONNREFUSED` for a refused or failed TLS
//! connection, `EINVAL`, `EAFNOSUPPORT`), which an ABI layer maps 1:1.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use socket2::{Protocol, SockRef, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::bind::{self, denied, errno};
use super::connect::{self, Decided};
use super::{Family, Interest, Listener, Readiness, Stream};
use crate::sync::lock;
use crate::{Action, Gate, Pool};

/// Whether a socket of `family` can use `addr` (an IPv4 socket cannot
/// reach an IPv6 address; an IPv6 one, dual-stack, reaches both).
fn check_family(family: Family, addr: SocketAddr) -> io::Result<()> {
    match (family, addr.ip()) {
        (Family::V4, IpAddr::V6(_)) => Err(errno(libc::EAFNOSUPPORT)),
        _ => Ok(()),
    }
}

/// The pool a socket was opened from, if any.
pub type PoolRef = Option<Arc<Pool>>;

/// The one address decision (see `bind`), within the socket's pool.
fn decide(gate: &Gate, pool: &PoolRef, action: Action, addr: SocketAddr) -> io::Result<()> {
    bind::decide(gate, pool.as_deref(), action, addr)
}

/// The one bind (see `bind`); preview1 has no socket activation.
fn bind(
    gate: &Gate,
    pool: &PoolRef,
    action: Action,
    socket: SockRef<'_>,
    addr: SocketAddr,
) -> io::Result<()> {
    bind::bind(gate, pool.as_deref(), action, socket, addr, None).map(drop)
}

fn new_socket(family: Family, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(family.domain(), ty.nonblocking().cloexec(), Some(protocol))?;
    if family == Family::V6 {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// A TCP socket the guest opened that neither connects nor listens yet.
#[derive(Debug)]
pub struct Opened {
    socket: Socket,
    family: Family,
    pool: PoolRef,
    /// Whether it was bound: only [`Opened::bind`] binds it, so this saves
    /// asking the kernel on every connect.
    bound: AtomicBool,
}

impl Opened {
    /// A new TCP socket of `family`, confined to `pool`. Opening decides
    /// nothing: no address is used yet.
    pub fn new(family: Family, pool: PoolRef) -> io::Result<Opened> {
        Ok(Opened {
            socket: new_socket(family, Type::STREAM, Protocol::TCP)?,
            family,
            pool,
            bound: AtomicBool::new(false),
        })
    }

    /// Its descriptor, for options and addresses.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    fn is_bound(&self) -> bool {
        self.bound.load(Ordering::Relaxed)
    }

    /// Its family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Bind to `addr` (decided: `bind`).
    pub fn bind(&self, gate: &Gate, addr: SocketAddr) -> io::Result<()> {
        check_family(self.family, addr)?;
        if self.is_bound() {
            return Err(errno(libc::EINVAL));
        }
        bind(
            gate,
            &self.pool,
            Action::Bind,
            SockRef::from(&self.socket),
            addr,
        )?;
        self.bound.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Listen with `backlog` (decided: `listen` on the local address, after
    /// the implicit bind of an unbound socket, decided as `bind`). When the
    /// allowing grant's kind has a certificate, the host terminates TLS.
    /// On an error the socket is handed back, still bound if the implicit
    /// bind was made and the listen then failed (as after a failed
    /// `listen(2)`).
    pub fn listen(self, gate: &Arc<Gate>, backlog: i32) -> Result<Listener, (Opened, io::Error)> {
        match self.try_listen(gate, backlog) {
            Ok(l) => Ok(l),
            Err(e) => Err((self, e)),
        }
    }

    fn try_listen(&self, gate: &Arc<Gate>, backlog: i32) -> io::Result<Listener> {
        if !self.is_bound() {
            let implicit = self.family.unspecified();
            bind(
                gate,
                &self.pool,
                Action::Bind,
                SockRef::from(&self.socket),
                implicit,
            )?;
            self.bound.store(true, Ordering::Relaxed);
        }
        super::listener::listen_bound(
            gate,
            self.pool.clone(),
            SockRef::from(&self.socket),
            backlog.clamp(1, super::BACKLOG),
        )
    }

    /// Start connecting to `addr`: the connect is decided now (call
    /// [`Gate::prepare`] for `connect` first), the kind's cap is taken, and
    /// the kernel's connect starts at once (see `socket::connect`); a
    /// plain one is then the kernel's alone, any other finished on a task
    /// of its own (TLS, a kind's cap). On an error the socket is handed
    /// back unchanged.
    pub fn connect(
        self,
        gate: &Arc<Gate>,
        addr: SocketAddr,
    ) -> Result<Connecting, (Opened, io::Error)> {
        let mut plan = match self.check_connect(gate, addr) {
            Ok(plan) => plan,
            Err(e) => return Err((self, e)),
        };
        if let Err(e) = connect::start(SockRef::from(&self.socket), addr) {
            return Err((self, e));
        }
        if plan.is_plain() {
            let quota = plan.take_quota();
            return Ok(self.connected_plain(addr, quota));
        }
        let gate = gate.clone();
        let std_stream: std::net::TcpStream = self.socket.into();
        let shared = Arc::new(Mutex::new(Pending::default()));
        let done = shared.clone();
        let task = tokio::spawn(async move {
            let result = async {
                let stream = tokio::net::TcpStream::from_std(std_stream)?;
                let conn = connect::establish(gate, plan, stream, addr).await?;
                Stream::from_connection(conn, addr)
            }
            .await;
            let mut p = lock(&done);
            p.result = Some(result);
            for w in p.wakers.drain(..) {
                w.wake();
            }
        });
        Ok(Connecting {
            progress: Progress::Task { shared, task },
            peer: addr,
        })
    }

    /// A plain connect needs no host task: the kernel makes it, and the
    /// socket is registered with the reactor once, for the connect and
    /// the stream after it.
    fn connected_plain(self, addr: SocketAddr, quota: Option<crate::quota::Held>) -> Connecting {
        let std_stream: std::net::TcpStream = self.socket.into();
        // Registering fails only without a reactor; the connect then ends
        // with that error, as a failed connect does.
        let state = match super::ready::Plain::registered(std_stream) {
            Ok(io) => Direct::Connecting(io, quota),
            Err(e) => Direct::Done(Some(Err(e))),
        };
        Connecting {
            progress: Progress::Direct(Mutex::new(state)),
            peer: addr,
        }
    }

    fn check_connect(&self, gate: &Gate, addr: SocketAddr) -> io::Result<crate::Plan> {
        check_family(self.family, addr)?;
        if addr.port() == 0 || addr.ip().to_canonical().is_unspecified() {
            return Err(errno(libc::EINVAL));
        }
        if addr.ip().to_canonical().is_multicast() {
            return Err(errno(libc::ENETUNREACH));
        }
        match connect::decide(gate, self.pool.as_deref(), addr) {
            Decided::Denied => Err(denied()),
            Decided::Refused => Err(errno(libc::ECONNREFUSED)),
            Decided::Allowed(plan) => Ok(plan),
        }
    }
}

#[derive(Default)]
struct Pending {
    result: Option<io::Result<Stream>>,
    wakers: Vec<Waker>,
}

/// A connect under way (see [`Opened::connect`]); dropping it stops it.
pub struct Connecting {
    progress: Progress,
    peer: SocketAddr,
}

enum Progress {
    /// A host task connects, then speaks TLS or holds a cap's place.
    Task {
        shared: Arc<Mutex<Pending>>,
        task: tokio::task::JoinHandle<()>,
    },
    /// The kernel connects a plain socket; it is done when writable.
    Direct(Mutex<Direct>),
}

enum Direct {
    /// Under way, with its place under the outgoing-connections quota.
    Connecting(super::ready::Plain, Option<crate::quota::Held>),
    /// The outcome, until taken.
    Done(Option<io::Result<Stream>>),
}

impl Direct {
    /// Finish when the socket is writable (connected, or failed: the
    /// kernel's `SO_ERROR` says which).
    fn poll(&mut self, peer: SocketAddr, cx: &mut Context<'_>) -> Poll<()> {
        if let Direct::Connecting(io, _) = self {
            // The readiness stays: the new stream is writable.
            match io.reactor() {
                Ok(reactor) if reactor.poll_write_ready(cx).is_pending() => return Poll::Pending,
                _ => {}
            }
            let failed = match io.get_ref().take_error() {
                Ok(None) => None,
                Ok(Some(e)) | Err(e) => Some(e),
            };
            if let Direct::Connecting(io, quota) = std::mem::replace(self, Direct::Done(None)) {
                *self = Direct::Done(Some(match failed {
                    None => Ok(Stream::connected(io, peer).holding(quota)),
                    Some(e) => Err(e),
                }));
            }
        }
        Poll::Ready(())
    }
}

impl std::fmt::Debug for Connecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connecting")
            .field("peer", &self.peer)
            .finish()
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        if let Progress::Task { task, .. } = &self.progress {
            task.abort();
        }
    }
}

impl Connecting {
    /// Whether a host task makes the connection (TLS, a kind's cap): a
    /// guest that never waits must still let it run.
    pub fn host_driven(&self) -> bool {
        matches!(self.progress, Progress::Task { .. })
    }

    /// The address being connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Ready when it has finished.
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = match &self.progress {
            Progress::Task { shared, .. } => shared,
            Progress::Direct(d) => return lock(d).poll(self.peer, cx),
        };
        let mut p = lock(shared);
        if p.result.is_some() {
            return Poll::Ready(());
        }
        if !p.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            p.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The outcome, once finished (`None` while under way).
    pub fn take(&self) -> Option<io::Result<Stream>> {
        match &self.progress {
            Progress::Task { shared, .. } => lock(shared).result.take(),
            Progress::Direct(d) => {
                let mut d = lock(d);
                let mut cx = Context::from_waker(Waker::noop());
                if d.poll(self.peer, &mut cx).is_pending() {
                    return None;
                }
                match &mut *d {
                    Direct::Done(outcome) => outcome.take(),
                    Direct::Connecting(..) => None,
                }
            }
        }
    }

    /// Readiness right now: writable (and, failed, hung up) once finished.
    pub fn readiness(&self) -> Readiness {
        let failed = match &self.progress {
            Progress::Task { shared, .. } => lock(shared).result.as_ref().map(|r| r.is_err()),
            Progress::Direct(d) => {
                let mut d = lock(d);
                let mut cx = Context::from_waker(Waker::noop());
                match (d.poll(self.peer, &mut cx), &*d) {
                    (Poll::Ready(()), Direct::Done(Some(r))) => Some(r.is_err()),
                    _ => None,
                }
            }
        };
        match failed {
            None => Readiness::default(),
            Some(false) => Readiness {
                writable: true,
                ..Readiness::default()
            },
            Some(true) => Readiness {
                readable: true,
                writable: true,
                hangup: true,
                bytes: 0,
            },
        }
    }
}

/// What a refused UDP socket is said to be for: no address yet, only
/// its family.
pub fn udp_target(family: Family) -> crate::Target {
    let ip: IpAddr = match family {
        Family::V4 => std::net::Ipv4Addr::UNSPECIFIED.into(),
        Family::V6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    crate::Target::Addr(SocketAddr::new(ip, 0))
}

/// A UDP socket the guest opened.
pub struct Datagram {
    io: AsyncFd<UdpSocket>,
    family: Family,
    pool: PoolRef,
    /// The peer `connect` set: datagrams go there by default, and only its
    /// come in.
    peer: Option<SocketAddr>,
    /// Its place under the UDP-sockets quota, if one is set.
    _quota: Option<crate::quota::Held>,
}

impl std::fmt::Debug for Datagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datagram")
            .field("family", &self.family)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Datagram {
    /// A new UDP socket of `family`, confined to `pool`, under `gate`'s
    /// UDP-sockets quota (past it, `EMFILE`, as a process out of
    /// descriptors sees). Must run inside a tokio runtime.
    pub fn new(gate: &Gate, family: Family, pool: PoolRef) -> io::Result<Datagram> {
        let quota = gate
            .quota(crate::Quota::UdpSockets, &udp_target(family))
            .map_err(|_| errno(libc::EMFILE))?;
        let socket: UdpSocket = new_socket(family, Type::DGRAM, Protocol::UDP)?.into();
        Ok(Datagram {
            // SAFETY: the UdpSocket owns its descriptor until dropped.
            io: unsafe { AsyncFd::register(socket) }?,
            family,
            pool,
            peer: None,
            _quota: quota,
        })
    }

    /// Its descriptor, for options and addresses.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.io.get_ref().as_fd()
    }

    /// Its family.
    pub fn family(&self) -> Family {
        self.family
    }

    fn bound(&self) -> bool {
        self.io.get_ref().local_addr().is_ok_and(|a| a.port() != 0)
    }

    fn bind_implicitly(&self, gate: &Gate) -> io::Result<()> {
        if !self.bound() {
            let implicit = self.family.unspecified();
            let socket = SockRef::from(self.io.get_ref());
            bind(gate, &self.pool, Action::UdpBind, socket, implicit)?;
        }
        Ok(())
    }

    /// Bind to `addr` (decided: `udp-bind`).
    pub fn bind(&self, gate: &Gate, addr: SocketAddr) -> io::Result<()> {
        check_family(self.family, addr)?;
        if self.bound() {
            return Err(errno(libc::EINVAL));
        }
        let socket = SockRef::from(self.io.get_ref());
        bind(gate, &self.pool, Action::UdpBind, socket, addr)
    }

    /// Set the default peer (decided: `udp-send` to it; call
    /// [`Gate::prepare`] first).
    pub fn connect(&mut self, gate: &Gate, addr: SocketAddr) -> io::Result<()> {
        check_family(self.family, addr)?;
        if addr.port() == 0 || addr.ip().to_canonical().is_unspecified() {
            return Err(errno(libc::EINVAL));
        }
        decide(gate, &self.pool, Action::UdpSend, addr)?;
        self.bind_implicitly(gate)?;
        self.io.get_ref().connect(addr)?;
        self.peer = Some(addr);
        Ok(())
    }

    /// The pool it was opened from.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_deref()
    }

    /// The default peer, if `connect` set one.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Send `buf` to `to` (or the default peer), or fail with
    /// `WouldBlock`. Each datagram is decided (`udp-send`; call
    /// [`Gate::prepare`] first).
    pub fn try_send_to(
        &self,
        gate: &Gate,
        buf: &[u8],
        to: Option<SocketAddr>,
    ) -> io::Result<usize> {
        let to = match (to, self.peer) {
            (Some(to), _) => to,
            (None, Some(peer)) => peer,
            (None, None) => return Err(errno(libc::EDESTADDRREQ)),
        };
        check_family(self.family, to)?;
        if to.port() == 0 {
            return Err(errno(libc::EINVAL));
        }
        decide(gate, &self.pool, Action::UdpSend, to)?;
        self.bind_implicitly(gate)?;
        match self.peer {
            Some(peer) if peer == to => self.io.get_ref().send(buf),
            _ => self.io.get_ref().send_to(buf, to),
        }
    }

    /// Receive a datagram and its sender, or fail with `WouldBlock`. A
    /// datagram from a peer the gate refuses (`udp-recv`) is dropped and
    /// the next one tried.
    pub fn try_recv_from(
        &self,
        gate: &Gate,
        buf: &mut [u8],
        peek: bool,
    ) -> io::Result<(usize, SocketAddr)> {
        let socket = self.io.get_ref();
        loop {
            let (n, from) = socket.peek_from(buf)?;
            if decide(gate, &self.pool, Action::UdpRecv, from).is_ok() {
                if peek {
                    return Ok((n, from));
                }
                return socket.recv_from(buf);
            }
            // Refused: take it off the queue, unseen.
            let _ = socket.recv_from(&mut [0u8; 1]);
        }
    }

    /// Wait until an operation of `interest` may not block.
    pub async fn wait(&self, interest: Interest) -> io::Result<()> {
        let mut guard = match interest {
            Interest::Read => self.io.readable().await?,
            Interest::Write => self.io.writable().await?,
        };
        guard.clear_ready();
        Ok(())
    }

    /// Poll for readiness (see [`Datagram::wait`]).
    pub fn poll_ready(&self, interest: Interest, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = match interest {
            Interest::Read => self.io.poll_read_ready(cx),
            Interest::Write => self.io.poll_write_ready(cx),
        };
        match r {
            Poll::Ready(Ok(mut guard)) => {
                let now = super::ready::fd_readiness(self.io.as_raw_fd())?;
                let ready = match interest {
                    Interest::Read => now.readable,
                    Interest::Write => now.writable,
                };
                if ready {
                    Poll::Ready(Ok(()))
                } else {
                    guard.clear_ready();
                    // Register again for the next edge.
                    self.poll_ready(interest, cx)
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}
