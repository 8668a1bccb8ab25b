//! Socket options of the preview1 socket extension: each one a `setsockopt`
//! / `getsockopt` on the host socket, except the receive and send
//! timeouts, which the host keeps (the OS socket is always non-blocking;
//! a blocking guest call waits on the reactor at most that long).
//!
//! Joining a multicast group is receiving from it: it is decided as
//! `udp-recv` from the group (a multicast address, which only a rule
//! naming it allows).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use warden_net::{Action, Target};
use wasmtime_wasi::p1::types::{self, Errno};

use super::table::{P1Ctx, Sock};

/// A socket option with a number for a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    /// `SO_RCVBUF`.
    RecvBufSize,
    /// `SO_SNDBUF`.
    SendBufSize,
    /// `SO_REUSEADDR`.
    ReuseAddr,
    /// `SO_REUSEPORT`.
    ReusePort,
    /// `SO_KEEPALIVE`.
    KeepAlive,
    /// `SO_BROADCAST`.
    Broadcast,
    /// `TCP_NODELAY`.
    TcpNoDelay,
    /// `TCP_QUICKACK`.
    TcpQuickAck,
    /// `TCP_KEEPIDLE` (seconds).
    TcpKeepIdle,
    /// `TCP_KEEPINTVL` (seconds).
    TcpKeepIntvl,
    /// `TCP_FASTOPEN_CONNECT`.
    TcpFastopenConnect,
    /// `IP_TTL` / `IPV6_UNICAST_HOPS`.
    IpTtl,
    /// `IP_MULTICAST_TTL` / `IPV6_MULTICAST_HOPS`.
    IpMulticastTtl,
    /// `IPV6_V6ONLY`.
    Ipv6Only,
}

/// How an option's value is written to guest memory by its getter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// A C `bool` (one byte).
    Bool,
    /// A `uint8_t`.
    U8,
    /// A `uint32_t` / `__wasi_size_t`.
    U32,
}

/// Every numeric option: its ABI name (after `sock_get_` / `sock_set_`),
/// the option and its width.
pub const OPTIONS: [(&str, Opt, Width); 14] = [
    ("recv_buf_size", Opt::RecvBufSize, Width::U32),
    ("send_buf_size", Opt::SendBufSize, Width::U32),
    ("reuse_addr", Opt::ReuseAddr, Width::Bool),
    ("reuse_port", Opt::ReusePort, Width::Bool),
    ("keep_alive", Opt::KeepAlive, Width::Bool),
    ("broadcast", Opt::Broadcast, Width::Bool),
    ("tcp_no_delay", Opt::TcpNoDelay, Width::Bool),
    ("tcp_quick_ack", Opt::TcpQuickAck, Width::Bool),
    ("tcp_keep_idle", Opt::TcpKeepIdle, Width::U32),
    ("tcp_keep_intvl", Opt::TcpKeepIntvl, Width::U32),
    ("tcp_fastopen_connect", Opt::TcpFastopenConnect, Width::Bool),
    ("ip_ttl", Opt::IpTtl, Width::U8),
    ("ip_multicast_ttl", Opt::IpMulticastTtl, Width::U8),
    ("ipv6_only", Opt::Ipv6Only, Width::Bool),
];

const TCP_FASTOPEN_CONNECT: libc::c_int = 30;

fn is_v6(fd: libc::c_int) -> Result<bool, Errno> {
    let mut domain: libc::c_int = 0;
    getsockopt_raw(fd, libc::SOL_SOCKET, libc::SO_DOMAIN, &mut domain)?;
    Ok(domain == libc::AF_INET6)
}

fn level_name(opt: Opt, fd: libc::c_int) -> Result<(libc::c_int, libc::c_int), Errno> {
    Ok(match opt {
        Opt::RecvBufSize => (libc::SOL_SOCKET, libc::SO_RCVBUF),
        Opt::SendBufSize => (libc::SOL_SOCKET, libc::SO_SNDBUF),
        Opt::ReuseAddr => (libc::SOL_SOCKET, libc::SO_REUSEADDR),
        Opt::ReusePort => (libc::SOL_SOCKET, libc::SO_REUSEPORT),
        Opt::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        Opt::Broadcast => (libc::SOL_SOCKET, libc::SO_BROADCAST),
        Opt::TcpNoDelay => (libc::IPPROTO_TCP, libc::TCP_NODELAY),
        Opt::TcpQuickAck => (libc::IPPROTO_TCP, libc::TCP_QUICKACK),
        Opt::TcpKeepIdle => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        Opt::TcpKeepIntvl => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        Opt::TcpFastopenConnect => (libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT),
        Opt::IpTtl if is_v6(fd)? => (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
        Opt::IpTtl => (libc::IPPROTO_IP, libc::IP_TTL),
        Opt::IpMulticastTtl if is_v6(fd)? => (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS),
        Opt::IpMulticastTtl => (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL),
        Opt::Ipv6Only if is_v6(fd)? => (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
        // An IPv4 socket has no such option.
        Opt::Ipv6Only => return Err(Errno::Inval),
    })
}

fn os_errno() -> Errno {
    super::sockets::io_errno(&std::io::Error::last_os_error())
}

fn getsockopt_raw<T>(fd: libc::c_int, level: i32, name: i32, out: &mut T) -> Result<(), Errno> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `out` is a valid, writable T of `len` bytes.
    let r = unsafe { libc::getsockopt(fd, level, name, (out as *mut T).cast(), &mut len) };
    if r != 0 { Err(os_errno()) } else { Ok(()) }
}

fn setsockopt_raw<T>(fd: libc::c_int, level: i32, name: i32, value: &T) -> Result<(), Errno> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a valid T of `len` bytes.
    let r = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), len) };
    if r != 0 { Err(os_errno()) } else { Ok(()) }
}

impl P1Ctx {
    fn raw_fd(&self, fd: types::Fd) -> Result<libc::c_int, Errno> {
        let s = self.socket(fd)?;
        // A connect under way has its socket on the connecting task.
        s.sock.fd().map(|f| f.as_raw_fd()).ok_or(Errno::Inval)
    }

    /// Read option `opt`.
    pub(super) fn get_opt(&self, fd: types::Fd, opt: Opt) -> Result<u32, Errno> {
        let raw = self.raw_fd(fd)?;
        let (level, name) = level_name(opt, raw)?;
        let mut v: libc::c_int = 0;
        getsockopt_raw(raw, level, name, &mut v)?;
        Ok(v.max(0) as u32)
    }

    /// Set option `opt` to `value`.
    pub(super) fn set_opt(&self, fd: types::Fd, opt: Opt, value: u32) -> Result<(), Errno> {
        let raw = self.raw_fd(fd)?;
        let (level, name) = level_name(opt, raw)?;
        let v = libc::c_int::try_from(value).map_err(|_| Errno::Inval)?;
        setsockopt_raw(raw, level, name, &v)
    }

    /// The receive (`send == false`) or send timeout, in microseconds (0:
    /// none).
    pub(super) fn get_timeout(&self, fd: types::Fd, send: bool) -> Result<u64, Errno> {
        let s = self.socket(fd)?;
        let t = if send { s.send_timeout } else { s.recv_timeout };
        Ok(t.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }

    /// Set the receive or send timeout, in microseconds (0: none).
    pub(super) fn set_timeout(&mut self, fd: types::Fd, send: bool, us: u64) -> Result<(), Errno> {
        let s = self.socket_mut(fd)?;
        let t = (us > 0).then(|| Duration::from_micros(us));
        if send {
            s.send_timeout = t;
        } else {
            s.recv_timeout = t;
        }
        Ok(())
    }

    /// `SO_LINGER`: whether it is on, and for how many seconds.
    pub(super) fn get_linger(&self, fd: types::Fd) -> Result<(bool, i32), Errno> {
        let raw = self.raw_fd(fd)?;
        let mut l = libc::linger {
            l_onoff: 0,
            l_linger: 0,
        };
        getsockopt_raw(raw, libc::SOL_SOCKET, libc::SO_LINGER, &mut l)?;
        Ok((l.l_onoff != 0, l.l_linger))
    }

    /// Set `SO_LINGER`.
    pub(super) fn set_linger(&self, fd: types::Fd, on: bool, secs: i32) -> Result<(), Errno> {
        if secs < 0 {
            return Err(Errno::Inval);
        }
        let raw = self.raw_fd(fd)?;
        let l = libc::linger {
            l_onoff: on.into(),
            l_linger: secs,
        };
        setsockopt_raw(raw, libc::SOL_SOCKET, libc::SO_LINGER, &l)
    }

    /// `IP_MULTICAST_LOOP` (or `IPV6_MULTICAST_LOOP` with `v6`).
    pub(super) fn get_multicast_loop(&self, fd: types::Fd, v6: bool) -> Result<bool, Errno> {
        let raw = self.raw_fd(fd)?;
        let mut v: libc::c_int = 0;
        let (level, name) = loop_option(v6);
        getsockopt_raw(raw, level, name, &mut v)?;
        Ok(v != 0)
    }

    /// Set `IP_MULTICAST_LOOP` (or the IPv6 one).
    pub(super) fn set_multicast_loop(
        &self,
        fd: types::Fd,
        v6: bool,
        on: bool,
    ) -> Result<(), Errno> {
        let raw = self.raw_fd(fd)?;
        let (level, name) = loop_option(v6);
        setsockopt_raw(raw, level, name, &libc::c_int::from(on))
    }

    /// Join (`join`) or leave a multicast group on interface `iface` (an
    /// IPv4 interface address as a number for IPv4 groups, an interface
    /// index for IPv6). Joining is decided as `udp-recv` from the group.
    pub(super) fn set_membership(
        &self,
        fd: types::Fd,
        group: IpAddr,
        iface: u32,
        join: bool,
    ) -> Result<(), Errno> {
        let s = self.socket(fd)?;
        let Sock::Datagram(d) = &s.sock else {
            return Err(Errno::Inval);
        };
        if !group.is_multicast() {
            return Err(Errno::Inval);
        }
        if join {
            let local = self.sock_addr_local(fd)?;
            let target = Target::Addr(SocketAddr::new(group, local.port()));
            if !self
                .gate
                .decide_in(d.pool(), Action::UdpRecv, target)
                .is_allowed()
            {
                return Err(Errno::Acces);
            }
        }
        let fd = d.fd();
        let sock = socket2::SockRef::from(&fd);
        let r = match (group, join) {
            (IpAddr::V4(g), true) => {
                sock.join_multicast_v4(&g, &std::net::Ipv4Addr::from(iface.to_le_bytes()))
            }
            (IpAddr::V4(g), false) => {
                sock.leave_multicast_v4(&g, &std::net::Ipv4Addr::from(iface.to_le_bytes()))
            }
            (IpAddr::V6(g), true) => sock.join_multicast_v6(&g, iface),
            (IpAddr::V6(g), false) => sock.leave_multicast_v6(&g, iface),
        };
        r.map_err(|e| super::sockets::io_errno(&e))
    }
}

fn loop_option(v6: bool) -> (libc::c_int, libc::c_int) {
    if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP)
    } else {
        (libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP)
    }
}
