//! Durations written as strings: `"500ms"`, `"10s"`, `"5m"`, `"1h"`, or sums like `"1m30s"`.

use std::time::Duration;

/// Parses a duration such as `"500ms"`, `"1.5s"` or `"1m30s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| format!("`{}` is not a number", &rest[..num_len]))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "" => return Err("missing unit (use ms, s, m or h)".into()),
            other => return Err(format!("unknown unit `{other}` (use ms, s, m or h)")),
        };
        // Past what a duration can hold (about 584 billion years) is a mistake, not a panic.
        let part = Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is too long"))?;
        total = total.checked_add(part).ok_or_else(|| format!("`{text}` is too long"))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

/// Formats a duration for humans: `850ms`, `1.23s`, `2m05s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a huge duration panicked while converting float seconds.
    #[test]
    fn a_duration_too_long_to_hold_is_an_error() {
        assert_eq!(parse_duration("99999999999999999999h"), Err("`99999999999999999999h` is too long".to_string()));
        assert_eq!(parse_duration("18446744073709551615s1s"), Err("`18446744073709551615s1s` is too long".to_string()));
        assert!(parse_duration("5000000000000000h").is_ok(), "long, but a duration can hold it");
    }

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn rejects_bad_durations() {
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert_eq!(parse_duration("10 minutes"), Err("unknown unit `minutes` (use ms, s, m or h)".into()));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.23s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }
}
