//! Outgoing TLS: a kind's preamble, then the handshake.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ClientSide, Handshake};

/// What is said in plaintext before the TLS handshake, for protocols that
/// negotiate TLS inside their own (STARTTLS-style). The guest never sees
/// it: it speaks its protocol in plaintext, over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preamble {
    /// Nothing: TLS from the first byte.
    None,
    /// PostgreSQL: an `SSLRequest` message, answered `S` (go ahead) or `N`
    /// (no TLS here).
    Postgres,
}

/// PostgreSQL's `SSLRequest`: length 8, then the code 80877103.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl Preamble {
    /// Run the preamble on `stream`; `Err` says why the peer will not do
    /// TLS.
    pub(crate) async fn run(self, stream: &mut TcpStream) -> Result<(), String> {
        match self {
            Preamble::None => Ok(()),
            Preamble::Postgres => {
                stream
                    .write_all(&PG_SSL_REQUEST)
                    .await
                    .map_err(|e| format!("sending PostgreSQL's SSLRequest: {e}"))?;
                // Exactly one byte: anything the server sent after it
                // before the handshake would be a plaintext injection, and
                // is read (and refused) by the handshake as garbage.
                let mut answer = [0u8; 1];
                stream
                    .read_exact(&mut answer)
                    .await
                    .map_err(|e| format!("reading the answer to PostgreSQL's SSLRequest: {e}"))?;
                match answer[0] {
                    b'S' => Ok(()),
                    b'N' => Err(
                        "the PostgreSQL server does not do TLS (it answered N to the SSLRequest)"
                            .into(),
                    ),
                    other => Err(format!(
                        "the peer answered PostgreSQL's SSLRequest with byte {other:#04x}, not S or N: not a PostgreSQL server?"
                    )),
                }
            }
        }
    }
}

/// The preamble, then the handshake with `name` as SNI and as the name the
/// peer's certificate must carry. The outcome says what was agreed, or
/// why it failed.
pub(crate) async fn handshake(
    side: &ClientSide,
    mut stream: TcpStream,
    name: ServerName<'static>,
) -> (
    Option<tokio_rustls::client::TlsStream<TcpStream>>,
    Handshake,
) {
    let mut outcome = Handshake {
        name: Some(name.to_str().into_owned()),
        kind: side.kind.as_ref().map(|k| k.name.clone()),
        ..Handshake::default()
    };
    if let Err(why) = side.preamble.run(&mut stream).await {
        outcome.failure = Some(why);
        return (None, outcome);
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&side.config));
    match connector.connect(name, stream).await {
        Ok(tls) => {
            let agreed = Handshake::of(tls.get_ref().1);
            outcome.version = agreed.version;
            outcome.cipher = agreed.cipher;
            outcome.peer_cert = agreed.peer_cert;
            (Some(tls), outcome)
        }
        Err(e) => {
            outcome.failure = Some(handshake_failure(&e));
            outcome.certificate_refused = refused_certificate(&e);
            (None, outcome)
        }
    }
}

/// A handshake error in words: rustls's own, unwrapped from the I/O error
/// that carries it.
pub(crate) fn handshake_failure(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        // Warden's own refusals (peer_ids) say themselves.
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            format!("invalid peer certificate: {}", other.0)
        }
        Some(e) => e.to_string(),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the handshake".into()
        }
        None => e.to_string(),
    }
}

/// Whether a handshake failed on the peer's certificate (rather than the
/// protocol or the connection).
pub(crate) fn refused_certificate(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}
