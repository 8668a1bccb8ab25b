//! The preview1 socket extension's argument decoding (WAMR's address,
//! hint and string layouts, pool specs) never panics, never reads or
//! writes outside the guest's memory, and never grows past its bounds,
//! whatever the memory holds and whatever pointers the guest passes: a bad
//! pointer is `EFAULT`, a bad value another errno.
//! Run: `cd crates/wasi && cargo +nightly fuzz run p1_sock_args`.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use warden_wasi::p1::{
    ADDR_INFO_SIZE, ADDR_SIZE, read_addr, read_addr_ip, read_cstr, read_hints, write_addr,
    write_addr_infos,
};
use wasmtime_wasi::p1::types::Errno;
use wiggle::GuestMemory;

fn word(data: &[u8], at: usize) -> u32 {
    data.get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Pointers near the end of memory (and past it) are the interesting ones.
fn near_end(p: u32, len: usize) -> u32 {
    match p & 3 {
        0 => p,
        _ => (len as u32).wrapping_sub(p % 64),
    }
}

fuzz_target!(|data: &[u8]| {
    // The first 32 bytes are the call's arguments; the rest is memory.
    let mut memory = data.get(32..).unwrap_or_default().to_vec();
    let len = memory.len();
    let at = |i: usize| near_end(word(data, i), len);
    let fits = |p: u32, n: u32| p.checked_add(n).is_some_and(|end| end as usize <= len);
    let mut mem = GuestMemory::Unshared(&mut memory);

    let p = at(0);
    match read_addr(&mem, p) {
        Ok(_) => assert!(fits(p, ADDR_SIZE)),
        Err(e) => assert!(matches!(e, Errno::Fault | Errno::Afnosupport), "{e:?}"),
    }
    let p = at(4);
    if read_addr_ip(&mem, p).is_err_and(|e| e == Errno::Fault) {
        assert!(!fits(p, 20));
    }
    let p = at(8);
    match read_hints(&mem, p) {
        Ok(_) => assert!(p == 0 || fits(p, 12)),
        Err(e) => assert!(matches!(e, Errno::Fault | Errno::Inval), "{e:?}"),
    }
    let (p, max) = (at(12), word(data, 16) % 512);
    match read_cstr(&mem, p, max) {
        Ok(s) => assert!(s.len() as u32 <= max && fits(p, s.len() as u32 + 1)),
        Err(e) => assert!(
            matches!(e, Errno::Fault | Errno::Nametoolong | Errno::Inval),
            "{e:?}"
        ),
    }
    // Writes land inside memory or not at all.
    let before = mem_snapshot(&mem, len);
    let p = at(20);
    let addr: SocketAddr = if word(data, 24) & 1 == 0 {
        "127.0.0.1:80".parse().unwrap()
    } else {
        "[2001:db8::1]:443".parse().unwrap()
    };
    if write_addr(&mut mem, p, addr).is_err() {
        assert!(!fits(p, ADDR_SIZE));
        assert_eq!(before, mem_snapshot(&mem, len), "a failed write changes nothing");
    } else {
        assert_eq!(read_addr(&mem, p), Ok(addr));
    }
    let n = (word(data, 28) % 8) as usize;
    let entries = vec![(addr, 1); n];
    let p = at(28);
    if write_addr_infos(&mut mem, p, &entries).is_err() {
        assert!(!fits(p, ADDR_INFO_SIZE * n as u32));
    }
    // Pool specs come from guest memory too.
    if let Ok(spec) = read_cstr(&mem, at(12), 4096) {
        let _ = warden_policy::Pool::parse(&spec);
    }
});

fn mem_snapshot(mem: &GuestMemory<'_>, len: usize) -> Vec<u8> {
    let ptr = wiggle::GuestPtr::<[u8]>::new((0, len as u32));
    mem.as_cow(ptr).map(|c| c.to_vec()).unwrap_or_default()
}
