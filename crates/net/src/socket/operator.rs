//! Listeners the operator opens for a guest before it starts: bound here
//! (`--listen`, a manifest's `[[listen]]`, `warden serve --addr`) or handed
//! over by a service manager (`LISTEN_FDS`). This is where a privileged port
//! or an address in use fails, with the operator still there to read the
//! error; what a guest does with the listener afterwards is
//! [`super::Listener`]'s. A component's listeners wait in an
//! [`Activation`] until a guest socket binds their address.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::RawFd;
use std::sync::Mutex;

use crate::sync::lock;

/// The listen backlog for host-bound listeners.
pub const BACKLOG: i32 = 1024;

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

/// Listeners the operator pre-opened for a component, by address, until a
/// guest socket binds that address and takes one.
#[derive(Default)]
pub struct Activation {
    by_addr: Mutex<HashMap<SocketAddr, TcpListener>>,
}

impl Activation {
    /// Hand over `listener` (bound and listening) at its local address.
    pub fn add(&self, listener: TcpListener) -> io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        lock(&self.by_addr).insert(addr, listener);
        Ok(addr)
    }

    pub(crate) fn take(&self, addr: SocketAddr) -> Option<TcpListener> {
        lock(&self.by_addr).remove(&addr)
    }

    /// The addresses still waiting for a guest to bind them.
    pub fn waiting(&self) -> Vec<SocketAddr> {
        lock(&self.by_addr).keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_a_used_address_fails_before_anything_runs() {
        let first = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = first.local_addr().unwrap();
        let err = bind_listener(taken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
