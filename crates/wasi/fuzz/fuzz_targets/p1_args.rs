//! The preview1 layer's argument decoding never panics and never lets a
//! guest make the host allocate past its bounds, whatever the guest's
//! memory holds and whatever pointers and counts it passes.
//! Run: `cd crates/wasi && cargo +nightly fuzz run p1_args`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_wasi::p1::{IOV_MAX, MAX_SUBSCRIPTIONS, ciovec_bufs, iovec_bufs, subscriptions};
use wiggle::{GuestMemory, GuestPtr};

fn word(data: &[u8], at: usize) -> u32 {
    data.get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fuzz_target!(|data: &[u8]| {
    // The first 24 bytes are the call's arguments; the rest is the guest's
    // memory (the arguments also point anywhere, in bounds or not).
    let (iov_ptr, iov_len) = (word(data, 0), word(data, 4));
    let (sub_ptr, sub_n) = (word(data, 8), word(data, 12));
    // Counts near the bounds are the interesting ones.
    let iov_len = iov_len % (IOV_MAX * 2);
    let sub_n = if word(data, 16) & 1 == 0 { sub_n % (MAX_SUBSCRIPTIONS * 2) } else { sub_n };
    let mut memory = data.get(24..).unwrap_or_default().to_vec();
    let mem = GuestMemory::Unshared(&mut memory);
    if let Ok(bufs) = iovec_bufs(&mem, GuestPtr::new((iov_ptr, iov_len))) {
        assert!(bufs.len() as u32 <= IOV_MAX);
        for b in bufs {
            assert!(b.len() > 0, "only non-empty buffers");
            let _ = mem.as_cow(b);
        }
    }
    if let Ok(bufs) = ciovec_bufs(&mem, GuestPtr::new((iov_ptr, iov_len))) {
        assert!(bufs.len() as u32 <= IOV_MAX);
    }
    match subscriptions(&mem, GuestPtr::new(sub_ptr), sub_n) {
        Ok(subs) => assert!(subs.len() as u32 == sub_n && sub_n <= MAX_SUBSCRIPTIONS),
        Err(_) => {}
    }
});
