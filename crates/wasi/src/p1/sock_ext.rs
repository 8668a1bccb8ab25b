//! The preview1 socket extension's operations (WAMR's ABI, with the
//! address pools of WASI PR #312): open a socket from a pool, bind,
//! connect, listen, addresses, name resolution, close. Every address use
//! goes to the gate within the socket's pool (see `warden_net::socket::posix`).

use std::net::SocketAddr;
use std::sync::Arc;

use warden_net::socket::Family;
use warden_net::socket::posix::{Datagram, Opened};
use warden_net::{Action, Pool, ResolveError};
use wasmtime_wasi::p1::types::{self, Errno};

use super::sock_addr::{AF_INET4, AF_INET6, AF_UNSPEC, Hints, SOCK_DGRAM, SOCK_STREAM};
use super::sockets::{io_errno, wait_fd};
use super::table::{MAX_NARROWED_POOLS, MAX_NARROWED_SPEC_BYTES, P1Ctx, Slot, Sock, SocketFd};
use warden_net::socket::Interest;

/// The most addresses one `sock_addr_resolve` reports.
pub const MAX_RESOLVED: usize = 64;

impl P1Ctx {
    /// The pool `poolfd` names: `-1` is none (the instance's policy alone,
    /// unless pools are strict), a pool descriptor its pool. A closed
    /// descriptor is `EBADF`, an open one that is no pool `EINVAL`.
    fn pool_of(&self, poolfd: i32) -> Result<Option<Arc<Pool>>, Errno> {
        if poolfd == -1 {
            return if self.strict_pools {
                Err(Errno::Badf)
            } else {
                Ok(None)
            };
        }
        match self.fds.get(&(poolfd as u32)) {
            Some(Slot::Pool(p)) => Ok(Some(p.clone())),
            Some(_) => Err(Errno::Inval),
            None => Err(Errno::Badf),
        }
    }

    /// `warden.sock_pool_narrow(poolfd, spec)`: a new pool descriptor for
    /// `spec` (`NAME=RIGHTS@TARGETS`, as `--pool` takes it) confined to
    /// pool `poolfd` as well, so it never allows more. `poolfd` must be a
    /// pool (`-1` is none, so `EBADF`: narrowing nothing would make a pool
    /// out of the policy, which `--strict-pools` forbids); a bad spec is
    /// `EINVAL`, narrowing too deep `EMLINK`; past what narrowed pools may
    /// hold together, `EMFILE` ([`MAX_NARROWED_POOLS`] pools) or `ENOMEM`
    /// ([`MAX_NARROWED_SPEC_BYTES`] of specs).
    pub(super) fn sock_pool_narrow(&mut self, poolfd: i32, spec: &str) -> Result<types::Fd, Errno> {
        let outer = match self.fds.get(&(poolfd as u32)) {
            Some(Slot::Pool(p)) => p.clone(),
            Some(_) => return Err(Errno::Inval),
            None => return Err(Errno::Badf),
        };
        let narrower = Pool::parse(spec).map_err(|_| Errno::Inval)?;
        // What the guest's narrowed pools hold, counting those still alive
        // (through a descriptor, or a narrower pool's origin).
        self.narrowed.retain(|p| p.strong_count() > 0);
        if self.narrowed.len() >= MAX_NARROWED_POOLS {
            return Err(Errno::Mfile);
        }
        let held: usize = self
            .narrowed
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|p| p.text().len())
            .sum();
        if held + narrower.text().len() > MAX_NARROWED_SPEC_BYTES {
            return Err(Errno::Nomem);
        }
        let pool = Arc::new(outer.narrow(narrower).map_err(|_| Errno::Mlink)?);
        let fd = self.alloc(Slot::Pool(pool.clone()))?;
        self.narrowed.push(Arc::downgrade(&pool));
        Ok(fd)
    }

    /// `sock_open(poolfd, af, socktype)`.
    pub(super) fn sock_open(&mut self, poolfd: i32, af: i32, ty: i32) -> Result<types::Fd, Errno> {
        let pool = self.pool_of(poolfd)?;
        let family = match af {
            AF_INET4 => Family::V4,
            AF_INET6 => Family::V6,
            _ => return Err(Errno::Afnosupport),
        };
        let sock = match ty {
            SOCK_STREAM => Sock::Opened(Opened::new(family, pool).map_err(|e| io_errno(&e))?),
            SOCK_DGRAM => {
                let gate = self.gate.clone();
                Sock::Datagram(Datagram::new(&gate, family, pool).map_err(|e| io_errno(&e))?)
            }
            _ => return Err(Errno::Inval),
        };
        self.alloc(Slot::Socket(SocketFd::new(sock, false)))
    }

    /// `sock_bind(fd, addr)`.
    pub(super) fn sock_bind(&mut self, fd: types::Fd, addr: SocketAddr) -> Result<(), Errno> {
        let gate = self.gate.clone();
        match &self.socket(fd)?.sock {
            Sock::Opened(o) => o.bind(&gate, addr),
            Sock::Datagram(d) => d.bind(&gate, addr),
            _ => return Err(Errno::Inval),
        }
        .map_err(|e| io_errno(&e))
    }

    /// `sock_listen(fd, backlog)`.
    pub(super) fn sock_listen(&mut self, fd: types::Fd, backlog: i32) -> Result<(), Errno> {
        let gate = self.gate.clone();
        let s = self.socket_mut(fd)?;
        match std::mem::replace(&mut s.sock, Sock::Failed(None)) {
            Sock::Opened(o) => match o.listen(&gate, backlog) {
                Ok(l) => {
                    s.sock = Sock::Listener(l);
                    Ok(())
                }
                Err((o, e)) => {
                    s.sock = Sock::Opened(o);
                    Err(io_errno(&e))
                }
            },
            Sock::Datagram(d) => {
                s.sock = Sock::Datagram(d);
                Err(Errno::Notsup)
            }
            // Listening again only changes the backlog, which the host
            // keeps as it is.
            Sock::Listener(l) => {
                s.sock = Sock::Listener(l);
                Ok(())
            }
            other => {
                s.sock = other;
                Err(Errno::Inval)
            }
        }
    }

    /// `sock_connect(fd, addr)`: a blocking socket waits for the outcome;
    /// a non-blocking one returns `EINPROGRESS` and becomes writable when
    /// it is known.
    pub(super) async fn sock_connect(
        &mut self,
        fd: types::Fd,
        addr: SocketAddr,
    ) -> Result<(), Errno> {
        let gate = self.gate.clone();
        let s = self.socket(fd)?;
        let action = match s.sock {
            Sock::Datagram(_) => Action::UdpSend,
            _ => Action::Connect,
        };
        gate.prepare(action).await;
        let s = self.socket_mut(fd)?;
        let nonblocking = s.nonblocking;
        match std::mem::replace(&mut s.sock, Sock::Failed(None)) {
            Sock::Opened(o) => match o.connect(&gate, addr) {
                Ok(c) => s.sock = Sock::Connecting(c),
                Err((o, e)) => {
                    s.sock = Sock::Opened(o);
                    return Err(io_errno(&e));
                }
            },
            Sock::Datagram(mut d) => {
                let r = d.connect(&gate, addr);
                s.sock = Sock::Datagram(d);
                return r.map_err(|e| io_errno(&e));
            }
            other @ Sock::Connecting(_) => {
                s.sock = other;
                return Err(Errno::Already);
            }
            other @ Sock::Stream(_) => {
                s.sock = other;
                return Err(Errno::Isconn);
            }
            other => {
                s.sock = other;
                return Err(Errno::Inval);
            }
        }
        if nonblocking {
            return Err(Errno::Inprogress);
        }
        wait_fd(&self.fds, fd, Interest::Write, None)
            .await
            .map_err(|e| e.downcast().unwrap_or(Errno::Io))?;
        self.settle(fd)
    }

    /// `sock_addr_local(fd)`.
    pub(super) fn sock_addr_local(&self, fd: types::Fd) -> Result<SocketAddr, Errno> {
        let fd = self.socket(fd)?.sock.fd().ok_or(Errno::Inval)?;
        socket2::SockRef::from(&fd)
            .local_addr()
            .map_err(|e| io_errno(&e))?
            .as_socket()
            .ok_or(Errno::Inval)
    }

    /// `sock_addr_remote(fd)`.
    pub(super) fn sock_addr_remote(&mut self, fd: types::Fd) -> Result<SocketAddr, Errno> {
        self.settle(fd)?;
        match &self.socket(fd)?.sock {
            Sock::Stream(s) => Ok(s.peer_addr()),
            Sock::Datagram(d) => d.peer().ok_or(Errno::Notconn),
            _ => Err(Errno::Notconn),
        }
    }

    /// `sock_addr_resolve(host, service, hints)`: the addresses (at most
    /// [`MAX_RESOLVED`]), each with a socket type. The lookup is decided
    /// (`resolve`) and its answer pinned, as every lookup is. `service` is
    /// a port number (there is no services database).
    pub(super) async fn sock_addr_resolve(
        &mut self,
        host: &str,
        service: &str,
        hints: Hints,
    ) -> Result<Vec<(SocketAddr, i32)>, Errno> {
        let port = if service.is_empty() {
            0
        } else {
            service.parse::<u16>().map_err(|_| Errno::Inval)?
        };
        let gate = self.gate.clone();
        let ips = gate.resolve(host).await.map_err(|e| match e {
            ResolveError::InvalidName(_) => Errno::Inval,
            ResolveError::Denied(_) => Errno::Acces,
            ResolveError::Lookup(warden_net::resolve::LookupError::NotFound(_)) => Errno::Noent,
            ResolveError::Lookup(warden_net::resolve::LookupError::Busy) => Errno::Again,
            ResolveError::Lookup(_) => Errno::Io,
            _ => Errno::Io,
        })?;
        let ty = match hints.ty {
            SOCK_DGRAM => SOCK_DGRAM,
            _ => SOCK_STREAM,
        };
        Ok(ips
            .into_iter()
            .filter(|ip| match hints.family {
                AF_INET4 => ip.is_ipv4(),
                AF_INET6 => ip.is_ipv6(),
                AF_UNSPEC => true,
                _ => false,
            })
            .take(MAX_RESOLVED)
            .map(|ip| (SocketAddr::new(ip, port), ty))
            .collect())
    }

    /// `sock_close(fd)`: a socket or a pool (other descriptors close with
    /// `fd_close`).
    pub(super) fn sock_close(&mut self, fd: types::Fd) -> Result<(), Errno> {
        match self.fds.get(&u32::from(fd)) {
            Some(Slot::Socket(_) | Slot::Pool(_)) => {
                self.fds.remove(&u32::from(fd));
                Ok(())
            }
            Some(Slot::Wasi(_)) => Err(Errno::Notsock),
            None => Err(Errno::Badf),
        }
    }
}
