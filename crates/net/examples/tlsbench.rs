//! The native side of `bench/tls.py`: certificates, a rustls terminator
//! and originator (what a native program would sit behind, to compare
//! with Warden doing TLS for a guest), a rustls server and TLS clients.
//! Everything listens on 127.0.0.1 only and stops by itself: servers end
//! when their stdin closes or after an hour.
//!
//! Usage:
//!   tlsbench certs DIR                        ca.pem, server.pem, server.key
//!   tlsbench terminate CERT KEY BACKEND       TLS in, plaintext to BACKEND
//!   tlsbench originate CA NAME UPSTREAM       plaintext in, TLS to UPSTREAM
//!   tlsbench serve CERT KEY                   `get N`, `put`, `ping` over TLS
//!   tlsbench echo-client ADDR CA NAME BYTES   seconds to echo BYTES
//!   tlsbench handshake-client ADDR CA NAME N  seconds for N short sessions
//! Servers print `listening on ADDR` first.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const LIFETIME: Duration = Duration::from_secs(3600);

/// The proxies' copy buffers, each way (as large as the guest side's).
const BUF: usize = 64 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "tlsbench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let names = ["bench.test", "localhost", "127.0.0.1"].map(String::from);
    let leaf = CertificateParams::new(names.to_vec()).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

async fn listen() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening on {}", l.local_addr().unwrap());
    l
}

/// Run `serve` until stdin closes or the lifetime passes.
async fn until_stdin_closes(serve: impl std::future::Future<Output = ()>) {
    let stdin = async {
        let mut buf = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while stdin.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    };
    tokio::select! {
        () = serve => {}
        () = stdin => {}
        () = tokio::time::sleep(LIFETIME) => {}
    }
}

type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// Accept TLS connections with CERT and KEY, each handshake and `handle`
/// on a task of its own, until stdin closes.
async fn serve_tls<F, Fut>(cert: &Path, key: &Path, handle: F)
where
    F: Fn(ServerTls) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert, key));
    let l = listen().await;
    until_stdin_closes(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, handle) = (acceptor.clone(), handle.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    handle(tls).await;
                }
            });
        }
    })
    .await;
}

async fn terminate(cert: &Path, key: &Path, backend: SocketAddr) {
    serve_tls(cert, key, move |mut tls| async move {
        let Ok(mut plain) = TcpStream::connect(backend).await else {
            return;
        };
        let _ = plain.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional_with_sizes(&mut tls, &mut plain, BUF, BUF).await;
    })
    .await;
}

async fn originate(ca: &Path, name: &str, upstream: SocketAddr) {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca));
    let name = ServerName::try_from(name.to_string()).unwrap();
    let l = listen().await;
    until_stdin_closes(async move {
        loop {
            let Ok((mut plain, _)) = l.accept().await else {
                continue;
            };
            let _ = plain.set_nodelay(true);
            let (connector, name) = (connector.clone(), name.clone());
            tokio::spawn(async move {
                let Ok(tcp) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let Ok(mut tls) = connector.connect(name, tcp).await else {
                    return;
                };
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut plain, &mut tls, BUF, BUF).await;
            });
        }
    })
    .await;
}

async fn serve(cert: &Path, key: &Path) {
    serve_tls(cert, key, |tls| async move {
        let mut tls = BufReader::new(tls);
        let mut line = String::new();
        if tls.read_line(&mut line).await.is_err() {
            return;
        }
        let chunk = vec![0x5au8; 64 * 1024];
        let request = line.trim_end();
        match request.split_once(' ').unwrap_or((request, "")) {
            ("get", n) => {
                let mut left: usize = n.parse().unwrap_or(0);
                while left > 0 {
                    let k = left.min(chunk.len());
                    if tls.write_all(&chunk[..k]).await.is_err() {
                        return;
                    }
                    left -= k;
                }
            }
            ("put", _) => {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0u64;
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                }
                let _ = tls.write_all(format!("got {got}\n").as_bytes()).await;
            }
            _ => {
                let _ = tls.write_all(b"pong\n").await;
            }
        }
        let _ = tls.shutdown().await;
    })
    .await;
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .unwrap()
}

async fn echo_client(addr: SocketAddr, ca: &Path, name: &str, bytes: usize) {
    let tls = tls_connect(addr, client_config(ca), name).await;
    let started = Instant::now();
    let (mut r, mut w) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let k = left.min(chunk.len());
            w.write_all(&chunk[..k]).await.unwrap();
            left -= k;
        }
        w.shutdown().await.unwrap();
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut back = 0;
    while back < bytes {
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0, "the echo ended early");
        back += n;
    }
    writer.await.unwrap();
    println!("{:.6}", started.elapsed().as_secs_f64());
}

async fn handshake_client(addr: SocketAddr, ca: &Path, name: &str, count: usize) {
    let config = client_config(ca);
    let started = Instant::now();
    for _ in 0..count {
        let mut tls = tls_connect(addr, config.clone(), name).await;
        tls.write_all(b"ping\n").await.unwrap();
        let mut got = [0u8; 5];
        tls.read_exact(&mut got).await.unwrap();
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
    }
    println!("{:.6}", started.elapsed().as_secs_f64());
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Path::new;
    // Loopback only: a benchmark never talks to anything else.
    let addr = |s: &str| -> SocketAddr {
        let a: SocketAddr = s.parse().expect("an IP:PORT");
        assert!(a.ip().is_loopback(), "{a} is not a loopback address");
        a
    };
    match a.as_slice() {
        ["certs", dir] => certs(p(dir)),
        ["terminate", cert, key, backend] => terminate(p(cert), p(key), addr(backend)).await,
        ["originate", ca, name, upstream] => originate(p(ca), name, addr(upstream)).await,
        ["serve", cert, key] => serve(p(cert), p(key)).await,
        ["echo-client", a, ca, name, n] => {
            echo_client(addr(a), p(ca), name, n.parse().unwrap()).await
        }
        ["handshake-client", a, ca, name, n] => {
            handshake_client(addr(a), p(ca), name, n.parse().unwrap()).await
        }
        _ => {
            eprintln!("usage: see the top of crates/net/examples/tlsbench.rs");
            std::process::exit(2);
        }
    }
}
