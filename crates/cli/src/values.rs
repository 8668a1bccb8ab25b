//! Parsers for flag values: sizes, durations, directory grants and
//! environment grants. Each returns an error message that names what was
//! expected, for clap to print next to the flag.

use std::path::PathBuf;
use std::time::Duration;

use warden_net::sockets::ListenOn;
use warden_wasi::DirGrant;

/// Parse a byte size: a whole number with an optional unit. `KiB`, `MiB`,
/// `GiB` (and the short `K`, `M`, `G`) are powers of 1024; `KB`, `MB`, `GB`
/// are powers of 1000; `B` or no unit means bytes. Units are not case
/// sensitive. Zero is refused: it would grant no memory at all.
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "`{s}` is not a size: expected a whole number with an optional unit, like 64MiB, 512KiB or 1GiB"
        ));
    }
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit `{unit}`: use B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000)"
            ));
        }
    };
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is too large"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes == 0 {
        return Err("a size limit of zero would allow nothing at all".into());
    }
    Ok(bytes)
}

/// Parse a count: a positive whole number.
pub fn count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("a limit of zero would allow nothing at all".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number, like 100000")),
    }
}

/// Parse a duration: a whole number and a unit, one of `ms`, `s`, `m`, `h`
/// (and `us` for the impatient). A bare number is refused: `--timeout 5`
/// could mean seconds or milliseconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let expected = "expected a whole number and a unit (us, ms, s, m, h), like 500ms or 2s";
    if num.is_empty() {
        return Err(format!("`{s}` is not a duration: {expected}"));
    }
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is too large"))?;
    let d = match unit.trim() {
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "" => return Err(format!("`{s}` has no unit: {expected}")),
        other => return Err(format!("`{s}` has an unknown unit `{other}`: {expected}")),
    }
    .ok_or_else(|| format!("`{s}` is too large"))?;
    if d.is_zero() {
        return Err("a timeout of zero would stop the guest before it starts".into());
    }
    Ok(d)
}

/// Print a duration the way `duration` reads it.
pub fn show_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1_000) {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

/// Parse a fuel amount: a positive whole number.
pub fn fuel(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("fuel of zero would stop the guest before its first instruction".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "`{s}` is not a whole number of fuel units, like 1000000"
        )),
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
    fn sizes() {
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("64mib"), Ok(64 << 20));
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("512KiB"), Ok(512 << 10));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("2GB"), Ok(2_000_000_000));
        assert_eq!(size("10kb"), Ok(10_000));
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("100B"), Ok(100));
        assert_eq!(size("64 MiB"), Ok(64 << 20));
    }

    #[test]
    fn bad_sizes() {
        assert_eq!(
            size("lots"),
            Err("`lots` is not a size: expected a whole number with an optional unit, like 64MiB, 512KiB or 1GiB".into())
        );
        assert_eq!(
            size("64XB"),
            Err("`64XB` has an unknown unit `XB`: use B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000)".into())
        );
        assert_eq!(
            size("1.5GiB").unwrap_err(),
            "`1.5GiB` has an unknown unit `.5GiB`: use B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000)"
        );
        assert_eq!(
            size("-1").unwrap_err(),
            "`-1` is not a size: expected a whole number with an optional unit, like 64MiB, 512KiB or 1GiB"
        );
        assert_eq!(
            size("0MiB"),
            Err("a size limit of zero would allow nothing at all".into())
        );
        assert_eq!(
            size("99999999999999999999"),
            Err("`99999999999999999999` is too large".into())
        );
        assert_eq!(
            size("99999999999GiB"),
            Err("`99999999999GiB` is too large".into())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(show_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(show_duration(Duration::from_secs(2)), "2s");
        assert_eq!(show_duration(Duration::from_micros(1500)), "1500us");
    }

    #[test]
    fn bad_durations() {
        assert_eq!(
            duration("5"),
            Err("`5` has no unit: expected a whole number and a unit (us, ms, s, m, h), like 500ms or 2s".into())
        );
        assert_eq!(
            duration("5 fortnights"),
            Err("`5 fortnights` has an unknown unit `fortnights`: expected a whole number and a unit (us, ms, s, m, h), like 500ms or 2s".into())
        );
        assert_eq!(
            duration("soon"),
            Err("`soon` is not a duration: expected a whole number and a unit (us, ms, s, m, h), like 500ms or 2s".into())
        );
        assert_eq!(
            duration("0s"),
            Err("a timeout of zero would stop the guest before it starts".into())
        );
        assert_eq!(
            duration("99999999999999999999h"),
            Err("`99999999999999999999h` is too large".into())
        );
        assert_eq!(
            duration("9999999999999999999h"),
            Err("`9999999999999999999h` is too large".into())
        );
    }

    #[test]
    fn fuel_values() {
        assert_eq!(fuel("1000"), Ok(1000));
        assert_eq!(
            fuel("0"),
            Err("fuel of zero would stop the guest before its first instruction".into())
        );
        assert_eq!(
            fuel("1e6"),
            Err("`1e6` is not a whole number of fuel units, like 1000000".into())
        );
    }

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
