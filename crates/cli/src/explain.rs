//! `warden explain`: whether the policy allows an action, and which rule
//! decides, exactly as a run would decide it.

use std::process::ExitCode;

use clap::Args;
use warden_policy::Action;

use crate::network::{self, NetworkArgs};
use crate::report::say;

#[derive(Args)]
#[command(
    override_usage = "warden explain [--manifest FILE] [NETWORK FLAGS] <ACTION> <TARGET>",
    long_about = "Say whether the policy made of a manifest and flags (the same ones `warden run` \
takes) allows ACTION on TARGET, and which rule decides. Prints `allow` or `deny`, the rule's id and \
the reason. Exit status: 0 allowed, 1 denied, 2 bad input.\n\n\
explain decides offline, on the target alone. A run also knows what the guest resolved: an \
address resolved from a permitted name is reached by that name's grants while the answer lives, \
and a deny on an exact name also covers the addresses the host resolves that name to.",
    after_help = "ACTION: connect, bind, listen, accept, udp-bind, udp-send, udp-recv, resolve, http-request.\n\
TARGET: HOST:PORT, IP:PORT or [IPv6]:PORT; a bare name (or IP literal) for resolve.\n\n\
Examples:\n  warden explain --manifest warden.toml connect db.example.com:5432\n  \
warden explain --allow-connect '*.example.com:443' connect evilexample.com:443\n  warden explain --allow-resolve '*.example.com' resolve api.example.com"
)]
pub struct ExplainArgs {
    #[command(flatten)]
    network: NetworkArgs,

    /// What the guest would do
    #[arg(value_name = "ACTION", value_parser = action)]
    action: Action,

    /// What it would do it to
    #[arg(value_name = "TARGET")]
    target: String,
}

fn action(s: &str) -> Result<Action, String> {
    Action::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

/// Decide and print; exit 0 when allowed, 1 when denied, 2 on bad input.
pub fn explain(args: &ExplainArgs) -> ExitCode {
    let resolved = match args.network.resolve(None) {
        Ok(r) => r,
        Err(e) => return crate::usage_error(&e),
    };
    let target = match network::explain_target(args.action, &args.target) {
        Ok(t) => t,
        Err(e) => return crate::usage_error(&e),
    };
    let policy = &resolved.network.policy;
    let d = policy.decide(args.action, &target);
    say(&format!(
        "{} {} {target}",
        d.verdict().as_str(),
        args.action
    ));
    say(&format!("rule: {}", d.rule()));
    say(&format!("reason: {}", d.reason()));
    if let Some(kind) = d.kind().and_then(|k| policy.kind(k)) {
        say(&format!("kind: {} ({})", kind.name, kind.describe()));
    } else if d.is_allowed() && args.action == Action::Connect {
        say("kind: none (plain TCP: the program's bytes go on the wire as they are)");
    } else if d.is_allowed() && args.action == Action::HttpRequest {
        say(
            "kind: none (http:// requests go as they are; https:// ones are TLS checked against the webpki roots)",
        );
    }
    // What a run adds that explain cannot see offline.
    let mut denied: Vec<&str> = policy.denied_names().collect();
    denied.sort_unstable();
    if d.is_allowed() && args.action.follows_pins() && !denied.is_empty() {
        say(&format!(
            "note: in a run this is refused for any address that a denied name resolves to ({}): the host resolves denied names itself",
            denied.join(", ")
        ));
    }
    if args.action.follows_pins()
        && let Some(note) = internal_note(policy, &d, &target)
    {
        say(&note);
    }
    if !d.is_allowed() && resolved.network.mode == warden_policy::Mode::Audit {
        say(
            "note: the policy mode is audit: in a run this is recorded as would-deny in the audit log, and allowed",
        );
    }
    if d.is_allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// When internal ranges apply to `target` (see `--allow-internal`): what a
/// run does that the offline decision cannot show.
fn internal_note(
    policy: &warden_policy::Policy,
    d: &warden_policy::Decision,
    target: &warden_policy::Target,
) -> Option<String> {
    use warden_policy::{Target, internal_range, ip_literal};
    let ip = match target {
        Target::Addr(a) => Some(a.ip()),
        Target::Name { host, .. } => ip_literal(host),
    };
    if let Some(ip) = ip {
        let range = internal_range(ip)?;
        return Some(format!(
            "note: {ip} is a {range} address: a name that resolves to it reaches it only through a grant marked internal (--allow-internal, or internal = true in the manifest); a grant on the address itself reaches it"
        ));
    }
    if !d.is_allowed() {
        return None;
    }
    let host = d.name().unwrap_or_default();
    let internal = policy
        .rules()
        .iter()
        .any(|r| r.id == d.rule() && r.internal);
    Some(if internal {
        format!(
            "note: the grant is marked internal: addresses {host} resolves to may be loopback, private, link-local or other internal addresses"
        )
    } else {
        format!(
            "note: in a run, an address {host} resolves to in an internal range (loopback, private, link-local, shared, documentation, ...) is refused: the grant is not marked internal (--allow-internal, or internal = true in the manifest)"
        )
    })
}
