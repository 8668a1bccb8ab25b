//! What every preview1 call Warden links by hand shares: the guest's
//! memory beside its [`P1Ctx`], and the errno the call returns. Used by
//! `link` (preview1's own calls Warden shadows) and `link_ext` (the socket
//! extension).

use wasmtime::Caller;
use wasmtime_wasi::p1::types::{self, Errno};
use wiggle::GuestMemory;

use super::table::P1Ctx;

/// A preview1 descriptor argument as wiggle's type.
pub(super) fn fd_arg(fd: i32) -> types::Fd {
    (fd as u32).into()
}

/// Run `f` with the guest's memory and its [`P1Ctx`], and turn its result
/// into the errno a preview1 call returns. Every call made here is a
/// socket call, whose bad arguments are errors, never traps: a pointer
/// outside memory (or misaligned) is `EFAULT`, though wiggle makes it a
/// trap for preview1's own calls, as WASI asks of them. Other traps stay
/// traps.
pub(super) async fn with_memory<T>(
    caller: &mut Caller<'_, T>,
    project: fn(&mut T) -> &mut P1Ctx,
    f: impl AsyncFnOnce(&mut P1Ctx, &mut GuestMemory<'_>) -> Result<(), types::Error>,
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Err(wasmtime::Error::msg(
            "preview1 sockets need the module to export an unshared `memory`",
        ));
    };
    let (data, store) = memory.data_and_store_mut(caller);
    let mut mem = GuestMemory::Unshared(data);
    match f(project(store), &mut mem).await {
        Ok(()) => Ok(Errno::Success as i32),
        Err(e) => match e.downcast() {
            Ok(errno) => Ok(errno as i32),
            Err(trap) if trap.downcast_ref::<wiggle::GuestError>().is_some() => {
                Ok(Errno::Fault as i32)
            }
            Err(trap) => Err(trap),
        },
    }
}
