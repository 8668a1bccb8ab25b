//! TLS for the end-to-end tests: certificates made at test time (a CA, a
//! server, a client CA and client, an expired, a wrong-name and a
//! self-signed certificate, and an unrelated CA), TLS peers on loopback
//! that record what reached them, and a TLS client.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// How long any peer lives at most.
const LIFETIME: Duration = Duration::from_secs(120);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates and keys, as PEM files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

impl Pki {
    /// Make everything. Server certificates name `echo.test`, `web.test`,
    /// `localhost` and 127.0.0.1.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let (ca_params, ca_key, ca_pem) = ca("Warden Test CA");
        write("ca.pem", &ca_pem);
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |file: &str,
                    names: &[&str],
                    client: bool,
                    expired: bool,
                    issuer: &Issuer<'_, KeyPair>| {
            let key = KeyPair::generate().unwrap();
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(
                DnType::CommonName,
                names.first().copied().unwrap_or("client"),
            );
            params.extended_key_usages = vec![if client {
                ExtendedKeyUsagePurpose::ClientAuth
            } else {
                ExtendedKeyUsagePurpose::ServerAuth
            }];
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let cert = params.signed_by(&key, issuer).unwrap();
            write(&format!("{file}.pem"), &cert.pem());
            write(&format!("{file}.key"), &key.serialize_pem());
        };
        let servers = ["echo.test", "web.test", "localhost", "127.0.0.1"];
        leaf("server", &servers, false, false, &issuer);
        leaf("expired", &servers, false, true, &issuer);
        leaf("wrong-name", &["other.test"], false, false, &issuer);
        // Self-signed, for the right names.
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(servers.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        write("self-signed.pem", &params.self_signed(&key).unwrap().pem());
        write("self-signed.key", &key.serialize_pem());
        // Clients, and a CA nobody else uses.
        let (client_ca_params, client_ca_key, client_ca_pem) = ca("Warden Test Client CA");
        write("client-ca.pem", &client_ca_pem);
        let client_issuer = Issuer::new(client_ca_params, client_ca_key);
        leaf("client", &["client.test"], true, false, &client_issuer);
        let (_, _, other_pem) = ca("Unrelated CA");
        write("other-ca.pem", &other_pem);
        Pki { dir }
    }

    /// The file `name` (`ca.pem`, `server.key`, ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The file `name`, as a string for a command line.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    fn certs(&self, name: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(self.path(name))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn key(&self, name: &str) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_file(self.path(name)).unwrap()
    }

    fn roots(&self, name: &str) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for c in self.certs(name) {
            roots.add(c).unwrap();
        }
        roots
    }

    /// A server configuration with the leaf `leaf` (`server`, `expired`,
    /// ...), requiring client certificates from `client-ca.pem` when
    /// `mutual`.
    pub fn server_config(&self, leaf: &str, mutual: bool) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mutual {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots("client-ca.pem")),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(
            builder
                .with_single_cert(
                    self.certs(&format!("{leaf}.pem")),
                    self.key(&format!("{leaf}.key")),
                )
                .unwrap(),
        )
    }

    /// A client configuration trusting `ca` (a file name), presenting the
    /// client certificate when `mutual`.
    pub fn client_config(&self, ca: &str, mutual: bool) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots(ca));
        Arc::new(if mutual {
            builder
                .with_client_auth_cert(self.certs("client.pem"), self.key("client.key"))
                .unwrap()
        } else {
            builder.with_no_client_auth()
        })
    }
}

/// A TLS client over TCP, blocking, with a read timeout.
pub type TlsClient = rustls::StreamOwned<ClientConnection, TcpStream>;

/// Connect to `addr` as a TLS client of `config`, checking `name`; the
/// handshake is done (or failed) when this returns.
pub fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsClient> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// How a [`TlsPeer`] ends each connection after its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It reads until the client ends, then sends `close_notify`.
    Clean,
    /// It closes the TCP connection without `close_notify`.
    Truncate,
}

/// What a protocol a [`TlsPeer`] speaks inside TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// A line gets `tls peer got LINE`.
    Line,
    /// An HTTP GET gets a 200 with `hello over tls`.
    Http,
    /// A second TLS session (with the same certificate) inside the first,
    /// then lines.
    TlsInTls,
}

/// PostgreSQL's SSLRequest, as a peer expects it.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// What a [`TlsPeer`] saw of one connection.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The first bytes on the wire (after the PostgreSQL preamble, when it
    /// expects one).
    pub first: Vec<u8>,
    /// Whether the PostgreSQL SSLRequest came first.
    pub ssl_request: bool,
    /// The name the client sent in SNI.
    pub sni: Option<String>,
    /// Whether the client presented a certificate.
    pub client_cert: bool,
    /// The line (or request line) it got, inside TLS.
    pub got: String,
    /// How the client's side ended: `close_notify`, `truncated`, or an
    /// error; empty if the handshake failed.
    pub end: String,
    /// The handshake's error, if it failed.
    pub error: Option<String>,
}

impl Seen {
    /// Whether the first bytes are a TLS handshake record (a ClientHello).
    pub fn client_hello(&self) -> bool {
        self.first.len() >= 6
            && self.first[0] == 0x16
            && self.first[1] == 0x03
            && self.first[5] == 0x01
    }
}

/// A TLS server on 127.0.0.1, recording what it saw of each connection.
pub struct TlsPeer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a [`TlsPeer`] is set up.
#[derive(Clone)]
pub struct PeerSpec {
    pub config: Arc<ServerConfig>,
    pub speaks: Speaks,
    pub ending: Ending,
    /// `Some(answer)`: expect PostgreSQL's SSLRequest first and answer it
    /// (`b'S'` or `b'N'`).
    pub postgres: Option<u8>,
}

impl TlsPeer {
    pub fn start(spec: PeerSpec) -> TlsPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, record) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + LIFETIME;
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    // A thread per connection (a test makes a few), so a
                    // connection kept open does not hold up the next.
                    Ok((tcp, _)) => {
                        let (spec, record) = (spec.clone(), record.clone());
                        std::thread::spawn(move || {
                            let seen = serve(tcp, &spec);
                            record.lock().unwrap().push(seen);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsPeer {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What it saw, waiting up to 10 s for `n` connections to finish.
    pub fn wait_seen(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.len() >= n || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(tcp: TcpStream, spec: &PeerSpec) -> Seen {
    let mut seen = Seen::default();
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let mut tcp = tcp;
    if let Some(answer) = spec.postgres {
        let mut req = [0u8; 8];
        if tcp.read_exact(&mut req).is_err() {
            seen.error = Some("no SSLRequest".into());
            return seen;
        }
        seen.ssl_request = req == PG_SSL_REQUEST;
        let _ = tcp.write_all(&[answer]);
        if answer != b'S' {
            seen.error = Some("refused TLS".into());
            return seen;
        }
    }
    let mut first = [0u8; 6];
    let n = peek_at_least(&tcp, &mut first);
    seen.first = first[..n].to_vec();
    let conn = ServerConnection::new(spec.config.clone()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            seen.error = Some(e.to_string());
            seen.sni = tls.conn.server_name().map(str::to_string);
            return seen;
        }
    }
    seen.sni = tls.conn.server_name().map(str::to_string);
    seen.client_cert = tls.conn.peer_certificates().is_some();
    if spec.speaks == Speaks::TlsInTls {
        let inner = ServerConnection::new(spec.config.clone()).unwrap();
        let mut inner = rustls::StreamOwned::new(inner, tls);
        while inner.conn.is_handshaking() {
            if let Err(e) = inner.conn.complete_io(&mut inner.sock) {
                seen.error = Some(format!("inner: {e}"));
                return seen;
            }
        }
        talk(&mut inner, spec, &mut seen);
        finish_inner(inner, spec, &mut seen);
        return seen;
    }
    talk(&mut tls, spec, &mut seen);
    finish(tls, spec, &mut seen);
    seen
}

/// Peek until `buf` is full or the peer stops sending for a moment.
fn peek_at_least(tcp: &TcpStream, buf: &mut [u8]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = tcp.peek(buf).unwrap_or(0);
        if n >= buf.len() || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn talk<S: Read + Write>(s: &mut S, spec: &PeerSpec, seen: &mut Seen) {
    let mut reader = BufReader::new(&mut *s);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    seen.got = line.trim_end().to_string();
    if spec.speaks == Speaks::Http {
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let body = "hello over tls";
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    } else {
        let _ = writeln!(s, "tls peer got {}", seen.got);
    }
    let _ = s.flush();
}

/// How the client's side ended, read after the reply.
fn client_end<S: Read>(s: &mut S) -> String {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return "close_notify".into(),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return "truncated".into(),
            Err(e) => return format!("error {:?}", e.kind()),
        }
    }
}

fn finish(
    mut tls: rustls::StreamOwned<ServerConnection, TcpStream>,
    spec: &PeerSpec,
    seen: &mut Seen,
) {
    match spec.ending {
        Ending::Clean => {
            if spec.speaks == Speaks::Line {
                seen.end = client_end(&mut tls);
            }
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
            let _ = tls.sock.shutdown(std::net::Shutdown::Write);
        }
        Ending::Truncate => {
            let _ = tls.sock.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn finish_inner(
    mut inner: rustls::StreamOwned<
        ServerConnection,
        rustls::StreamOwned<ServerConnection, TcpStream>,
    >,
    _spec: &PeerSpec,
    seen: &mut Seen,
) {
    seen.end = client_end(&mut inner);
    inner.conn.send_close_notify();
    let _ = inner.conn.complete_io(&mut inner.sock);
    let outer = &mut inner.sock;
    outer.conn.send_close_notify();
    let _ = outer.conn.complete_io(&mut outer.sock);
}

/// Read a TLS client's stream to its end: `Ok(text)` after `close_notify`,
/// `Err` for a stream cut without it (or any other error).
pub fn read_to_end(tls: &mut TlsClient) -> std::io::Result<String> {
    let mut out = Vec::new();
    tls.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The path `p` as a `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A server certificate verifier that accepts any certificate and keeps
/// the last one presented (to see which one a server presents).
#[derive(Debug)]
pub struct AnyCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
    last: Mutex<Option<Vec<u8>>>,
}

impl AnyCert {
    pub fn new() -> Arc<AnyCert> {
        Arc::new(AnyCert {
            provider: provider(),
            last: Mutex::new(None),
        })
    }

    /// The last certificate a server presented (DER).
    pub fn last(&self) -> Option<Vec<u8>> {
        self.last.lock().unwrap().clone()
    }
}

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.last.lock().unwrap() = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that accepts any server certificate (to see
/// which one a server presents).
pub fn accept_any_client() -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(AnyCert::new())
            .with_no_client_auth(),
    )
}
