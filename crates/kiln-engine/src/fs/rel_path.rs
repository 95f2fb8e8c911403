//! Root-relative paths as kiln holds them: `/`-separated `String`s that stand for the raw
//! bytes of the names on disk, whatever those bytes are.
//!
//! A Unix file name is bytes, not necessarily UTF-8 (`bad\xff.c`). Every path kiln lists is
//! kept in its *escaped* form: valid UTF-8 is kept as it is, and each byte that is not part
//! of valid UTF-8 becomes one character of the private-use range U+10FF80..=U+10FFFF
//! (byte `0x80 + n` ↦ U+10FF80 + n; only bytes ≥ 0x80 can be invalid). A name that really
//! contains one of those characters has the character's own four bytes escaped, so the
//! mapping is a bijection between byte strings and escaped strings: two names on disk never
//! share an escaped form, and [`raw`] gives back exactly the bytes that [`escape`] was given.
//!
//! Why strings and not `OsString`: sorting, prefix lookups, glob matching (`*` and `?` match
//! an escaped byte like any other character), serde formats and the event stream all work on
//! the escaped form unchanged, and for the names every real project has (UTF-8) it is the
//! name itself. What must see the bytes does: the file system ([`under`]), keys and
//! fingerprints ([`raw`]), the stat cache. What a person reads shows the name lossily
//! ([`display`], like `Path::display`).

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The first escape character: byte `0x80` (every byte that can be invalid UTF-8 is ≥ 0x80).
const ESCAPE_BASE: u32 = 0x10_FF00;
const ESCAPE_FIRST: u32 = ESCAPE_BASE + 0x80;

fn is_escape(c: char) -> bool {
    u32::from(c) >= ESCAPE_FIRST
}

fn escape_byte(out: &mut String, b: u8) {
    debug_assert!(b >= 0x80, "ASCII bytes are always valid UTF-8");
    out.push(char::from_u32(ESCAPE_BASE + u32::from(b)).expect("U+10FF80..=U+10FFFF are scalar values"));
}

/// The escaped form of a name or path given as bytes (borrowed when it is UTF-8 without
/// escape characters, as nearly every name is).
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes)
        && !text.chars().any(is_escape)
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_escape(c) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    escape_byte(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            escape_byte(&mut out, b);
        }
    }
    Cow::Owned(out)
}

/// The escaped form of one file name.
pub fn escape_name(name: &OsStr) -> Cow<'_, str> {
    escape(name.as_bytes())
}

/// The raw bytes an escaped path stands for: what keys, fingerprints and the stat cache use.
pub fn raw(rel: &str) -> Cow<'_, [u8]> {
    if !rel.chars().any(is_escape) {
        return Cow::Borrowed(rel.as_bytes());
    }
    let mut out = Vec::with_capacity(rel.len());
    for c in rel.chars() {
        if is_escape(c) {
            out.push(u8::try_from(u32::from(c) - ESCAPE_BASE).expect("an escape stands for one byte"));
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// The path on disk an escaped root-relative path stands for (relative, like `rel`).
pub fn to_path(rel: &str) -> Cow<'_, Path> {
    match raw(rel) {
        Cow::Borrowed(b) => Cow::Borrowed(Path::new(OsStr::from_bytes(b))),
        Cow::Owned(b) => Cow::Owned(PathBuf::from(<std::ffi::OsString as OsStringExt>::from_vec(b))),
    }
}

/// `root` joined with an escaped root-relative path: the file itself (the root for `""`).
pub fn under(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() { root.to_path_buf() } else { root.join(to_path(rel)) }
}

/// An escaped path as a person should read it: bytes that are not UTF-8 shown as U+FFFD,
/// as `Path::display` shows them. For messages and events, never for lookups.
pub fn display(rel: &str) -> Cow<'_, str> {
    match raw(rel) {
        Cow::Borrowed(_) => Cow::Borrowed(rel),
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// Paths as events carry them: each shown with [`display`].
pub fn display_all<'a>(paths: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    paths.into_iter().map(|p| display(p).into_owned()).collect()
}

/// The escaped, `/`-separated form of a relative path's components.
pub fn from_relative(path: &Path) -> String {
    let mut out = String::new();
    for c in path.components() {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(&escape_name(c.as_os_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_are_their_own_escaped_form() {
        for name in ["src/main.c", "", "é/日本.txt", "a b/c"] {
            assert!(matches!(escape(name.as_bytes()), Cow::Borrowed(_)), "{name}");
            assert!(matches!(raw(name), Cow::Borrowed(_)), "{name}");
            assert_eq!(display(name), name);
        }
    }

    #[test]
    fn every_byte_string_round_trips_and_no_two_share_a_form() {
        let cases: Vec<Vec<u8>> = vec![
            b"bad\xff.c".to_vec(),
            b"\x80\x81\xfe\xff".to_vec(),
            b"half\xc3".to_vec(),
            b"ok\xc3\xa9".to_vec(),
            // A name that really holds an escape character, and the bytes that spell it.
            "x\u{10FFFF}y".as_bytes().to_vec(),
            b"x\xf4\x8f\xbf\xbfy".to_vec(),
            b"x\xffy".to_vec(),
            b"\xed\xa0\x80".to_vec(), // a surrogate encoded: not UTF-8
        ];
        let mut forms = std::collections::HashSet::new();
        for bytes in &cases {
            let escaped = escape(bytes).into_owned();
            assert_eq!(raw(&escaped).as_ref(), bytes.as_slice(), "{escaped:?}");
            assert_eq!(escape(&raw(&escaped)), escaped, "canonical");
            forms.insert(escaped);
        }
        // The first two spellings of U+10FFFF are the same bytes.
        assert_eq!(forms.len(), cases.len() - 1, "{forms:?}");
        assert_ne!(escape(b"x\xffy"), escape("x\u{10FFFF}y".as_bytes()));
    }

    #[test]
    fn paths_on_disk_and_for_people() {
        let rel = escape(b"src/bad\xff.c").into_owned();
        assert_eq!(under(Path::new("/r"), &rel).as_os_str().as_bytes(), b"/r/src/bad\xff.c");
        assert_eq!(under(Path::new("/r"), ""), Path::new("/r"));
        assert_eq!(display(&rel), "src/bad\u{FFFD}.c");
        assert_eq!(from_relative(Path::new(OsStr::from_bytes(b"src/bad\xff.c"))), rel);
    }
}
