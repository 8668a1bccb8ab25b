//! Authorising TLS peers by SPIFFE ID: a kind's or listener's `peer_ids`.
//!
//! The peer's chain is verified first, as without `peer_ids` (a client's
//! against the listener's `client_ca`, a server's against the kind's
//! `ca`); then its certificate must name exactly one SPIFFE ID, admitted
//! by one of the patterns ([`warden_policy::spiffe::admits`]). A server
//! with a SPIFFE certificate has no DNS name to check, so an outgoing kind
//! with `peer_ids` checks the ID instead of the server name. A refused
//! peer fails the handshake: the guest never sees it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError};

/// A peer whose certificate names no admitted ID.
#[derive(Debug, thiserror::Error)]
#[error("{}", match .0 { Some(id) => format!("peer ID {id} is not admitted (peer_ids)"), None => "the peer's certificate names no single SPIFFE ID (peer_ids)".to_string() })]
struct Refused(Option<String>);

fn check(end_entity: &CertificateDer<'_>, ids: &[String]) -> Result<(), Error> {
    let id = crate::identity::spiffe_id_of(end_entity);
    match &id {
        Some(id) if warden_policy::spiffe::admits(ids, id) => Ok(()),
        _ => Err(Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(Refused(id))),
        ))),
    }
}

/// A client verifier that also requires an admitted SPIFFE ID.
#[derive(Debug)]
pub(crate) struct ClientIds {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) ids: Vec<String>,
}

impl ClientCertVerifier for ClientIds {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check(end_entity, &self.ids)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}

/// A server verifier for SPIFFE servers: the chain against `roots`, then
/// an admitted ID instead of the server name.
#[derive(Debug)]
pub(crate) struct ServerIds {
    pub(crate) roots: Arc<rustls::RootCertStore>,
    pub(crate) ids: Vec<String>,
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerIds {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        check(end_entity, &self.ids)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
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
