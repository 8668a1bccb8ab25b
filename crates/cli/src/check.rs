//! `warden check`: validate a manifest (and the TLS material its kinds
//! and listeners name) and print the policy it resolves to.

use std::path::Path;
use std::process::ExitCode;

use std::sync::Arc;

use warden_net::Tls;
use warden_net::tls::material;
use warden_policy::Kind;
use warden_policy::manifest::default_listener_name;

use crate::network;
use crate::report::say;

/// Print the resolved policy of the manifest at `file`, or its error.
pub fn check(file: &Path) -> ExitCode {
    let m = match network::read_manifest(file) {
        Ok(m) => m,
        Err(e) => return crate::usage_error(&e),
    };
    let width = m.rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
    if m.rules.is_empty() {
        say("# no rules: every network action is denied");
    }
    for r in &m.rules {
        say(&format!("{:width$}  {r}", r.id));
    }
    for (i, l) in m.listen.iter().enumerate() {
        match l.name.clone().or_else(|| l.on.default_name(i)) {
            Some(n) => say(&format!("listen {n}={}", l.on)),
            None => say(&format!("listen {}", l.on)),
        }
    }
    for pool in &m.pools {
        say(&pool.to_string());
    }
    if let Some(dns) = m.dns_server {
        say(&format!("dns-server {dns}"));
    }
    if let Some(audit) = &m.audit {
        say(&format!("audit {audit}"));
    }
    let policy = match m.policy() {
        Ok(p) => p,
        Err(e) => return crate::usage_error(&e.to_string()),
    };
    // Relative files are relative to the manifest's directory, as in a run.
    let base = file.parent().unwrap_or(Path::new(""));
    let mut kinds: Vec<Arc<Kind>> = policy
        .kinds()
        .map(|k| Arc::new(warden_host::manifest::relative_to(Kind::clone(k), base)))
        .collect();
    for (i, l) in m.listen.iter().enumerate() {
        if let Some(tls) = &l.tls {
            let name = l.name.clone().unwrap_or_else(|| default_listener_name(i));
            let kind = tls.kind(&name);
            kinds.push(Arc::new(warden_host::manifest::relative_to(kind, base)));
        }
    }
    // The TLS material is read and checked as a run would: readable PEM,
    // keys that match their certificates, nothing expired.
    if let Err(e) = Tls::load(&kinds, warden_net::tls::DEFAULT_HANDSHAKE_TIMEOUT) {
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
