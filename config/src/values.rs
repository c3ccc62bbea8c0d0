//! Parsers of the string forms of values: durations and byte sizes.

use std::time::Duration;

/// Parses a duration written as numbers with units, humantime-style: `"100ms"`, `"2s"`,
/// `"1m"`, `"1m30s"`, `"1h 5m"`, `"10 ms"`. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m` (or `min`),
/// `h`. The numbers are whole; `"0"` alone is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration; write e.g. \"500ms\" or \"2s\"".to_owned());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {rest:?}; write e.g. \"500ms\" or \"2s\""
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let (multiplier, divisor): (u64, u64) = match unit {
            "ns" => (1, 1_000_000_000),
            "us" | "µs" => (1, 1_000_000),
            "ms" => (1, 1_000),
            "s" => (1, 1),
            "m" | "min" => (60, 1),
            "h" => (3600, 1),
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit after {number}; use ns, us, ms, s, m or h"
                ));
            }
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?}; use ns, us, ms, s, m or h"
                ));
            }
        };
        let part = if divisor == 1 {
            number
                .checked_mul(multiplier)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("invalid duration {text:?}: too large"))?
        } else {
            let nanos = u128::from(number) * (1_000_000_000 / u128::from(divisor));
            let secs = u64::try_from(nanos / 1_000_000_000)
                .map_err(|_| format!("invalid duration {text:?}: too large"))?;
            // The remainder of a division by 10^9 fits a u32.
            Duration::new(secs, (nanos % 1_000_000_000) as u32)
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
    }
    Ok(total)
}

/// Formats a duration in the syntax [`parse_duration`] reads: `"1m30s"`, `"500ms"`,
/// `"0s"`.
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// Parses a byte size with a unit: `"64MiB"`, `"512 KiB"`, `"1GB"`, `"4096B"` (units `B`,
/// `KiB`, `MiB`, `GiB`, `TiB`, `kB`, `MB`, `GB`, `TB`), or a bare number of bytes.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(format!(
            "invalid size {text:?}: expected a number of bytes, e.g. \"64MiB\""
        ));
    }
    let number: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("invalid size {text:?}: number too large"))?;
    let multiplier: u64 = match text[digits..].trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        unit => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {unit:?}; use B, KiB, MiB, GiB, kB, MB or GB"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 5m"), Ok(Duration::from_secs(3900)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("100").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(parse_duration("10 ms"), Ok(Duration::from_millis(10)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn durations_round_trip() {
        for text in ["0s", "500ms", "2s", "1m30s", "1h", "1s250ms", "3us", "10ns"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_byte_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert!(parse_byte_size("64 MiBs").is_err());
        assert!(parse_byte_size("lots").is_err());
    }
}
