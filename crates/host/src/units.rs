//! Sizes, durations and fuel as operators write them (`64MiB`, `500ms`,
//! `1000000`), for flags and manifests alike. Each error names what was
//! expected.

use std::time::Duration;

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

/// Parse a bandwidth, `SIZE/s` (see [`size`]; `/s` may be left out):
/// bytes per second.
pub fn rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let amount = t.strip_suffix("/s").unwrap_or(t);
    size(amount).map_err(|e| format!("{e} (a rate is a size per second, like 2MiB/s or 500KiB/s)"))
}

/// Parse a quota: a whole number of sockets or connections, 1 or more.
pub fn quota(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err(
            "a quota of zero would allow nothing at all; deny it with the policy instead".into(),
        ),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number, like 64")),
    }
}

/// Parse a key-value store setting, `memory` or `memory:SIZE` (see
/// [`size`]): an in-memory store of at most SIZE bytes (default
/// [`warden_wasi::keyvalue::DEFAULT_KEYVALUE_SIZE`]). Its bound.
pub fn keyvalue_store(s: &str) -> Result<u64, String> {
    match s.trim().split_once(':') {
        None if s.trim() == "memory" => Ok(warden_wasi::keyvalue::DEFAULT_KEYVALUE_SIZE),
        Some(("memory", bound)) => size(bound),
        _ => Err(format!(
            "`{s}` is not a key-value store: expected memory or memory:SIZE (like memory:16MiB), an in-memory store (the only kind Warden has)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_quotas() {
        assert_eq!(rate("2MiB/s"), Ok(2 << 20));
        assert_eq!(rate("500KB/s"), Ok(500_000));
        assert_eq!(rate("4096"), Ok(4096));
        assert!(rate("fast").unwrap_err().contains("2MiB/s"));
        assert!(rate("0/s").is_err());
        assert_eq!(quota("64"), Ok(64));
        assert!(quota("0").is_err());
        assert!(quota("-1").is_err());
    }

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
    fn keyvalue_stores_read() {
        assert_eq!(keyvalue_store("memory"), Ok(4 << 20));
        assert_eq!(keyvalue_store("memory:1MiB"), Ok(1 << 20));
        assert!(
            keyvalue_store("redis://x")
                .unwrap_err()
                .contains("memory:SIZE")
        );
        assert!(keyvalue_store("memory:0").is_err());
    }
}
