//! The HTTP egress dialer: the connection the host opens for a guest's
//! outgoing wasi:http request, decided on its name first, then on each
//! address the name resolves to (once, pinned), dialled only where
//! allowed, and made as the grant's kind says.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::Gate;

use crate::trace::{Child, Trace};
use crate::{Action, ConnectError, Connection, Target};

impl Gate {
    /// Open a connection on the guest's behalf (the HTTP egress path):
    /// `action` on `host:port` is decided first; a name is then resolved
    /// once on the host (and pinned), and only the addresses the gate
    /// allows `connect` to are tried, in order, each within `timeout`.
    /// The connection is made as the grant's kind says; with `https`, it is
    /// TLS even if the kind is not (with the webpki roots, and `host` as
    /// the server name).
    ///
    /// With `trace` (the span of the request it is for), a denial is an
    /// event on it, and each connect and TLS handshake a child span.
    pub async fn connect(
        self: &Arc<Self>,
        action: Action,
        host: &str,
        port: u16,
        timeout: Duration,
        https: bool,
        trace: Option<&Trace>,
    ) -> Result<Connection, ConnectError> {
        let literal = warden_policy::ip_literal(host);
        if literal.is_none() && warden_policy::normalize_name(host).is_none() {
            return Err(ConnectError::InvalidName(
                warden_policy::shorten(host).into_owned(),
            ));
        }
        self.prepare(Action::Connect).await;
        let decision = self.decide_within(
            None,
            action,
            Target::Name {
                host: host.to_string(),
                port: Some(port),
            },
            None,
            trace,
        );
        if !decision.is_allowed() {
            return Err(ConnectError::Denied(Box::new(decision)));
        }
        let plan = self.plan(
            &decision,
            &Target::Name {
                host: host.to_string(),
                port: Some(port),
            },
            https,
        )?;
        let candidates: Vec<SocketAddr> = match literal {
            // The decision above was on the address itself.
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => {
                let name = decision.name().unwrap_or(host).to_string();
                let mut allowed = Vec::new();
                let mut last_denial = None;
                for ip in self.lookup_pinned(&name).await? {
                    let addr = SocketAddr::new(ip, port);
                    // These addresses came from this name's pin: its rules,
                    // not those of other names sharing the address, decide.
                    let d = self.decide_within(
                        None,
                        Action::Connect,
                        Target::Addr(addr),
                        Some(&[&name]),
                        trace,
                    );
                    if d.is_allowed() {
                        allowed.push(addr);
                    } else {
                        last_denial = Some(d);
                    }
                }
                match (allowed.is_empty(), last_denial) {
                    (true, Some(d)) => return Err(ConnectError::Denied(Box::new(d))),
                    _ => allowed,
                }
            }
        };
        let mut last = None;
        for addr in candidates {
            let span = trace.map(|t| connect_span(t, addr));
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    drop(span);
                    // The request's span names the kind its TLS is made as.
                    if let (Some(t), Some((side, _))) = (trace, &plan.tls)
                        && let Some(kind) = &side.kind
                    {
                        t.set(opentelemetry::KeyValue::new(
                            "warden.tls.kind",
                            kind.name.clone(),
                        ));
                    }
                    return Ok(self.establish(plan, stream, addr, trace).await?);
                }
                Ok(Err(source)) => {
                    if let Some(s) = &span {
                        s.fail("connect", source.to_string());
                    }
                    last = Some(ConnectError::Io { addr, source });
                }
                Err(_) => {
                    if let Some(s) = &span {
                        s.fail("timeout", "the connect did not finish in time");
                    }
                    last = Some(ConnectError::Timeout);
                }
            }
        }
        Err(last.unwrap_or(ConnectError::Timeout))
    }
}

/// A TCP connect the host makes for the guest, as a span.
pub(crate) fn connect_span(trace: &Trace, addr: SocketAddr) -> Child {
    use opentelemetry::KeyValue;
    trace.child(
        "connect",
        opentelemetry::trace::SpanKind::Internal,
        vec![
            KeyValue::new("network.transport", "tcp"),
            KeyValue::new("network.peer.address", addr.ip().to_string()),
            KeyValue::new("network.peer.port", i64::from(addr.port())),
        ],
    )
}
