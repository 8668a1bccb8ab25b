//! Warden's preview1 socket extension for Rust guests: the raw imports
//! (WAMR's names and layouts) and a small std-like `TcpStream` and
//! `UdpSocket` over them. No crates.io crate targets this ABI.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `__wasi_addr_t`: kind, then the union at offset 4 (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct WasiAddr {
    pub kind: u32,
    pub bytes: [u8; 20],
}

/// `__wasi_addr_info_t`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct AddrInfo {
    pub addr: WasiAddr,
    pub ty: i32,
}

#[repr(C)]
pub struct Iovec {
    pub buf: *const u8,
    pub len: usize,
}

pub mod raw {
    use super::{AddrInfo, Iovec, WasiAddr};
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn sock_open(pool: i32, af: i32, ty: i32, fd: *mut i32) -> u16;
        pub fn sock_bind(fd: i32, addr: *const WasiAddr) -> u16;
        pub fn sock_connect(fd: i32, addr: *const WasiAddr) -> u16;
        pub fn sock_listen(fd: i32, backlog: i32) -> u16;
        pub fn sock_addr_local(fd: i32, addr: *mut WasiAddr) -> u16;
        pub fn sock_addr_remote(fd: i32, addr: *mut WasiAddr) -> u16;
        pub fn sock_addr_resolve(
            host: *const u8,
            service: *const u8,
            hints: *const u8,
            info: *mut AddrInfo,
            info_len: u32,
            total: *mut u32,
        ) -> u16;
        pub fn sock_send_to(
            fd: i32,
            iovs: *const Iovec,
            len: u32,
            flags: i32,
            to: *const WasiAddr,
            sent: *mut u32,
        ) -> u16;
        pub fn sock_recv_from(
            fd: i32,
            iovs: *const Iovec,
            len: u32,
            flags: i32,
            from: *mut WasiAddr,
            got: *mut u32,
        ) -> u16;
        pub fn sock_close(fd: i32) -> u16;
        pub fn sock_set_tcp_no_delay(fd: i32, on: bool) -> u16;
        pub fn sock_get_recv_buf_size(fd: i32, size: *mut u32) -> u16;
    }
}

pub const INET4: i32 = 0;
pub const INET6: i32 = 1;
pub const STREAM: i32 = 1;
pub const DGRAM: i32 = 0;

pub fn encode(addr: SocketAddr) -> WasiAddr {
    let mut a = WasiAddr::default();
    match addr {
        SocketAddr::V4(v4) => {
            a.kind = 0;
            a.bytes[0..4].copy_from_slice(&v4.ip().octets());
            a.bytes[4..6].copy_from_slice(&v4.port().to_le_bytes());
        }
        SocketAddr::V6(v6) => {
            a.kind = 1;
            for (i, s) in v6.ip().segments().iter().enumerate() {
                a.bytes[2 * i..2 * i + 2].copy_from_slice(&s.to_le_bytes());
            }
            a.bytes[16..18].copy_from_slice(&v6.port().to_le_bytes());
        }
    }
    a
}

pub fn decode(a: &WasiAddr) -> SocketAddr {
    let b = &a.bytes;
    let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    if a.kind == 0 {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])), u(4))
    } else {
        let seg: Vec<u16> = (0..8).map(|i| u(2 * i)).collect();
        let ip = Ipv6Addr::new(
            seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
        );
        SocketAddr::new(IpAddr::V6(ip), u(16))
    }
}

/// A preview1 errno as an `io::Error` (its number in the message).
pub fn err(e: u16) -> io::Error {
    io::Error::other(format!("errno {e}"))
}

fn check(e: u16) -> io::Result<()> {
    if e == 0 { Ok(()) } else { Err(err(e)) }
}

fn open(pool: i32, addr: &SocketAddr, ty: i32) -> io::Result<RawFd> {
    let af = if addr.is_ipv4() { INET4 } else { INET6 };
    let mut fd = -1;
    check(unsafe { raw::sock_open(pool, af, ty, &mut fd) })?;
    Ok(fd)
}

/// A connected TCP stream; reads and writes are preview1's fd_read and
/// fd_write (std's File does them).
pub struct TcpStream(std::fs::File);

impl TcpStream {
    /// Its descriptor, for raw calls.
    pub fn fd(&self) -> i32 {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    /// Connect to `addr`, opening the socket from `pool` (-1: none).
    pub fn connect(addr: SocketAddr, pool: i32) -> io::Result<TcpStream> {
        let fd = open(pool, &addr, STREAM)?;
        // SAFETY: sock_open returned a descriptor this program now owns.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let a = encode(addr);
        check(unsafe { raw::sock_connect(fd, &a) })?;
        Ok(TcpStream(file))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let mut a = WasiAddr::default();
        check(unsafe { raw::sock_addr_local(std::os::fd::AsRawFd::as_raw_fd(&self.0), &mut a) })?;
        Ok(decode(&a))
    }

    /// Send small writes at once (TCP_NODELAY).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.0);
        check(unsafe { raw::sock_set_tcp_no_delay(fd, on) })
    }

    /// End the writing side (the peer reads EOF); reading goes on.
    pub fn shutdown_write(&self) -> io::Result<()> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.0) as u32;
        // SAFETY: a plain preview1 call on a descriptor this stream owns.
        unsafe { wasi_p1::sock_shutdown(fd, wasi_p1::SDFLAGS_WR) }.map_err(|e| err(e.raw()))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        let mut a = WasiAddr::default();
        check(unsafe { raw::sock_addr_remote(std::os::fd::AsRawFd::as_raw_fd(&self.0), &mut a) })?;
        Ok(decode(&a))
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A UDP socket.
pub struct UdpSocket(OwnedFd);

impl UdpSocket {
    /// A socket for talking to addresses of `like`'s family, from `pool`.
    pub fn open(like: SocketAddr, pool: i32) -> io::Result<UdpSocket> {
        let fd = open(pool, &like, DGRAM)?;
        // SAFETY: sock_open returned a descriptor this program now owns.
        Ok(UdpSocket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn fd(&self) -> i32 {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let iov = Iovec {
            buf: buf.as_ptr(),
            len: buf.len(),
        };
        let a = encode(to);
        let mut sent = 0;
        check(unsafe { raw::sock_send_to(self.fd(), &iov, 1, 0, &a, &mut sent) })?;
        Ok(sent as usize)
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let iov = Iovec {
            buf: buf.as_mut_ptr(),
            len: buf.len(),
        };
        let mut a = WasiAddr::default();
        let mut got = 0;
        check(unsafe { raw::sock_recv_from(self.fd(), &iov, 1, 0, &mut a, &mut got) })?;
        Ok((got as usize, decode(&a)))
    }
}

/// Resolve `host` (a NUL is added), filling at most `room` entries; the
/// addresses written and the total the name has.
pub fn resolve(host: &str, port: u16, room: u32) -> Result<(Vec<SocketAddr>, u32), u16> {
    let host = format!("{host}\0");
    let service = format!("{port}\0");
    let mut info = vec![AddrInfo::default(); room as usize + 1];
    let mut total = 0;
    let e = unsafe {
        raw::sock_addr_resolve(
            host.as_ptr(),
            service.as_ptr(),
            std::ptr::null(),
            info.as_mut_ptr(),
            room,
            &mut total,
        )
    };
    if e != 0 {
        return Err(e);
    }
    let n = total.min(room) as usize;
    Ok((info[..n].iter().map(|i| decode(&i.addr)).collect(), total))
}
