//! Workload identity: a short-lived X.509-SVID per instance (per app under
//! `warden serve`) naming the exact module it runs, presented on the TLS
//! the host does for the guest.
//!
//! Warden measures every program it runs (the SHA-256 of the file it
//! compiled) and does every TLS handshake for the guest, so it can bind
//! the two: an [`Issuer`] (an operator's CA certificate and key, often an
//! intermediate under an existing SPIFFE trust bundle) signs, for each
//! [`Identity`], a certificate whose one URI SAN is
//! `spiffe://TD/wasm/sha256/HEX` ([`warden_policy::spiffe`]). The key pair
//! is made in memory, never written anywhere, and never visible to the
//! guest. The certificate follows the X.509-SVID standard: exactly one URI
//! SAN (critical, the subject empty), `cA=false`, key usage
//! digitalSignature (critical), extended key usage serverAuth and
//! clientAuth, valid no longer than the TTL nor past the CA. It is renewed
//! at half its life, when next presented after that.
//!
//! This is the host's measurement of the file it loaded, not hardware
//! attestation: a peer that trusts the issuer trusts this host to have
//! measured honestly.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::tls::material;

/// An identity certificate's life unless the operator says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The shortest life accepted (shorter would renew on nearly every
/// handshake).
pub const MIN_TTL: Duration = Duration::from_secs(10);

/// How far back a certificate's `notBefore` is set, for peers whose clocks
/// are a little behind.
const BACKDATE: Duration = Duration::from_secs(60);

/// Why identities cannot be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The CA's files.
    #[error(transparent)]
    Material(#[from] material::MaterialError),
    /// The CA certificate or key is unusable.
    #[error("the identity CA in {path}: {why}")]
    Ca {
        /// The certificate's file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The trust domain, template or ID.
    #[error(transparent)]
    Spiffe(#[from] warden_policy::spiffe::SpiffeError),
    /// Making or signing a certificate failed.
    #[error("issuing an identity certificate: {0}")]
    Issue(String),
}

/// What an operator configures (flags, or the manifest's `[identity]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The CA certificate (PEM; may be followed by its own chain, which
    /// is sent with each SVID).
    pub ca_cert: std::path::PathBuf,
    /// The CA's private key (PEM, PKCS#8).
    pub ca_key: std::path::PathBuf,
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// How long each certificate lives.
    pub ttl: Duration,
    /// The path template (`None`: [`warden_policy::spiffe::DEFAULT_TEMPLATE`]).
    pub template: Option<String>,
}

/// An operator's CA, ready to sign identities.
pub struct Issuer {
    config: IdentityConfig,
    issuer: rcgen::Issuer<'static, KeyPair>,
    /// The CA certificate and what follows it in its file.
    chain: Vec<CertificateDer<'static>>,
    ca_not_after: SystemTime,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("trust_domain", &self.config.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Read and check the CA (a CA certificate, not expired, whose key is
    /// the one given) and the trust domain and template.
    pub fn load(config: &IdentityConfig) -> Result<Arc<Issuer>, IdentityError> {
        warden_policy::spiffe::trust_domain(&config.trust_domain)?;
        // The template is checked on a stand-in digest.
        warden_policy::spiffe::workload_id(
            &config.trust_domain,
            config.template.as_deref(),
            &"0".repeat(64),
            Some("app"),
        )?;
        let shown = config.ca_cert.display().to_string();
        let ca = |why: String| IdentityError::Ca {
            path: shown.clone(),
            why,
        };
        if config.ttl < MIN_TTL {
            return Err(ca(format!(
                "a ttl of {:?} is too short (at least {}s)",
                config.ttl,
                MIN_TTL.as_secs()
            )));
        }
        let chain = material::read_chain(&config.ca_cert)?;
        let first = chain.first().ok_or_else(|| ca("no certificate".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(first)
            .map_err(|e| ca(format!("not a certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(ca(
                "not a CA certificate (basicConstraints cA is not true)".into()
            ));
        }
        let not_after = cert.validity().not_after.timestamp();
        let ca_not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64);
        if ca_not_after <= SystemTime::now() {
            return Err(ca("it has expired".into()));
        }
        let key_der = material::read_key(&config.ca_key)?;
        let key = KeyPair::try_from(&key_der).map_err(|e| {
            ca(format!(
                "its key in {} is not usable: {e}",
                config.ca_key.display()
            ))
        })?;
        let spki = cert.public_key().raw;
        if rcgen::PublicKeyData::subject_public_key_info(&key) != spki {
            return Err(ca(format!(
                "the key in {} is not this certificate's",
                config.ca_key.display()
            )));
        }
        let issuer = rcgen::Issuer::from_ca_cert_der(first, key)
            .map_err(|e| ca(format!("cannot sign with it: {e}")))?;
        Ok(Arc::new(Issuer {
            config: config.clone(),
            issuer,
            chain,
            ca_not_after,
        }))
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.config.trust_domain
    }

    /// When the CA expires.
    pub fn ca_not_after(&self) -> SystemTime {
        self.ca_not_after
    }

    /// The configuration it was loaded from.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// The ID of a program whose SHA-256 is `sha256` (hex), as `app` if
    /// it is one of `warden serve`'s.
    pub fn id_for(&self, sha256: &str, app: Option<&str>) -> Result<String, IdentityError> {
        Ok(warden_policy::spiffe::workload_id(
            &self.config.trust_domain,
            self.config.template.as_deref(),
            sha256,
            app,
        )?)
    }

    /// A new key pair and an SVID for `id`, valid from now for the TTL
    /// (never past the CA): the certified key, and when it expires.
    pub fn issue(&self, id: &str) -> Result<(Arc<CertifiedKey>, SystemTime), IdentityError> {
        let fail = |e: rcgen::Error| IdentityError::Issue(e.to_string());
        let now = SystemTime::now();
        let not_after = (now + self.config.ttl).min(self.ca_not_after);
        let mut params = CertificateParams::default();
        params.not_before = (now - BACKDATE).into();
        params.not_after = not_after.into();
        let mut serial = [0u8; 16];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut serial)
            .map_err(|_| IdentityError::Issue("no randomness for a serial number".into()))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from(serial.to_vec()));
        // No subject: the SAN is then critical, as the standard asks.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.try_into().map_err(fail)?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let certified =
            CertifiedKey::from_der(chain, key_der, &rustls::crypto::ring::default_provider())
                .map_err(|e| IdentityError::Issue(e.to_string()))?;
        Ok((Arc::new(certified), not_after))
    }
}

/// One workload's identity: its ID and its current certificate, renewed
/// at half its life when next presented.
pub struct Identity {
    id: String,
    issuer: Arc<Issuer>,
    current: RwLock<Current>,
}

struct Current {
    certified: Arc<CertifiedKey>,
    renew_at: SystemTime,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish()
    }
}

impl Identity {
    /// The identity of the program whose SHA-256 is `sha256` (hex), as
    /// `app` under `warden serve`: its first certificate issued now.
    pub fn new(
        issuer: &Arc<Issuer>,
        sha256: &str,
        app: Option<&str>,
    ) -> Result<Arc<Identity>, IdentityError> {
        let id = issuer.id_for(sha256, app)?;
        let current = Self::fresh(issuer, &id)?;
        Ok(Arc::new(Identity {
            id,
            issuer: issuer.clone(),
            current: RwLock::new(current),
        }))
    }

    fn fresh(issuer: &Issuer, id: &str) -> Result<Current, IdentityError> {
        let now = SystemTime::now();
        let (certified, not_after) = issuer.issue(id)?;
        let life = not_after.duration_since(now).unwrap_or_default();
        Ok(Current {
            certified,
            renew_at: now + life / 2,
        })
    }

    /// Its SPIFFE ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The certificate to present now: the current one, or a new one once
    /// half of the current one's life has passed. A renewal that fails
    /// keeps the current one (it is still valid) and is tried again on the
    /// next handshake.
    pub fn certified(&self) -> Arc<CertifiedKey> {
        let now = SystemTime::now();
        {
            let cur = self.current.read().unwrap_or_else(|e| e.into_inner());
            if now < cur.renew_at {
                return cur.certified.clone();
            }
        }
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if now >= cur.renew_at
            && let Ok(fresh) = Self::fresh(&self.issuer, &self.id)
        {
            *cur = fresh;
        }
        cur.certified.clone()
    }
}

impl rustls::client::ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let key = self.certified();
        key.key.choose_scheme(sigschemes).map(|_| key)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for Identity {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified())
    }
}

/// The one SPIFFE ID a certificate (DER) names in its URI SANs, if it
/// names exactly one.
pub fn spiffe_id_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let first = uris.next()?;
    if uris.next().is_some() || !first.starts_with("spiffe://") {
        return None;
    }
    Some(first.to_string())
}
