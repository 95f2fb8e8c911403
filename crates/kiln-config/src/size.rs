//! Sizes written as strings: `"16MiB"`, `"512KiB"`, `"1GiB"`, `"100MB"` or a plain number of
//! bytes.

/// Parses a size such as `"16MiB"` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return Err(format!("expected a number at `{text}`"));
    }
    let number: u64 = text[..digits].parse().map_err(|_| format!("`{text}` is too large"))?;
    let unit: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` (use B, KiB, MiB or GiB)")),
    };
    number.checked_mul(unit).ok_or_else(|| format!("`{text}` is too large"))
}

/// Formats a size for humans in the largest binary unit that divides it: `16MiB`, `1500B`.
pub fn format_size(bytes: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert!(parse_size("18446744073709551615GiB").is_err());
        assert_eq!(format_size(16 << 20), "16MiB");
        assert_eq!(format_size(1500), "1500B");
    }
}
