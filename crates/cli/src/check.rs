//! `warden check`: validate a manifest and print the policy it resolves to.

use std::path::Path;
use std::process::ExitCode;

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
        match (&l.name, &l.on) {
            (Some(n), on) => say(&format!("listen {n}={on}")),
            (None, on @ warden_net::sockets::ListenOn::Addr(_)) => {
                say(&format!("listen tcp{i}={on}"))
            }
            (None, on) => say(&format!("listen {on}")),
        }
    }
    if let Some(dns) = m.dns_server {
        say(&format!("dns-server {dns}"));
    }
    if let Some(audit) = &m.audit {
        say(&format!("audit {audit}"));
    }
    let policy = warden_policy::Policy::new(m.rules.clone());
    for r in policy.allow_all_rules() {
        warden_net::out::line(&format!(
            "warden: warning: rule {} ({r}) allows everything of its kind; grant only what the program needs",
            r.id
        ));
    }
    ExitCode::SUCCESS
}
