//! Parsers for flag values: sizes, durations, directory grants and
//! environment grants. Each returns an error message that names what was
//! expected, for clap to print next to the flag.

use std::path::PathBuf;

pub use warden_host::units::{duration, fuel, show_duration, size};
use warden_net::socket::ListenOn;
use warden_wasi::DirGrant;

/// Parse a count: a positive whole number.
pub fn count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("a limit of zero would allow nothing at all".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number, like 100000")),
    }
}

/// Parse `HOST[::GUEST]`. GUEST defaults to HOST. HOST must be an existing
/// directory.
pub fn dir(s: &str, read_only: bool) -> Result<DirGrant, String> {
    let (host, guest) = match s.split_once("::") {
        Some((h, g)) => (h, g),
        None => (s, s),
    };
    if host.is_empty() {
        return Err(format!(
            "`{s}` names no host directory: expected HOST[::GUEST], like ./data::/data"
        ));
    }
    if guest.is_empty() {
        return Err(format!(
            "`{s}` names no guest path after `::`: expected HOST[::GUEST], like ./data::/data"
        ));
    }
    let meta = std::fs::metadata(host).map_err(|e| format!("{host}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("{host}: not a directory"));
    }
    Ok(DirGrant {
        host: PathBuf::from(host),
        guest: guest.to_string(),
        read_only,
    })
}

/// A `--listen` value: the name (if given), where, and the text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenFlag {
    pub name: Option<String>,
    pub on: ListenOn,
    pub text: String,
}

/// Parse `[NAME=]ADDR` for `--listen`. ADDR is an IP socket address
/// (`127.0.0.1:6000`, `[::1]:6000`), or `fd:N` / `fd:NAME` for a listening
/// socket a service manager handed to Warden; NAME, the name the guest
/// sees in `LISTEN_FDNAMES`, is letters, digits, `-`, `_` and `.`.
pub fn listen(s: &str) -> Result<ListenFlag, String> {
    let (name, addr) = match s.split_once('=') {
        Some((n, a)) => (Some(n), a),
        None => (None, s),
    };
    if let Some(name) = name {
        let ok = !name.is_empty()
            && name.len() <= 255
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(format!(
                "`{name}` is not a listener name: use letters, digits, `-`, `_` and `.` (the name appears in LISTEN_FDNAMES, where `:` separates names)"
            ));
        }
    }
    let on: ListenOn = addr.parse().map_err(|e: String| {
        if addr.starts_with("fd:") {
            e
        } else {
            format!("`{addr}` is not an address to listen on: expected IP:PORT, like 127.0.0.1:6000 or [::1]:6000, or fd:N / fd:NAME for a socket handed to Warden")
        }
    })?;
    Ok(ListenFlag {
        name: name.map(str::to_string),
        on,
        text: s.to_string(),
    })
}

/// Parse `NAME=VALUE`, or `NAME` to copy that one variable from Warden's
/// own environment (which must have it).
pub fn env(s: &str) -> Result<(String, String), String> {
    env_from(s, |name| std::env::var(name).ok())
}

fn env_from(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<(String, String), String> {
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (s, None),
    };
    if name.is_empty() {
        return Err(format!(
            "`{s}` has no variable name: expected NAME=VALUE or NAME"
        ));
    }
    let value = match value {
        Some(v) => v,
        None => lookup(name).ok_or_else(|| {
            format!("{name} is not set in Warden's environment, so there is nothing to copy; use {name}=VALUE")
        })?,
    };
    Ok((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_forms() {
        let tmp = std::env::temp_dir();
        let host = tmp.to_str().unwrap();
        let same = dir(host, false).unwrap();
        assert_eq!(same.host, tmp);
        assert_eq!(same.guest, host);
        assert!(!same.read_only);
        let mapped = dir(&format!("{host}::/data"), true).unwrap();
        assert_eq!(mapped.host, tmp);
        assert_eq!(mapped.guest, "/data");
        assert!(mapped.read_only);
        let dot = dir(&format!("{host}::."), false).unwrap();
        assert_eq!(dot.guest, ".");
    }

    #[test]
    fn bad_dirs() {
        assert_eq!(
            dir("::/data", false).unwrap_err(),
            "`::/data` names no host directory: expected HOST[::GUEST], like ./data::/data"
        );
        let tmp = std::env::temp_dir();
        let host = tmp.to_str().unwrap();
        assert_eq!(
            dir(&format!("{host}::"), false).unwrap_err(),
            format!(
                "`{host}::` names no guest path after `::`: expected HOST[::GUEST], like ./data::/data"
            )
        );
        assert_eq!(
            dir("/definitely/not/here::/x", false).unwrap_err(),
            "/definitely/not/here: No such file or directory (os error 2)"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        let f = file.path().to_str().unwrap().to_string();
        assert_eq!(dir(&f, false).unwrap_err(), format!("{f}: not a directory"));
    }

    #[test]
    fn listen_forms() {
        let l = listen("127.0.0.1:6000").unwrap();
        assert_eq!(
            (l.name, l.on),
            (None, ListenOn::Addr("127.0.0.1:6000".parse().unwrap()))
        );
        let l = listen("http=[::1]:8080").unwrap();
        assert_eq!(
            (l.name.as_deref(), l.on),
            (Some("http"), ListenOn::Addr("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(
            listen("web.v2_a-b=127.0.0.1:0").unwrap().name.as_deref(),
            Some("web.v2_a-b")
        );
        assert_eq!(listen("fd:3").unwrap().on, ListenOn::Fd(3));
        assert_eq!(
            listen("web=fd:web").unwrap().on,
            ListenOn::FdName("web".into())
        );
        assert!(listen("fd:2").unwrap_err().contains("fd 3 or above"));
        assert_eq!(
            listen("localhost:6000").unwrap_err(),
            "`localhost:6000` is not an address to listen on: expected IP:PORT, like 127.0.0.1:6000 or [::1]:6000, or fd:N / fd:NAME for a socket handed to Warden"
        );
        assert!(
            listen("127.0.0.1")
                .unwrap_err()
                .starts_with("`127.0.0.1` is not an address")
        );
        assert!(
            listen("a:b=127.0.0.1:1")
                .unwrap_err()
                .contains("`a:b` is not a listener name")
        );
        assert!(
            listen("=127.0.0.1:1")
                .unwrap_err()
                .contains("`` is not a listener name")
        );
    }

    #[test]
    fn env_forms() {
        let lookup = |n: &str| (n == "HOME").then(|| "/home/me".to_string());
        assert_eq!(env_from("A=1", lookup), Ok(("A".into(), "1".into())));
        assert_eq!(env_from("A=", lookup), Ok(("A".into(), "".into())));
        assert_eq!(env_from("A=b=c", lookup), Ok(("A".into(), "b=c".into())));
        assert_eq!(
            env_from("HOME", lookup),
            Ok(("HOME".into(), "/home/me".into()))
        );
        assert_eq!(
            env_from("NOPE", lookup),
            Err("NOPE is not set in Warden's environment, so there is nothing to copy; use NOPE=VALUE".into())
        );
        assert_eq!(
            env_from("=x", lookup),
            Err("`=x` has no variable name: expected NAME=VALUE or NAME".into())
        );
    }
}
