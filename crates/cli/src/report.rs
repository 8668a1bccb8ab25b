//! Warden's words for the operator: the libraries hand over data (a denial
//! with the grant that would allow it, how a run ended), and this module
//! words it with the flags the operator can type.

use std::io::Write;
use std::sync::Arc;

use warden_host::{Event, Finished, LimitHit, Outcome, RefusedGrowth};
use warden_net::report::{Notice, denied_line, quiet_line};
use warden_net::{Action, Remedy};
use warden_policy::{Rights, RuleTarget, parse_target_ports};

use crate::values::show_duration;

/// Exit code for a guest stopped by `--timeout` or `--fuel` (as timeout(1)).
pub const EXIT_LIMIT: u8 = 124;
/// Exit code for a guest that trapped (as a process killed by SIGABRT).
pub const EXIT_TRAP: u8 = 134;

/// One line on stdout; a closed stdout loses it, nothing more.
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// The gate's reporter for the command line: denials with the flag that
/// would allow them.
pub fn reporter() -> warden_net::Reporter {
    Arc::new(|n| warden_net::out::line(&notice(n)))
}

/// The host's events for the command line: each a `warden:` line on
/// stderr, with the flag that changes it where there is one.
pub fn events() -> warden_host::Events {
    Arc::new(|e| warden_net::out::line(&event(e)))
}

/// An event in the command line's words.
pub fn event(e: &Event<'_>) -> String {
    match e {
        Event::Audit(s) | Event::AccessLog(s) if s.rotated > 0 => {
            format!("warden: {e} (the maximum size is --audit-max-size)")
        }
        other => format!("warden: {other}"),
    }
}

/// A notice in the command line's words.
pub fn notice(n: &Notice<'_>) -> String {
    match n {
        Notice::Denied {
            action,
            target,
            decision,
            remedy,
        } => {
            let mut line = denied_line(*action, target, decision);
            if let Some(hint) = remedy.as_ref().and_then(|r| flag_for(*action, r)) {
                line.push_str("; to allow it: ");
                line.push_str(&hint);
                if decision.internal_range().is_some() {
                    line.push_str(
                        ", or let the name reach internal addresses: --allow-internal (internal = true on a manifest grant)",
                    );
                }
            }
            line
        }
        Notice::Quiet { remote, budget } => quiet_line(*remote, *budget),
        Notice::Quota {
            quota,
            max,
            scope,
            target,
        } => {
            let flag = match quota {
                warden_net::Quota::ConnsOut => "--max-conns-out",
                warden_net::Quota::ConnsIn => "--max-conns-in",
                warden_net::Quota::UdpSockets => "--max-udp-sockets",
            };
            let raise = format!("raise it with {flag}, or {} in [limits]", quota.key());
            warden_net::report::quota_line(*quota, *max, *scope, target, &raise)
        }
        // TLS failures and caps name no flag.
        other => warden_net::report::plain(other),
    }
}

/// The flag that makes the grant `remedy`, when there is one and it is a
/// valid flag (it is parsed back as the flag would be; a hint Warden itself
/// would reject is never printed).
fn flag_for(action: Action, remedy: &Remedy) -> Option<String> {
    let target = match &remedy.target {
        RuleTarget::Net(c) => {
            let full = if c.addr().is_ipv4() { 32 } else { 128 };
            match (c.prefix_len() == full, c.addr().is_ipv6()) {
                (true, false) => c.addr().to_string(),
                (true, true) => format!("[{}]", c.addr()),
                (false, _) => remedy.target.to_string(),
            }
        }
        RuleTarget::Name(n) => n.to_string(),
    };
    let ports = remedy.ports;
    let r = remedy.rights;
    let text = if r == Rights::RESOLVE {
        format!("--allow-resolve {target}")
    } else if r == Rights::CONNECT {
        format!("--allow-connect {target}:{ports}")
    } else if r == Rights::BIND || r == Rights::LISTEN {
        format!("--allow-listen {target}:{ports}")
    } else if r == Rights::UDP_BIND {
        format!("--allow-udp-bind {target}:{ports}")
    } else if r == Rights::UDP_SEND || r == Rights::UDP_RECV {
        format!("--allow-udp {target}:{ports}")
    } else if r == Rights::ACCEPT {
        // No flag grants accepting from one peer: a listener accepts from
        // any peer no deny refuses.
        return Some(format!(
            "a manifest grant with the accept right for {target} (listeners accept from every peer no deny refuses)"
        ));
    } else {
        return None;
    };
    // The flag's value must parse as the flag parses it.
    let value = text.split_once(' ').map_or("", |(_, v)| v);
    let valid = if action == Action::Resolve {
        value.parse::<warden_policy::NamePattern>().is_ok()
    } else {
        parse_target_ports(value).is_ok()
    };
    valid.then_some(text)
}

/// Say how a run ended and give the exit status: the guest's own code, 124
/// for a limit, 134 for a trap. Also says what a limit refused on the way.
pub fn ending(finished: &Finished, verbose: bool) -> u8 {
    if let Some(refused) = finished.refused {
        warden_net::out::line(&match refused {
            RefusedGrowth::Memory(wanted) => format!(
                "warden: --max-memory refused the guest's growth of linear memory to {wanted} bytes"
            ),
            RefusedGrowth::Table(wanted) => format!(
                "warden: --max-table-elements (or --max-memory, which counts table elements too) refused the guest's growth of a table to {wanted} elements"
            ),
        });
    }
    match &finished.outcome {
        // Exit codes are 8 bits on Unix; pass the guest's through as the OS
        // would truncate it.
        Outcome::Exited(code) => *code as u8,
        Outcome::Limit(LimitHit::Timeout(d)) => {
            warden_net::out::line(&format!(
                "warden: guest stopped: --timeout {} reached",
                show_duration(*d)
            ));
            EXIT_LIMIT
        }
        Outcome::Limit(LimitHit::Fuel(n)) => {
            warden_net::out::line(&format!("warden: guest stopped: --fuel {n} exhausted"));
            EXIT_LIMIT
        }
        Outcome::Trapped {
            reason,
            backtrace,
            detail,
        } => {
            warden_net::out::line(&format!("warden: guest trapped: {reason}"));
            if let Some(bt) = backtrace {
                warden_net::out::raw(bt);
            }
            let rust_backtrace =
                std::env::var("RUST_BACKTRACE").is_ok_and(|v| !v.is_empty() && v != "0");
            if verbose || rust_backtrace {
                warden_net::out::line(&format!("warden: full error: {detail}"));
            }
            EXIT_TRAP
        }
    }
}

/// Warden's words for a host error: imports nothing provides and imports
/// outside the operator's world get one line each and what would change
/// it, as flags; anything else says itself.
pub fn host_error(e: &warden_host::HostError, verbose: bool) -> String {
    use warden_host::{HostError, ImportRemedy};
    match e {
        HostError::MissingImports { path, missing } => {
            let mut text = format!(
                "{}: nothing provides what it imports, so it cannot start:",
                path.display()
            );
            for m in missing {
                let how = match m.remedy {
                    ImportRemedy::Plug => "a component that exports it: --plug FILE",
                    ImportRemedy::Config => {
                        "Warden's config store: --config KEY=VALUE, or a component that exports it: --plug FILE"
                    }
                    ImportRemedy::KeyValue => {
                        "Warden's in-memory store: --keyvalue memory, or a component that exports it: --plug FILE"
                    }
                };
                text.push_str(&format!("\n  {} (satisfy it with {how})", m.name));
                if verbose {
                    text.push_str(&format!("\n    wasmtime: {}", m.detail));
                }
            }
            text
        }
        HostError::OutsideWorld { path, refused } => {
            let mut text = format!(
                "{}: it imports what the operator's world does not allow, so it cannot start:",
                path.display()
            );
            for name in refused {
                text.push_str(&format!("\n  {name}"));
            }
            text.push_str(
                "\n(allow one with --world-import PATTERN, or in the manifest's [world] imports; or satisfy it with a plug)",
            );
            text
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_net::Target;

    fn hint(action: Action, target: Target) -> Option<String> {
        flag_for(action, &Remedy::for_denial(action, &target)?)
    }

    #[test]
    fn hints_are_flags_warden_accepts() {
        let addr = |s: &str| Target::Addr(s.parse().unwrap());
        let name = |h: &str, port| Target::Name {
            host: h.into(),
            port,
        };
        assert_eq!(
            hint(Action::Connect, addr("127.0.0.1:9000")).unwrap(),
            "--allow-connect 127.0.0.1:9000"
        );
        assert_eq!(
            hint(Action::Connect, addr("[::1]:80")).unwrap(),
            "--allow-connect [::1]:80"
        );
        assert_eq!(
            hint(Action::Bind, addr("127.0.0.1:7000")).unwrap(),
            "--allow-listen 127.0.0.1:7000"
        );
        assert_eq!(
            hint(Action::UdpRecv, addr("127.0.0.2:5353")).unwrap(),
            "--allow-udp 127.0.0.2:*"
        );
        assert_eq!(
            hint(Action::Resolve, name("api.example.com", None)).unwrap(),
            "--allow-resolve api.example.com"
        );
        assert_eq!(
            hint(Action::HttpRequest, name("api.example.com", Some(8080))).unwrap(),
            "--allow-connect api.example.com:8080"
        );
        assert!(
            hint(Action::Accept, addr("127.0.0.2:4000"))
                .unwrap()
                .contains("manifest grant")
        );
        // No hint for what no flag could grant.
        assert_eq!(hint(Action::Resolve, name("a*b.example.com", None)), None);
        assert_eq!(hint(Action::Resolve, name(&"x".repeat(300), None)), None);
        assert_eq!(
            hint(
                Action::HttpRequest,
                name("evil.test:80@127.0.0.3", Some(80))
            ),
            None
        );
    }
}
