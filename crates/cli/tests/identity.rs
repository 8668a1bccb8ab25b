//! Workload identity end to end, with real TLS: a CA made at test time
//! signs each instance's SVID; a peer that requires client certificates
//! sees exactly one URI SAN, `spiffe://TD/wasm/sha256/` + the module's
//! SHA-256, with the extensions the X.509-SVID standard asks for; one
//! changed byte changes the ID; a listener with `--peer-id` admits a listed
//! client and refuses another signed by the same CA; a short TTL renews;
//! `serve` tells the app who called, and never what a client claims.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::server::Server;
use common::tls::AnyCert;
use common::{p, ran, run, warden};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::Digest;
use warden_test_artifacts::{Target, guest};

const TD: &str = "warden.test";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA (`ca.pem`, `ca.key`), a server certificate for `peer.test`, and
/// client certificates naming `spiffe://warden.test/client/a` and `/b`,
/// in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "Warden identity test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        write("ca.pem", &ca.self_signed(&ca_key).unwrap().pem());
        write("ca.key", &ca_key.serialize_pem());
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |file: &str, san: SanType| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::default();
            params.subject_alt_names = vec![san];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            write(
                &format!("{file}.pem"),
                &params.signed_by(&key, &issuer).unwrap().pem(),
            );
            write(&format!("{file}.key"), &key.serialize_pem());
        };
        leaf("peer", SanType::DnsName("peer.test".try_into().unwrap()));
        for who in ["a", "b"] {
            let uri = format!("spiffe://{TD}/client/{who}");
            leaf(
                &format!("client-{who}"),
                SanType::URI(uri.try_into().unwrap()),
            );
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
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

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        for c in self.certs("ca.pem") {
            roots.add(c).unwrap();
        }
        Arc::new(roots)
    }

    /// The issuer's flags.
    fn flags(&self) -> Vec<String> {
        vec![
            "--identity-ca".into(),
            self.path("ca.pem"),
            "--identity-ca-key".into(),
            self.path("ca.key"),
            "--trust-domain".into(),
            TD.into(),
        ]
    }
}

fn sha256_hex(path: &Path) -> String {
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the X.509-SVID standard asks of a leaf, checked on `der`: the
/// URI SANs (all of them), `cA=false`, key usage digitalSignature only and
/// critical, EKU serverAuth and clientAuth, and how long it is valid.
fn svid_facts(der: &[u8]) -> (Vec<String>, Duration) {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let mut uris = Vec::new();
    let (mut ca_false, mut ku_ok, mut eku_ok, mut san_critical) = (false, false, false, false);
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                san_critical = ext.critical;
                for n in &san.general_names {
                    if let GeneralName::URI(u) = n {
                        uris.push(u.to_string());
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => ca_false = !bc.ca,
            ParsedExtension::KeyUsage(ku) => {
                ku_ok =
                    ext.critical && ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => eku_ok = eku.server_auth && eku.client_auth,
            _ => {}
        }
    }
    assert!(ca_false, "cA=false");
    assert!(ku_ok, "key usage: digitalSignature, critical");
    assert!(eku_ok, "EKU: serverAuth and clientAuth");
    assert!(san_critical, "an empty subject makes the SAN critical");
    assert!(
        cert.subject().iter_attributes().next().is_none(),
        "no subject"
    );
    let v = cert.validity();
    let life = (v.not_after.timestamp() - v.not_before.timestamp()) as u64;
    (uris, Duration::from_secs(life))
}

/// A TLS server on loopback requiring a client certificate from the CA:
/// each connection's first line gets `peer got LINE`, and the client's
/// leaf (DER) is kept.
struct MtlsPeer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl MtlsPeer {
    fn start(pki: &Pki, connections: usize) -> MtlsPeer {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(pki.roots(), provider())
                .build()
                .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(pki.certs("peer.pem"), pki.key("peer.key"))
                .unwrap(),
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            // Bounded: a test that fails early leaves no peer waiting.
            let end = std::time::Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while served < connections && std::time::Instant::now() < end {
                let Ok((tcp, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                served += 1;
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut line = String::new();
                if BufReader::new(&mut tls).read_line(&mut line).is_err() {
                    continue;
                }
                if let Some(c) = tls.conn.peer_certificates().and_then(|c| c.first()) {
                    kept.lock().unwrap().push(c.to_vec());
                }
                let _ = write!(tls, "peer got {line}");
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.conn.complete_io(&mut tls.sock);
            }
        });
        MtlsPeer { addr, seen }
    }
}

/// A manifest granting a connect to `peer` with a kind that presents the
/// workload identity, trusting the test CA.
fn mesh_manifest(pki: &Pki, dir: &Path, peer: SocketAddr, extra: &str) -> std::path::PathBuf {
    let path = dir.join("mesh.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\n[[kind]]\nname = \"mesh\"\nprotocol = \"tls\"\nca = \"{}\"\nserver_name = \"peer.test\"\nidentity = true\n{extra}\n[[allow]]\nid = \"peer\"\ntarget = \"127.0.0.1\"\nports = \"{}\"\nrights = [\"connect\"]\nkind = \"mesh\"\n",
            pki.path("ca.pem"),
            peer.port()
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_outgoing_connection_presents_an_svid_naming_the_modules_digest() {
    let pki = Pki::new();
    let peer = MtlsPeer::start(&pki, 2);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let manifest = mesh_manifest(&pki, dir.path(), peer.addr, "");
    let prog = guest(Target::P2, "net_client");
    let step = format!("connect:{}", peer.addr);
    let mut args: Vec<String> = pki.flags();
    args.extend([
        "--manifest".into(),
        p(&manifest).into(),
        "--audit".into(),
        p(&audit).into(),
    ]);
    args.extend([p(&prog).to_string(), step.clone()]);
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        r.stdout,
        format!("{step}: ok peer got ping\n"),
        "{}",
        r.stderr
    );
    let want = format!("spiffe://{TD}/wasm/sha256/{}", sha256_hex(&prog));
    let seen = peer.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (uris, life) = svid_facts(&seen[0]);
    assert_eq!(
        uris,
        std::slice::from_ref(&want),
        "exactly one URI SAN, the module's ID"
    );
    // The default TTL, one hour, plus the minute it is backdated.
    assert_eq!(life, Duration::from_secs(3600 + 60));
    // `warden identity` says the same ID without running anything.
    let r = ran(warden()
        .args(["identity", p(&prog), "--trust-domain", TD])
        .output()
        .unwrap());
    assert_eq!(r.stdout, format!("{want}\n"), "{}", r.stderr);
    // The audit record of the handshake names both sides.
    let log = std::fs::read_to_string(&audit).unwrap();
    let rec: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"] == "tls-connect")
        .unwrap();
    assert_eq!(rec["local_id"], want.as_str());
    assert_eq!(rec["result"], "ok");
    // The twin: without the issuer, the kind cannot present an identity,
    // and that is one clear error before anything runs.
    let r = run(&["--manifest", p(&manifest), p(&prog), &step]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no identity issuer is configured"),
        "{}",
        r.stderr
    );
}

#[test]
fn one_changed_byte_changes_the_id() {
    let prog = guest(Target::P1, "hello");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("hello.wasm");
    let mut bytes = std::fs::read(&prog).unwrap();
    // A custom section at the end: still a valid module, one byte more.
    bytes.extend([0u8, 2, 1, b'x']);
    std::fs::write(&copy, &bytes).unwrap();
    let id = |f: &Path| {
        let r = ran(warden()
            .args(["identity", p(f), "--trust-domain", TD])
            .output()
            .unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let (a, b) = (id(&prog), id(&copy));
    assert_ne!(a, b);
    assert_eq!(
        b,
        format!("spiffe://{TD}/wasm/sha256/{}\n", sha256_hex(&copy))
    );
    // A bad trust domain is refused.
    let r = ran(warden()
        .args(["identity", p(&prog), "--trust-domain", "Not Valid"])
        .output()
        .unwrap());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("not a SPIFFE trust domain"),
        "{}",
        r.stderr
    );
}

/// Connect to a Warden TLS listener at `port` as the client `who` (`a`,
/// `b`), trusting nothing about the server but keeping its certificate:
/// the echo of `hello`, or the error.
fn client(pki: &Pki, port: u16, who: &str) -> (Result<String, String>, Option<Vec<u8>>) {
    let kept = AnyCert::new();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(kept.clone())
        .with_client_auth_cert(
            pki.certs(&format!("client-{who}.pem")),
            pki.key(&format!("client-{who}.key")),
        )
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let result = (|| {
        tls.write_all(b"hello\n").map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        tls.flush().map_err(|e| e.to_string())?;
        let mut back = String::new();
        tls.read_to_string(&mut back).map_err(|e| e.to_string())?;
        Ok(back)
    })();
    let cert = kept.last();
    (result, cert)
}

#[test]
fn a_listener_presents_the_svid_and_admits_only_listed_peers() {
    let pki = Pki::new();
    let prog = guest(Target::P1, "echo_std");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut args: Vec<String> = pki.flags();
    args.extend(["--audit".to_string(), p(&audit).to_string()]);
    args.extend(
        [
            "--identity-ttl",
            "10s",
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-identity",
            "--tls-client-ca",
            &pki.path("ca.pem"),
            "--peer-id",
            &format!("spiffe://{TD}/client/a"),
            p(&prog),
            "2",
        ]
        .map(String::from),
    );
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (got, cert) = client(&pki, server.port, "a");
    assert_eq!(got.as_deref(), Ok("hello\n"));
    let (uris, life) = svid_facts(&cert.clone().unwrap());
    assert_eq!(
        uris,
        [format!("spiffe://{TD}/wasm/sha256/{}", sha256_hex(&prog))]
    );
    assert_eq!(life, Duration::from_secs(10 + 60));
    // Signed by the same CA, but not listed: refused before the program
    // sees it.
    let (refused, _) = client(&pki, server.port, "b");
    assert!(refused.is_err(), "{refused:?}");
    // Past half its life, the next handshake gets a renewed certificate.
    std::thread::sleep(Duration::from_secs(6));
    let (again, renewed) = client(&pki, server.port, "a");
    assert_eq!(again.as_deref(), Ok("hello\n"));
    assert_ne!(renewed, cert, "renewed at half its life");
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not admitted (peer_ids)"),
        "{}",
        r.stderr
    );
    // Each handshake is audited with both sides' IDs.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["event"] == "tls-accept")
        .collect();
    let local = format!("spiffe://{TD}/wasm/sha256/{}", sha256_hex(&prog));
    let ok: Vec<_> = records.iter().filter(|r| r["result"] == "ok").collect();
    assert_eq!(ok.len(), 2, "{records:?}");
    assert_eq!(ok[0]["peer_id"], format!("spiffe://{TD}/client/a").as_str());
    assert_eq!(ok[0]["local_id"], local.as_str());
    let refused: Vec<_> = records.iter().filter(|r| r["result"] == "failed").collect();
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("spiffe://{TD}/client/b is not admitted")),
        "{records:?}"
    );
}

#[test]
fn serve_tells_the_app_who_called_and_strips_what_a_client_claims() {
    let pki = Pki::new();
    let mut args: Vec<String> = pki.flags();
    args.extend(
        [
            "--addr",
            "127.0.0.1:0",
            "--tls-identity",
            "--tls-client-ca",
            &pki.path("ca.pem"),
            &common::serving::proxy(),
        ]
        .map(String::from),
    );
    let server = Server::start_with(common::serving::serve_cmd(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    // A verified client: its ID, and not the one it claims.
    let request = "GET /header?name=x-warden-peer-id HTTP/1.1\r\nHost: localhost\r\nx-warden-peer-id: spiffe://evil/admin\r\nConnection: close\r\n\r\n";
    let ask = |who: &str| {
        let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(AnyCert::new())
            .with_client_auth_cert(
                pki.certs(&format!("client-{who}.pem")),
                pki.key(&format!("client-{who}.key")),
            )
            .unwrap();
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(request.as_bytes()).unwrap();
        let mut all = String::new();
        let _ = tls.read_to_string(&mut all);
        all
    };
    let answer = ask("a");
    let body = common::serving::parse(answer.as_bytes()).body;
    assert!(
        body.ends_with(&format!("1 x-warden-peer-id\nspiffe://{TD}/client/a\n")),
        "{answer}"
    );
    common::serving::stop(server);
    // Plain HTTP: there is no verified peer, and the client's claim is
    // still removed.
    let server = common::serving::serve(&[]);
    let r = common::serving::exchange(server.port, request.as_bytes());
    assert_eq!(r.body, "0 x-warden-peer-id\n");
    common::serving::stop(server);
}

#[test]
fn a_bad_issuer_is_one_clear_error_before_anything_runs() {
    let pki = Pki::new();
    let prog = guest(Target::P1, "hello");
    // The key of another certificate.
    let r = run(&[
        "--identity-ca",
        &pki.path("ca.pem"),
        "--identity-ca-key",
        &pki.path("client-a.key"),
        "--trust-domain",
        TD,
        p(&prog),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not this certificate's"),
        "{}",
        r.stderr
    );
    // A leaf is no CA.
    let r = run(&[
        "--identity-ca",
        &pki.path("client-a.pem"),
        "--identity-ca-key",
        &pki.path("client-a.key"),
        "--trust-domain",
        TD,
        p(&prog),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not a CA certificate"), "{}", r.stderr);
    // Serving with an identity there is no issuer for.
    let out = common::serving::serve_cmd(&[
        "--addr",
        "127.0.0.1:0",
        "--tls-identity",
        &common::serving::proxy(),
    ])
    .output()
    .unwrap();
    let r = ran(out);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no identity issuer is configured"),
        "{}",
        r.stderr
    );
}

#[test]
fn two_wardens_authorise_each_other_by_module() {
    // The server: echo_std behind a TLS listener presenting its SVID and
    // requiring a client SVID from the same CA.
    let pki = Pki::new();
    let echo = guest(Target::P1, "echo_std");
    let client_prog = guest(Target::P2, "net_client");
    let mut args: Vec<String> = pki.flags();
    args.extend(
        [
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-identity",
            "--tls-client-ca",
            &pki.path("ca.pem"),
            "--peer-id",
            &format!("spiffe://{TD}/wasm/sha256/{}", sha256_hex(&client_prog)),
            p(&echo),
            "1",
        ]
        .map(String::from),
    );
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = |peer_id: &str| {
        let manifest = mesh_manifest(
            &pki,
            dir.path(),
            addr,
            &format!("peer_ids = [\"{peer_id}\"]"),
        );
        let step = format!("connect:{addr}");
        let mut args: Vec<String> = pki.flags();
        args.extend([
            "--manifest".into(),
            p(&manifest).into(),
            p(&client_prog).into(),
            step,
        ]);
        run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // A client that expects another program on the other end refuses the
    // server before its program sees the connection.
    let r = client(&format!("spiffe://{TD}/wasm/sha256/{}", "0".repeat(64)));
    assert!(
        r.stdout.contains("ConnectionRefused"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("is not admitted (peer_ids)"),
        "{}",
        r.stderr
    );
    // Each names the other's module: connected, and echoed.
    let r = client(&format!("spiffe://{TD}/wasm/sha256/{}", sha256_hex(&echo)));
    assert_eq!(
        r.stdout,
        format!("connect:{addr}: ok ping\n"),
        "{}",
        r.stderr
    );
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn an_svid_never_outlives_its_ca_and_check_prints_the_issuer() {
    // A CA with twenty minutes left, and the default TTL of an hour.
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "Short CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let now = std::time::SystemTime::now();
    ca.not_before = (now - Duration::from_secs(3600)).into();
    let ca_end = now + Duration::from_secs(1200);
    ca.not_after = ca_end.into();
    let short_pem = dir.path().join("short.pem");
    let short_key = dir.path().join("short.key");
    std::fs::write(&short_pem, ca.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(&short_key, key.serialize_pem()).unwrap();
    let manifest = dir.path().join("id.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n[identity]\nca = \"short.pem\"\nca_key = \"short.key\"\ntrust_domain = \"{TD}\"\n[[listen]]\naddr = \"127.0.0.1:0\"\nidentity = true\nclient_ca = \"{}\"\n",
            pki.path("ca.pem")
        ),
    )
    .unwrap();
    let r = ran(warden().args(["check", p(&manifest)]).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "identity spiffe://{TD}/wasm/sha256/{{sha256}} signed by {}",
            short_pem.display()
        )) && r.stdout.contains("each certificate valid 3600s"),
        "{}",
        r.stdout
    );
    let prog = guest(Target::P1, "echo_std");
    let server = Server::start(&["--manifest", p(&manifest), p(&prog), "1"]);
    let (got, cert) = client(&pki, server.port, "a");
    assert_eq!(got.as_deref(), Ok("hello\n"));
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_deref().unwrap())
        .map(|(r, c)| (r.len(), c.validity().not_after.timestamp()))
        .unwrap();
    let ca_end = ca_end
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (cert - ca_end).abs() <= 1,
        "not after {cert}, the CA's {ca_end}"
    );
    let r = server.finish();
    assert_eq!(r.code, 0, "{}", r.stderr);
}
