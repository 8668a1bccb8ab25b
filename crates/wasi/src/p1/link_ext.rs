//! Linking the preview1 socket extension: WAMR's import names and
//! signatures in module `wasi_snapshot_preview1` (all arguments `i32`
//! except the `i64` timeouts; every call returns an errno), each a thin
//! decode of guest memory around [`P1Ctx`]'s operations.

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types;
use wiggle::{GuestMemory, GuestPtr};

use super::call::{fd_arg, with_memory};
use super::sock_addr::{
    read_addr, read_addr_ip, read_cstr, read_hints, write_addr, write_addr_infos, write_le,
};
use super::sock_opts::{OPTIONS, Width};
use super::table::P1Ctx;

const M: &str = "wasi_snapshot_preview1";
/// Warden's own calls, beside WAMR's (which has no pools).
const WARDEN: &str = "warden";
/// The longest pool spec `sock_pool_narrow` reads.
const MAX_POOL_SPEC: u32 = 4096;

/// The longest host name `sock_addr_resolve` reads (DNS allows 253; a
/// longer one is refused as too long, not decided).
const MAX_HOST: u32 = 253;
/// The longest service (port) string.
const MAX_SERVICE: u32 = 32;

fn put_u32(mem: &mut GuestMemory<'_>, at: i32, v: u32) -> Result<(), types::Error> {
    Ok(write_le(mem, at as u32, &v.to_le_bytes())?)
}

/// Add the socket extension's calls to `linker`.
pub fn link_sock_ext<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut P1Ctx,
) -> wasmtime::Result<()> {
    macro_rules! call {
        ($name:expr, ($($arg:ident : $ty:ty),*), |$p1:ident, $mem:ident| $body:expr) => {
            call!(M, $name, ($($arg: $ty),*), |$p1, $mem| $body)
        };
        ($module:expr, $name:expr, ($($arg:ident : $ty:ty),*), |$p1:ident, $mem:ident| $body:expr) => {
            linker.func_wrap_async(
                $module,
                $name,
                move |mut caller: Caller<'_, T>, ($($arg,)*): ($($ty,)*)| {
                    Box::new(async move {
                        with_memory(&mut caller, project, async |$p1, $mem| $body).await
                    })
                },
            )?;
        };
    }

    call!("sock_open", (poolfd: i32, af: i32, ty: i32, out: i32), |p1, mem| {
        let fd = p1.sock_open(poolfd, af, ty)?;
        put_u32(mem, out, u32::from(fd))
    });
    call!(WARDEN, "sock_pool_narrow", (poolfd: i32, spec: i32, out: i32), |p1, mem| {
        let spec = read_cstr(mem, spec as u32, MAX_POOL_SPEC)?;
        let fd = p1.sock_pool_narrow(poolfd, &spec)?;
        put_u32(mem, out, u32::from(fd))
    });
    call!("sock_bind", (fd: i32, addr: i32), |p1, mem| {
        let addr = read_addr(mem, addr as u32)?;
        Ok(p1.sock_bind(fd_arg(fd), addr)?)
    });
    call!("sock_connect", (fd: i32, addr: i32), |p1, mem| {
        let addr = read_addr(mem, addr as u32)?;
        Ok(p1.sock_connect(fd_arg(fd), addr).await?)
    });
    call!("sock_listen", (fd: i32, backlog: i32), |p1, _mem| {
        Ok(p1.sock_listen(fd_arg(fd), backlog)?)
    });
    call!("sock_addr_local", (fd: i32, out: i32), |p1, mem| {
        let addr = p1.sock_addr_local(fd_arg(fd))?;
        Ok(write_addr(mem, out as u32, addr)?)
    });
    call!("sock_addr_remote", (fd: i32, out: i32), |p1, mem| {
        let addr = p1.sock_addr_remote(fd_arg(fd))?;
        Ok(write_addr(mem, out as u32, addr)?)
    });
    call!(
        "sock_addr_resolve",
        (host: i32, service: i32, hints: i32, info: i32, info_size: i32, total_out: i32),
        |p1, mem| {
            let host = read_cstr(mem, host as u32, MAX_HOST)?;
            let service = if service == 0 {
                String::new()
            } else {
                read_cstr(mem, service as u32, MAX_SERVICE)?
            };
            let hints = read_hints(mem, hints as u32)?;
            let found = p1.sock_addr_resolve(&host, &service, hints).await?;
            let fits = found.len().min(info_size.max(0) as usize);
            write_addr_infos(mem, info as u32, &found[..fits])?;
            put_u32(mem, total_out, found.len() as u32)
        }
    );
    call!(
        "sock_send_to",
        (fd: i32, ciovs: i32, ciovs_len: i32, _flags: i32, addr: i32, out: i32),
        |p1, mem| {
            let to = read_addr(mem, addr as u32)?;
            let ciovs = GuestPtr::<[types::Ciovec]>::new((ciovs as u32, ciovs_len as u32));
            let n = p1.send_to(mem, fd_arg(fd), ciovs, Some(to)).await?;
            put_u32(mem, out, n)
        }
    );
    call!(
        "sock_recv_from",
        (fd: i32, iovs: i32, iovs_len: i32, flags: i32, addr: i32, out: i32),
        |p1, mem| {
            let iovs = GuestPtr::<[types::Iovec]>::new((iovs as u32, iovs_len as u32));
            let peek = types::Riflags::from_bits_truncate(flags as u16)
                .contains(types::Riflags::RECV_PEEK);
            let (n, from) = p1.recv_from(mem, fd_arg(fd), iovs, peek).await?;
            if let Some(from) = from {
                write_addr(mem, addr as u32, from)?;
            }
            put_u32(mem, out, n)
        }
    );
    call!("sock_close", (fd: i32), |p1, _mem| {
        Ok(p1.sock_close(fd_arg(fd))?)
    });

    for (name, opt, width) in OPTIONS {
        call!(&format!("sock_set_{name}"), (fd: i32, value: i32), |p1, _mem| {
            let value = match width {
                Width::Bool => u32::from(value & 0xff != 0),
                Width::U8 => (value & 0xff) as u32,
                Width::U32 => value as u32,
            };
            Ok(p1.set_opt(fd_arg(fd), opt, value)?)
        });
        call!(&format!("sock_get_{name}"), (fd: i32, out: i32), |p1, mem| {
            let v = p1.get_opt(fd_arg(fd), opt)?;
            match width {
                Width::Bool => Ok(write_le(mem, out as u32, &[u8::from(v != 0)])?),
                Width::U8 => Ok(write_le(mem, out as u32, &[v.min(255) as u8])?),
                Width::U32 => put_u32(mem, out, v),
            }
        });
    }
    for (name, send) in [("recv_timeout", false), ("send_timeout", true)] {
        call!(&format!("sock_set_{name}"), (fd: i32, us: i64), |p1, _mem| {
            Ok(p1.set_timeout(fd_arg(fd), send, us as u64)?)
        });
        call!(&format!("sock_get_{name}"), (fd: i32, out: i32), |p1, mem| {
            let us = p1.get_timeout(fd_arg(fd), send)?;
            Ok(write_le(mem, out as u32, &us.to_le_bytes())?)
        });
    }
    call!("sock_set_linger", (fd: i32, on: i32, secs: i32), |p1, _mem| {
        Ok(p1.set_linger(fd_arg(fd), on & 0xff != 0, secs)?)
    });
    call!("sock_get_linger", (fd: i32, on_out: i32, secs_out: i32), |p1, mem| {
        let (on, secs) = p1.get_linger(fd_arg(fd))?;
        write_le(mem, on_out as u32, &[u8::from(on)])?;
        Ok(write_le(mem, secs_out as u32, &secs.to_le_bytes())?)
    });
    call!("sock_set_ip_multicast_loop", (fd: i32, v6: i32, on: i32), |p1, _mem| {
        Ok(p1.set_multicast_loop(fd_arg(fd), v6 & 0xff != 0, on & 0xff != 0)?)
    });
    call!("sock_get_ip_multicast_loop", (fd: i32, v6: i32, out: i32), |p1, mem| {
        let on = p1.get_multicast_loop(fd_arg(fd), v6 & 0xff != 0)?;
        Ok(write_le(mem, out as u32, &[u8::from(on)])?)
    });
    for (name, join) in [("add_membership", true), ("drop_membership", false)] {
        call!(&format!("sock_set_ip_{name}"), (fd: i32, group: i32, iface: i32), |p1, mem| {
            let group = read_addr_ip(mem, group as u32)?;
            Ok(p1.set_membership(fd_arg(fd), group, iface as u32, join)?)
        });
    }
    Ok(())
}
