//! The one listening socket, whatever ABI a guest reaches it through: a
//! listener the operator pre-opened, one a preview1 guest opened, and one a
//! component made with wasi:sockets are all a [`Listener`], plain or TLS.
//!
//! Each peer is decided once, by [`admit`]: `accept` on the peer's address,
//! within the listener's address pool if it came from one. A refused peer
//! is reset (`SO_LINGER` 0, so it reads a reset and not an orderly end it
//! could take for an empty answer) and never reaches the guest; the next
//! pending connection is tried. On a TLS listener the host accepts and
//! decides before any handshake (see [`crate::tls::Acceptor`]); the guest
//! accepts only connections whose handshake finished.
//!
//! Bounds: on a plain listener the host never accepts on a guest's behalf,
//! so connections a guest does not accept wait in the kernel's backlog
//! ([`super::BACKLOG`]), not in host memory; a TLS listener's queue is
//! bounded by the acceptor. Dropping a [`Listener`] closes it at once.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::unix::AsyncFd;

use super::ready::{Interest, Probe, Readiness, poll_ready, readiness_many, register, wait_op};
use super::stream::Stream;
use crate::conn::Connection;
use crate::tls::{Acceptor, ServerSide};
use crate::{Action, Gate, Pool, Target};

/// Decide a peer a listener accepted: `accept` on its address, within
/// `pool` if the listener came from one, then a place under the
/// accepted-connections quota. The socket comes back (with its place) when
/// the peer is allowed and there is room; a refused peer is reset and
/// dropped here, so checking and acting are one call.
pub(crate) fn admit<S: AsFd>(
    gate: &Gate,
    pool: Option<&Pool>,
    peer: SocketAddr,
    socket: S,
) -> Option<(S, Option<crate::quota::Held>)> {
    let target = Target::Addr(peer);
    if gate
        .decide_in(pool, Action::Accept, target.clone())
        .is_allowed()
        && let Ok(quota) = gate.quota(crate::Quota::ConnsIn, &target)
    {
        return Some((socket, quota));
    }
    let _ = SockRef::from(&socket).set_linger(Some(Duration::ZERO));
    None
}

/// `accept4(2)` with the connection non-blocking (and close-on-exec) from
/// the start: std's `accept` and a `set_nonblocking` would be two system
/// calls for every connection a guest serves.
fn accept_nonblocking(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let fd = listener.as_raw_fd();
    // SAFETY: `try_init` hands accept4 storage and its length to fill; a
    // descriptor accept4 returns is new and owned by nobody else.
    let (stream, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
            loop {
                match libc::accept4(fd, storage.cast(), len, flags) {
                    // A signal, as std's accept retries it.
                    -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                    -1 => return Err(io::Error::last_os_error()),
                    new => return Ok(TcpStream::from_raw_fd(new)),
                }
            }
        })?
    };
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a peer that is not IP"))?;
    Ok((stream, peer))
}

/// Decide `listen` on `local`, within `pool` if the socket came from one:
/// the TLS the allowing grant's kind terminates, if any. A denial (or a
/// kind whose certificate is not loaded) is `EACCES`.
pub(crate) fn decide_listen(
    gate: &Gate,
    pool: Option<&Pool>,
    local: SocketAddr,
) -> io::Result<Option<Arc<ServerSide>>> {
    let denied = || io::Error::from_raw_os_error(libc::EACCES);
    let decision = gate.decide_in(pool, Action::Listen, Target::Addr(local));
    if !decision.is_allowed() {
        return Err(denied());
    }
    gate.listener_tls(&decision).map_err(|_| denied())
}

/// Make a guest's bound socket listen: decide `listen` on its address
/// (within `pool`), listen with `backlog`, and adopt a duplicate of it as
/// a [`Listener`] (TLS when the allowing grant's kind says so). A denial
/// leaves the socket as it was.
pub(crate) fn listen_bound(
    gate: &Arc<Gate>,
    pool: Option<Arc<Pool>>,
    socket: SockRef<'_>,
    backlog: i32,
) -> io::Result<Listener> {
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let tls = decide_listen(gate, pool.as_deref(), local)?;
    socket.listen(backlog)?;
    let listener: TcpListener = socket.try_clone()?.into();
    Listener::open(listener, tls.map(|side| (side, gate.clone())), pool)
}

/// A listening socket a guest accepts from (see the module docs).
pub struct Listener {
    local: SocketAddr,
    pub(super) accepting: Accepting,
    /// The address pool it was opened from: each peer is decided within
    /// it as well as by the policy.
    pool: Option<Arc<Pool>>,
    /// A duplicate of a TLS listener's descriptor (the acceptor task owns
    /// the listener), for options and addresses.
    raw: Option<OwnedFd>,
}

pub(super) enum Accepting {
    /// The guest accepts from the kernel's backlog.
    Plain(AsyncFd<TcpListener>),
    /// The host accepts and does the TLS handshake; the guest accepts
    /// finished connections.
    Tls(Acceptor),
}

/// A connection a listener accepted and the gate admitted.
enum Accepted {
    /// The kernel's socket, non-blocking, with its place under a quota.
    Plain(TcpStream, Option<crate::quota::Held>),
    /// A finished TLS connection.
    Tls(Connection),
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
    /// Adopt a plain listener that decides its peers by the policy alone
    /// (see [`Listener::open`]).
    pub fn new(listener: TcpListener) -> io::Result<Self> {
        Self::open(listener, None, None)
    }

    /// Adopt a listening socket. With `tls` (`(side, gate)`), the host
    /// terminates TLS with `side` and decides each peer with `gate` before
    /// its handshake; peers are decided within `pool` too, if the socket
    /// came from one. Must run inside a tokio runtime with I/O enabled.
    pub fn open(
        listener: TcpListener,
        tls: Option<(Arc<ServerSide>, Arc<Gate>)>,
        pool: Option<Arc<Pool>>,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (accepting, raw) = match tls {
            None => (Accepting::Plain(register(listener)?), None),
            Some((side, gate)) => {
                let raw = listener.as_fd().try_clone_to_owned()?;
                let timeout = gate.tls().handshake_timeout();
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let acceptor = Acceptor::spawn(listener, side, gate, pool.clone(), timeout);
                (Accepting::Tls(acceptor), Some(raw))
            }
        };
        Ok(Self {
            local,
            accepting,
            pool,
            raw,
        })
    }

    /// Whether host tasks make its connections (TLS handshakes): a guest
    /// that never waits must still let them run.
    pub fn host_driven(&self) -> bool {
        matches!(self.accepting, Accepting::Tls(_))
    }

    /// Its descriptor, for options and addresses.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match (&self.raw, &self.accepting) {
            (Some(raw), _) => raw.as_fd(),
            (None, Accepting::Plain(io)) => io.get_ref().as_fd(),
            (None, Accepting::Tls(_)) => unreachable!("a TLS listener keeps a duplicate"),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// The next admitted connection, or `WouldBlock`: the one place a
    /// listener's peers are decided (a TLS listener's acceptor decided
    /// them before their handshakes).
    fn next(&self, gate: &Gate) -> io::Result<(Accepted, SocketAddr)> {
        match &self.accepting {
            Accepting::Plain(io) => loop {
                let (stream, peer) = accept_nonblocking(io.get_ref())?;
                if let Some((stream, quota)) = admit(gate, self.pool.as_deref(), peer, stream) {
                    return Ok((Accepted::Plain(stream, quota), peer));
                }
            },
            Accepting::Tls(acceptor) => match acceptor.try_accept()? {
                Some((conn, peer)) => Ok((Accepted::Tls(conn), peer)),
                None => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }

    /// Accept a pending connection as a [`Stream`] the guest reads and
    /// writes through host calls, or fail with `WouldBlock`.
    pub fn try_accept(&self, gate: &Gate) -> io::Result<Stream> {
        match self.next(gate)? {
            (Accepted::Plain(stream, quota), peer) => Ok(Stream::new(stream, peer)?.holding(quota)),
            (Accepted::Tls(conn), peer) => Stream::pumped(conn, peer),
        }
    }

    /// Accept a pending connection as a [`Connection`] (a component's
    /// streams), or fail with `WouldBlock`.
    pub fn try_accept_connection(&self, gate: &Gate) -> io::Result<(Connection, SocketAddr)> {
        match self.next(gate)? {
            (Accepted::Plain(stream, quota), peer) => {
                let stream = tokio::net::TcpStream::from_std(stream)?;
                Ok((Connection::plain(stream, None).with_quota(quota), peer))
            }
            (Accepted::Tls(conn), peer) => Ok((conn, peer)),
        }
    }

    /// Wait until an accept may not block (see [`wait_op`]).
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
    fn a_refused_peer_is_reset_and_never_returned() {
        rt().block_on(async {
            let gate = accept_gate("10.0.0.0/8:*");
            let listener =
                Listener::new(super::super::bind_listener("127.0.0.1:0".parse().unwrap()).unwrap())
                    .unwrap();
            let addr = listener.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                    .unwrap();
                let mut buf = [0u8; 1];
                // Reset by the host: never an orderly end, never a wait.
                c.read(&mut buf).map_err(|e| e.kind())
            });
            listener.wait(Interest::Read).await.unwrap();
            assert_eq!(
                listener.try_accept(&gate).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            assert_eq!(client.join().unwrap(), Err(io::ErrorKind::ConnectionReset));
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
                Listener::new(super::super::bind_listener("127.0.0.1:0".parse().unwrap()).unwrap())
                    .unwrap();
            let addr = listener.local_addr().unwrap();
            assert_eq!(
                listener.try_accept(&gate).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            assert!(!listener.readiness().unwrap().readable);

            let client = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(b"ping").unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
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
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            assert_eq!(client.join().unwrap(), "pong");
        });
    }
}
