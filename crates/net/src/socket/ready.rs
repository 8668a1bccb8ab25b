//! Readiness, one way for every socket a guest holds: the reactor says
//! when to look, `poll(2)` says what is true now (so a stale edge never
//! makes a guest spin), and a socket whose bytes a host task moves (TLS)
//! answers from its buffers.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;

use super::listener::{Accepting, Listener};
use super::stream::{Stream, StreamIo};

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

/// A TCP connection the guest reads and writes through the kernel,
/// registered with the reactor only when something first waits on it. A
/// short exchange whose bytes are there when the guest looks (the common
/// case for an accepted connection) then costs no `epoll_ctl` to add it
/// and none to remove it: two system calls of the ten or so a connection
/// costs.
pub(crate) struct Plain {
    // Declared first, so dropped first: deregistered while the descriptor
    // still names this socket, never a later one given the same number.
    reactor: OnceLock<Result<AsyncFd<RawFd>, io::Error>>,
    socket: TcpStream,
}

impl Plain {
    /// `socket` must be non-blocking already.
    pub(crate) fn new(socket: TcpStream) -> Self {
        Self {
            reactor: OnceLock::new(),
            socket,
        }
    }

    /// One registered at once (a connect in progress waits at once).
    pub(crate) fn registered(socket: TcpStream) -> io::Result<Self> {
        let plain = Self::new(socket);
        plain.reactor()?;
        Ok(plain)
    }

    pub(crate) fn get_ref(&self) -> &TcpStream {
        &self.socket
    }

    /// Its registration, made on first use. Registering fails only without
    /// a reactor, and then every wait fails the same way.
    pub(crate) fn reactor(&self) -> io::Result<&AsyncFd<RawFd>> {
        self.reactor
            .get_or_init(|| register(self.socket.as_raw_fd()))
            .as_ref()
            .map_err(|e| io::Error::new(e.kind(), e.to_string()))
    }
}

impl AsRawFd for Plain {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
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
pub(super) async fn wait_op<T: AsRawFd>(io: &AsyncFd<T>, interest: Interest) -> io::Result<()> {
    let mut guard = match interest {
        Interest::Read => io.readable().await?,
        Interest::Write => io.writable().await?,
    };
    guard.clear_ready();
    Ok(())
}

pub(super) fn poll_ready<T: AsRawFd>(
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
