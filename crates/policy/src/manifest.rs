//! The operator's manifest: a versioned TOML file that says everything the
//! network flags say, each right separately, with an id per rule.
//!
//! ```toml
//! version = 1
//! dns_server = "127.0.0.1:53"     # optional; default: the system's resolvers
//! audit = "audit.jsonl"           # optional; "-" is stderr
//!
//! [[allow]]
//! id = "api"
//! target = "api.example.com"      # IP, CIDR, host name, *.suffix or *
//! ports = "443"                   # N, N-M or *; may be left out only for resolve
//! rights = ["connect", "resolve"]
//!
//! [[deny]]
//! id = "metadata"
//! target = "169.254.0.0/16"
//! ports = "*"                     # optional; default *
//!
//! [[listen]]
//! name = "http"                   # optional; default tcpN
//! addr = "127.0.0.1:8080"
//! ```
//!
//! Unknown keys, a wrong type, an unknown right, a bad target or a repeated
//! id are errors that carry the line and column where they are, and say what
//! was expected. Parsing does no I/O.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::{Ports, Rights, Rule, RuleTarget};

/// The manifest version this Warden reads.
pub const VERSION: i64 = 1;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Manifest {
    /// Grants in file order, then denies in file order.
    pub rules: Vec<Rule>,
    /// The DNS server to resolve with, instead of the system's.
    pub dns_server: Option<SocketAddr>,
    /// Where to write the audit log (`-` for stderr), as written.
    pub audit: Option<String>,
    /// Listeners the host binds for the guest, in order.
    pub listen: Vec<Listen>,
}

/// A `[[listen]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The name the guest sees, if given.
    pub name: Option<String>,
    /// Where the listener comes from.
    pub on: ListenOn,
}

/// Where a pre-opened listener comes from: an address Warden binds, or a
/// listening socket a service manager handed to Warden itself (systemd's
/// `LISTEN_FDS` protocol), by descriptor number or by its name in
/// `LISTEN_FDNAMES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenOn {
    /// Bind and listen on this address.
    Addr(SocketAddr),
    /// The inherited listening socket at this descriptor (3 or above).
    Fd(u32),
    /// The inherited listening socket with this name.
    FdName(String),
}

impl fmt::Display for ListenOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenOn::Addr(a) => write!(f, "{a}"),
            ListenOn::Fd(n) => write!(f, "fd:{n}"),
            ListenOn::FdName(n) => write!(f, "fd:{n}"),
        }
    }
}

impl std::str::FromStr for ListenOn {
    type Err = String;

    /// `IP:PORT`, `fd:N` or `fd:NAME`.
    fn from_str(s: &str) -> Result<ListenOn, String> {
        if let Some(fd) = s.strip_prefix("fd:") {
            if let Ok(n) = fd.parse::<u32>() {
                return if n >= 3 {
                    Ok(ListenOn::Fd(n))
                } else {
                    Err(format!(
                        "`{s}`: an inherited listener is at fd 3 or above (0-2 are stdio)"
                    ))
                };
            }
            let ok = !fd.is_empty()
                && fd.len() <= 255
                && fd
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            return if ok {
                Ok(ListenOn::FdName(fd.to_string()))
            } else {
                Err(format!(
                    "`{s}`: expected fd:N or fd:NAME, NAME as in LISTEN_FDNAMES"
                ))
            };
        }
        s.parse::<SocketAddr>()
            .map(ListenOn::Addr)
            .map_err(|_| format!("expected IP:PORT (127.0.0.1:8080), fd:N or fd:NAME, not `{s}`"))
    }
}

/// Why a manifest was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct ManifestError {
    /// The file (or other origin) the text came from.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: Spanned<i64>,
    dns_server: Option<Spanned<String>>,
    audit: Option<Spanned<String>>,
    #[serde(default)]
    allow: Vec<RawAllow>,
    #[serde(default)]
    deny: Vec<RawDeny>,
    #[serde(default)]
    listen: Vec<RawListen>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    id: Spanned<String>,
    target: Spanned<String>,
    ports: Option<Spanned<String>>,
    rights: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeny {
    id: Spanned<String>,
    target: Spanned<String>,
    ports: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    name: Option<Spanned<String>>,
    addr: Spanned<String>,
}

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ManifestError {
        let at = span.start.min(self.text.len());
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ManifestError {
            origin: self.origin.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    fn parse<T>(
        &self,
        v: &Spanned<String>,
        what: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ManifestError> {
        f(v.get_ref()).map_err(|e| self.error(v.span(), format!("{what}: {e}")))
    }

    fn id(
        &self,
        id: &Spanned<String>,
        seen: &mut HashSet<String>,
    ) -> Result<String, ManifestError> {
        let s = id.get_ref();
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.error(
                id.span(),
                "expected a rule id: a non-empty word without spaces",
            ));
        }
        if !seen.insert(s.clone()) {
            return Err(self.error(
                id.span(),
                format!("rule id `{s}` is used twice; ids must be unique"),
            ));
        }
        Ok(s.clone())
    }
}

/// Parse and validate a manifest. `origin` names the file in errors.
pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
    let cx = Ctx { text, origin };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        cx.error(span, e.message().trim_end())
    })?;
    if *raw.version.get_ref() != VERSION {
        return Err(cx.error(
            raw.version.span(),
            format!(
                "unsupported manifest version {}; this Warden reads version {VERSION}",
                raw.version.get_ref()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut rules = Vec::new();
    for a in &raw.allow {
        let id = cx.id(&a.id, &mut seen)?;
        let target: RuleTarget = cx.parse(&a.target, "target", str::parse)?;
        let mut rights = Rights::NONE;
        for r in a.rights.get_ref() {
            rights = rights
                | Rights::from_name(r.get_ref()).ok_or_else(|| {
                    cx.error(
                        r.span(),
                        format!(
                            "unknown right `{}`; expected one of {}",
                            r.get_ref(),
                            Rights::all_names()
                        ),
                    )
                })?;
        }
        if rights.is_empty() {
            return Err(cx.error(
                a.rights.span(),
                format!(
                    "a grant needs at least one right; expected some of {}",
                    Rights::all_names()
                ),
            ));
        }
        let ports = match &a.ports {
            Some(p) => cx.parse(p, "ports", str::parse)?,
            None if rights == Rights::RESOLVE => Ports::ANY,
            None => {
                return Err(cx.error(
                    a.id.span(),
                    format!("grant `{id}` needs `ports` (N, N-M or *); only a resolve-only grant may leave it out"),
                ));
            }
        };
        rules.push(Rule::allow(id, target, ports, rights));
    }
    for d in &raw.deny {
        let id = cx.id(&d.id, &mut seen)?;
        let target: RuleTarget = cx.parse(&d.target, "target", str::parse)?;
        let ports = match &d.ports {
            Some(p) => cx.parse(p, "ports", str::parse)?,
            None => Ports::ANY,
        };
        rules.push(Rule::deny(id, target, ports));
    }
    let dns_server = match &raw.dns_server {
        Some(s) => Some(cx.parse(s, "dns_server", |v| {
            v.parse::<SocketAddr>().map_err(|_| {
                format!("expected IP:PORT, for example 127.0.0.1:53 or [::1]:53, not `{v}`")
            })
        })?),
        None => None,
    };
    let audit = match &raw.audit {
        Some(a) if a.get_ref().is_empty() => {
            return Err(cx.error(a.span(), "audit: expected a file path, or - for stderr"));
        }
        Some(a) => Some(a.get_ref().clone()),
        None => None,
    };
    let mut listen = Vec::new();
    let mut names = HashSet::new();
    for l in &raw.listen {
        let on = cx.parse(&l.addr, "addr", |v| v.parse::<ListenOn>())?;
        let name = match &l.name {
            Some(n) => {
                let s = n.get_ref();
                if s.is_empty() || s.contains([':', '=']) || s.chars().any(char::is_whitespace) {
                    return Err(
                        cx.error(n.span(), "name: expected a word without `:`, `=` or spaces")
                    );
                }
                if !names.insert(s.clone()) {
                    return Err(cx.error(n.span(), format!("listener name `{s}` is used twice")));
                }
                Some(s.clone())
            }
            None => None,
        };
        listen.push(Listen { name, on });
    }
    Ok(Manifest {
        rules,
        dns_server,
        audit,
        listen,
    })
}

impl fmt::Display for Manifest {
    /// The resolved policy, one rule per line with its id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            writeln!(f, "{}\t{r}", r.id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "w.toml").unwrap_err().to_string()
    }

    #[test]
    fn full_manifest_parses() {
        let m = parse(
            r#"
version = 1
dns_server = "127.0.0.1:5353"
audit = "-"

[[allow]]
id = "api"
target = "api.example.com"
ports = "443"
rights = ["connect", "resolve"]

[[allow]]
id = "names"
target = "*.example.com"
rights = ["resolve"]

[[deny]]
id = "metadata"
target = "169.254.0.0/16"

[[listen]]
name = "http"
addr = "127.0.0.1:8080"
"#,
            "w.toml",
        )
        .unwrap();
        let lines: Vec<String> = m.rules.iter().map(|r| format!("{} {r}", r.id)).collect();
        assert_eq!(
            lines,
            [
                "api allow connect,resolve api.example.com:443",
                "names allow resolve *.example.com:*",
                "metadata deny 169.254.0.0/16:*",
            ]
        );
        assert_eq!(m.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(m.audit.as_deref(), Some("-"));
        assert_eq!(
            m.listen,
            [Listen {
                name: Some("http".into()),
                on: ListenOn::Addr("127.0.0.1:8080".parse().unwrap())
            }]
        );
    }

    #[test]
    fn bad_manifests_say_where_and_what() {
        assert_eq!(
            err("version = 1\nlisten_on = 3\n"),
            "w.toml:2:1: unknown field `listen_on`, expected one of `version`, `dns_server`, `audit`, `allow`, `deny`, `listen`"
        );
        assert_eq!(
            err(
                "version = 1\n[[allow]]\nid = \"a\"\ntarget = \"10.0.0.0/8\"\nports = \"1\"\nrights = [\"connect\"]\nport = 3\n"
            ),
            "w.toml:7:1: unknown field `port`, expected one of `id`, `target`, `ports`, `rights`"
        );
        assert_eq!(
            err("version = 2\n"),
            "w.toml:1:11: unsupported manifest version 2; this Warden reads version 1"
        );
        assert_eq!(
            err("dns_server = \"1.1.1.1:53\"\n"),
            "w.toml:1:1: missing field `version`"
        );
        assert_eq!(
            err(
                "version = 1\n[[allow]]\nid = \"a\"\ntarget = \"10.0.0.0/8\"\nports = \"1\"\nrights = [\"connect\", \"fly\"]\n"
            ),
            "w.toml:6:22: unknown right `fly`; expected one of connect, bind, listen, accept, udp-bind, udp-send, udp-recv, resolve"
        );
        assert_eq!(
            err(
                "version = 1\n[[allow]]\nid = \"a\"\ntarget = \"10.0.0.0/33\"\nports = \"1\"\nrights = [\"connect\"]\n"
            ),
            "w.toml:4:10: target: `/33` is not a prefix length for 10.0.0.0 (0-32)"
        );
        assert_eq!(
            err(
                "version = 1\n[[allow]]\nid = \"a\"\ntarget = \"10.0.0.0/8\"\nrights = [\"connect\"]\n"
            ),
            "w.toml:3:6: grant `a` needs `ports` (N, N-M or *); only a resolve-only grant may leave it out"
        );
        assert_eq!(
            err(
                "version = 1\n[[deny]]\nid = \"x\"\ntarget = \"a.b\"\n[[deny]]\nid = \"x\"\ntarget = \"c.d\"\n"
            ),
            "w.toml:6:6: rule id `x` is used twice; ids must be unique"
        );
        assert_eq!(
            err("version = 1\n[[deny]]\nid = \"x\"\ntarget = \"a.b\"\nports = \"9-1\"\n"),
            "w.toml:5:9: ports: port range `9-1` is empty: 9 is above 1"
        );
        assert_eq!(
            err("version = 1\ndns_server = \"dns.local\"\n"),
            "w.toml:2:14: dns_server: expected IP:PORT, for example 127.0.0.1:53 or [::1]:53, not `dns.local`"
        );
        assert_eq!(
            err("version = 1\n[[listen]]\naddr = \"localhost:80\"\n"),
            "w.toml:3:8: addr: expected IP:PORT (127.0.0.1:8080), fd:N or fd:NAME, not `localhost:80`"
        );
        assert_eq!(
            err("version = \"1\"\n"),
            "w.toml:1:11: invalid type: string \"1\", expected i64"
        );
        assert!(err("version = 1\n[[allow]\n").starts_with("w.toml:2:"));
    }

    #[test]
    fn listeners_may_be_inherited() {
        let m = parse(
            "version = 1\n[[listen]]\naddr = \"fd:3\"\n[[listen]]\nname = \"web\"\naddr = \"fd:web\"\n",
            "w.toml",
        )
        .unwrap();
        assert_eq!(m.listen[0].on, ListenOn::Fd(3));
        assert_eq!(m.listen[1].on, ListenOn::FdName("web".into()));
        assert_eq!(m.listen[1].on.to_string(), "fd:web");
        assert_eq!(
            err("version = 1\n[[listen]]\naddr = \"fd:1\"\n"),
            "w.toml:3:8: addr: `fd:1`: an inherited listener is at fd 3 or above (0-2 are stdio)"
        );
    }
}
