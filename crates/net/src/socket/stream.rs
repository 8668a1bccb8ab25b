//! A connection a guest reads and writes through the host's calls (the
//! POSIX-style ABI: preview1, and the listeners `warden run` pre-opens):
//! one accepted on a [`super::Listener`] or connected by
//! [`super::posix::Opened::connect`]. A plain one is the kernel's socket;
//! one whose bytes a host task moves (TLS, a kind's cap) is read and
//! written through that task's buffers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::task::{Context, Poll};

use super::ready::{Interest, Plain, Probe, Readiness, poll_ready, readiness_many, wait_op};

/// An accepted connection.
pub struct Stream {
    pub(super) io: StreamIo,
    peer: SocketAddr,
    /// A duplicate of a pumped connection's descriptor (its task owns the
    /// connection), for options and addresses.
    raw: Option<std::os::fd::OwnedFd>,
    /// Its place under a connection quota, if one is set.
    quota: Option<crate::quota::Held>,
}

pub(super) enum StreamIo {
    /// A TCP socket the guest reads and writes through.
    Plain(Plain),
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
    pub(super) fn new(stream: TcpStream, peer: SocketAddr) -> io::Result<Self> {
        // A guest may have no way to set options on a connection the host
        // made or accepted for it (a pre-opened listener, a component's
        // TCP); small request/response exchanges should not wait on
        // Nagle's algorithm.
        stream.set_nodelay(true)?;
        Ok(Self {
            io: StreamIo::Plain(Plain::new(stream)),
            peer,
            raw: None,
            quota: None,
        })
    }

    /// A stream the guest connected itself, registered with the reactor
    /// for its connect already. Its options stay the guest's own (it sets
    /// TCP_NODELAY itself, if it wants it).
    pub(crate) fn connected(io: Plain, peer: SocketAddr) -> Self {
        Self {
            io: StreamIo::Plain(io),
            peer,
            raw: None,
            quota: None,
        }
    }

    pub(super) fn pumped(conn: crate::conn::Connection, peer: SocketAddr) -> io::Result<Self> {
        let raw = Some(std::os::fd::AsFd::as_fd(&conn).try_clone_to_owned()?);
        Ok(Self {
            io: StreamIo::Pumped(crate::pumped::Pumped::spawn(conn)),
            peer,
            raw,
            quota: None,
        })
    }

    /// A connection the host made for the guest to `peer`: a plain one the
    /// guest reads and writes through, or (TLS, or under a kind's cap) one
    /// a host task moves.
    pub fn from_connection(conn: crate::conn::Connection, peer: SocketAddr) -> io::Result<Self> {
        match conn.into_plain() {
            // A tokio stream is non-blocking already.
            Ok((tcp, quota)) => Ok(Self::new(tcp.into_std()?, peer)?.holding(quota)),
            Err(conn) => Self::pumped(conn, peer),
        }
    }

    /// Hold `quota` (a place under a connection quota) for as long as the
    /// stream lives.
    pub(crate) fn holding(mut self, quota: Option<crate::quota::Held>) -> Self {
        if quota.is_some() {
            self.quota = quota;
        }
        self
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
            StreamIo::Plain(io) => wait_op(io.reactor()?, interest).await,
            StreamIo::Pumped(_) => std::future::poll_fn(|cx| self.poll_ready(interest, cx)).await,
        }
    }

    /// Poll for readiness (see [`Stream::wait`]).
    pub fn poll_ready(&self, interest: Interest, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.io {
            StreamIo::Plain(io) => match io.reactor() {
                Ok(reactor) => poll_ready(reactor, interest, cx),
                Err(e) => Poll::Ready(Err(e)),
            },
            StreamIo::Pumped(p) => p.poll_ready(interest == Interest::Read, cx).map(Ok),
        }
    }

    /// Readiness right now.
    pub fn readiness(&self) -> io::Result<Readiness> {
        Ok(readiness_many(&[Probe::Stream(self)])?[0])
    }
}
