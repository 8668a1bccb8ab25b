//! TLS material on disk: certificate chains, private keys and CA bundles
//! in PEM, read and checked before anything runs (readable, parseable,
//! within their validity period; a key is checked against its
//! certificate where the configuration is built).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// What is wrong with a file of TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterialError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM item of the expected type, or a bad one.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected or found.
        what: String,
    },
    /// A certificate is not valid now.
    #[error("{}: the certificate for {subject} {when}", path.display())]
    Validity {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// `expired on ...` or `is not valid until ...`.
        when: String,
    },
}

/// What a certificate says about itself, for `warden check` and the audit
/// log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's distinguished name.
    pub subject: String,
    /// The SHA-256 of the DER certificate, in hex.
    pub sha256: String,
    /// Not valid before (seconds since the Unix epoch).
    pub not_before: i64,
    /// Not valid after (seconds since the Unix epoch).
    pub not_after: i64,
}

impl CertInfo {
    /// Read what `der` says; `None` if it does not parse as X.509.
    pub fn of(der: &[u8]) -> Option<CertInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let validity = cert.validity();
        Some(CertInfo {
            subject: cert.subject().to_string(),
            sha256: fingerprint(der),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// Whether it is valid at `now`; otherwise when it stops or starts
    /// being.
    pub fn check_now(&self, now: SystemTime) -> Result<(), String> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if now > self.not_after {
            Err(format!("expired on {}", date(self.not_after)))
        } else if now < self.not_before {
            Err(format!("is not valid until {}", date(self.not_before)))
        } else {
            Ok(())
        }
    }

    /// The end of its validity, as a date.
    pub fn expires(&self) -> String {
        date(self.not_after)
    }
}

/// The SHA-256 of a DER certificate, in hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn date(secs: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    crate::timestamp::rfc3339(t)
}

fn read(path: &Path) -> Result<Vec<u8>, MaterialError> {
    std::fs::read(path).map_err(|source| MaterialError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, what: impl Into<String>) -> MaterialError {
    MaterialError::Pem {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// A PEM certificate chain (leaf first), each certificate parseable and
/// valid now.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let certs = read_certs(path)?;
    for der in &certs {
        check_valid(path, der)?;
    }
    Ok(certs)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(pem_error(
            path,
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

fn check_valid(path: &Path, der: &CertificateDer<'_>) -> Result<CertInfo, MaterialError> {
    let info =
        CertInfo::of(der).ok_or_else(|| pem_error(path, "a certificate in it does not parse"))?;
    info.check_now(SystemTime::now())
        .map_err(|when| MaterialError::Validity {
            path: path.to_path_buf(),
            subject: info.subject.clone(),
            when,
        })?;
    Ok(info)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, MaterialError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        pem_error(
            path,
            format!("no private key in it (expected -----BEGIN PRIVATE KEY----- or an RSA or EC key; {e})"),
        )
    })
}

/// A PEM bundle of CA certificates to trust, each valid now.
pub fn read_roots(path: &Path) -> Result<RootCertStore, MaterialError> {
    let mut roots = RootCertStore::empty();
    for der in read_certs(path)? {
        check_valid(path, &der)?;
        roots
            .add(der)
            .map_err(|e| pem_error(path, format!("a CA certificate in it is not usable: {e}")))?;
    }
    Ok(roots)
}

/// What the leaf certificate of the chain in `path` says.
pub fn describe_chain(path: &Path) -> Result<CertInfo, MaterialError> {
    let certs = read_chain(path)?;
    check_valid(path, &certs[0])
}
