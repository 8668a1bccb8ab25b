//! Host TCP sockets that guests use: listeners the host bound before the
//! guest started (so a guest can serve a port it could never bind itself),
//! and the connections accepted on them.
//!
//! The OS sockets are always non-blocking and registered with the tokio
//! reactor. Whether a guest's socket *behaves* as blocking is the ABI layer's
//! business: it tries an operation, and on `WouldBlock` either reports it or
//! awaits [`Listener::wait`] / [`Stream::wait`]. Readiness is always
//! confirmed with `poll(2)` before it is reported, so a stale edge from the
//! reactor never makes a guest spin. Nothing here knows an ABI: preview1
//! uses it today, wasi:sockets can tomorrow.
//!
//! Bounds: the host never accepts on a guest's behalf, so connections a
//! guest does not accept wait in the kernel's backlog ([`BACKLOG`]), not in
//! host memory; dropping a [`Stream`] or [`Listener`] closes it at once.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;

/// The listen backlog for host-bound listeners.
pub const BACKLOG: i32 = 1024;

/// What a guest waits for on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Bytes to read, a connection to accept, or end of stream.
    Read,
    /// Room to write.
    Write,
}

/// A socket's state right now, as `poll(2)` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// A read (or accept) would not block.
    pub readable: bool,
    /// A write would not block.
    pub writable: bool,
    /// The peer closed its side, or the connection failed.
    pub hangup: bool,
    /// Bytes that can be read without blocking (streams only).
    pub bytes: u64,
}

/// Bind and listen on `addr` for a guest, before the guest starts.
///
/// This is where a privileged port or an address in use fails, with the
/// operator still there to read the error.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    Bound::new(addr)?.listen()
}

/// An address bound for a listener that listens later, when there is
/// something to answer with: the address is taken at once (a busy or
/// privileged port fails here), and until [`Bound::listen`] a client's
/// connect is refused at once instead of waiting in a backlog nobody
/// accepts from.
#[derive(Debug)]
pub struct Bound(socket2::Socket);

impl Bound {
    /// Bind `addr` (`SO_REUSEADDR`, as servers do).
    pub fn new(addr: SocketAddr) -> io::Result<Bound> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        Ok(Bound(socket))
    }

    /// The address it took (the port, when `addr`'s was 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    /// Start listening (a backlog of [`BACKLOG`]), non-blocking.
    pub fn listen(self) -> io::Result<TcpListener> {
        self.0.listen(BACKLOG)?;
        self.0.set_nonblocking(true)?;
        Ok(self.0.into())
    }
}

/// Where a pre-opened listener comes from (see [`warden_policy::manifest::ListenOn`]).
pub use warden_policy::manifest::ListenOn;

/// Bind (or adopt) the listener `on` describes, before the guest starts.
/// An inherited one comes from a service manager's `LISTEN_FDS` handover:
/// `LISTEN_PID` must be this process, and the descriptor one of the
/// `LISTEN_FDS` it passed, a listening TCP socket. Returns the listener and,
/// for an inherited one, its name in `LISTEN_FDNAMES`.
pub fn open_listener(on: &ListenOn) -> io::Result<(TcpListener, Option<String>)> {
    match on {
        ListenOn::Addr(addr) => Ok((bind_listener(*addr)?, None)),
        ListenOn::Fd(fd) => inherited(|fds| {
            let i = fd
                .checked_sub(3)
                .map(|i| i as usize)
                .filter(|i| *i < fds.count);
            i.ok_or_else(|| {
                io::Error::other(format!(
                    "fd {fd} is not one of the {} listening sockets handed to Warden (LISTEN_FDS; fds 3 to {})",
                    fds.count,
                    fds.count + 2
                ))
            })
        }),
        ListenOn::FdName(name) => inherited(|fds| {
            fds.names.iter().position(|n| n == name).filter(|i| *i < fds.count).ok_or_else(|| {
                io::Error::other(format!(
                    "no listening socket named `{name}` was handed to Warden (LISTEN_FDNAMES is `{}`)",
                    fds.names.join(":")
                ))
            })
        }),
    }
}

/// What a service manager handed over in Warden's own environment.
struct Handed {
    count: usize,
    names: Vec<String>,
}

fn inherited(
    pick: impl FnOnce(&Handed) -> io::Result<usize>,
) -> io::Result<(TcpListener, Option<String>)> {
    let var = |k: &str| std::env::var(k).ok();
    let pid: Option<u32> = var("LISTEN_PID").and_then(|p| p.parse().ok());
    if pid != Some(std::process::id()) {
        return Err(io::Error::other(
            "no listening sockets were handed to Warden (LISTEN_PID is not this process)",
        ));
    }
    let count = var("LISTEN_FDS").and_then(|n| n.parse().ok()).unwrap_or(0);
    let names = var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let handed = Handed { count, names };
    let i = pick(&handed)?;
    let fd = 3 + i as RawFd;
    check_listening_tcp(fd)?;
    // SAFETY: the service manager passed this descriptor to this process
    // (checked above: LISTEN_PID, within LISTEN_FDS), it is a listening TCP
    // socket, and it is adopted once (each --listen names one descriptor,
    // and the CLI refuses duplicates).
    let listener = unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // Not for the guest's children, were there any; non-blocking for the
    // reactor.
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    listener.set_nonblocking(true)?;
    Ok((listener, handed.names.get(i).cloned()))
}

/// Refuse a descriptor that is not a listening TCP socket.
fn check_listening_tcp(fd: RawFd) -> io::Result<()> {
    let get = |level, name| -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r == 0 {
            Ok(v)
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let not = |what: &str| io::Error::other(format!("fd {fd} is not {what}"));
    if get(libc::SOL_SOCKET, libc::SO_TYPE).map_err(|_| not("a socket"))? != libc::SOCK_STREAM {
        return Err(not("a stream socket"));
    }
    if get(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 0 {
        return Err(not("listening"));
    }
    let domain = get(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(not("an IPv4 or IPv6 socket"));
    }
    Ok(())
}

/// A listening socket the host bound for the guest.
pub struct Listener {
    local: SocketAddr,
    accepting: Accepting,
    /// The address pool it was opened from (see [`Listener::confined`]).
    pool: Option<std::sync::Arc<crate::Pool>>,
    /// A duplicate of a TLS listener's descriptor (the acceptor task owns
    /// the listener), for options and addresses.
    raw: Option<std::os::fd::OwnedFd>,
}

enum Accepting {
    /// The guest accepts from the kernel's backlog.
    Plain(AsyncFd<TcpListener>),
    /// The host accepts and does the TLS handshake; the guest accepts
    /// finished connections.
    Tls(crate::tls::Acceptor),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local", &self.local)
            .field("tls", &matches!(self.accepting, Accepting::Tls(_)))
            .finish()
    }
}

impl Listener {
    /// Whether host tasks make its connections (TLS handshakes): a guest
    /// that never waits must still let them run.
    pub fn host_driven(&self) -> bool {
        matches!(self.accepting, Accepting::Tls(_))
    }

    /// Adopt a listener from [`bind_listener`]. Must run inside a tokio
    /// runtime with I/O enabled.
    pub fn new(listener: TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            local: listener.local_addr()?,
            accepting: Accepting::Plain(register(listener)?),
            pool: None,
            raw: None,
        })
    }

    /// Adopt a listener on which the host terminates TLS with `side`
    /// (see [`crate::tls::Acceptor`]); each peer is decided by `gate`
    /// before its handshake. Must run inside a tokio runtime.
    pub fn tls(
        listener: TcpListener,
        side: std::sync::Arc<crate::tls::ServerSide>,
        gate: std::sync::Arc<crate::Gate>,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let raw = Some(std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?);
        let timeout = gate.tls().handshake_timeout();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok(Self {
            local,
            accepting: Accepting::Tls(crate::tls::Acceptor::spawn(listener, side, gate, timeout)),
            pool: None,
            raw,
        })
    }

    /// Confine the peers it accepts to `pool` as well as the policy (for
    /// a listener a guest opened from an address pool). On a TLS listener
    /// the acceptor decides each peer before its handshake by the policy,
    /// and the pool decides it as the guest accepts it.
    pub fn confined(mut self, pool: Option<std::sync::Arc<crate::Pool>>) -> Self {
        self.pool = pool;
        self
    }

    /// Its descriptor, for options and addresses.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match (&self.raw, &self.accepting) {
            (Some(raw), _) => std::os::fd::AsFd::as_fd(raw),
            (None, Accepting::Plain(io)) => std::os::fd::AsFd::as_fd(io.get_ref()),
            (None, Accepting::Tls(_)) => unreachable!("a TLS listener keeps a duplicate"),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Accept a pending connection, or fail with `WouldBlock`.
    ///
    /// Each peer is put to `gate` (`accept`); a refused one is closed at
    /// once (the peer sees the connection reset or closed) and the next
    /// pending connection is tried, so a refused peer never reaches the
    /// guest. On a TLS listener, only connections whose handshake finished
    /// are here.
    pub fn try_accept(&self, gate: &crate::Gate) -> io::Result<Stream> {
        match &self.accepting {
            Accepting::Plain(io) => loop {
                let (stream, peer) = io.get_ref().accept()?;
                let target = crate::Target::Addr(peer);
                if gate
                    .decide_in(self.pool.as_deref(), crate::Action::Accept, target)
                    .is_allowed()
                {
                    stream.set_nonblocking(true)?;
                    return Stream::new(stream, peer);
                }
                drop(stream);
            },
            Accepting::Tls(acceptor) => loop {
                let Some((conn, peer)) = acceptor.try_accept()? else {
                    return Err(io::ErrorKind::WouldBlock.into());
                };
                if let Some(pool) = &self.pool {
                    let target = crate::Target::Addr(peer);
                    if !gate
                        .decide_in(Some(pool), crate::Action::Accept, target)
                        .is_allowed()
                    {
                        continue;
                    }
                }
                return Stream::pumped(conn, peer);
            },
        }
    }

    /// Wait until [`Listener::try_accept`] may not block (see [`wait_op`]).
    pub async fn wait(&self, interest: Interest) -> io::Result<()> {
        match &self.accepting {
            Accepting::Plain(io) => wait_op(io, interest).await,
            Accepting::Tls(_) => std::future::poll_fn(|cx| self.poll_ready(interest, cx)).await,
        }
    }

    /// Poll for readiness (see [`Listener::wait`]).
    pub fn poll_ready(&self, interest: Interest, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.accepting {
            Accepting::Plain(io) => poll_ready(io, interest, cx),
            Accepting::Tls(acceptor) => match interest {
                Interest::Read => acceptor.poll_ready(cx).map(Ok),
                // Nothing is ever written to a listener: as the kernel's
                // listening socket, it never becomes writable.
                Interest::Write => Poll::Pending,
            },
        }
    }

    /// Readiness right now.
    pub fn readiness(&self) -> io::Result<Readiness> {
        Ok(readiness_many(&[Probe::Listener(self)])?[0])
    }
}

/// An accepted connection.
pub struct Stream {
    io: StreamIo,
    peer: SocketAddr,
    /// A duplicate of a pumped connection's descriptor (its task owns the
    /// connection), for options and addresses.
    raw: Option<std::os::fd::OwnedFd>,
}

enum StreamIo {
    /// A TCP socket the guest reads and writes through.
    Plain(AsyncFd<TcpStream>),
    /// A connection a host task moves (TLS): the guest reads and writes
    /// buffers.
    Pumped(crate::pumped::Pumped),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("peer", &self.peer)
            .field("pumped", &matches!(self.io, StreamIo::Pumped(_)))
            .finish()
    }
}

impl Stream {
    /// Whether a host task moves its bytes (TLS): a guest that never waits
    /// must still let it run.
    pub fn host_driven(&self) -> bool {
        matches!(self.io, StreamIo::Pumped(_))
    }

    /// `stream` must be non-blocking already.
    fn new(stream: TcpStream, peer: SocketAddr) -> io::Result<Self> {
        // A guest may have no way to set options on a connection the host
        // made or accepted for it (a pre-opened listener, a component's
        // TCP); small request/response exchanges should not wait on
        // Nagle's algorithm.
        stream.set_nodelay(true)?;
        Ok(Self {
            io: StreamIo::Plain(register(stream)?),
            peer,
            raw: None,
        })
    }

    /// A stream the guest connected itself, registered with the reactor
    /// for its connect already. Its options stay the guest's own (it sets
    /// TCP_NODELAY itself, if it wants it).
    pub(crate) fn connected(io: AsyncFd<TcpStream>, peer: SocketAddr) -> Self {
        Self {
            io: StreamIo::Plain(io),
            peer,
            raw: None,
        }
    }

    fn pumped(conn: crate::conn::Connection, peer: SocketAddr) -> io::Result<Self> {
        let raw = Some(std::os::fd::AsFd::as_fd(&conn).try_clone_to_owned()?);
        Ok(Self {
            io: StreamIo::Pumped(crate::pumped::Pumped::spawn(conn)),
            peer,
            raw,
        })
    }

    /// A connection the host made for the guest to `peer`: a plain one the
    /// guest reads and writes through, or (TLS, or under a kind's cap) one
    /// a host task moves.
    pub fn from_connection(conn: crate::conn::Connection, peer: SocketAddr) -> io::Result<Self> {
        match conn.into_plain() {
            // A tokio stream is non-blocking already.
            Ok(tcp) => Self::new(tcp.into_std()?, peer),
            Err(conn) => Self::pumped(conn, peer),
        }
    }

    /// Its descriptor, for options and addresses.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match (&self.raw, &self.io) {
            (Some(raw), _) => std::os::fd::AsFd::as_fd(raw),
            (None, StreamIo::Plain(io)) => std::os::fd::AsFd::as_fd(io.get_ref()),
            (None, StreamIo::Pumped(_)) => unreachable!("a pumped stream keeps a duplicate"),
        }
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Read (or with `peek`, look at) bytes, or fail with `WouldBlock`.
    /// `Ok(0)` is the end of the stream.
    pub fn try_recv(&self, buf: &mut [u8], peek: bool) -> io::Result<usize> {
        match &self.io {
            StreamIo::Plain(io) if peek => io.get_ref().peek(buf),
            StreamIo::Plain(io) => io.get_ref().read(buf),
            StreamIo::Pumped(p) => p.try_recv(buf, peek),
        }
    }

    /// Write bytes, or fail with `WouldBlock`.
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.io {
            StreamIo::Plain(io) => io.get_ref().write(buf),
            StreamIo::Pumped(p) => p.try_send(buf),
        }
    }

    /// Shut down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match &self.io {
            StreamIo::Plain(io) => io.get_ref().shutdown(how),
            StreamIo::Pumped(p) => p.shutdown(how),
        }
    }

    /// Wait until an operation of `interest` may not block (see [`wait_op`]).
    pub async fn wait(&self, interest: Interest) -> io::Result<()> {
        match &self.io {
            StreamIo::Plain(io) => wait_op(io, interest).await,
            StreamIo::Pumped(_) => std::future::poll_fn(|cx| self.poll_ready(interest, cx)).await,
        }
    }

    /// Poll for readiness (see [`Stream::wait`]).
    pub fn poll_ready(&self, interest: Interest, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.io {
            StreamIo::Plain(io) => poll_ready(io, interest, cx),
            StreamIo::Pumped(p) => p.poll_ready(interest == Interest::Read, cx).map(Ok),
        }
    }

    /// Readiness right now.
    pub fn readiness(&self) -> io::Result<Readiness> {
        Ok(readiness_many(&[Probe::Stream(self)])?[0])
    }
}

/// A socket whose readiness [`readiness_many`] checks.
#[derive(Clone, Copy)]
pub enum Probe<'a> {
    /// A listener (readable: a connection to accept).
    Listener(&'a Listener),
    /// A connection (readable bytes are counted).
    Stream(&'a Stream),
    /// A socket whose readiness only the kernel knows (a UDP socket):
    /// neither readable bytes nor the host's buffers are counted.
    Kernel(std::os::fd::BorrowedFd<'a>),
    /// A socket whose readiness its owner knows (one not yet connected).
    Known(Readiness),
}

/// Readiness of many sockets at once: one `poll(2)` for those the guest
/// reads from the kernel, the host's buffers for the others.
pub fn readiness_many(probes: &[Probe<'_>]) -> io::Result<Vec<Readiness>> {
    let mut out = vec![Readiness::default(); probes.len()];
    let mut os: Vec<(usize, RawFd, bool)> = Vec::with_capacity(probes.len());
    for (i, p) in probes.iter().enumerate() {
        match p {
            Probe::Listener(l) => match &l.accepting {
                Accepting::Plain(io) => os.push((i, io.as_raw_fd(), false)),
                // As the kernel's listening socket: readable when a
                // connection waits, never writable (an event loop that
                // registers both, as tokio does, would spin otherwise).
                Accepting::Tls(a) => {
                    out[i] = Readiness {
                        readable: a.is_ready(),
                        writable: false,
                        hangup: false,
                        bytes: 0,
                    }
                }
            },
            Probe::Kernel(fd) => os.push((i, fd.as_raw_fd(), false)),
            Probe::Known(r) => out[i] = *r,
            Probe::Stream(s) => match &s.io {
                StreamIo::Plain(io) => os.push((i, io.as_raw_fd(), true)),
                StreamIo::Pumped(p) => {
                    let l = p.level();
                    out[i] = Readiness {
                        readable: l.readable,
                        writable: l.writable,
                        hangup: l.hangup,
                        bytes: l.bytes,
                    }
                }
            },
        }
    }
    if !os.is_empty() {
        let fds: Vec<(RawFd, bool)> = os.iter().map(|&(_, fd, s)| (fd, s)).collect();
        for ((i, _, _), r) in os.iter().zip(poll_fds(&fds)?) {
            out[*i] = r;
        }
    }
    Ok(out)
}

/// Register a non-blocking socket with the reactor.
pub(crate) fn register<T: AsRawFd>(socket: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: std's TcpListener and TcpStream own their descriptor, keep it
    // open until dropped, and always return the same one from as_raw_fd.
    Ok(unsafe { AsyncFd::register(socket) }?)
}

/// Wait for the reactor to report `interest`, for a caller that retries its
/// operation next and waits again on `WouldBlock`. The readiness is
/// cleared at once: data already there is seen by the retry, and data that
/// arrives later raises a new edge, so nothing is lost and nothing spins.
async fn wait_op<T: AsRawFd>(io: &AsyncFd<T>, interest: Interest) -> io::Result<()> {
    let mut guard = match interest {
        Interest::Read => io.readable().await?,
        Interest::Write => io.writable().await?,
    };
    guard.clear_ready();
    Ok(())
}

fn poll_ready<T: AsRawFd>(
    io: &AsyncFd<T>,
    interest: Interest,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let mut guard = match interest {
            Interest::Read => ready!(io.poll_read_ready(cx))?,
            Interest::Write => ready!(io.poll_write_ready(cx))?,
        };
        let now = readiness(io.as_raw_fd(), false)?;
        let ready = match interest {
            Interest::Read => now.readable || now.hangup,
            Interest::Write => now.writable || now.hangup,
        };
        if ready {
            return Poll::Ready(Ok(()));
        }
        // The reactor's edge was stale; wait for the next one.
        guard.clear_ready();
    }
}

/// Readiness of many descriptors at once, with one `poll(2)`. `fds[i].1`
/// says whether it is a stream (whose readable bytes are counted).
fn poll_fds(fds: &[(RawFd, bool)]) -> io::Result<Vec<Readiness>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, _)| libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP,
            revents: 0,
        })
        .collect();
    // SAFETY: a valid array of pollfds of the given length, zero timeout.
    if unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pfds
        .iter()
        .zip(fds)
        .map(|(p, &(fd, stream))| to_readiness(fd, p.revents, stream))
        .collect())
}

fn to_readiness(fd: RawFd, revents: libc::c_short, count_bytes: bool) -> Readiness {
    let mut bytes: libc::c_int = 0;
    if count_bytes && revents & libc::POLLIN != 0 {
        // SAFETY: FIONREAD writes one c_int; on failure `bytes` stays 0.
        unsafe { libc::ioctl(fd, libc::FIONREAD, &mut bytes) };
    }
    Readiness {
        readable: revents & libc::POLLIN != 0,
        writable: revents & libc::POLLOUT != 0,
        hangup: revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0,
        bytes: u64::try_from(bytes).unwrap_or(0),
    }
}

fn readiness(fd: RawFd, count_bytes: bool) -> io::Result<Readiness> {
    Ok(poll_fds(&[(fd, count_bytes)])?[0])
}

pub(crate) fn fd_readiness(fd: RawFd) -> io::Result<Readiness> {
    readiness(fd, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn accept_gate(from: &str) -> std::sync::Arc<crate::Gate> {
        let (target, ports) = warden_policy::parse_target_ports(from).unwrap();
        let rule =
            warden_policy::Rule::allow("peers", target, ports, warden_policy::Rights::ACCEPT);
        crate::Gate::builder(crate::Policy::new([rule]))
            .reporter(std::sync::Arc::new(|_| {}))
            .build()
    }

    #[test]
    fn a_refused_peer_is_closed_and_never_returned() {
        rt().block_on(async {
            let gate = accept_gate("10.0.0.0/8:*");
            let listener =
                Listener::new(bind_listener("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                    .unwrap();
                let mut buf = [0u8; 1];
                // Closed by the host: end of stream or a reset, never a wait.
                c.read(&mut buf).map(|n| n == 0).unwrap_or(true)
            });
            listener.wait(Interest::Read).await.unwrap();
            assert_eq!(
                listener.try_accept(&gate).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            assert!(client.join().unwrap());
        });
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn accept_recv_send_shutdown_on_loopback() {
        rt().block_on(async {
            let gate = accept_gate("127.0.0.0/8:*");
            let listener =
                Listener::new(bind_listener("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            assert_eq!(
                listener.try_accept(&gate).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            assert!(!listener.readiness().unwrap().readable);

            let client = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(b"ping").unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                let mut back = String::new();
                c.read_to_string(&mut back).unwrap();
                back
            });
            listener.wait(Interest::Read).await.unwrap();
            let stream = listener.try_accept(&gate).unwrap();
            assert!(stream.peer_addr().ip().is_loopback());

            let mut buf = [0u8; 16];
            stream.wait(Interest::Read).await.unwrap();
            // Wait for all four bytes and the end of stream to be there.
            while !stream.readiness().unwrap().hangup {
                tokio::task::yield_now().await;
            }
            assert_eq!(stream.readiness().unwrap().bytes, 4);
            assert_eq!(stream.try_recv(&mut buf, true).unwrap(), 4);
            assert_eq!(stream.try_recv(&mut buf, false).unwrap(), 4);
            assert_eq!(&buf[..4], b"ping");
            assert_eq!(
                stream.try_recv(&mut buf, false).unwrap(),
                0,
                "end of stream"
            );
            assert!(stream.readiness().unwrap().writable);
            assert_eq!(stream.try_send(b"pong").unwrap(), 4);
            stream.shutdown(Shutdown::Write).unwrap();
            assert_eq!(client.join().unwrap(), "pong");
        });
    }

    #[test]
    fn binding_a_used_address_fails_before_anything_runs() {
        let first = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = first.local_addr().unwrap();
        let err = bind_listener(taken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
