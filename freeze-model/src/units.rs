//! Durations as people write them (`500ms`, `2s`, `1.5s`, `3m`, `1h`, `250us`, `10ns`), and as
//! freezewatch prints them: `fmt_ms` in finding messages, `fmt_secs` in reports and verdicts,
//! `fmt_clock` on the TUI.
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("`{0}` has no unit; write e.g. 500ms, 2s, 3m")]
    NoUnit(String),
    #[error("`{0}`: unknown unit `{1}` (use ns, us, ms, s, m, h)")]
    Unit(String, String),
    #[error("`{0}` is not a number followed by a unit")]
    Number(String),
}

pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if unit.is_empty() {
        return Err(DurationError::NoUnit(s.to_owned()));
    }
    let value: f64 = num.parse().map_err(|_| DurationError::Number(s.to_owned()))?;
    let nanos_per = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return Err(DurationError::Unit(s.to_owned(), unit.to_owned())),
    };
    let nanos = value * nanos_per;
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(DurationError::Number(s.to_owned()));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// "12.3 ms": durations inside finding messages.
pub fn fmt_ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

/// Linux's signal names (x86-64 numbering; the same on every architecture but alpha, mips,
/// parisc and sparc), by number from 1.
const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// "SIGKILL" for 9; "SIGRTMIN+2", "signal 70" beyond the named ones.
pub fn signal_name(signal: u32) -> String {
    match signal {
        1..=31 => SIGNALS[signal as usize - 1].to_owned(),
        32..=64 => format!("SIGRTMIN+{}", signal - 32),
        _ => format!("signal {signal}"),
    }
}

/// "0.012s": durations in reports and verdicts.
pub fn fmt_secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// "2026-11-28 08:57:24 UTC": a Unix time in milliseconds, for report headers.
pub fn fmt_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// "2.500s", then "12.5s" from 10 s on: clocks and offsets on the TUI's narrow columns.
pub fn fmt_clock(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 { format!("{s:.3}s") } else { format!("{s:.1}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_read_as_calendars_do() {
        assert_eq!(fmt_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_utc(1_795_856_244_000), "2026-11-28 08:57:24 UTC");
        assert_eq!(fmt_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("10ns", 10),
            ("250us", 250_000),
            ("500ms", 500_000_000),
            ("2s", 2_000_000_000),
            ("1.5s", 1_500_000_000),
            ("3m", 180_000_000_000),
            ("1h", 3_600_000_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("5"), Err(DurationError::NoUnit("5".into())));
        assert_eq!(
            parse_duration("5 parsecs"),
            Err(DurationError::Unit("5 parsecs".into(), " parsecs".into()))
        );
        assert_eq!(parse_duration("1.2.3s"), Err(DurationError::Number("1.2.3s".into())));
        assert_eq!(parse_duration("s"), Err(DurationError::Number("s".into())));
    }
}
