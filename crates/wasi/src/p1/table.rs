//! The guest-visible descriptor table: each guest fd is a descriptor of
//! wasmtime-wasi's preview1 context (under its own inner number) or a
//! socket Warden owns, and new descriptors take the lowest free number.

use std::collections::BTreeMap;

use warden_net::sockets::{Interest, Listener, Stream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{self, Errno};

/// The most descriptors a preview1 guest holds at once (files,
/// directories, sockets); opening one more fails with `EMFILE`.
pub const MAX_FDS: usize = 10_000;

/// A guest's preview1 state: wasmtime-wasi's context plus Warden's sockets,
/// behind one descriptor table.
pub struct P1Ctx {
    pub(super) inner: WasiP1Ctx,
    pub(super) fds: BTreeMap<u32, Slot>,
    /// Decides every accepted peer.
    pub(super) gate: std::sync::Arc<warden_net::Gate>,
}

pub(super) enum Slot {
    /// A descriptor of the inner context, by its inner number.
    Wasi(u32),
    /// A socket Warden owns.
    Socket(SocketFd),
}

pub(super) struct SocketFd {
    pub(super) sock: Sock,
    /// The guest's view; the OS socket is always non-blocking.
    pub(super) nonblocking: bool,
}

pub(super) enum Sock {
    Listener(Listener),
    Stream(Stream),
}

impl Sock {
    pub(super) async fn wait(&self, interest: Interest) -> std::io::Result<()> {
        match self {
            Sock::Listener(l) => l.wait(interest).await,
            Sock::Stream(s) => s.wait(interest).await,
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
        }
    }

    pub(super) fn probe(&self) -> warden_net::sockets::Probe<'_> {
        match self {
            Sock::Listener(l) => warden_net::sockets::Probe::Listener(l),
            Sock::Stream(s) => warden_net::sockets::Probe::Stream(s),
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
        gate: std::sync::Arc<warden_net::Gate>,
    ) -> Self {
        let mut fds = BTreeMap::new();
        for fd in 0..3 {
            fds.insert(fd, Slot::Wasi(fd));
        }
        let mut next = 3;
        for listener in listeners {
            let sock = Sock::Listener(listener);
            fds.insert(
                next,
                Slot::Socket(SocketFd {
                    sock,
                    nonblocking: false,
                }),
            );
            next += 1;
        }
        for dir in 0..preopens {
            fds.insert(next + dir, Slot::Wasi(3 + dir));
        }
        Self { inner, fds, gate }
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
            None => Err(Errno::Badf.into()),
        }
    }

    pub(super) fn socket(&self, fd: types::Fd) -> Result<&SocketFd, Errno> {
        socket_in(&self.fds, fd)
    }

    pub(super) fn stream(&self, fd: types::Fd) -> Result<&Stream, Errno> {
        match &self.socket(fd)?.sock {
            Sock::Stream(s) => Ok(s),
            Sock::Listener(_) => Err(Errno::Notconn),
        }
    }

    pub(super) fn is_socket(&self, fd: types::Fd) -> bool {
        matches!(self.fds.get(&u32::from(fd)), Some(Slot::Socket(_)))
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
        Some(Slot::Wasi(_)) => Err(Errno::Notsock),
        None => Err(Errno::Badf),
    }
}
