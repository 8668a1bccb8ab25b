//! The memory layouts of the preview1 socket extension (WAMR's
//! `wasi_socket_ext.h`, byte for byte), read from and written to guest
//! memory with bounds checks: a bad pointer is `EFAULT`, an unknown
//! address kind `EAFNOSUPPORT`, never a trap.
//!
//! `__wasi_addr_t` (24 bytes): `u32 kind` (0 IPv4, 1 IPv6), then a union at
//! offset 4: IPv4 is four address bytes in network order and a `u16` port
//! at offset 8; IPv6 is eight `u16` segments (offsets 4..20) and a `u16`
//! port at offset 20. Ports and segments are little-endian (host order in
//! the guest), not network order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use wasmtime_wasi::p1::types::Errno;
use wiggle::{GuestMemory, GuestPtr};

/// The size of `__wasi_addr_t`.
pub const ADDR_SIZE: u32 = 24;
/// The size of `__wasi_addr_ip_t` (kind + the largest address, no port).
pub const ADDR_IP_SIZE: u32 = 20;
/// The size of `__wasi_addr_info_t` (an address and a socket type).
pub const ADDR_INFO_SIZE: u32 = 28;
/// The size of `__wasi_addr_info_hints_t`.
pub const HINTS_SIZE: u32 = 12;

/// `__wasi_sock_type_t`.
pub const SOCK_ANY: i32 = -1;
/// A datagram socket.
pub const SOCK_DGRAM: i32 = 0;
/// A stream socket.
pub const SOCK_STREAM: i32 = 1;

/// `__wasi_address_family_t`.
pub const AF_INET4: i32 = 0;
/// IPv6.
pub const AF_INET6: i32 = 1;
/// Either.
pub const AF_UNSPEC: i32 = 2;

fn read_bytes<const N: usize>(mem: &GuestMemory<'_>, at: u32) -> Result<[u8; N], Errno> {
    let ptr = GuestPtr::<[u8]>::new((at, N as u32));
    let bytes = mem.as_cow(ptr).map_err(|_| Errno::Fault)?;
    bytes.as_ref().try_into().map_err(|_| Errno::Fault)
}

fn write_bytes(mem: &mut GuestMemory<'_>, at: u32, bytes: &[u8]) -> Result<(), Errno> {
    let ptr = GuestPtr::<[u8]>::new((at, bytes.len() as u32));
    mem.copy_from_slice(bytes, ptr).map_err(|_| Errno::Fault)
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

/// Decode the IP of an address structure whose kind is at `b[0..4]` and
/// whose union starts at `b[4]`.
fn ip_of(b: &[u8]) -> Result<IpAddr, Errno> {
    match u32::from_le_bytes([b[0], b[1], b[2], b[3]]) {
        0 => Ok(Ipv4Addr::new(b[4], b[5], b[6], b[7]).into()),
        1 => {
            let mut seg = [0u16; 8];
            for (i, s) in seg.iter_mut().enumerate() {
                *s = u16_at(b, 4 + 2 * i);
            }
            Ok(Ipv6Addr::from(seg).into())
        }
        _ => Err(Errno::Afnosupport),
    }
}

/// Read a `__wasi_addr_t` at `at`.
pub fn read_addr(mem: &GuestMemory<'_>, at: u32) -> Result<SocketAddr, Errno> {
    let b: [u8; ADDR_SIZE as usize] = read_bytes(mem, at)?;
    let ip = ip_of(&b)?;
    let port = match ip {
        IpAddr::V4(_) => u16_at(&b, 8),
        IpAddr::V6(_) => u16_at(&b, 20),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Read a `__wasi_addr_ip_t` (no port) at `at`.
pub fn read_addr_ip(mem: &GuestMemory<'_>, at: u32) -> Result<IpAddr, Errno> {
    let b: [u8; ADDR_IP_SIZE as usize] = read_bytes(mem, at)?;
    ip_of(&b)
}

/// `addr` as a `__wasi_addr_t`.
pub fn encode_addr(addr: SocketAddr) -> [u8; ADDR_SIZE as usize] {
    let mut b = [0u8; ADDR_SIZE as usize];
    match addr {
        SocketAddr::V4(a) => {
            b[0..4].copy_from_slice(&0u32.to_le_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            b[8..10].copy_from_slice(&a.port().to_le_bytes());
        }
        SocketAddr::V6(a) => {
            b[0..4].copy_from_slice(&1u32.to_le_bytes());
            for (i, s) in a.ip().segments().iter().enumerate() {
                b[4 + 2 * i..6 + 2 * i].copy_from_slice(&s.to_le_bytes());
            }
            b[20..22].copy_from_slice(&a.port().to_le_bytes());
        }
    }
    b
}

/// Write `addr` as a `__wasi_addr_t` at `at`.
pub fn write_addr(mem: &mut GuestMemory<'_>, at: u32, addr: SocketAddr) -> Result<(), Errno> {
    write_bytes(mem, at, &encode_addr(addr))
}

/// Write `entries` (address, socket type) as `__wasi_addr_info_t`s at `at`.
pub fn write_addr_infos(
    mem: &mut GuestMemory<'_>,
    at: u32,
    entries: &[(SocketAddr, i32)],
) -> Result<(), Errno> {
    let mut bytes = Vec::with_capacity(entries.len() * ADDR_INFO_SIZE as usize);
    for (addr, ty) in entries {
        bytes.extend_from_slice(&encode_addr(*addr));
        bytes.extend_from_slice(&ty.to_le_bytes());
    }
    write_bytes(mem, at, &bytes)
}

/// `__wasi_addr_info_hints_t`: the socket type and family wanted, when
/// `hints_enabled` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    /// The socket type ([`SOCK_ANY`], [`SOCK_DGRAM`], [`SOCK_STREAM`]).
    pub ty: i32,
    /// The family ([`AF_INET4`], [`AF_INET6`], [`AF_UNSPEC`]).
    pub family: i32,
}

/// Read hints at `at` (a null pointer or `hints_enabled == 0`: none).
pub fn read_hints(mem: &GuestMemory<'_>, at: u32) -> Result<Hints, Errno> {
    let any = Hints {
        ty: SOCK_ANY,
        family: AF_UNSPEC,
    };
    if at == 0 {
        return Ok(any);
    }
    let b: [u8; HINTS_SIZE as usize] = read_bytes(mem, at)?;
    if b[8] == 0 {
        return Ok(any);
    }
    let hints = Hints {
        ty: i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        family: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    };
    if !matches!(hints.ty, SOCK_ANY | SOCK_DGRAM | SOCK_STREAM)
        || !matches!(hints.family, AF_INET4 | AF_INET6 | AF_UNSPEC)
    {
        return Err(Errno::Inval);
    }
    Ok(hints)
}

/// Read the NUL-terminated string at `at`, at most `max` bytes before the
/// NUL: a longer one is `ENAMETOOLONG` (no name DNS can carry is that
/// long), one that is not UTF-8 `EINVAL`.
pub fn read_cstr(mem: &GuestMemory<'_>, at: u32, max: u32) -> Result<String, Errno> {
    let mut out = Vec::new();
    let mut i = 0u32;
    loop {
        let p = at.checked_add(i).ok_or(Errno::Fault)?;
        let [byte]: [u8; 1] = read_bytes(mem, p)?;
        if byte == 0 {
            break;
        }
        if i >= max {
            return Err(Errno::Nametoolong);
        }
        out.push(byte);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Errno::Inval)
}

/// Write a little-endian value's bytes at `at`.
pub fn write_le(mem: &mut GuestMemory<'_>, at: u32, bytes: &[u8]) -> Result<(), Errno> {
    write_bytes(mem, at, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_in_wamr_layout() {
        for text in [
            "1.2.3.4:513",
            "[2001:db8::1:2]:65535",
            "[::ffff:127.0.0.1]:80",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut buf = [0u8; 64];
            let mut mem = GuestMemory::Unshared(&mut buf);
            write_addr(&mut mem, 8, addr).unwrap();
            assert_eq!(read_addr(&mem, 8).unwrap(), addr);
        }
        let b = encode_addr("1.2.3.4:513".parse().unwrap());
        // kind 0; octets in order; port 513 little-endian at offset 8.
        assert_eq!(&b[..10], &[0, 0, 0, 0, 1, 2, 3, 4, 1, 2]);
        let b = encode_addr("[2001:db8::1]:80".parse().unwrap());
        assert_eq!(&b[..8], &[1, 0, 0, 0, 0x01, 0x20, 0xb8, 0x0d]);
        assert_eq!(&b[20..22], &[80, 0]);
    }

    #[test]
    fn bad_structures_are_errnos() {
        let mut buf = [0u8; 32];
        buf[0] = 7;
        let mut mem = GuestMemory::Unshared(&mut buf);
        assert_eq!(read_addr(&mem, 0), Err(Errno::Afnosupport));
        // Runs past the end of memory.
        assert_eq!(read_addr(&mem, 20), Err(Errno::Fault));
        assert_eq!(read_addr(&mem, u32::MAX - 2), Err(Errno::Fault));
        assert_eq!(
            write_addr(&mut mem, 10, "1.2.3.4:5".parse().unwrap()),
            Err(Errno::Fault)
        );
        // A string with no NUL before the end of memory.
        let mut text = [b'a'; 16];
        let mem = GuestMemory::Unshared(&mut text);
        assert_eq!(read_cstr(&mem, 0, 100), Err(Errno::Fault));
        assert_eq!(read_cstr(&mem, 0, 4), Err(Errno::Nametoolong));
    }
}
