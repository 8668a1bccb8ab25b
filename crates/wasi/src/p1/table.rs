//! The guest-visible descriptor table: each guest fd is a descriptor of
//! wasmtime-wasi's preview1 context (under its own inner number) or a
//! socket Warden owns, and new descriptors take the lowest free number.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use warden_net::Pool;
use warden_net::socket::posix::{Connecting, Datagram, Opened};
use warden_net::socket::{Interest, Listener, Probe, Readiness, Stream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{self, Errno};

/// The most descriptors a preview1 guest holds at once (files,
/// directories, sockets); opening one more fails with `EMFILE`.
pub const MAX_FDS: usize = 10_000;

/// The most pools a guest's narrowing keeps alive at once (a pool lives
/// while a descriptor or a narrower pool holds it); one more is `EMFILE`.
pub const MAX_NARROWED_POOLS: usize = 256;

/// The most spec text (bytes) the pools a guest's narrowing keeps alive
/// may hold together: a pool costs host memory in proportion to its spec
/// (about 30 bytes per byte), so this bounds them to a few MiB. One more
/// past it is `ENOMEM`.
pub const MAX_NARROWED_SPEC_BYTES: usize = 64 * 1024;

/// A guest's preview1 state: wasmtime-wasi's context plus Warden's sockets,
/// behind one descriptor table.
pub struct P1Ctx {
    pub(super) inner: WasiP1Ctx,
    pub(super) fds: BTreeMap<u32, Slot>,
    /// The pools the guest made by narrowing, while anything holds them.
    pub(super) narrowed: Vec<std::sync::Weak<Pool>>,
    /// Decides every use of an address.
    pub(super) gate: Arc<warden_net::Gate>,
    /// Whether `sock_open` needs a pool descriptor (no `-1`).
    pub(super) strict_pools: bool,
}

pub(super) enum Slot {
    /// A descriptor of the inner context, by its inner number.
    Wasi(u32),
    /// A socket Warden owns.
    Socket(SocketFd),
    /// An address pool: what sockets opened from it may do.
    Pool(Arc<Pool>),
}

pub(super) struct SocketFd {
    pub(super) sock: Sock,
    /// The guest's view; the OS socket is always non-blocking.
    pub(super) nonblocking: bool,
    /// How long a blocking receive waits (`SO_RCVTIMEO`); `None`: forever.
    pub(super) recv_timeout: Option<Duration>,
    /// How long a blocking send waits (`SO_SNDTIMEO`).
    pub(super) send_timeout: Option<Duration>,
}

impl SocketFd {
    pub(super) fn new(sock: Sock, nonblocking: bool) -> SocketFd {
        SocketFd {
            sock,
            nonblocking,
            recv_timeout: None,
            send_timeout: None,
        }
    }
}

pub(super) enum Sock {
    Listener(Listener),
    Stream(Stream),
    /// A TCP socket the guest opened, neither connecting nor listening.
    Opened(Opened),
    /// A connect under way.
    Connecting(Connecting),
    /// A UDP socket.
    Datagram(Datagram),
    /// A connect that failed: the error is reported once, then `ENOTCONN`.
    Failed(Option<Errno>),
}

/// What an unconnected TCP socket reports to poll (as Linux does: writable
/// and hung up, so a poll on it never waits forever).
const UNCONNECTED: Readiness = Readiness {
    readable: false,
    writable: true,
    hangup: true,
    bytes: 0,
};

impl Sock {
    pub(super) async fn wait(&self, interest: Interest) -> std::io::Result<()> {
        match self {
            Sock::Listener(l) => l.wait(interest).await,
            Sock::Stream(s) => s.wait(interest).await,
            Sock::Datagram(d) => d.wait(interest).await,
            Sock::Connecting(c) => {
                std::future::poll_fn(|cx| c.poll_done(cx)).await;
                Ok(())
            }
            Sock::Opened(_) | Sock::Failed(_) => Ok(()),
        }
    }

    pub(super) fn poll_ready(
        &self,
        interest: Interest,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self {
            Sock::Listener(l) => l.poll_ready(interest, cx),
            Sock::Stream(s) => s.poll_ready(interest, cx),
            Sock::Datagram(d) => d.poll_ready(interest, cx),
            Sock::Connecting(c) => c.poll_done(cx).map(Ok),
            Sock::Opened(_) | Sock::Failed(_) => std::task::Poll::Ready(Ok(())),
        }
    }

    pub(super) fn probe(&self) -> Probe<'_> {
        match self {
            Sock::Listener(l) => Probe::Listener(l),
            Sock::Stream(s) => Probe::Stream(s),
            Sock::Datagram(d) => Probe::Kernel(d.fd()),
            Sock::Connecting(c) => Probe::Known(c.readiness()),
            Sock::Opened(_) | Sock::Failed(_) => Probe::Known(UNCONNECTED),
        }
    }

    /// Whether host tasks do its work (TLS, a connect's task): a call that
    /// answers at once lets them run first (see `P1Ctx::poll`).
    pub(super) fn host_driven(&self) -> bool {
        match self {
            Sock::Listener(l) => l.host_driven(),
            Sock::Stream(s) => s.host_driven(),
            Sock::Connecting(c) => c.host_driven(),
            Sock::Opened(_) | Sock::Datagram(_) | Sock::Failed(_) => false,
        }
    }

    /// Its descriptor, for options and addresses (`None`: not a socket
    /// the OS holds right now, as a connect under way).
    pub(super) fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Sock::Listener(l) => Some(l.fd()),
            Sock::Stream(s) => Some(s.fd()),
            Sock::Opened(o) => Some(o.fd()),
            Sock::Datagram(d) => Some(d.fd()),
            Sock::Connecting(_) | Sock::Failed(_) => None,
        }
    }
}

impl P1Ctx {
    /// Wrap `inner`, built with `preopens` pre-opened directories (inner fds
    /// 3 and up). `listeners` become guest fds 3, 4, ...; the directories
    /// follow them. Every connection accepted on them is put to `gate`.
    pub fn new(
        inner: WasiP1Ctx,
        preopens: u32,
        listeners: Vec<Listener>,
        pools: Vec<Arc<Pool>>,
        gate: Arc<warden_net::Gate>,
        strict_pools: bool,
    ) -> Self {
        let mut fds = BTreeMap::new();
        for fd in 0..3 {
            fds.insert(fd, Slot::Wasi(fd));
        }
        let mut next = 3;
        for listener in listeners {
            let sock = Sock::Listener(listener);
            fds.insert(next, Slot::Socket(SocketFd::new(sock, false)));
            next += 1;
        }
        for pool in pools {
            fds.insert(next, Slot::Pool(pool));
            next += 1;
        }
        for dir in 0..preopens {
            fds.insert(next + dir, Slot::Wasi(3 + dir));
        }
        Self {
            inner,
            fds,
            narrowed: Vec::new(),
            gate,
            strict_pools,
        }
    }

    /// The inner descriptor behind guest `fd`; `on_socket` is the error when
    /// `fd` is a socket, which the operation does not apply to.
    pub(super) fn wasi_fd(
        &self,
        fd: types::Fd,
        on_socket: Errno,
    ) -> Result<types::Fd, types::Error> {
        match self.fds.get(&u32::from(fd)) {
            Some(Slot::Wasi(inner)) => Ok((*inner).into()),
            Some(Slot::Socket(_)) => Err(on_socket.into()),
            // A pool is a capability to open sockets with, nothing more.
            Some(Slot::Pool(_)) => Err(Errno::Notcapable.into()),
            None => Err(Errno::Badf.into()),
        }
    }

    pub(super) fn socket(&self, fd: types::Fd) -> Result<&SocketFd, Errno> {
        socket_in(&self.fds, fd)
    }

    pub(super) fn socket_mut(&mut self, fd: types::Fd) -> Result<&mut SocketFd, Errno> {
        match self.fds.get_mut(&u32::from(fd)) {
            Some(Slot::Socket(s)) => Ok(s),
            Some(Slot::Wasi(_) | Slot::Pool(_)) => Err(Errno::Notsock),
            None => Err(Errno::Badf),
        }
    }

    pub(super) fn is_socket(&self, fd: types::Fd) -> bool {
        matches!(self.fds.get(&u32::from(fd)), Some(Slot::Socket(_)))
    }

    /// Whether `fd` is a socket or a pool: a descriptor wasi-libc's
    /// preopen scan must step over.
    pub(super) fn is_warden_fd(&self, fd: types::Fd) -> bool {
        matches!(
            self.fds.get(&u32::from(fd)),
            Some(Slot::Socket(_) | Slot::Pool(_))
        )
    }

    /// Give `slot` the lowest free guest number, or `EMFILE` when the
    /// guest holds [`MAX_FDS`] descriptors already.
    pub(super) fn alloc(&mut self, slot: Slot) -> Result<types::Fd, Errno> {
        if self.fds.len() >= MAX_FDS {
            return Err(Errno::Mfile);
        }
        // The first gap in the (sorted) numbers, or the next after them.
        let fd = self
            .fds
            .keys()
            .zip(0u32..)
            .find(|(n, i)| *n != i)
            .map_or(self.fds.len() as u32, |(_, i)| i);
        self.fds.insert(fd, slot);
        Ok(fd.into())
    }
}

pub(super) fn socket_in(fds: &BTreeMap<u32, Slot>, fd: types::Fd) -> Result<&SocketFd, Errno> {
    match fds.get(&u32::from(fd)) {
        Some(Slot::Socket(s)) => Ok(s),
        Some(Slot::Wasi(_) | Slot::Pool(_)) => Err(Errno::Notsock),
        None => Err(Errno::Badf),
    }
}
