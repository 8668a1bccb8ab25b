//! Socket I/O on guest descriptors: accept, receive, send (on streams and
//! UDP sockets), each waiting on the tokio reactor when the guest's socket
//! is in blocking mode, as long as its receive or send timeout allows.

use std::collections::BTreeMap;
use std::time::Duration;

use warden_net::Action;
use warden_net::socket::posix::Datagram;
use warden_net::socket::{Interest, Stream};
use wasmtime_wasi::p1::types::{self, Errno};
use wiggle::{GuestMemory, GuestPtr};

use super::decode::{ciovec_bufs, iovec_bufs};
use super::table::{P1Ctx, Slot, Sock, SocketFd, socket_in};

/// What a socket moves bytes through right now.
pub(super) enum Io<'a> {
    Stream(&'a Stream),
    Datagram(&'a Datagram),
    /// A connect still under way: nothing to read or write yet.
    Pending,
}

/// The most bytes one socket call moves through a host-side copy (needed
/// only for shared memories; unshared memory is read and written in place).
const MAX_COPY: u32 = 64 * 1024;

impl P1Ctx {
    pub(super) fn try_accept(
        &mut self,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<Option<types::Fd>, types::Error> {
        let Sock::Listener(listener) = &self.socket(fd)?.sock else {
            return Err(Errno::Inval.into());
        };
        match listener.try_accept(&self.gate) {
            Ok(stream) => Ok(Some(self.alloc(Slot::Socket(SocketFd::new(
                Sock::Stream(stream),
                flags.contains(types::Fdflags::NONBLOCK),
            )))?)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io_errno(&e).into()),
        }
    }

    /// `sock_accept`, waiting when the listener is in blocking mode.
    pub async fn accept(
        &mut self,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        loop {
            if let Some(new) = self.try_accept(fd, flags)? {
                return Ok(new);
            }
            let s = self.socket(fd)?;
            if s.nonblocking {
                return Err(would_block(&self.fds, fd).await);
            }
            let timeout = s.recv_timeout;
            wait_fd(&self.fds, fd, Interest::Read, timeout).await?;
        }
    }

    /// Finish a connect that has ended: the socket becomes the stream, or
    /// reports the connect's error (once; then `ENOTCONN`).
    pub(super) fn settle(&mut self, fd: types::Fd) -> Result<(), Errno> {
        let s = self.socket_mut(fd)?;
        match &mut s.sock {
            Sock::Connecting(c) => match c.take() {
                Some(Ok(stream)) => s.sock = Sock::Stream(stream),
                Some(Err(e)) => {
                    s.sock = Sock::Failed(None);
                    return Err(io_errno(&e));
                }
                None => {}
            },
            Sock::Failed(e) => {
                if let Some(e) = e.take() {
                    return Err(e);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What `fd` moves bytes through (call [`P1Ctx::settle`] first).
    pub(super) fn io(&self, fd: types::Fd) -> Result<Io<'_>, Errno> {
        match &self.socket(fd)?.sock {
            Sock::Stream(s) => Ok(Io::Stream(s)),
            Sock::Datagram(d) => Ok(Io::Datagram(d)),
            Sock::Connecting(_) => Ok(Io::Pending),
            Sock::Listener(_) | Sock::Opened(_) | Sock::Failed(_) => Err(Errno::Notconn),
        }
    }

    /// The connected stream behind `fd`.
    pub(super) fn stream(&mut self, fd: types::Fd) -> Result<&Stream, Errno> {
        self.settle(fd)?;
        match self.io(fd)? {
            Io::Stream(s) => Ok(s),
            Io::Datagram(_) | Io::Pending => Err(Errno::Notconn),
        }
    }

    pub(super) fn try_recv(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
        peek: bool,
    ) -> Result<Option<u32>, types::Error> {
        Ok(self.try_recv_from(mem, fd, buf, peek)?.map(|(n, _)| n))
    }

    /// Receive into `buf`, with the sender (a UDP socket's datagram's, a
    /// stream's peer), or `None` when it would block.
    pub(super) fn try_recv_from(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
        peek: bool,
    ) -> Result<Option<(u32, Option<std::net::SocketAddr>)>, types::Error> {
        self.settle(fd)?;
        let io = self.io(fd)?;
        let gate = &self.gate;
        let mut from = None;
        let mut recv = |slice: &mut [u8]| match &io {
            Io::Stream(s) => {
                from = Some(s.peer_addr());
                s.try_recv(slice, peek)
            }
            Io::Datagram(d) => d.try_recv_from(gate, slice, peek).map(|(n, a)| {
                from = Some(a);
                n
            }),
            Io::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        };
        let result = if buf.len() == 0 && !matches!(io, Io::Datagram(_)) {
            Ok(0)
        } else {
            match mem.as_slice_mut(buf)? {
                Some(slice) => recv(slice),
                None => {
                    let mut tmp = vec![0; buf.len().min(MAX_COPY) as usize];
                    let r = recv(&mut tmp);
                    if let Ok(n) = r {
                        mem.copy_from_slice(&tmp[..n], buf.as_ptr().as_array(n as u32))?;
                    }
                    r
                }
            }
        };
        match result {
            Ok(n) => Ok(Some((n as u32, from))),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io_errno(&e).into()),
        }
    }

    /// Receive into `iovs`. Without `waitall`, like `read(2)`, the first
    /// non-empty buffer is filled as far as data is there; with `waitall`
    /// (blocking sockets only) every buffer is filled or the stream ends.
    pub async fn recv(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
        peek: bool,
        waitall: bool,
    ) -> Result<u32, types::Error> {
        let bufs = iovec_bufs(mem, iovs)?;
        let s = self.socket(fd)?;
        let (nonblocking, timeout) = (s.nonblocking, s.recv_timeout);
        if matches!(s.sock, Sock::Datagram(_)) {
            self.gate.prepare(Action::UdpRecv).await;
        }
        if waitall && !peek && !nonblocking {
            let ingress = self.gate.rates().ingress.clone();
            let mut total = 0u32;
            for buf in bufs {
                let mut done = 0;
                while done < buf.len() {
                    let rest = buf.get_range(done..buf.len()).ok_or(Errno::Fault)?;
                    if let Some(b) = &ingress {
                        b.ready().await;
                    }
                    match self.try_recv(mem, fd, rest, false)? {
                        Some(0) => return Ok(total),
                        Some(n) => {
                            if let Some(b) = &ingress {
                                b.spend(n as usize);
                            }
                            done += n;
                            total += n;
                        }
                        None => wait_fd(&self.fds, fd, Interest::Read, timeout).await?,
                    }
                }
            }
            return Ok(total);
        }
        let buf = bufs.into_iter().next().unwrap_or(GuestPtr::new((0, 0)));
        Ok(self.recv_into(mem, fd, buf, peek).await?.0)
    }

    /// Receive into the first buffer of `iovs`, with the sender (see
    /// [`P1Ctx::try_recv_from`]).
    pub async fn recv_from(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
        peek: bool,
    ) -> Result<(u32, Option<std::net::SocketAddr>), types::Error> {
        let buf = iovec_bufs(mem, iovs)?
            .into_iter()
            .next()
            .unwrap_or(GuestPtr::new((0, 0)));
        if matches!(self.socket(fd)?.sock, Sock::Datagram(_)) {
            self.gate.prepare(Action::UdpRecv).await;
        }
        self.recv_into(mem, fd, buf, peek).await
    }

    async fn recv_into(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
        peek: bool,
    ) -> Result<(u32, Option<std::net::SocketAddr>), types::Error> {
        // Under a bandwidth limit, wait out the debt first; what is read
        // is counted (a peek is read again later, and counted then).
        let ingress = self.gate.rates().ingress.clone();
        let mut buf = buf;
        if let Some(b) = &ingress {
            b.ready().await;
            // A stream's read takes at most a burst, so what is read last
            // owes little (a datagram is taken whole).
            if !matches!(self.socket(fd)?.sock, Sock::Datagram(_)) {
                let cap = buf.len().min(u32::try_from(b.burst()).unwrap_or(u32::MAX));
                buf = buf.get_range(0..cap).ok_or(Errno::Fault)?;
            }
        }
        loop {
            if let Some(got) = self.try_recv_from(mem, fd, buf, peek)? {
                if let Some(b) = ingress.as_ref().filter(|_| !peek) {
                    b.spend(got.0 as usize);
                }
                return Ok(got);
            }
            let s = self.socket(fd)?;
            if s.nonblocking {
                return Err(would_block(&self.fds, fd).await);
            }
            let timeout = s.recv_timeout;
            wait_fd(&self.fds, fd, Interest::Read, timeout).await?;
        }
    }

    pub(super) fn try_send(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
    ) -> Result<Option<u32>, types::Error> {
        self.try_send_to(mem, fd, buf, None)
    }

    /// Send from `buf` (to `to`, on a UDP socket), or `None` when it would
    /// block.
    pub(super) fn try_send_to(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
        to: Option<std::net::SocketAddr>,
    ) -> Result<Option<u32>, types::Error> {
        self.settle(fd)?;
        let io = self.io(fd)?;
        if buf.len() == 0 && !matches!(io, Io::Datagram(_)) {
            return Ok(Some(0));
        }
        // A shared memory is copied out, so bound what one call takes.
        let buf = if mem.is_shared_memory() {
            buf.get_range(0..buf.len().min(MAX_COPY))
                .ok_or(Errno::Fault)?
        } else {
            buf
        };
        let data = mem.as_cow(buf)?;
        let sent = match io {
            // A connected stream ignores `to`, as TCP does.
            Io::Stream(s) => s.try_send(&data),
            Io::Datagram(d) => d.try_send_to(&self.gate, &data, to),
            Io::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        };
        match sent {
            Ok(n) => Ok(Some(n as u32)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io_errno(&e).into()),
        }
    }

    /// Send from the first non-empty buffer of `ciovs` (a short write, as
    /// `write(2)` may make; callers loop).
    pub async fn send(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
    ) -> Result<u32, types::Error> {
        self.send_to(mem, fd, ciovs, None).await
    }

    /// Send from the first non-empty buffer of `ciovs`, to `to` on a UDP
    /// socket (a datagram is sent whole or not at all).
    pub async fn send_to(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
        to: Option<std::net::SocketAddr>,
    ) -> Result<u32, types::Error> {
        let bufs = ciovec_bufs(mem, ciovs)?;
        let s = self.socket(fd)?;
        let (nonblocking, timeout) = (s.nonblocking, s.send_timeout);
        let datagram = matches!(s.sock, Sock::Datagram(_));
        let buf = if datagram {
            self.gate.prepare(Action::UdpSend).await;
            // One datagram from one buffer: gathering several would need a
            // copy; a datagram of several buffers is refused as too big
            // rather than sent cut.
            match bufs.iter().filter(|b| b.len() > 0).count() {
                0 | 1 => {}
                _ => return Err(Errno::Msgsize.into()),
            }
            bufs.into_iter().find(|b| b.len() > 0)
        } else {
            bufs.into_iter().next()
        }
        .unwrap_or(GuestPtr::new((0, 0)));
        // Under a bandwidth limit, wait out the debt first, then count
        // what was sent.
        let egress = self.gate.rates().egress.clone();
        let mut buf = buf;
        if let Some(b) = &egress {
            b.ready().await;
            if !datagram {
                let cap = buf.len().min(u32::try_from(b.burst()).unwrap_or(u32::MAX));
                buf = buf.get_range(0..cap).ok_or(Errno::Fault)?;
            }
        }
        loop {
            if let Some(n) = self.try_send_to(mem, fd, buf, to)? {
                if let Some(b) = &egress {
                    b.spend(n as usize);
                }
                return Ok(n);
            }
            if nonblocking {
                return Err(would_block(&self.fds, fd).await);
            }
            wait_fd(&self.fds, fd, Interest::Write, timeout).await?;
        }
    }
}

/// `EAGAIN` for a non-blocking call on socket `fd`. When host tasks do
/// the socket's work (TLS), they run first: a guest that retries without
/// ever waiting must not starve the work it waits for.
async fn would_block(fds: &BTreeMap<u32, Slot>, fd: types::Fd) -> types::Error {
    if socket_in(fds, fd).is_ok_and(|s| s.sock.host_driven()) {
        tokio::task::yield_now().await;
    }
    Errno::Again.into()
}

/// Wait for `interest` on socket `fd`. Takes only the table, so the future
/// stays `Send` (wasmtime-wasi's context is not `Sync`).
pub(super) async fn wait_fd(
    fds: &BTreeMap<u32, Slot>,
    fd: types::Fd,
    interest: Interest,
    timeout: Option<Duration>,
) -> Result<(), types::Error> {
    let sock = &socket_in(fds, fd)?.sock;
    let waited = match timeout {
        None => sock.wait(interest).await,
        // The socket's timeout ran out: EAGAIN, as SO_RCVTIMEO gives.
        Some(t) => tokio::time::timeout(t, sock.wait(interest))
            .await
            .map_err(|_| types::Error::from(Errno::Again))?,
    };
    waited.map_err(|e| io_errno(&e).into())
}

/// The preview1 errno for a host socket error.
pub(super) fn io_errno(e: &std::io::Error) -> Errno {
    if e.kind() == std::io::ErrorKind::WouldBlock {
        return Errno::Again;
    }
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => Errno::Connreset,
        Some(libc::ECONNABORTED) => Errno::Connaborted,
        Some(libc::EPIPE) => Errno::Pipe,
        Some(libc::ENOTCONN) => Errno::Notconn,
        Some(libc::EINTR) => Errno::Intr,
        Some(libc::EINVAL) => Errno::Inval,
        Some(libc::EMFILE) => Errno::Mfile,
        Some(libc::ENFILE) => Errno::Nfile,
        Some(libc::ENOBUFS) => Errno::Nobufs,
        Some(libc::ENOMEM) => Errno::Nomem,
        Some(libc::ETIMEDOUT) => Errno::Timedout,
        Some(libc::EACCES) => Errno::Acces,
        Some(libc::EPERM) => Errno::Perm,
        Some(libc::ECONNREFUSED) => Errno::Connrefused,
        Some(libc::EAFNOSUPPORT) => Errno::Afnosupport,
        Some(libc::EADDRINUSE) => Errno::Addrinuse,
        Some(libc::EADDRNOTAVAIL) => Errno::Addrnotavail,
        Some(libc::EINPROGRESS) => Errno::Inprogress,
        Some(libc::EALREADY) => Errno::Already,
        Some(libc::EISCONN) => Errno::Isconn,
        Some(libc::EDESTADDRREQ) => Errno::Destaddrreq,
        Some(libc::ENETUNREACH) => Errno::Netunreach,
        Some(libc::EHOSTUNREACH) => Errno::Hostunreach,
        Some(libc::EMSGSIZE) => Errno::Msgsize,
        Some(libc::ENOPROTOOPT) => Errno::Noprotoopt,
        Some(libc::EOPNOTSUPP) => Errno::Notsup,
        _ => Errno::Io,
    }
}

pub(super) fn socket_rights(sock: &Sock) -> types::Rights {
    let common = types::Rights::POLL_FD_READWRITE
        | types::Rights::FD_FDSTAT_SET_FLAGS
        | types::Rights::FD_FILESTAT_GET;
    match sock {
        Sock::Listener(_) => common | types::Rights::SOCK_ACCEPT,
        Sock::Stream(_) | Sock::Datagram(_) | Sock::Connecting(_) => {
            common | types::Rights::FD_READ | types::Rights::FD_WRITE | types::Rights::SOCK_SHUTDOWN
        }
        Sock::Opened(_) | Sock::Failed(_) => common,
    }
}
