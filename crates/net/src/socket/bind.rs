//! Bind, once for every face and every implicit bind: the address is put
//! to the gate first (`bind` for TCP, `udp-bind` for UDP, within the
//! socket's pool), and only an allowed address is used, by handing over
//! the listener the operator pre-opened there (wasi:sockets' socket
//! activation) or by the kernel's bind.
//!
//! A listen or a first datagram on an unbound socket binds it implicitly
//! through the same call, to the unspecified address and port 0 (a
//! connect's ephemeral bind is not one: its grant covers it, see
//! `connect`). What the faces add is theirs: wasi:sockets sets
//! `SO_REUSEADDR` first (WASI binds are not held up by `TIME_WAIT`);
//! preview1 leaves it to the guest, as POSIX does.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::SockRef;

use super::operator::Activation;
use crate::{Action, Gate, Pool, Target};

/// An `io::Error` with an OS error number.
pub fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A denial, as the OS would say it (`EACCES`).
pub(crate) fn denied() -> io::Error {
    errno(libc::EACCES)
}

/// Decide `action` on `addr` for a socket opened from `pool` (if any): the
/// one decision behind every address a guest's socket uses but a
/// connect's, which `connect::decide` plans as well.
pub(crate) fn decide(
    gate: &Gate,
    pool: Option<&Pool>,
    action: Action,
    addr: SocketAddr,
) -> io::Result<()> {
    if gate
        .decide_in(pool, action, Target::Addr(addr))
        .is_allowed()
    {
        Ok(())
    } else {
        Err(denied())
    }
}

/// What an allowed bind did.
#[derive(Debug)]
pub(crate) enum Binding {
    /// The kernel bound the socket.
    Kernel,
    /// The operator had pre-opened a listener at the address: here it is,
    /// and the guest's own socket stays unbound.
    Operator(TcpListener),
}

/// Bind `socket` to `addr`, decided as `action` within `pool`; a listener
/// in `activation` at `addr` is handed over instead of binding.
pub(crate) fn bind(
    gate: &Gate,
    pool: Option<&Pool>,
    action: Action,
    socket: SockRef<'_>,
    addr: SocketAddr,
    activation: Option<&Activation>,
) -> io::Result<Binding> {
    decide(gate, pool, action, addr)?;
    if let Some(listener) = activation.and_then(|a| a.take(addr)) {
        return Ok(Binding::Operator(listener));
    }
    socket.bind(&addr.into())?;
    Ok(Binding::Kernel)
}
