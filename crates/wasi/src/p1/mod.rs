//! Warden's preview1 layer: sockets beside wasmtime-wasi's preview1.
//!
//! wasmtime-wasi's `WasiP1Ctx` implements preview1 for files, clocks and the
//! rest, but its socket calls are stubs and it cannot hold a socket. [`P1Ctx`]
//! wraps it and owns the guest-visible descriptor table: each guest fd is
//! either a descriptor of the inner context (under the inner context's own
//! number, which the guest never sees) or a socket from `warden-net`. So the
//! numbers never collide, whatever either side opens or closes, and
//! `fd_renumber` is a move in one table.
//!
//! Layout at start: 0-2 stdio; 3.. the listeners the operator pre-opened, in
//! order; then the pre-opened directories. wasi-libc finds preopens by
//! calling `fd_prestat_get` from fd 3 upward until `EBADF`, so a socket must
//! not answer `EBADF` there, or every directory after it would be lost:
//! [`link_p1`] answers for sockets with success and a prestat tag that is not
//! `dir`, which wasi-libc skips.
//!
//! Socket operations are a thin translation over `warden_net::socket`. The
//! OS sockets are non-blocking; a guest socket in blocking mode waits on the
//! tokio reactor, so a blocked guest costs no CPU and `--timeout` still
//! stops it. The trait's `sock_accept`/`sock_recv`/`sock_send` are
//! synchronous in wasmtime-wasi's bindings, so [`link_p1`] installs
//! asynchronous versions of those three that can wait.

mod call;
mod decode;
mod link;
mod link_ext;
mod passthrough;
mod poll;
mod sock_addr;
mod sock_ext;
mod sock_opts;
mod sockets;
mod table;

pub use decode::{IOV_MAX, MAX_SUBSCRIPTIONS, ciovec_bufs, iovec_bufs, subscriptions};
pub use link::link_p1;
pub use sock_addr::{
    ADDR_INFO_SIZE, ADDR_SIZE, read_addr, read_addr_ip, read_cstr, read_hints, write_addr,
    write_addr_infos,
};
pub use table::{MAX_FDS, MAX_NARROWED_POOLS, MAX_NARROWED_SPEC_BYTES, P1Ctx};
