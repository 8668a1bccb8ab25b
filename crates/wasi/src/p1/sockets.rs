//! Socket I/O on guest descriptors: accept, receive, send, each waiting
//! on the tokio reactor when the guest's socket is in blocking mode.

use std::collections::BTreeMap;

use warden_net::sockets::Interest;
use wasmtime_wasi::p1::types::{self, Errno};
use wiggle::{GuestMemory, GuestPtr};

use super::decode::{ciovec_bufs, iovec_bufs};
use super::table::{P1Ctx, Slot, Sock, SocketFd, socket_in};

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
            Ok(stream) => Ok(Some(self.alloc(Slot::Socket(SocketFd {
                sock: Sock::Stream(stream),
                nonblocking: flags.contains(types::Fdflags::NONBLOCK),
            }))?)),
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
            if self.socket(fd)?.nonblocking {
                return Err(Errno::Again.into());
            }
            wait_fd(&self.fds, fd, Interest::Read).await?;
        }
    }

    pub(super) fn try_recv(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
        peek: bool,
    ) -> Result<Option<u32>, types::Error> {
        let stream = self.stream(fd)?;
        if buf.len() == 0 {
            return Ok(Some(0));
        }
        let result = match mem.as_slice_mut(buf)? {
            Some(slice) => stream.try_recv(slice, peek),
            None => {
                let mut tmp = vec![0; buf.len().min(MAX_COPY) as usize];
                let r = stream.try_recv(&mut tmp, peek);
                if let Ok(n) = r {
                    mem.copy_from_slice(&tmp[..n], buf.as_ptr().as_array(n as u32))?;
                }
                r
            }
        };
        match result {
            Ok(n) => Ok(Some(n as u32)),
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
        let nonblocking = self.socket(fd)?.nonblocking;
        if waitall && !peek && !nonblocking {
            let mut total = 0u32;
            for buf in bufs {
                let mut done = 0;
                while done < buf.len() {
                    let rest = buf.get_range(done..buf.len()).ok_or(Errno::Fault)?;
                    match self.try_recv(mem, fd, rest, false)? {
                        Some(0) => return Ok(total),
                        Some(n) => {
                            done += n;
                            total += n;
                        }
                        None => wait_fd(&self.fds, fd, Interest::Read).await?,
                    }
                }
            }
            return Ok(total);
        }
        let buf = bufs.into_iter().next().unwrap_or(GuestPtr::new((0, 0)));
        loop {
            if let Some(n) = self.try_recv(mem, fd, buf, peek)? {
                return Ok(n);
            }
            if nonblocking {
                return Err(Errno::Again.into());
            }
            wait_fd(&self.fds, fd, Interest::Read).await?;
        }
    }

    pub(super) fn try_send(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
    ) -> Result<Option<u32>, types::Error> {
        let stream = self.stream(fd)?;
        if buf.len() == 0 {
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
        match stream.try_send(&data) {
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
        let buf = ciovec_bufs(mem, ciovs)?
            .into_iter()
            .next()
            .unwrap_or(GuestPtr::new((0, 0)));
        loop {
            if let Some(n) = self.try_send(mem, fd, buf)? {
                return Ok(n);
            }
            if self.socket(fd)?.nonblocking {
                return Err(Errno::Again.into());
            }
            wait_fd(&self.fds, fd, Interest::Write).await?;
        }
    }
}

/// Wait for `interest` on socket `fd`. Takes only the table, so the future
/// stays `Send` (wasmtime-wasi's context is not `Sync`).
pub(super) async fn wait_fd(
    fds: &BTreeMap<u32, Slot>,
    fd: types::Fd,
    interest: Interest,
) -> Result<(), types::Error> {
    let sock = &socket_in(fds, fd)?.sock;
    sock.wait(interest).await.map_err(|e| io_errno(&e).into())
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
        _ => Errno::Io,
    }
}

pub(super) fn socket_rights(sock: &Sock) -> types::Rights {
    let common = types::Rights::POLL_FD_READWRITE
        | types::Rights::FD_FDSTAT_SET_FLAGS
        | types::Rights::FD_FILESTAT_GET;
    match sock {
        Sock::Listener(_) => common | types::Rights::SOCK_ACCEPT,
        Sock::Stream(_) => {
            common | types::Rights::FD_READ | types::Rights::FD_WRITE | types::Rights::SOCK_SHUTDOWN
        }
    }
}
