//! `env_file`: dotenv lines, read the way docker compose and most dotenv libraries do.
//!
//! - `KEY=VALUE`, with an optional `export ` before the key; blank lines and lines starting
//!   with `#` are skipped;
//! - an unquoted value is trimmed, and ends at ` #` (a comment);
//! - `'single quoted'` is taken as it is; `"double quoted"` understands `\n`, `\t`, `\"`,
//!   `\\` and `\$`; either may be followed by a comment;
//! - keys are letters, digits and `_`, not starting with a digit (dots and dashes are
//!   accepted too, as compose does).
//!
//! A later line wins over an earlier one with the same key.

use std::collections::BTreeMap;

/// A line that is not a dotenv line: its number (from 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub why: String,
}

pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, DotenvError> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |why: &str| DotenvError { line: n + 1, why: why.to_string() };
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(fail("expected `KEY=VALUE`"));
        };
        let key = key.trim_end();
        let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(fail(&format!("`{key}` is not a variable name (letters, digits and `_`)")));
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let body = &rest[1..];
                let Some(end) = closing_quote(body, q) else {
                    return Err(fail(&format!("the value's {q} is never closed (values span one line)")));
                };
                let after = body[end + 1..].trim();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(fail("text after the quoted value (a comment starts with `#`)"));
                }
                if q == '\'' { body[..end].to_string() } else { unescape(&body[..end]) }
            }
            _ => match rest.find(" #").or_else(|| rest.find("\t#")) {
                Some(i) => rest[..i].trim_end().to_string(),
                None => rest.trim_end().to_string(),
            },
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// Where the closing quote is (a `\"` inside double quotes does not close).
fn closing_quote(body: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if q == '"' && !escaped => escaped = true,
            c if c == q && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other @ ('"' | '\\' | '$')) => out.push(other),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_quotes_and_comments() {
        let text = "# a comment\n\nA=1\nexport B = two words  \nC='it is # not a comment'\nD=\"x\\ny \\\"q\\\" \\$HOME\" # c\nE=val # trailing\nF=\nA=again\nG=a#b\n";
        let env = parse_dotenv(text).expect("valid");
        assert_eq!(env["A"], "again", "a later line wins");
        assert_eq!(env["B"], "two words");
        assert_eq!(env["C"], "it is # not a comment", "single quotes keep everything");
        assert_eq!(env["D"], "x\ny \"q\" $HOME");
        assert_eq!(env["E"], "val");
        assert_eq!(env["F"], "");
        assert_eq!(env["G"], "a#b", "a # inside a word is not a comment");
    }

    #[test]
    fn says_which_line_is_wrong() {
        assert_eq!(parse_dotenv("A=1\njust words\n").unwrap_err().line, 2);
        let e = parse_dotenv("1X=2").unwrap_err();
        assert!(e.why.contains("`1X` is not a variable name"), "{}", e.why);
        let e = parse_dotenv("A=\"open").unwrap_err();
        assert!(e.why.contains("never closed"), "{}", e.why);
        let e = parse_dotenv("A='x' y").unwrap_err();
        assert!(e.why.contains("text after the quoted value"), "{}", e.why);
    }
}
