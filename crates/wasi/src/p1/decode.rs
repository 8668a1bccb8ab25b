//! Reading a guest's preview1 arguments out of its memory: iovec arrays
//! and poll subscriptions, with the bounds that keep a hostile guest from
//! making the host allocate (at most [`IOV_MAX`] iovecs, at most
//! [`MAX_SUBSCRIPTIONS`] subscriptions). Pure functions over a
//! [`GuestMemory`], so the fuzz target (`crates/wasi/fuzz`) drives them
//! directly.

use wasmtime_wasi::p1::types::{self, Errno};
use wiggle::{GuestMemory, GuestPtr, GuestType};

/// The most iovecs one call may pass (POSIX `IOV_MAX`).
pub const IOV_MAX: u32 = 1024;
/// The most subscriptions one `poll_oneoff` may pass: they are copied into
/// host memory, so a guest must not be able to ask for gigabytes.
pub const MAX_SUBSCRIPTIONS: u32 = 1 << 16;

/// The non-empty buffers of an iovec or ciovec array (at most `IOV_MAX`
/// entries); `parts` gives an entry's pointer and length.
fn io_bufs<T: GuestType>(
    mem: &GuestMemory<'_>,
    vecs: GuestPtr<[T]>,
    parts: fn(T) -> (GuestPtr<u8>, u32),
) -> Result<Vec<GuestPtr<[u8]>>, types::Error> {
    if vecs.len() > IOV_MAX {
        return Err(Errno::Inval.into());
    }
    let mut bufs = Vec::new();
    for entry in vecs.iter() {
        let (buf, len) = parts(mem.read(entry?)?);
        if len > 0 {
            bufs.push(buf.as_array(len));
        }
    }
    Ok(bufs)
}

/// The non-empty buffers of an iovec array.
pub fn iovec_bufs(
    mem: &GuestMemory<'_>,
    iovs: types::IovecArray,
) -> Result<Vec<GuestPtr<[u8]>>, types::Error> {
    io_bufs(mem, iovs, |v| (v.buf, v.buf_len))
}

/// The non-empty buffers of a ciovec array.
pub fn ciovec_bufs(
    mem: &GuestMemory<'_>,
    ciovs: types::CiovecArray,
) -> Result<Vec<GuestPtr<[u8]>>, types::Error> {
    io_bufs(mem, ciovs, |v| (v.buf, v.buf_len))
}

/// The `n` subscriptions at `subs` (0 or more than [`MAX_SUBSCRIPTIONS`]
/// is `EINVAL`).
pub fn subscriptions(
    mem: &GuestMemory<'_>,
    subs: GuestPtr<types::Subscription>,
    n: types::Size,
) -> Result<Vec<types::Subscription>, types::Error> {
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Err(Errno::Inval.into());
    }
    let mut all = Vec::with_capacity(n as usize);
    for sub in subs.as_array(n).iter() {
        all.push(mem.read(sub?)?);
    }
    Ok(all)
}
