//! RFC 3339 timestamps with milliseconds, in UTC, without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats a point in time as `2026-11-22T10:04:05.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Reads what [`rfc3339`] writes (`2026-11-22T10:04:05.123Z`); `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| text.get(from..to)?.parse::<u64>().ok();
    let (y, m, d) =
        (i64::try_from(num(0, 4)?).ok()?, u32::try_from(num(5, 7)?).ok()?, u32::try_from(num(8, 10)?).ok()?);
    let (hh, mm, ss, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + std::time::Duration::from_secs(secs) + std::time::Duration::from_millis(ms))
}

/// Reads an HTTP date (RFC 9110 §5.6.7) as `Retry-After` may carry it: the preferred
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), and the obsolete RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms that a
/// recipient must accept. `None` for anything else.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = |m: &str| MONTHS.iter().position(|x| *x == m).and_then(|i| u32::try_from(i + 1).ok());
    let clock = |t: &str| -> Option<u64> {
        let mut parts = t.split(':');
        let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [h, m, s].iter().any(|p| p.len() != 2) {
            return None;
        }
        let (h, m, s): (u64, u64, u64) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
        (h < 24 && m < 60 && s <= 60).then_some(h * 3600 + m * 60 + s)
    };
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let (y, m, d, secs) = match words.as_slice() {
        // IMF-fixdate
        [wd, d, mon, y, t, "GMT"] if wd.ends_with(',') && d.len() == 2 && y.len() == 4 => {
            (y.parse::<i64>().ok()?, month(mon)?, d.parse::<u32>().ok()?, clock(t)?)
        }
        // RFC 850: a two-digit year is in the past 50 years (RFC 9110); 19xx is near enough.
        [wd, date, t, "GMT"] if wd.ends_with(',') => {
            let mut f = date.split('-');
            let (d, mon, y) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || d.len() != 2 || y.len() != 2 {
                return None;
            }
            let y: i64 = y.parse().ok()?;
            (if y < 70 { 2000 + y } else { 1900 + y }, month(mon)?, d.parse().ok()?, clock(t)?)
        }
        // asctime
        [_wd, mon, d, t, y] if y.len() == 4 => (y.parse().ok()?, month(mon)?, d.parse().ok()?, clock(t)?),
        _ => return None,
    };
    if !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    Some(UNIX_EPOCH + std::time::Duration::from_secs(days * 86_400 + secs))
}

/// (year, month, day) to days since 1970-01-01; Howard Hinnant's algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn reads_the_three_http_date_forms() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t));
        for bad in [
            "",
            "120",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 951_782_400_000, 1_795_000_000_123, 4_102_444_799_999] {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{}", rfc3339(t));
        }
        for bad in ["", "2026-11-18T11:06:40Z", "2026-13-18T11:06:40.123Z", "2026-11-18 11:06:40.123Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
