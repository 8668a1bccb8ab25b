//! Connection kinds: named bundles of what a connection is, as data.
//!
//! A grant can name a kind (`kind = "db"`): connections it allows are then
//! made as the kind says. `tcp` is plain TCP; `tls` is transparent TLS: the
//! host does the handshake, checks the peer's certificate against the name
//! the address was resolved from (or the kind's `server_name`), and the
//! guest reads and writes plaintext; `postgres-tls` first asks a PostgreSQL
//! server for TLS (its `SSLRequest`), then does the same. On a listening
//! address, a kind with a certificate and key terminates TLS for the
//! guest's listener. Files are named here and read elsewhere: this crate
//! does no I/O.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// What a connection of a kind speaks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Plain TCP: the guest's bytes as they are.
    #[default]
    Tcp,
    /// TLS done by the host; the guest sees plaintext.
    Tls,
    /// PostgreSQL's `SSLRequest` (the server answers `S`), then TLS.
    PostgresTls,
}

impl Protocol {
    /// Whether the host does TLS for the guest.
    pub fn is_tls(self) -> bool {
        !matches!(self, Protocol::Tcp)
    }

    /// The name a manifest uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::PostgresTls => "postgres-tls",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "tls" => Ok(Protocol::Tls),
            "postgres-tls" => Ok(Protocol::PostgresTls),
            _ => Err(format!(
                "unknown protocol `{s}`; expected one of tcp, tls, postgres-tls"
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The oldest TLS version a kind accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<TlsVersion, String> {
        match s {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            _ => Err(format!("unknown TLS version `{s}`; expected 1.2 or 1.3")),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

/// A connection kind (see the module docs). Paths are as written, relative
/// to where they were written (the binary resolves them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kind {
    /// Its name, which grants refer to.
    pub name: String,
    /// What it speaks.
    pub protocol: Protocol,
    /// The name the peer's certificate must carry and that SNI sends
    /// (default: the name the address was resolved from).
    pub server_name: Option<String>,
    /// PEM CA certificates to trust exactly (default: the webpki roots).
    pub ca: Option<PathBuf>,
    /// A client certificate chain (PEM) to present: mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// ALPN protocols to offer, in order.
    pub alpn: Vec<String>,
    /// The oldest TLS version accepted.
    pub min_version: TlsVersion,
    /// The most connections of this kind one instance has open at once.
    pub max_connections: Option<u32>,
    /// For listeners: the server certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// For listeners: the server's private key (PEM).
    pub key: Option<PathBuf>,
    /// For listeners: PEM CAs whose client certificates are required.
    pub client_ca: Option<PathBuf>,
    /// Present the workload's identity certificate (its SVID): as the
    /// client certificate of outgoing connections, as the server
    /// certificate of a listener.
    pub identity: bool,
    /// Admit only peers whose verified certificate carries one of these
    /// SPIFFE IDs (exact, or a prefix ending in `/*`); see
    /// [`crate::spiffe`].
    pub peer_ids: Vec<String>,
}

impl Kind {
    /// Whether connections of this kind are TLS, done by the host.
    pub fn is_tls(&self) -> bool {
        self.protocol.is_tls()
    }

    /// Whether it can terminate TLS on a listener (it has a certificate
    /// and key).
    pub fn serves_tls(&self) -> bool {
        (self.cert.is_some() && self.key.is_some()) || self.identity
    }

    /// What it does, in a few words (for `check` and `explain`).
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("protocol {}", self.protocol)];
        if let Some(n) = &self.server_name {
            parts.push(format!("server name {n}"));
        }
        if self.is_tls() {
            parts.push(match &self.ca {
                Some(ca) => format!("trusting the CAs in {}", ca.display()),
                None => "trusting the webpki roots".into(),
            });
            if let Some(c) = &self.client_cert {
                parts.push(format!("client certificate {}", c.display()));
            }
            if !self.alpn.is_empty() {
                parts.push(format!("ALPN {}", self.alpn.join(",")));
            }
            parts.push(format!("TLS {} or newer", self.min_version));
        }
        if let Some(n) = self.max_connections {
            parts.push(format!("at most {n} open at once"));
        }
        if let Some(c) = &self.cert {
            parts.push(format!("serving certificate {}", c.display()));
        }
        if let Some(c) = &self.client_ca {
            parts.push(format!(
                "requiring client certificates from {}",
                c.display()
            ));
        }
        if self.identity {
            parts.push("presenting the workload's identity".into());
        }
        if !self.peer_ids.is_empty() {
            parts.push(format!("admitting peers {}", self.peer_ids.join(",")));
        }
        parts.join(", ")
    }
}

/// The kinds of a policy are consistent with its grants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KindError {
    /// A grant names a kind that is not defined.
    #[error("rule {rule} names kind `{kind}`, which is not defined")]
    Unknown {
        /// The rule's id.
        rule: String,
        /// The kind it names.
        kind: String,
    },
    /// A TLS kind on an address grant has no server name to check.
    #[error(
        "rule {rule} grants TLS connections to an address block (kind `{kind}`), so the kind needs a server_name to check the peer's certificate against"
    )]
    NoServerName {
        /// The rule's id.
        rule: String,
        /// The kind.
        kind: String,
    },
    /// `require_tls` is set and a grant allows plain TCP connections.
    #[error(
        "rule {rule} allows plain TCP connections, but every connection must be TLS (require_tls); give it a TLS kind"
    )]
    PlainTcp {
        /// The rule's id.
        rule: String,
    },
    /// A listen grant names a TLS kind that has no certificate to serve.
    #[error(
        "rule {rule} allows listening as kind `{kind}`, a TLS kind without the cert and key to serve TLS with"
    )]
    NoCertificate {
        /// The rule's id.
        rule: String,
        /// The kind.
        kind: String,
    },
    /// A client certificate without its key, or the other way round.
    #[error("kind `{kind}` has a client certificate or key without the other")]
    HalfClientAuth {
        /// The kind.
        kind: String,
    },
    /// A server certificate without its key, or the other way round.
    #[error("kind `{kind}` has a certificate or key without the other")]
    HalfServerAuth {
        /// The kind.
        kind: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Policy, Ports, Rights, Rule, RuleTarget, Target};

    fn grant(id: &str, target: &str, rights: Rights) -> Rule {
        let target: RuleTarget = if let Ok(c) = target.parse() {
            RuleTarget::Net(c)
        } else {
            RuleTarget::Name(target.parse().unwrap())
        };
        Rule::allow(id, target, Ports::one(5432), rights)
    }

    fn tls(name: &str) -> Kind {
        Kind {
            name: name.into(),
            protocol: Protocol::Tls,
            ..Kind::default()
        }
    }

    #[test]
    fn grants_and_kinds_must_agree() {
        let by_name = grant("db", "db.internal", Rights::CONNECT).with_kind("db");
        let by_addr = grant("net", "10.0.0.0/8", Rights::CONNECT).with_kind("db");
        let plain = grant("plain", "10.0.0.0/8", Rights::CONNECT);
        // A name grant checks the pinned name; an address grant needs one.
        assert!(Policy::with_kinds([by_name.clone()], [tls("db")], false).is_ok());
        assert!(matches!(
            Policy::with_kinds([by_addr.clone()], [tls("db")], false),
            Err(KindError::NoServerName { .. })
        ));
        let named = Kind {
            server_name: Some("db.internal".into()),
            ..tls("db")
        };
        assert!(Policy::with_kinds([by_addr], [named], false).is_ok());
        // Unknown kinds, plain grants under require_tls, half a key pair,
        // a TLS listen grant without a certificate.
        assert!(matches!(
            Policy::with_kinds([by_name.clone()], [], false),
            Err(KindError::Unknown { .. })
        ));
        assert!(matches!(
            Policy::with_kinds([by_name.clone(), plain.clone()], [tls("db")], true),
            Err(KindError::PlainTcp { rule }) if rule == "plain"
        ));
        assert!(Policy::with_kinds([by_name.clone()], [tls("db")], true).is_ok());
        let half = Kind {
            client_cert: Some("c.pem".into()),
            ..tls("db")
        };
        assert!(matches!(
            Policy::with_kinds([by_name.clone()], [half], false),
            Err(KindError::HalfClientAuth { .. })
        ));
        let listen = grant("web", "127.0.0.1/32", Rights::BIND | Rights::LISTEN).with_kind("web");
        assert!(matches!(
            Policy::with_kinds([listen.clone()], [tls("web")], false),
            Err(KindError::NoCertificate { .. })
        ));
        let serving = Kind {
            cert: Some("s.pem".into()),
            key: Some("s.key".into()),
            ..tls("web")
        };
        assert!(Policy::with_kinds([listen], [serving], false).is_ok());
        // Kinds survive an embedder's additions; require_tls too.
        let p = Policy::with_kinds([by_name], [tls("db")], true).unwrap();
        let more = p
            .with_more([grant("lo", "127.0.0.1/32", Rights::BIND)], [])
            .unwrap();
        assert!(more.kind("db").is_some() && more.requires_tls());
        assert!(p.with_more([plain], []).is_err());
    }

    #[test]
    fn decisions_carry_the_allowing_grants_kind_and_denials_none() {
        let p = Policy::with_kinds(
            [
                grant("db", "db.internal", Rights::CONNECT).with_kind("db"),
                grant("other", "other.internal", Rights::CONNECT),
            ],
            [tls("db")],
            false,
        )
        .unwrap();
        let to = |host: &str| Target::Name {
            host: host.into(),
            port: Some(5432),
        };
        assert_eq!(
            p.decide(Action::Connect, &to("db.internal")).kind(),
            Some("db")
        );
        assert_eq!(
            p.decide(Action::Connect, &to("other.internal")).kind(),
            None
        );
        let denied = p.decide(Action::Connect, &to("elsewhere.internal"));
        assert!(!denied.is_allowed() && denied.kind().is_none());
    }
}
