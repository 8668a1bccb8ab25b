//! `warden check`: validate a manifest (and the TLS material its kinds
//! and listeners name) and print the policy it resolves to.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use warden_host::manifest::{Loaded, ManifestProviders, ManifestTime};
use warden_host::virt_text::{show_monotonic_clock, show_wall_clock};
use warden_net::tls::material;
use warden_net::{AuditDest, DnsConfig, Tls};
use warden_policy::{Kind, Policy};

use crate::report::say;

/// Print the resolved policy of the manifest at `file`, or its error.
pub fn check(file: &Path) -> ExitCode {
    // The one reading a run, a serve and the shim make: paths resolved
    // against the manifest's directory, `[limits]` read.
    let m = match Loaded::read(file) {
        Ok(m) => m,
        Err(e) => return crate::usage_error(&e.to_string()),
    };
    let width = m.rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
    if m.rules.is_empty() {
        say("# no rules: every network action is denied");
    }
    for r in &m.rules {
        say(&format!("{:width$}  {r}", r.id));
    }
    // With the name the guest will see, defaults included.
    for (i, l) in m.listen.iter().enumerate() {
        match l.name.clone().or_else(|| l.on.default_name(i)) {
            Some(n) => say(&format!("listen {n}={}", l.on)),
            None => say(&format!("listen {}", l.on)),
        }
    }
    for pool in &m.pools {
        say(&pool.to_string());
    }
    if let DnsConfig::Server(dns) = m.dns {
        say(&format!("dns-server {dns}"));
    }
    match &m.audit {
        Some(AuditDest::File(path)) => say(&format!("audit {}", path.display())),
        Some(AuditDest::Stderr) => say("audit -"),
        None => {}
    }
    let limits = &m.limits;
    if let Some(t) = limits.timeout {
        say(&format!("limit timeout {t:?}"));
    }
    if let Some(bytes) = limits.max_memory {
        say(&format!("limit max-memory {bytes} bytes"));
    }
    if let Some(fuel) = limits.fuel {
        say(&format!("limit fuel {fuel}"));
    }
    for q in warden_net::Quota::ALL {
        if let Some(n) = limits.quotas.get(q) {
            say(&format!(
                "quota {} {n} ({} open at once)",
                q.key(),
                q.counts()
            ));
        }
    }
    if let Some(r) = limits.egress_rate {
        say(&format!("rate max_egress_rate {r} bytes/s"));
    }
    if let Some(r) = limits.ingress_rate {
        say(&format!("rate max_ingress_rate {r} bytes/s"));
    }
    let mut issuer = None;
    if let Some(i) = &m.identity {
        match warden_net::identity::Issuer::load(i) {
            Ok(loaded) => {
                let issuer = issuer.insert(loaded);
                let expires = warden_net::timestamp::rfc3339(issuer.ca_not_after());
                say(&format!(
                    "identity spiffe://{}{} signed by {} (CA expires {expires}), each certificate valid {}",
                    i.trust_domain,
                    i.template
                        .as_deref()
                        .unwrap_or(warden_policy::spiffe::DEFAULT_TEMPLATE),
                    i.ca_cert.display(),
                    crate::values::show_duration(i.ttl)
                ));
            }
            Err(e) => return crate::usage_error(&format!("[identity]: {e}")),
        }
    }
    if let Some(t) = &m.telemetry {
        // Where it would go, checked as `run` and `serve` check it (the
        // environment's variables are the running process's, not here).
        let config = warden_telemetry::TelemetryConfig {
            endpoint: t.endpoint.clone(),
        };
        match config.resolve(|_| None) {
            Ok(Some(e)) => say(&format!(
                "telemetry: spans to {}, metrics to {}{}",
                e.traces,
                e.metrics,
                if t.audit {
                    format!(", audit records to {}", e.logs)
                } else {
                    String::new()
                }
            )),
            Ok(None) => {
                say("telemetry: off here (no endpoint; OTEL_EXPORTER_OTLP_ENDPOINT may give one)")
            }
            Err(e) => return crate::usage_error(&format!("[telemetry]: {e}")),
        }
    }
    for line in time_lines(&m.time) {
        say(&line);
    }
    match import_lines(&m.imports) {
        Ok(lines) => lines.iter().for_each(|l| say(l)),
        Err(e) => return crate::usage_error(&e),
    }
    for line in provider_lines(&m.providers) {
        say(&line);
    }
    let policy = match Policy::with_kinds(m.rules.clone(), m.kinds.clone(), m.require_tls) {
        Ok(p) => p,
        Err(e) => return crate::usage_error(&crate::network::kind_error(&e)),
    };
    let kinds: Vec<Arc<Kind>> = policy
        .kinds()
        .cloned()
        .chain(m.listener_kinds().into_iter().map(Arc::new))
        .collect();
    // The TLS material is read and checked as a run would: readable PEM,
    // keys that match their certificates, nothing expired.
    // Kinds that present the identity are checked with one made for a
    // stand-in digest.
    let identity = match issuer
        .as_ref()
        .map(|i| warden_net::identity::Identity::new(i, &"0".repeat(64), Some("check")))
    {
        Some(Err(e)) => return crate::usage_error(&format!("[identity]: {e}")),
        Some(Ok(id)) => Some(id),
        None => None,
    };
    if let Err(e) = Tls::load_with(&kinds, warden_net::tls::DEFAULT_HANDSHAKE_TIMEOUT, identity) {
        return crate::usage_error(&e.to_string());
    }
    for k in &kinds {
        say(&format!("kind {}: {}", k.name, k.describe()));
        for (what, path) in [
            ("certificate", &k.cert),
            ("client certificate", &k.client_cert),
        ] {
            if let Some(path) = path
                && let Ok(info) = material::describe_chain(path)
            {
                say(&format!(
                    "  {what} {}: {}, valid until {}, sha256 {}",
                    path.display(),
                    info.subject,
                    info.expires(),
                    info.sha256
                ));
            }
        }
    }
    for a in &m.apps {
        let host = a.host.as_deref().unwrap_or("");
        let mut line = format!(
            "app {}: {host}{} -> {}",
            a.name,
            a.path,
            a.component.display()
        );
        if let Some(policy) = &a.manifest {
            line.push_str(&format!(" (policy {})", policy.display()));
        }
        say(&line);
        let time = match ManifestTime::read(&a.time, file, &format!("app `{}`", a.name)) {
            Ok(t) => t,
            Err(e) => return crate::usage_error(&e.to_string()),
        };
        for line in time_lines(&time) {
            say(&format!("  {line}"));
        }
        let imports = warden_host::manifest::imports_relative_to(&a.imports, &m.base);
        match import_lines(&imports) {
            Ok(lines) => lines.iter().for_each(|l| say(&format!("  {l}"))),
            Err(e) => return crate::usage_error(&e),
        }
        let providers = match ManifestProviders::read(
            &a.providers,
            file,
            &format!("app `{}`.keyvalue", a.name),
        ) {
            Ok(p) => p,
            Err(e) => return crate::usage_error(&e.to_string()),
        };
        for line in provider_lines(&providers) {
            say(&format!("  {line}"));
        }
    }
    if m.require_tls {
        say("require-tls: every connect grant is TLS");
    }
    for r in policy.allow_all_rules() {
        warden_net::out::line(&format!(
            "warden: warning: rule {} ({r}) allows everything of its kind; grant only what the program needs",
            r.id
        ));
    }
    ExitCode::SUCCESS
}

/// The clocks and seed a manifest (or an app) sets, one line each.
fn time_lines(t: &ManifestTime) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(w) = t.wall {
        lines.push(format!("wall-clock {}", show_wall_clock(w)));
    }
    if let Some(m) = t.monotonic {
        lines.push(format!("monotonic-clock {}", show_monotonic_clock(m)));
    }
    if let Some(seed) = t.random_seed {
        lines.push(format!(
            "random-seed {seed} (every random source a fixed stream: tests and replay only)"
        ));
    }
    lines
}

/// Each plug (its file, digest and what it exports, which is what it can
/// satisfy) and the world, one line each; a plug that cannot be read or
/// does not match its pin is an error.
fn import_lines(imports: &warden_host::Imports) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for spec in &imports.plugs {
        let plug =
            warden_host::compose::Plug::read(spec, warden_host::Limits::default().max_module_size)
                .map_err(|e| e.to_string())?;
        let exports = plug.exports().map_err(|e| e.to_string())?;
        lines.push(format!(
            "plug {}: sha256 {}{}, exports {}",
            plug.file.display(),
            hex_digest(&plug.sha256),
            if spec.sha256.is_some() {
                " (pinned)"
            } else {
                ""
            },
            exports.join(", ")
        ));
    }
    if let Some(world) = &imports.world {
        let patterns: Vec<String> = world.imports.iter().map(ToString::to_string).collect();
        lines.push(format!("world imports {}", patterns.join(", ")));
    }
    Ok(lines)
}

fn hex_digest(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The built-in providers turned on, one line each (config keys, not
/// their values, which may be secrets).
fn provider_lines(p: &ManifestProviders) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(config) = &p.config {
        let keys: Vec<&str> = config.iter().map(|(k, _)| k.as_str()).collect();
        lines.push(format!(
            "config wasi:config/store with keys {}",
            keys.join(", ")
        ));
    }
    if let Some(size) = p.keyvalue {
        lines.push(format!(
            "keyvalue wasi:keyvalue in memory, at most {size} bytes"
        ));
    }
    lines
}
