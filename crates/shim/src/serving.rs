//! An HTTP component (`wasi:http/proxy` 0.2, `wasi:http/service` 0.3) in a
//! container is served, as `warden serve` serves it, on the listeners its
//! manifest names (`[[listen]]`; TLS when the listener has a certificate):
//! a fresh instance per request under the manifest's policy and limits
//! (per request). Without a `[[listen]]` it is not started: the address to
//! serve on is the operator's choice, never a default.

use anyhow::bail;
use warden_host::serve::{AppSpec, Reuse, Route, ServeConfig, ServeLimits, ServeTls};
use warden_host::{ListenSpec, RunConfig};
use warden_wasi::Grants;

/// What a run configuration for an HTTP component serves.
pub fn config(run: RunConfig) -> anyhow::Result<ServeConfig> {
    if run.listeners.is_empty() {
        bail!(
            "the program is an HTTP component, served on the addresses its manifest's [[listen]] entries give; it has none (for example: [[listen]] addr = \"0.0.0.0:8080\")"
        );
    }
    let mut tls = None;
    for l in &run.listeners {
        if let Some(t) = &l.tls {
            if tls.is_some() {
                bail!("one certificate serves every listener: give it on one [[listen]] only");
            }
            tls = Some(ServeTls {
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: t.client_ca.clone(),
                identity: t.identity,
                peer_ids: t.peer_ids.clone(),
            });
        }
    }
    let listeners = run
        .listeners
        .into_iter()
        .map(|l| ListenSpec { tls: None, ..l })
        .collect();
    Ok(ServeConfig {
        telemetry: run.telemetry.clone(),
        apps: vec![AppSpec {
            name: "app".into(),
            file: run.file,
            route: Route::default(),
            grants: Grants {
                closed_stdin: true,
                ..run.grants
            },
            network: run.network,
            limits: run.limits,
            reuse: Reuse::default(),
            imports: run.imports,
        }],
        addrs: Vec::new(),
        listeners,
        tls,
        limits: ServeLimits::default(),
        access_log: None,
        access_log_max_size: warden_net::linelog::DEFAULT_MAX_SIZE,
        metrics: None,
        cache: run.cache,
        pooling: true,
        handshake_timeout: warden_net::tls::DEFAULT_HANDSHAKE_TIMEOUT,
        verbose: run.verbose,
        events: run.events,
        // One app: its own quotas (in its network) are the whole bound.
        quota_ceiling: warden_net::Quotas::default(),
    })
}
