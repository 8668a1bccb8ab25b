//! The errors of warden-net's gate: why a lookup gave no addresses, why a
//! connection the host makes for the guest was not made, and why the host
//! refuses (or cannot finish) a connection the policy allows.

use std::net::SocketAddr;

use crate::{Decision, LookupError};

/// Why [`Gate::resolve`] gave no addresses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Not a host name DNS could carry (over 253 bytes, a label over 63,
    /// characters a name cannot hold). Refused before any decision.
    #[error("`{0}` is not a valid host name")]
    InvalidName(String),
    /// The policy refused the lookup.
    #[error("resolving {} is denied by rule {}", .0.name().unwrap_or("the name"), .0.rule())]
    Denied(Box<Decision>),
    /// The lookup was allowed and failed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

/// Why [`Gate::connect`] gave no connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The policy refused the request or every address the name has.
    #[error("denied by rule {}: {}", .0.rule(), .0.reason())]
    Denied(Box<Decision>),
    /// The host is not a valid host name.
    #[error("`{0}` is not a valid host name")]
    InvalidName(String),
    /// The name did not resolve.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Every permitted address refused or failed.
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// The last address tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No permitted address answered in time.
    #[error("connecting timed out")]
    Timeout,
    /// The host would not make the connection as its kind says (a cap,
    /// a failed TLS handshake).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Why the host does not make (or finish) a connection the policy allows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The kind's connection cap is reached.
    #[error("kind `{kind}` allows {max} connections open at once, and that many are open")]
    Cap {
        /// The kind.
        kind: String,
        /// Its `max_connections`.
        max: u32,
    },
    /// A quota on what the guest holds open is reached.
    #[error("{} {max} {} open at once, and that many are open", scope_words(*.scope), .quota.counts())]
    Quota {
        /// Which.
        quota: crate::quota::Quota,
        /// Its bound.
        max: u32,
        /// Whose bound it is.
        scope: crate::quota::Scope,
    },
    /// No valid name to check the peer's certificate against.
    #[error("no server name to check the peer's TLS certificate against")]
    NoServerName,
    /// The kind's TLS configuration was not loaded into this gate.
    #[error("kind `{0}` has no TLS configuration loaded")]
    Unloaded(String),
    /// The preamble or the TLS handshake failed.
    #[error("TLS failed: {reason}")]
    Tls {
        /// Why.
        reason: String,
        /// Whether it was the peer's certificate that was refused.
        certificate: bool,
    },
}

/// Whose quota: words for [`Refusal::Quota`].
fn scope_words(scope: crate::quota::Scope) -> &'static str {
    match scope {
        crate::quota::Scope::Own => "the guest may hold",
        crate::quota::Scope::Server => "all apps together may hold",
    }
}
