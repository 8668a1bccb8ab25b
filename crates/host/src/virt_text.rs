//! Virtual clocks as operators write them, for flags and manifests alike:
//! `--wall-clock real|frozen[:TIME]|start:TIME` with TIME in RFC 3339
//! (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.5+02:00`), and
//! `--monotonic-clock virtual|real`. Each error names what was expected;
//! [`show_wall_clock`] and [`show_monotonic_clock`] print a setting the way
//! these read it.

use std::time::Duration;

use warden_wasi::{MonotonicClock, WallClock};

const WALL_EXPECTED: &str = "expected real, frozen, frozen:TIME or start:TIME, with TIME in RFC 3339 like 2024-05-01T12:00:00Z";

/// Parse a wall clock setting. `frozen` alone is the Unix epoch,
/// 1970-01-01T00:00:00Z.
pub fn wall_clock(s: &str) -> Result<WallClock, String> {
    let t = s.trim();
    let (mode, time) = match t.split_once(':') {
        Some((mode, time)) => (mode, Some(time)),
        None => (t, None),
    };
    match (mode, time) {
        ("real", None) => Ok(WallClock::Real),
        ("frozen", None) => Ok(WallClock::Frozen(Duration::ZERO)),
        ("frozen", Some(time)) => Ok(WallClock::Frozen(rfc3339(time)?)),
        ("start", Some(time)) => Ok(WallClock::Start(rfc3339(time)?)),
        ("start", None) => Err(format!(
            "`{s}` needs the time to start at: start:TIME, with TIME like 2024-05-01T12:00:00Z"
        )),
        _ => Err(format!("`{s}` is not a wall clock: {WALL_EXPECTED}")),
    }
}

/// Parse a monotonic clock setting.
pub fn monotonic_clock(s: &str) -> Result<MonotonicClock, String> {
    match s.trim() {
        "virtual" => Ok(MonotonicClock::Virtual),
        "real" => Ok(MonotonicClock::Real),
        _ => Err(format!(
            "`{s}` is not a monotonic clock: expected virtual (counts from the instance's start; the default) or real (the host's)"
        )),
    }
}

/// A wall clock setting as [`wall_clock`] reads it.
pub fn show_wall_clock(w: WallClock) -> String {
    match w {
        WallClock::Real => "real".into(),
        WallClock::Frozen(at) => format!("frozen:{}", show_rfc3339(at)),
        WallClock::Start(at) => format!("start:{}", show_rfc3339(at)),
    }
}

/// A monotonic clock setting as [`monotonic_clock`] reads it.
pub fn show_monotonic_clock(m: MonotonicClock) -> String {
    match m {
        MonotonicClock::Virtual => "virtual".into(),
        MonotonicClock::Real => "real".into(),
    }
}

/// Parse an RFC 3339 date and time (`YYYY-MM-DDTHH:MM:SS[.fraction]` then
/// `Z` or `±HH:MM`; `t`, `z` and a space for `T` are accepted, as the RFC
/// allows) into the time since the Unix epoch. Times before 1970 are
/// refused: a WASI wall clock cannot read them.
pub fn rfc3339(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time like 2024-05-01T12:00:00Z");
    let b = s.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, ok: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if ok.contains(c) => Ok(()),
            _ => Err(bad()),
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let mut at = 19;
    let mut nanos: u32 = 0;
    if b.get(at) == Some(&b'.') {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(bad());
        }
        for (i, d) in b[at + 1..at + 1 + digits].iter().enumerate() {
            if i < 9 {
                nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
            }
        }
        at += 1 + digits;
    }
    let offset = match b.get(at) {
        Some(b'Z' | b'z') if b.len() == at + 1 => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == at + 6 => {
            sep(at + 3, b":")?;
            let (h, m) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let minutes = h * 60 + m;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return Err(bad()),
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("`{s}`: there is no month {month}")),
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(format!("`{s}`: that date or time does not exist"));
    }
    // Leap seconds read as the second after (POSIX time has none).
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset * 60;
    let secs = u64::try_from(secs).map_err(|_| {
        format!("`{s}` is before 1970-01-01T00:00:00Z, which a WASI wall clock cannot show")
    })?;
    Ok(Duration::new(secs, nanos))
}

/// Days from 1970-01-01 to the given date, in the proleptic Gregorian
/// calendar (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Print a time since the epoch in RFC 3339, UTC (as [`rfc3339`] reads it).
pub fn show_rfc3339(at: Duration) -> String {
    let secs = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let time = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    match at.subsec_nanos() {
        0 => format!("{time}Z"),
        n => format!("{time}.{}Z", format!("{n:09}").trim_end_matches('0')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_reads_known_instants() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Ok(Duration::ZERO));
        assert_eq!(
            rfc3339("2024-05-01T12:00:00Z"),
            Ok(Duration::from_secs(1_714_564_800))
        );
        assert_eq!(
            rfc3339("2024-05-01T14:00:00.25+02:00"),
            Ok(Duration::new(1_714_564_800, 250_000_000))
        );
        assert_eq!(
            rfc3339("2000-02-29t00:00:00z"),
            Ok(Duration::from_secs(951_782_400))
        );
    }

    #[test]
    fn rfc3339_refuses_what_is_not_one() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00+2",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "1969-12-31T23:59:59Z",
            "2024-05-01T12:00:00Zjunk",
        ] {
            assert!(rfc3339(bad).is_err(), "{bad} was read");
        }
        assert!(
            rfc3339("1969-12-31T23:59:59Z")
                .unwrap_err()
                .contains("before 1970")
        );
    }

    #[test]
    fn times_print_as_they_are_read() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2024-05-01T12:00:00Z",
            "2000-02-29T23:59:59.5Z",
            "2099-12-31T00:00:00.000000001Z",
        ] {
            assert_eq!(show_rfc3339(rfc3339(text).unwrap()), text);
        }
    }

    #[test]
    fn every_printed_time_reads_back_the_same() {
        // Steps of a prime number of seconds (and nanoseconds) through
        // 1970..2300 cross every month, leap day and century rule.
        let mut secs = 0u64;
        let mut nanos = 0u32;
        while secs < 10_413_792_000 {
            let at = Duration::new(secs, nanos);
            assert_eq!(rfc3339(&show_rfc3339(at)), Ok(at), "{}", show_rfc3339(at));
            secs += 86_400 * 17 + 3_607;
            nanos = (nanos + 999_983) % 1_000_000_000;
        }
    }

    #[test]
    fn clock_settings_read_and_print_back() {
        assert_eq!(wall_clock("real"), Ok(WallClock::Real));
        assert_eq!(wall_clock("frozen"), Ok(WallClock::Frozen(Duration::ZERO)));
        for text in [
            "real",
            "frozen:2024-05-01T12:00:00Z",
            "start:2030-01-01T00:00:00Z",
        ] {
            assert_eq!(show_wall_clock(wall_clock(text).unwrap()), text);
        }
        assert!(wall_clock("start").unwrap_err().contains("start:TIME"));
        assert!(wall_clock("fast").is_err());
        assert!(wall_clock("frozen:yesterday").is_err());
        assert_eq!(monotonic_clock("real"), Ok(MonotonicClock::Real));
        assert_eq!(monotonic_clock("virtual"), Ok(MonotonicClock::Virtual));
        assert!(monotonic_clock("frozen").is_err());
    }
}
