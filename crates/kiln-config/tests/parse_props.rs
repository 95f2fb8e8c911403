//! Whatever is in kiln.toml, reading it never panics: random bytes and random TOML-ish text
//! give a configuration or diagnostics, and every diagnostic renders with a line and column
//! inside the file.

use std::path::Path;

use kiln_config::{LoadError, parse_bytes};
use proptest::prelude::*;

fn check(bytes: &[u8]) {
    match parse_bytes(bytes, Path::new("kiln.toml"), Path::new("/nonexistent"), None) {
        Ok(_) => {}
        Err(LoadError::Invalid(diags)) => {
            assert!(!diags.0.is_empty(), "an error names at least one mistake");
            let lines = String::from_utf8_lossy(bytes).lines().count().max(1);
            for d in diags.0.iter().take(kiln_config::MAX_SHOWN) {
                let (line, col) = d.line_col();
                assert!(line >= 1 && line <= lines + 1 && col >= 1, "{d}: line {line} of {lines}");
                let text = d.render(false);
                assert!(text.starts_with("error: "), "{text}");
                let _ = d.render(true);
            }
            let _ = diags.render(false);
            let _ = diags.to_string();
        }
        Err(e) => panic!("only diagnostics come from text: {e}"),
    }
}

const KEYS: &[&str] = &[
    "cmd",
    "image",
    "inputs",
    "outputs",
    "deps",
    "after",
    "env",
    "dir",
    "timeout",
    "retries",
    "cache",
    "ports",
    "replicas",
    "restart",
    "ready",
    "stop_signal",
    "stop_timeout",
    "jobs",
    "debounce",
    "engine",
];

/// Keys with values meant for them, right and wrong, so that the checks of each value run.
const FITTING: &[(&str, &str)] = &[
    ("cmd", "\"true\""),
    ("cmd", "\"echo é\""),
    ("image", "\"a\""),
    ("image", "\"docker.io/library/nginx\""),
    ("image", "{ name = \"n\", context = \"c\", file = \"/abs\" }"),
    ("deps", "[\"a\", \"b\"]"),
    ("deps", "[\"c\", \"ab\", \"zz\"]"),
    ("after", "[\"a\", \"b\"]"),
    ("after", "[\"cc\"]"),
    ("timeout", "\"0s\""),
    ("timeout", "\"1m30s\""),
    ("timeout", "\"5000000000000000h\""),
    ("stop_timeout", "\"0ms\""),
    ("stop_timeout", "\"2s\""),
    ("replicas", "0"),
    ("replicas", "7"),
    ("replicas", "64"),
    ("ports", "[\"6553${KILN_REPLICA}:80\"]"),
    ("ports", "[\"127.0.0.1::80\", \"[::1]:8080:80/udp\", \"8000-7000:80\"]"),
    ("ports", "[\"\", \":\", \"::::\", \"[\", \"[::1]\", \"1/\", \"é:80\"]"),
    ("ready", "{ http = \"http://127.0.0.1:80${KILN_REPLICA}/\" }"),
    ("ready", "{ http = \"HTTPS://x\", timeout = \"0s\" }"),
    ("ready", "{ http = \"http://user@h/\" }"),
    ("ready", "{ http = \"http://[::1]x/\" }"),
    ("ready", "{ http = \"http://é:80é/\" }"),
    ("ready", "{ tcp = \"localhost:5432\", period = \"0s\" }"),
    ("ready", "{ tcp = \"[::1\" }"),
    ("ready", "{ tcp = \":\" }"),
    ("ready", "{ log = 'a{99999999}' }"),
    ("ready", "{ log = '[z-a]' }"),
    ("ready", "{ log = '(?P<>x)' }"),
    ("ready", "{ log = '\\' }"),
    ("ready", "{ log = '(é' }"),
    ("ready", "{ cmd = \"true\", failures = 1001 }"),
    ("restart", "\"sometimes\""),
    ("stop_signal", "\"SIGTREM\""),
    ("jobs", "0"),
    ("debounce", "\"fast\""),
    ("engine", "\"podmna\""),
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"true\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"250ms\"".to_string()),
        Just("\"99999999999999999999h\"".to_string()),
        Just("\"10 minutes\"".to_string()),
        Just("[\"src/**\", \"../x\", \"/abs\", \"src/[a\"]".to_string()),
        Just("[\"8080:70000\", \"[::1]:80\", \"1808${KILN_REPLICA}:80\", \"::\", \"a-b:c\", \"80/tpc\"]".to_string()),
        Just("[\"8080:80\"]".to_string()),
        Just("{ http = \"https://h/\" }".to_string()),
        Just("{ http = \"http://127.0.0.1:8080/\", period = \"1s\" }".to_string()),
        Just("{ http = \"http://[::1\", period = \"0ms\" }".to_string()),
        Just("{ tcp = \"h:\" }".to_string()),
        Just("{ tcp = \"[::1]:99999\", failures = 0 }".to_string()),
        Just("{ log = '(' }".to_string()),
        Just("{ log = '\\p{Nope}é' }".to_string()),
        Just("{ log = 'ready', cmd = 'x' }".to_string()),
        Just("{ name = \"n\", context = \"..\", args = { A = 1 } }".to_string()),
        Just("{ name = \"n\" }".to_string()),
        Just("[\"a\", \"b\", \"c\"]".to_string()),
        Just("[\"ab\", \"bc\"]".to_string()),
        Just("\"always\"".to_string()),
        Just("\"SIGTERM\"".to_string()),
        Just("\"podman\"".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        (0i64..70).prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        "\"[a-zA-Z0-9 ./:$*{}\\[\\]é🦀-]{0,12}\"",
        "'[a-zA-Z0-9 ./:$*{}()\\\\é🦀-]{0,12}'",
    ]
}

/// One table of kiln.toml: a header and keys (right, misspelt or unknown) with values of
/// every kind, right and wrong.
fn section() -> impl Strategy<Value = String> {
    let kind = prop::sample::select(&["target", "service", "profile", "settings", "env", "bogus"][..]);
    let key = prop_oneof![4 => prop::sample::select(KEYS).prop_map(str::to_string), 1 => "[a-z_]{1,8}"];
    let pair =
        prop_oneof![(key, value()), prop::sample::select(FITTING).prop_map(|(k, v)| (k.to_string(), v.to_string())),];
    let name = prop_oneof![8 => "[a-c]{1,2}", 1 => "é|a b"];
    (kind, name, prop::collection::btree_map(pair.prop_map(|(k, v)| (k, v)), Just(()), 0..7)).prop_map(
        |(kind, name, body)| {
            let mut text = match kind {
                "settings" | "env" | "bogus" => format!("[{kind}]\n"),
                "profile" => format!("[profile.\"{name}\".target.a]\n"),
                _ => format!("[{kind}.\"{name}\"]\n"),
            };
            // One value per key: TOML allows a key once in a table.
            let mut keys = std::collections::BTreeSet::new();
            for ((k, v), ()) in body {
                if keys.insert(k.clone()) {
                    text.push_str(&format!("{k} = {v}\n"));
                }
            }
            text
        },
    )
}

/// Tables in a file, each header once (TOML allows no more).
fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(section(), 0..8).prop_map(|sections| {
        let mut seen = std::collections::BTreeSet::new();
        sections.into_iter().filter(|s| seen.insert(s.lines().next().unwrap_or_default().to_string())).collect()
    })
}

/// Mostly well-formed TOML (so that the checks behind the parser run), sometimes with a
/// piece of junk or a line ending of another kind spliced in.
fn toml_ish() -> impl Strategy<Value = String> {
    let junk = prop_oneof![
        Just("[target.a\n".to_string()),
        Just("\r\n".to_string()),
        Just("\u{feff}".to_string()),
        Just("= =".to_string()),
        "\\PC{0,10}",
    ];
    prop_oneof![
        4 => document(),
        1 => (document(), junk, any::<prop::sample::Index>()).prop_map(|(doc, junk, at)| {
            let mut at = at.index(doc.len() + 1);
            while !doc.is_char_boundary(at) {
                at -= 1;
            }
            format!("{}{junk}{}", &doc[..at], &doc[at..])
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn random_toml_ish_text_never_panics(text in toml_ish()) {
        check(text.as_bytes());
    }

    /// Valid text with bytes broken somewhere: the error points at the first bad byte.
    #[test]
    fn broken_utf8_points_at_the_first_bad_byte(text in toml_ish(), at in any::<prop::sample::Index>(), bad in 0x80u8..=0xff) {
        let mut bytes = text.into_bytes();
        let at = at.index(bytes.len() + 1);
        bytes.insert(at, bad);
        check(&bytes);
        if let Err(e) = std::str::from_utf8(&bytes) {
            let Err(LoadError::Invalid(d)) = parse_bytes(&bytes, Path::new("kiln.toml"), Path::new("/x"), None) else {
                panic!("not UTF-8 must be an error");
            };
            let before = &bytes[..e.valid_up_to()];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            prop_assert_eq!(d.0[0].line_col().0, line);
        }
    }
}
