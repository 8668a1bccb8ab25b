//! Linking preview1: wasmtime-wasi's bindings over [`P1Ctx`], with the
//! calls its typed bindings cannot express done here (waiting socket
//! calls, a socket-aware `fd_prestat_get`).

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self, WasiSnapshotPreview1 as Inner};
use wiggle::GuestPtr;

use super::call::{fd_arg, with_memory};
use super::table::P1Ctx;
use crate::WasiError;

/// Link preview1 for core modules: wasmtime-wasi's implementation behind
/// [`P1Ctx`], plus the asynchronous socket calls and the socket-aware
/// `fd_prestat_get` described in the module docs.
pub fn link_p1<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut P1Ctx,
) -> Result<(), WasiError> {
    const M: &str = "wasi_snapshot_preview1";
    wasi_snapshot_preview1::add_to_linker(linker, project).map_err(WasiError::Link)?;
    linker.allow_shadowing(true);
    let shadow = (|| -> wasmtime::Result<()> {
        linker.func_wrap_async(
            M,
            "sock_accept",
            move |mut caller: Caller<'_, T>, (fd, flags, out): (i32, i32, i32)| {
                Box::new(async move {
                    with_memory(&mut caller, project, async |p1, mem| {
                        let new = p1
                            .accept(fd_arg(fd), types::Fdflags::from_bits_truncate(flags as u16))
                            .await?;
                        mem.write(GuestPtr::<types::Fd>::new(out as u32), new)?;
                        Ok(())
                    })
                    .await
                })
            },
        )?;
        linker.func_wrap_async(
            M,
            "sock_recv",
            move |mut caller: Caller<'_, T>,
                  (fd, iovs, iovs_len, flags, out_len, out_flags): (
                i32,
                i32,
                i32,
                i32,
                i32,
                i32,
            )| {
                Box::new(async move {
                    with_memory(&mut caller, project, async |p1, mem| {
                        let flags = types::Riflags::from_bits_truncate(flags as u16);
                        let iovs = GuestPtr::<[types::Iovec]>::new((iovs as u32, iovs_len as u32));
                        let peek = flags.contains(types::Riflags::RECV_PEEK);
                        let waitall = flags.contains(types::Riflags::RECV_WAITALL);
                        let n = p1.recv(mem, fd_arg(fd), iovs, peek, waitall).await?;
                        mem.write(GuestPtr::<types::Size>::new(out_len as u32), n)?;
                        mem.write(
                            GuestPtr::<types::Roflags>::new(out_flags as u32),
                            types::Roflags::empty(),
                        )?;
                        Ok(())
                    })
                    .await
                })
            },
        )?;
        linker.func_wrap_async(
            M,
            "sock_send",
            move |mut caller: Caller<'_, T>,
                  (fd, ciovs, ciovs_len, _flags, out_len): (i32, i32, i32, i32, i32)| {
                Box::new(async move {
                    with_memory(&mut caller, project, async |p1, mem| {
                        let ciovs =
                            GuestPtr::<[types::Ciovec]>::new((ciovs as u32, ciovs_len as u32));
                        let n = p1.send(mem, fd_arg(fd), ciovs).await?;
                        mem.write(GuestPtr::<types::Size>::new(out_len as u32), n)?;
                        Ok(())
                    })
                    .await
                })
            },
        )?;
        linker.func_wrap_async(
            M,
            "fd_prestat_get",
            move |mut caller: Caller<'_, T>, (fd, out): (i32, i32)| {
                Box::new(async move {
                    with_memory(&mut caller, project, async |p1, mem| {
                        if p1.is_warden_fd(fd_arg(fd)) {
                            // Success with a tag that is not `dir` (0): wasi-libc
                            // skips the descriptor and keeps looking for preopens.
                            // Check alignment and bounds before writing anything:
                            // a bad pointer is EFAULT and nothing is half-written.
                            let at = out as u32;
                            let len_at = at
                                .checked_add(4)
                                .filter(|_| at.is_multiple_of(4))
                                .ok_or(Errno::Fault)?;
                            mem.write(GuestPtr::<u32>::new(len_at), 0u32)?;
                            mem.write(GuestPtr::<u8>::new(at), 1u8)?;
                            return Ok(());
                        }
                        let prestat = Inner::fd_prestat_get(p1, mem, fd_arg(fd))?;
                        mem.write(GuestPtr::<types::Prestat>::new(out as u32), prestat)?;
                        Ok(())
                    })
                    .await
                })
            },
        )?;
        Ok(())
    })();
    linker.allow_shadowing(false);
    shadow.map_err(WasiError::Link)?;
    super::link_ext::link_sock_ext(linker, project).map_err(WasiError::Link)
}
