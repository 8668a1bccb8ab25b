//! What the host tells its operator, as data.
//!
//! The host writes no line of its own: it hands each [`Event`] to the
//! [`Events`] sink its embedder gives in the run's or the server's
//! configuration (the `warden` binary words them on its stderr, the
//! containerd shim on the container's). `Display` words each one plainly
//! and knows no flag names; a binary may add the flag that applies. Denials
//! and TLS failures of a guest are not events here: the gate reports them
//! through its own [`warden_net::Reporter`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warden_net::AuditSummary;

use crate::LimitHit;

/// Where the host's events go.
pub type Events = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Something the operator is told.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Progress, in verbose runs only: the program's kind, the cache,
    /// timings, the apps a server hosts.
    Progress(&'a str),
    /// The compile cache cannot be used; programs are compiled each time.
    CacheUnusable(&'a str),
    /// An entry of the compile cache is unusable; the program is compiled
    /// again.
    CacheEntryIgnored {
        /// The entry.
        path: &'a Path,
        /// Why.
        why: &'a str,
    },
    /// The compiled code could not be stored in the cache.
    CacheWriteFailed(&'a str),
    /// A listener pre-opened for a guest listens.
    Listening {
        /// Its preview1 descriptor, for a preview1 guest.
        fd: Option<u32>,
        /// Its name.
        name: &'a str,
        /// Its address.
        addr: SocketAddr,
        /// Whether the host terminates TLS on it.
        tls: bool,
    },
    /// A limit stopped a guest that was stuck in the host, and the process
    /// ends (the watchdog).
    GuestStopped(&'a LimitHit),
    /// A signal ended the process.
    StoppedBy(&'a str),
    /// The audit log did not write everything (only said when something
    /// was dropped, lost or rotated).
    Audit(&'a AuditSummary),
    /// Audit mode let through this many decisions the policy denies
    /// (said at the end of a run, and of each app when a server stops).
    WouldDenied {
        /// The app, under `serve`.
        app: Option<&'a str>,
        /// How many.
        count: u64,
    },
    /// `serve`'s access log did not write everything (as [`Event::Audit`]).
    AccessLog(&'a AuditSummary),
    /// Where a server serves (the first line a server says).
    Serving {
        /// `http` or `https`.
        scheme: &'a str,
        /// The address it listens on.
        addr: SocketAddr,
    },
    /// Where a server's metrics are served.
    Metrics(SocketAddr),
    /// Something about the engine worth knowing (a fallback taken).
    Note(&'a str),
    /// The server's certificate was reloaded.
    CertificateReloaded {
        /// The new certificate's subject.
        subject: &'a str,
        /// When it expires.
        expires: &'a str,
    },
    /// The certificate could not be reloaded; the old one is still served.
    CertificateKept(&'a str),
    /// A reload was asked for, and there is no certificate to reload.
    NoCertificate,
    /// A server stops; requests in flight have `grace` to finish.
    Stopping {
        /// The signal that asked.
        signal: &'a str,
        /// How long requests in flight get.
        grace: Duration,
    },
    /// Requests still running when the shutdown grace ran out.
    Abandoned(usize),
    /// A request failed: the guest trapped, panicked or gave no response
    /// (before its response began: a 500), or failed while its response
    /// was streaming (`after_head`: the response was cut).
    RequestFailed {
        /// The app.
        app: &'a str,
        /// The request id.
        id: &'a str,
        /// Its method.
        method: &'a str,
        /// Its path.
        path: &'a str,
        /// What failed.
        why: &'a str,
        /// Whether its response had begun.
        after_head: bool,
    },
    /// A reused (WASI 0.3) instance failed with no request to tell.
    InstanceFailed {
        /// The app.
        app: &'a str,
        /// What failed.
        why: &'a str,
    },
}

impl std::fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Progress(msg) => f.write_str(msg),
            Event::CacheUnusable(why) => {
                write!(f, "warning: not using the compile cache: {why}")
            }
            Event::CacheEntryIgnored { path, why } => write!(
                f,
                "warning: ignoring compile cache entry {}: {why}; recompiling",
                path.display()
            ),
            Event::CacheWriteFailed(why) => {
                write!(f, "warning: cannot write the compile cache: {why}")
            }
            Event::Listening {
                fd,
                name,
                addr,
                tls,
            } => {
                let tls = if *tls {
                    " (TLS, terminated by Warden)"
                } else {
                    ""
                };
                match fd {
                    Some(fd) => write!(f, "fd {fd} ({name}) listening on {addr}{tls}"),
                    None => write!(
                        f,
                        "{name} (for the guest's bind of that address) listening on {addr}{tls}"
                    ),
                }
            }
            Event::GuestStopped(hit) => write!(f, "guest stopped: {hit}"),
            Event::StoppedBy(signal) => write!(f, "stopped by {signal}"),
            Event::Audit(s) => log_summary(f, "audit", "records", s),
            Event::WouldDenied { app, count } => {
                write!(f, "audit mode: ")?;
                if let Some(app) = app {
                    write!(f, "app {app}: ")?;
                }
                write!(
                    f,
                    "{count} decision{} the policy denies {} let through (recorded as would-deny)",
                    if *count == 1 { "" } else { "s" },
                    if *count == 1 { "was" } else { "were" }
                )
            }
            Event::AccessLog(s) => log_summary(f, "access log", "lines", s),
            Event::Serving { scheme, addr } => write!(f, "serving {scheme}://{addr}/"),
            Event::Metrics(addr) => write!(f, "metrics on http://{addr}/metrics"),
            Event::Note(note) => write!(f, "note: {note}"),
            Event::CertificateReloaded { subject, expires } => write!(
                f,
                "reloaded the certificate ({subject}, valid until {expires})"
            ),
            Event::CertificateKept(why) => write!(
                f,
                "cannot reload the certificate, still serving the old one: {why}"
            ),
            Event::NoCertificate => f.write_str("SIGHUP: no certificate to reload"),
            Event::Stopping { signal, grace } => write!(
                f,
                "{signal}: stopping; requests in flight have {grace:?} to finish"
            ),
            Event::Abandoned(n) => write!(
                f,
                "{n} requests were still running when the shutdown grace ran out"
            ),
            Event::RequestFailed {
                app,
                id,
                method,
                path,
                why,
                after_head,
            } => {
                let when = if *after_head {
                    " after its response began"
                } else {
                    ""
                };
                write!(
                    f,
                    "{app} request {id} ({method} {path}) failed{when}: {why}"
                )
            }
            Event::InstanceFailed { app, why } => {
                write!(f, "an instance of {app} failed: {why}")
            }
        }
    }
}

/// A log's summary in words: what was dropped, lost or rotated.
fn log_summary(
    f: &mut std::fmt::Formatter<'_>,
    log: &str,
    items: &str,
    s: &AuditSummary,
) -> std::fmt::Result {
    let mut said = Vec::new();
    if s.dropped > 0 {
        said.push(format!(
            "{} {items} dropped because the log writer fell behind",
            s.dropped
        ));
    }
    if let Some(error) = &s.error {
        said.push(format!(
            "writing the log failed after {} {items} were written: {error}; {} {items} were lost",
            s.written, s.lost
        ));
    }
    if s.rotated > 0 {
        said.push(format!(
            "the log reached its maximum size and was rotated {} times; the {items} before the last rotation are in its .1 file",
            s.rotated
        ));
    }
    write!(f, "{log}: {}", said.join("; "))
}

impl Event<'_> {
    /// Whether a log summary has anything to say.
    pub fn worth_saying(summary: &AuditSummary) -> bool {
        summary.dropped > 0 || summary.error.is_some() || summary.rotated > 0
    }
}

/// Tell what the audit log could not write, if anything.
/// What a gate has to say at its end: what its audit log lost, and in
/// audit mode how many denials it let through (`app`: under `serve`).
pub(crate) fn report_gate(events: &crate::Events, gate: &warden_net::Gate, app: Option<&str>) {
    report_audit(events, gate.finish());
    if gate.mode() == warden_policy::Mode::Audit {
        events(&Event::WouldDenied {
            app,
            count: gate.would_denied(),
        });
    }
}

pub(crate) fn report_audit(events: &crate::Events, summary: Option<warden_net::AuditSummary>) {
    if let Some(summary) = summary
        && Event::worth_saying(&summary)
    {
        events(&Event::Audit(&summary));
    }
}
