//! Warden's per-instance network context: the gate, name resolution, the
//! audit log, and the sockets.
//!
//! Every network action a guest attempts (a socket bind, listen, accept or
//! connect, a UDP datagram, a name lookup, an outgoing HTTP request),
//! whatever ABI it arrives through, is decided by one function:
//! [`Gate::decide`]. The gate asks the instance's [`Policy`], with the names
//! the address was resolved from while those answers live (DNS pins, see
//! [`resolve`]) and the addresses of denied names, writes every decision to
//! the [`audit`] log, and tells the operator about each kind of denial once
//! (a [`report::Notice`], carrying the grant that would allow it as data:
//! the binary words it as a flag). The ABI layers in `warden-wasi` only
//! translate; they hold no policy of their own.
//!
//! Host-side network work for the guest also lives here, behind the gate:
//! [`Gate::resolve`] (a permitted lookup, pinned), [`Gate::connect`] (the
//! HTTP egress path: decide on the name, resolve once, connect only to the
//! checked addresses), and [`socket`] (guests' sockets: one core with a
//! face per ABI, each verb decided by the gate).

pub mod audit;
pub mod conn;
mod denied;
pub mod identity;
pub mod linelog;
pub mod out;
mod pgauth;
pub mod pumped;
pub mod quota;
pub mod rate;
pub mod report;
pub mod resolve;
pub mod socket;
mod sync;
pub mod timestamp;
pub mod tls;
pub mod trace;

mod error;
mod gate;

pub use audit::{AuditDest, AuditLog, AuditSink, AuditSummary, LineLog};
pub use conn::Connection;
pub use error::{ConnectError, Refusal, ResolveError};
pub use gate::{Gate, GateBuilder, MAX_HTTP_IN_FLIGHT, Observer, Plan, ResolvePermit};
pub use quota::{Held, Quota, Quotas, Tally};
pub use rate::{Bucket, Paced, Pacer, Rates};
pub use report::{MAX_REMOTE_REPORTED, MAX_REPORTED, Notice, Reporter};
pub use resolve::{DnsConfig, LookupError};
pub use tls::Tls;
pub use warden_policy::{
    Action, Decision, Policy, Pool, Remedy, Target, Transports, Verdict, shorten,
};
