//! The one connect, whichever face a guest connects through: decided as
//! the connect it is (its grant covers the ephemeral local bind, which is
//! no decision of its own), planned (the kind's cap and TLS), and started
//! on the kernel at once, so what the kernel knows right away (a refusing
//! peer on this host, no route) is the connect's first answer. A plain
//! plan is then the kernel's alone; any other is finished on a host task
//! ([`establish`]). Each face keeps only its own checks of the address and
//! its own words for the outcome (an errno, a wasi:sockets error code).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::SockRef;

use crate::conn::Connection;
use crate::{Action, Gate, Plan, Pool, Target};

/// What the gate said of a connect.
pub(crate) enum Decided {
    /// No grant allows it (`EACCES`, `access-denied`).
    Denied,
    /// Allowed, but the grant's kind refuses it now (its cap is full, or
    /// its TLS cannot be set up): a refused connection.
    Refused,
    /// Allowed, to be made as the plan says.
    Allowed(Plan),
}

/// Decide a connect to `addr` (within `pool`, for a socket opened from
/// one) and plan it. Call [`Gate::prepare`] for `connect` first.
pub(crate) fn decide(gate: &Gate, pool: Option<&Pool>, addr: SocketAddr) -> Decided {
    let target = Target::Addr(addr);
    let decision = gate.decide_in(pool, Action::Connect, target.clone());
    if !decision.is_allowed() {
        return Decided::Denied;
    }
    match gate.plan(&decision, &target, false) {
        Ok(plan) => {
            // On a trace, the connect shows as a span; a plain one is then
            // the kernel's to finish, so its span marks the start.
            if let Some(t) = gate.trace()
                && plan.is_plain()
            {
                let span = crate::gate::connect_span(t, addr);
                span.set(opentelemetry::KeyValue::new(
                    "warden.connect.finished_by",
                    "kernel",
                ));
            }
            Decided::Allowed(plan)
        }
        Err(_) => Decided::Refused,
    }
}

/// Start the kernel's connect on a non-blocking socket: made at once, or
/// under way (`EINPROGRESS`); any other error is the connect's outcome.
pub(crate) fn start(socket: SockRef<'_>, addr: SocketAddr) -> io::Result<()> {
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Finish a connect the kernel started whose plan asks for more: wait
/// until it is made (the kernel's `SO_ERROR` says whether), then
/// establish it as planned. TLS that fails is a refused connection.
pub(crate) async fn establish(
    gate: Arc<Gate>,
    plan: Plan,
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
) -> io::Result<Connection> {
    let span = gate.trace().map(|t| crate::gate::connect_span(t, addr));
    stream.writable().await?;
    if let Some(e) = stream.take_error()? {
        if let Some(s) = &span {
            s.fail("connect", e.to_string());
        }
        return Err(e);
    }
    drop(span);
    gate.establish(plan, stream, addr, gate.trace())
        .await
        .map_err(|_| io::Error::from_raw_os_error(libc::ECONNREFUSED))
}
