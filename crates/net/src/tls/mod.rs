//! Transparent TLS: the host speaks TLS for the guest, in and out.
//!
//! A grant's connection kind (see [`warden_policy::Kind`]) says what its
//! connections are on the wire. For a TLS kind the host makes the
//! connection, runs the kind's preamble (PostgreSQL's `SSLRequest`, say),
//! does the handshake with the server name the gate pinned the address
//! from (or the kind's `server_name`; never a name the guest chose),
//! checks the peer's certificate against the kind's CAs, and hands the
//! guest a plaintext byte stream. On a listener with a certificate, the
//! host accepts, does the handshake (mutual, if the kind requires client
//! certificates) on its own time, and the guest accepts only connections
//! that finished it. Every outcome is an audit record (`tls-connect`,
//! `tls-accept`); a failure is said once on stderr.
//!
//! [`Tls`] holds the configurations built from the kinds' files, read and
//! checked once when the policy is loaded. The ABI faces never see TLS:
//! they get a [`Connection`](crate::conn::Connection) that reads and writes
//! plaintext.

mod client;
pub mod material;
pub(crate) mod server;
mod spiffe;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use warden_policy::{Kind, Protocol, TlsVersion};

pub use client::Preamble;
pub(crate) use client::handshake;
pub use material::{CertInfo, MaterialError};
pub use server::{Acceptor, MAX_HANDSHAKING, MAX_READY};

/// How long the host waits for a TLS handshake (and a kind's preamble)
/// unless told otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a kind's TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("kind `{kind}`: {problem}")]
pub struct TlsError {
    /// The kind.
    pub kind: String,
    /// What is wrong.
    #[source]
    pub problem: Problem,
}

/// What is wrong with a kind's TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A file of TLS material.
    #[error(transparent)]
    Material(#[from] MaterialError),
    /// A private key that is not the certificate's.
    #[error("the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate chain.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("{0}")]
    Config(String),
    /// The kind presents the workload's identity, and none is configured.
    #[error(
        "it presents the workload's identity (identity = true), and no identity issuer is configured"
    )]
    NoIdentity,
}

/// One outgoing TLS configuration (a kind's, or the default).
#[derive(Debug)]
pub struct ClientSide {
    /// The kind (`None`: the default for `https://` requests on grants
    /// without a TLS kind: the webpki roots, no client certificate).
    pub kind: Option<Arc<Kind>>,
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) preamble: Preamble,
}

/// One listening TLS configuration. Its certificate can be replaced while
/// it serves ([`ServerSide::reload`]): handshakes after the reload use the
/// new one, connections already made keep theirs.
pub struct ServerSide {
    /// The kind.
    pub kind: Arc<Kind>,
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    /// The certificate from the kind's files (`None`: the workload's
    /// identity, which renews itself).
    certificate: Option<Arc<Reloadable>>,
}

/// The certificate a server presents, replaceable.
#[derive(Debug)]
struct Reloadable(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl rustls::server::ResolvesServerCert for Reloadable {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl ServerSide {
    /// Read the kind's certificate and key again and serve them from now
    /// on; on an error the old ones stay. Returns what the new certificate
    /// says.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        let fail = |problem| TlsError {
            kind: self.kind.name.clone(),
            problem,
        };
        let Some(certificate) = &self.certificate else {
            return Err(fail(Problem::Config(
                "it presents the workload's identity, which renews itself".into(),
            )));
        };
        let (key, info) = certified_key(&self.kind).map_err(fail)?;
        *certificate.0.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(info)
    }

    /// Do the server's side of a handshake on `tcp`: the connection (its
    /// plaintext), and the ALPN protocol agreed, if any.
    pub async fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<(crate::conn::Connection, Option<Vec<u8>>)> {
        let tls = self.acceptor.accept(tcp).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        Ok((
            crate::conn::Connection::tls(tokio_rustls::TlsStream::Server(tls), None),
            alpn,
        ))
    }
}

/// A kind's certificate chain and key, checked to belong together.
fn certified_key(kind: &Kind) -> Result<(Arc<rustls::sign::CertifiedKey>, CertInfo), Problem> {
    let (Some(cert), Some(key)) = (&kind.cert, &kind.key) else {
        unreachable!("only kinds that serve TLS")
    };
    let chain = material::read_chain(cert)?;
    let info = material::describe_chain(cert)?;
    let certified =
        rustls::sign::CertifiedKey::from_der(chain, material::read_key(key)?, &provider())
            .map_err(|e| key_error(e, cert, key))?;
    Ok((Arc::new(certified), info))
}

/// The TLS configurations of a policy's kinds, built once.
pub struct Tls {
    clients: HashMap<String, Arc<ClientSide>>,
    servers: HashMap<String, Arc<ServerSide>>,
    default_client: OnceLock<Arc<ClientSide>>,
    handshake_timeout: Duration,
    identity: Option<Arc<crate::identity::Identity>>,
}

impl std::fmt::Debug for ServerSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSide")
            .field("kind", &self.kind.name)
            .finish()
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("clients", &self.clients.keys())
            .field("servers", &self.servers.keys())
            .finish()
    }
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            clients: HashMap::new(),
            servers: HashMap::new(),
            default_client: OnceLock::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            identity: None,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(min: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    match min {
        TlsVersion::V1_2 => rustls::ALL_VERSIONS,
        TlsVersion::V1_3 => &TLS13_ONLY,
    }
}

fn config_error(e: rustls::Error) -> Problem {
    Problem::Config(e.to_string())
}

/// The webpki root CAs (Mozilla's), the default trust.
fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

impl Tls {
    /// Read and check the files of every kind, and build their
    /// configurations: a client configuration for each TLS kind, a server
    /// configuration for each kind with a certificate and key.
    /// `handshake_timeout` bounds every handshake and preamble.
    pub fn load<'a>(
        kinds: impl IntoIterator<Item = &'a Arc<Kind>>,
        handshake_timeout: Duration,
    ) -> Result<Tls, TlsError> {
        Tls::load_with(kinds, handshake_timeout, None)
    }

    /// As [`Tls::load`], with the workload's `identity` for the kinds that
    /// present it (`identity = true`).
    pub fn load_with<'a>(
        kinds: impl IntoIterator<Item = &'a Arc<Kind>>,
        handshake_timeout: Duration,
        identity: Option<Arc<crate::identity::Identity>>,
    ) -> Result<Tls, TlsError> {
        let mut tls = Tls {
            handshake_timeout,
            identity,
            ..Tls::default()
        };
        for kind in kinds {
            let fail = |problem| TlsError {
                kind: kind.name.clone(),
                problem,
            };
            if kind.is_tls() {
                let side = client_side(kind, tls.identity.as_ref()).map_err(fail)?;
                tls.clients.insert(kind.name.clone(), Arc::new(side));
            }
            if kind.serves_tls() {
                match server_side(kind, tls.identity.as_ref()) {
                    Ok(side) => {
                        tls.servers.insert(kind.name.clone(), Arc::new(side));
                    }
                    // An outgoing kind that presents the identity cannot
                    // always serve too (its peer_ids are checked against
                    // its `ca`, and a listener needs a `client_ca`): it
                    // gets no listening side, and a listener granted with
                    // it is refused (`Refusal::Unloaded`), closed.
                    Err(_) if kind.identity && kind.cert.is_none() && kind.is_tls() => {}
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        Ok(tls)
    }

    /// The outgoing configuration of kind `name`, if it is a TLS kind.
    pub fn client(&self, name: &str) -> Option<&Arc<ClientSide>> {
        self.clients.get(name)
    }

    /// Every listening configuration, by kind name.
    pub fn servers(&self) -> impl Iterator<Item = &Arc<ServerSide>> {
        self.servers.values()
    }

    /// The listening configuration of kind `name`, if it has one.
    pub fn server(&self, name: &str) -> Option<&Arc<ServerSide>> {
        self.servers.get(name)
    }

    /// The configuration for an `https://` request on a grant without a
    /// TLS kind: the webpki roots, TLS 1.2 or newer, no client
    /// certificate, ALPN `http/1.1`.
    pub fn default_client(&self) -> Arc<ClientSide> {
        self.default_client
            .get_or_init(|| {
                let mut config = ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(rustls::ALL_VERSIONS)
                    .expect("ring supports TLS 1.2 and 1.3")
                    .with_root_certificates(webpki_roots())
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(ClientSide {
                    kind: None,
                    config: Arc::new(config),
                    preamble: Preamble::None,
                })
            })
            .clone()
    }

    /// How long a handshake (with its preamble) may take.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The workload's identity, if it has one.
    pub fn identity(&self) -> Option<&Arc<crate::identity::Identity>> {
        self.identity.as_ref()
    }

    /// The ID a handshake of kind `kind` presented as Warden's own, if
    /// that kind presents the workload's identity.
    pub(crate) fn local_id(&self, kind: Option<&str>) -> Option<String> {
        let kind = kind?;
        let presents = self
            .clients
            .get(kind)
            .and_then(|c| c.kind.as_ref())
            .is_some_and(|k| k.identity)
            || self.servers.get(kind).is_some_and(|s| s.kind.identity);
        presents
            .then(|| self.identity.as_ref().map(|i| i.id().to_string()))
            .flatten()
    }
}

fn client_side(
    kind: &Arc<Kind>,
    identity: Option<&Arc<crate::identity::Identity>>,
) -> Result<ClientSide, Problem> {
    let roots = match &kind.ca {
        Some(path) => material::read_roots(path)?,
        None => webpki_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(kind.min_version))
        .map_err(config_error)?;
    // With peer_ids, a SPIFFE server (no DNS name) is checked by its ID.
    let builder = if kind.peer_ids.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(spiffe::ServerIds {
                roots: Arc::new(roots),
                ids: kind.peer_ids.clone(),
                provider: provider(),
            }))
    };
    let mut config = match (&kind.client_cert, &kind.client_key, kind.identity) {
        (Some(_), _, true) => {
            return Err(Problem::Config(
                "it presents either a client_cert or the workload's identity, not both".into(),
            ));
        }
        (_, _, true) => {
            let identity = identity.ok_or(Problem::NoIdentity)?;
            let mut config = builder.with_client_cert_resolver(identity.clone());
            // A session resumed under another identity would keep its
            // certificate: this configuration is the identity's alone, and
            // resumes nothing.
            config.resumption = rustls::client::Resumption::disabled();
            config
        }
        (Some(cert), Some(key), false) => builder
            .with_client_auth_cert(material::read_chain(cert)?, material::read_key(key)?)
            .map_err(|e| key_error(e, cert, key))?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = kind.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(ClientSide {
        kind: Some(kind.clone()),
        config: Arc::new(config),
        preamble: match kind.protocol {
            Protocol::PostgresTls => Preamble::Postgres,
            _ => Preamble::None,
        },
    })
}

fn server_side(
    kind: &Arc<Kind>,
    identity: Option<&Arc<crate::identity::Identity>>,
) -> Result<ServerSide, Problem> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(kind.min_version))
        .map_err(config_error)?;
    let builder = match &kind.client_ca {
        Some(ca) => {
            let roots = Arc::new(material::read_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| Problem::Config(e.to_string()))?;
            if kind.peer_ids.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(Arc::new(spiffe::ClientIds {
                    inner: verifier,
                    ids: kind.peer_ids.clone(),
                }))
            }
        }
        None if !kind.peer_ids.is_empty() => {
            return Err(Problem::Config(
                "peer_ids needs client_ca, the trust bundle peers are verified against".into(),
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let (mut config, certificate) = if kind.identity && kind.cert.is_none() {
        let identity = identity.ok_or(Problem::NoIdentity)?;
        (builder.with_cert_resolver(identity.clone()), None)
    } else {
        let (certified, _) = certified_key(kind)?;
        let certificate = Arc::new(Reloadable(std::sync::RwLock::new(certified)));
        (
            builder.with_cert_resolver(certificate.clone()),
            Some(certificate),
        )
    };
    config.alpn_protocols = kind.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(ServerSide {
        kind: kind.clone(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        certificate,
    })
}

fn key_error(e: rustls::Error, cert: &std::path::Path, key: &std::path::Path) -> Problem {
    match e {
        rustls::Error::InconsistentKeys(_) => Problem::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        },
        other => config_error(other),
    }
}

/// What a finished (or failed) handshake was, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// The name SNI carried and the certificate was checked against
    /// (outgoing), or the name the client asked for (incoming).
    pub name: Option<String>,
    /// The kind.
    pub kind: Option<String>,
    /// `TLSv1_3`, say.
    pub version: Option<String>,
    /// The cipher suite.
    pub cipher: Option<String>,
    /// The peer certificate's SHA-256 and subject, if it sent one.
    pub peer_cert: Option<CertInfo>,
    /// Why it failed (`None`: it succeeded).
    pub failure: Option<String>,
    /// Whether it failed on the peer's certificate.
    pub certificate_refused: bool,
    /// The SPIFFE ID Warden presented (a kind with `identity`).
    pub local_id: Option<String>,
    /// The SPIFFE ID the peer's certificate names, if exactly one.
    pub peer_id: Option<String>,
}

impl Handshake {
    pub(crate) fn of(conn: &rustls::CommonState) -> Handshake {
        Handshake {
            version: conn.protocol_version().map(|v| format!("{v:?}")),
            cipher: conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite())),
            peer_id: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| crate::identity::spiffe_id_of(der)),
            peer_cert: conn.peer_certificates().and_then(|c| c.first()).map(|der| {
                CertInfo::of(der).unwrap_or_else(|| CertInfo {
                    subject: String::new(),
                    sha256: material::fingerprint(der),
                    not_before: 0,
                    not_after: 0,
                })
            }),
            ..Handshake::default()
        }
    }
}
