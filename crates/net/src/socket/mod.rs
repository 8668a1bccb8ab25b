//! Guests' sockets: one core, two thin faces named for their ABI.
//!
//! Every verb (bind, listen, accept, connect, each datagram) is put to the
//! [`crate::Gate`] here, as the action the guest asked for: a connect is
//! decided as a connect (its grant covers the ephemeral bind), a listen as
//! a listen, each accepted peer once ([`listener::admit`]). The host keeps
//! the byte streams, so it can hand over listeners the operator opened and
//! wrap streams in TLS when a connection kind says so.
//!
//! - [`operator`]: listeners the operator opens before the guest starts,
//!   and those waiting for a component's socket to bind their address
//!   ([`Activation`]).
//! - `bind`: the one bind (decide, then hand over the operator's listener
//!   or bind on the kernel), explicit or implicit, TCP or UDP.
//! - [`listener`]: the one listening socket (plain or TLS) every ABI
//!   accepts from, deciding each peer once.
//! - [`stream`]: a connection read and written through host calls.
//! - [`ready`]: readiness, confirmed with `poll(2)`.
//! - `connect`: the one connect (decide, plan, start on the kernel,
//!   establish what the plan asks for).
//! - [`component`]: the wasi:sockets (0.2 and 0.3) face: resources with a
//!   state machine, byte streams the faces in `warden-wasi` take.
//! - [`posix`]: the POSIX-style face (preview1's socket extension):
//!   sockets opened, connecting and datagrams, errors as errnos.
//!
//! The two faces differ where their ABIs do, and only there: wasi:sockets
//! IPv6 sockets are IPv6-only and errors are its `error-code`; preview1's
//! are dual-stack as Linux makes them and errors are errnos.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::Domain;

mod bind;
pub mod component;
mod connect;
pub mod listener;
pub mod operator;
pub mod posix;
pub mod ready;
pub mod stream;

pub use bind::errno;
pub use listener::Listener;
pub use operator::{Activation, BACKLOG, Bound, ListenOn, bind_listener, open_listener};
pub use ready::{Interest, Probe, Readiness, readiness_many};
pub use stream::Stream;

/// An IP version, as a socket is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6. Whether it carries IPv4 too is the face's: wasi:sockets
    /// sockets are IPv6-only; preview1's are dual-stack (IPv4-mapped peers
    /// are decided as their IPv4 address).
    V6,
}

impl Family {
    /// The unspecified address with port 0 (an ephemeral bind).
    pub fn unspecified(self) -> SocketAddr {
        match self {
            Family::V4 => (Ipv4Addr::UNSPECIFIED, 0).into(),
            Family::V6 => (Ipv6Addr::UNSPECIFIED, 0).into(),
        }
    }

    pub(crate) fn domain(self) -> Domain {
        match self {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
        }
    }
}
