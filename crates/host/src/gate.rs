//! An instance's or an app's gate, made from its [`Network`] in one place
//! for `run` and `serve`: the TLS of the policy's kinds read and checked,
//! the DNS configuration, the reporter, and the audit log.

use std::sync::Arc;

use warden_net::identity::Identity;
use warden_net::{AuditLog, GateBuilder, Policy, Tls};

use crate::{HostError, Network};

impl Network {
    /// The TLS configurations of `policy`'s kinds, read and checked, with
    /// this network's handshake timeout and the workload's `identity`.
    pub(crate) fn tls(
        &self,
        policy: &Policy,
        identity: Option<Arc<Identity>>,
    ) -> Result<Arc<Tls>, HostError> {
        let timeout = self
            .handshake_timeout
            .unwrap_or(warden_net::tls::DEFAULT_HANDSHAKE_TIMEOUT);
        Ok(Arc::new(Tls::load_with(policy.kinds(), timeout, identity)?))
    }

    /// The identity of the program whose SHA-256 is `sha256` (hex), as
    /// `app` under `serve`, if this network issues identities.
    pub(crate) fn identity(
        &self,
        sha256: &str,
        app: Option<&str>,
    ) -> Result<Option<Arc<Identity>>, HostError> {
        match &self.identity {
            None => Ok(None),
            Some(issuer) => Identity::new(issuer, sha256, app)
                .map(Some)
                .map_err(HostError::Identity),
        }
    }

    /// A gate over `policy` and its `tls`, with this network's DNS and
    /// reporter; the caller adds what only it knows (an audit log, an
    /// observer).
    pub(crate) fn gate(&self, policy: Policy, tls: Arc<Tls>) -> GateBuilder {
        let builder = warden_net::Gate::builder(policy)
            .dns(self.dns.clone())
            .tls(tls)
            .mode(self.mode)
            .quotas(self.quotas)
            .rates(warden_net::Rates::new(self.egress_rate, self.ingress_rate));
        match &self.reporter {
            Some(reporter) => builder.reporter(reporter.clone()),
            None => builder,
        }
    }

    /// This network's audit log, if it has one, opened for `instance`
    /// running the program whose SHA-256 is `sha256` (hex).
    ///
    /// With `mirror` (audit records as OpenTelemetry logs), records also
    /// go there, and there only when no audit log is configured.
    pub(crate) fn audit_log(
        &self,
        instance: &str,
        sha256: &str,
        mirror: Option<Arc<dyn warden_net::AuditSink>>,
    ) -> Result<Option<AuditLog>, HostError> {
        let Some(dest) = &self.audit else {
            return Ok(mirror.map(|m| {
                AuditLog::with_writer(
                    Box::new(std::io::sink()),
                    warden_net::audit::QUEUE,
                    instance,
                    sha256,
                )
                .mirrored(Some(m))
            }));
        };
        let max = self
            .audit_max_size
            .unwrap_or(warden_net::linelog::DEFAULT_MAX_SIZE);
        AuditLog::open(dest, max, instance, sha256)
            .map(|log| Some(log.mirrored(mirror)))
            .map_err(HostError::Audit)
    }
}
