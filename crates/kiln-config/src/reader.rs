//! Typed reads from the spanned TOML tree, each mistake recorded as a [`Diagnostic`].
//!
//! A read that fails records an error and returns `None`, so one pass finds every mistake in
//! the file instead of stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::{Diagnostic, MAX_SHOWN, SourceText, did_you_mean, parse_duration};

pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// A string together with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub text: String,
    pub span: Range<usize>,
}

pub(crate) struct Reader {
    pub path: PathBuf,
    /// The project root, where the files kiln.toml names (`env_file`, `dir`) are.
    pub root: PathBuf,
    pub source: Arc<SourceText>,
    pub diags: Vec<Diagnostic>,
    /// (span, message) of every error recorded: a profile re-reads the file and finds the
    /// same mistakes again; each is reported once, without a scan of all before it.
    seen: HashSet<(Range<usize>, String)>,
    /// Hints that need a search over every declared name, by (span, message): searched for
    /// only when the error is among those shown, so a file with thousands of unknown names
    /// costs thousands of searches at most [`MAX_SHOWN`] times, not thousands squared.
    suggestions: HashMap<(Range<usize>, String), Suggestion>,
}

/// A hint found later: "did you mean" the closest of `candidates`, else `otherwise`.
pub(crate) struct Suggestion {
    pub word: String,
    pub candidates: Arc<[String]>,
    pub otherwise: Option<String>,
}

impl Suggestion {
    fn resolve(self) -> Option<String> {
        did_you_mean(&self.word, self.candidates.iter().map(String::as_str))
            .map(|s| format!("did you mean `{s}`?"))
            .or(self.otherwise)
    }
}

/// "a string", "an integer": a value's type the way an error message says it.
pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl Reader {
    pub fn new(path: PathBuf, source: Arc<SourceText>) -> Self {
        Reader {
            path,
            root: PathBuf::from("."),
            source,
            diags: Vec::new(),
            seen: HashSet::new(),
            suggestions: HashMap::new(),
        }
    }

    /// Whether no mistake has been recorded.
    pub fn is_clean(&self) -> bool {
        self.diags.is_empty()
    }

    /// The errors in source order, the hints of those shown filled in.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|d| d.span.start);
        for d in self.diags.iter_mut().take(MAX_SHOWN) {
            if let Some(suggestion) = self.suggestions.remove(&(d.span.clone(), d.message.clone())) {
                d.help = suggestion.resolve();
            }
        }
        self.diags
    }

    /// An error whose hint is searched for only if it is shown (see [`Reader::finish`]).
    pub fn error_suggesting(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        suggestion: Suggestion,
    ) {
        let message = message.into();
        let key = (span.clone(), message.clone());
        if !self.seen.contains(&key) {
            self.error(span, message, label, None);
            self.suggestions.insert(key, suggestion);
        }
    }

    pub fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        let message = message.into();
        if !self.seen.insert((span.clone(), message.clone())) {
            return;
        }
        self.diags.push(Diagnostic {
            path: self.path.clone(),
            source: self.source.clone(),
            span,
            message,
            label: label.into(),
            help,
        });
    }

    /// The span of bytes `inner` of a string value, when the value is written as it reads
    /// (no escapes); else the whole value's span.
    pub fn inner_span(&self, value: &Located, inner: Range<usize>) -> Range<usize> {
        let raw = self.source.text().get(value.span.clone()).unwrap_or_default();
        let quoted = raw.len() == value.text.len() + 2
            && (raw.starts_with('"') || raw.starts_with('\''))
            && raw.get(1..raw.len() - 1) == Some(value.text.as_str());
        if quoted && inner.end <= value.text.len() {
            value.span.start + 1 + inner.start..value.span.start + 1 + inner.end
        } else {
            value.span.clone()
        }
    }

    /// Records a problem found inside a string value, pointing at its part when it can.
    pub fn problem(&mut self, value: &Located, problem: crate::address::Problem) {
        let span = problem.at.map_or_else(|| value.span.clone(), |at| self.inner_span(value, at));
        self.error(span, problem.message, problem.label, problem.help);
    }

    fn wrong_type(&mut self, node: &Node<'_>, what: &str, expected: &str) {
        let found = type_name(node.get_ref());
        self.error(
            node.span(),
            format!("wrong type for {what}: expected {expected}, found {found}"),
            format!("expected {expected}"),
            None,
        );
    }

    /// Reports every key of `table` that is not in `allowed`, with a "did you mean" hint;
    /// returns whether every key is known.
    pub fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], section: &str) -> bool {
        let mut known = true;
        for key in table.keys() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            known = false;
            let help = match did_you_mean(name, allowed.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("known keys here: {}", allowed.join(", ")),
            };
            self.error(key.span(), format!("unknown key `{name}` in {section}"), "unknown key", Some(help));
        }
        known
    }

    pub fn table<'t, 'i>(&mut self, node: &'t Node<'i>, what: &str) -> Option<&'t DeTable<'i>> {
        match node.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(node, what, "a table");
                None
            }
        }
    }

    pub fn string(&mut self, node: &Node<'_>, what: &str) -> Option<String> {
        match node.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    pub fn located(&mut self, node: &Node<'_>, what: &str) -> Option<Located> {
        self.string(node, what).map(|text| Located { text, span: node.span() })
    }

    pub fn bool(&mut self, node: &Node<'_>, what: &str) -> Option<bool> {
        match node.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(node, what, "a boolean");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn integer(&mut self, node: &Node<'_>, what: &str, min: i64, max: i64) -> Option<i64> {
        let parsed = match node.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok(),
            _ => {
                self.wrong_type(node, what, "an integer");
                return None;
            }
        };
        match parsed {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.error(
                    node.span(),
                    format!("{what} is out of range"),
                    format!("expected an integer from {min} to {max}"),
                    None,
                );
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node<'_>, what: &str) -> Option<Duration> {
        let text = self.string(node, what)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(why) => {
                self.error(
                    node.span(),
                    format!("bad duration for {what}: {why}"),
                    "not a duration",
                    Some("write durations like \"500ms\", \"10s\", \"5m\" or \"1h\"".into()),
                );
                None
            }
        }
    }

    /// A duration longer than zero: a zero timeout, period or grace time is a mistake.
    pub fn positive_duration(&mut self, node: &Node<'_>, what: &str) -> Option<Duration> {
        let duration = self.duration(node, what)?;
        if duration.is_zero() {
            self.error(
                node.span(),
                format!("{what} must be longer than zero"),
                "zero",
                Some("write a positive duration like \"500ms\" or \"10s\"".into()),
            );
            return None;
        }
        Some(duration)
    }

    /// An array of strings, each with its span.
    pub fn string_list(&mut self, node: &Node<'_>, what: &str) -> Option<Vec<Located>> {
        let DeValue::Array(items) = node.get_ref() else {
            self.wrong_type(node, what, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match self.located(item, &format!("an item of {what}")) {
                Some(l) => out.push(l),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `env_file = "PATH"`: the file (relative to the root) read as dotenv lines. A file that
    /// is missing, unreadable, not UTF-8 or not dotenv is an error at the value, naming the
    /// line. Returns the path and the variables.
    pub fn env_file(&mut self, node: &Node<'_>, what: &str) -> Option<(String, BTreeMap<String, String>)> {
        let path = self.located(node, what)?;
        if !crate::validate::check_relative(self, &path, what) {
            return None;
        }
        let full = self.root.join(&path.text);
        let fail = |r: &mut Reader, message: String, label: &str, hint: &str| {
            r.error(path.span.clone(), message, label.to_string(), Some(hint.to_string()));
            None
        };
        let bytes = match std::fs::read(&full) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return fail(
                    self,
                    format!("{what} `{}` does not exist", path.text),
                    "no such file",
                    "create it (KEY=VALUE lines), or remove `env_file`; its path is relative to the directory holding kiln.toml",
                );
            }
            Err(e) => {
                return fail(
                    self,
                    format!("cannot read {what} `{}`: {e}", path.text),
                    "unreadable",
                    "check its permissions",
                );
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return fail(self, format!("{what} `{}` is not UTF-8", path.text), "not UTF-8", "save it as UTF-8");
        };
        match crate::dotenv::parse_dotenv(text) {
            Ok(vars) => Some((path.text, vars)),
            Err(e) => fail(
                self,
                format!("{what} `{}`, line {}: {}", path.text, e.line, e.why),
                "in this file",
                "each line is KEY=VALUE (quotes and # comments allowed)",
            ),
        }
    }

    /// A target's or service's environment: `env_file`'s variables, then `env` over them
    /// (each `None` when absent in `table`). Returns the environment and the env file's
    /// path; `None` for either that has errors (already recorded).
    pub fn env_with_file(
        &mut self,
        env: Option<&Node<'_>>,
        env_file: Option<&Node<'_>>,
        what: impl Fn(&str) -> String,
    ) -> (Option<BTreeMap<String, String>>, Option<Option<String>>) {
        let file = env_file.map(|n| self.env_file(n, &what("env_file")));
        let table = env.map_or(Some(BTreeMap::new()), |n| self.string_map(n, &what("env")));
        let merged = table.and_then(|table| match &file {
            // `env` wins over `env_file`.
            Some(Some((_, vars))) => Some(vars.clone().into_iter().chain(table).collect()),
            Some(None) => None,
            None => Some(table),
        });
        let path = match file {
            Some(Some((path, _))) => Some(Some(path)),
            Some(None) => None,
            None => Some(None),
        };
        (merged, path)
    }

    /// A table of scalars as strings (`env`, `args`): numbers and booleans are written out.
    pub fn string_map(&mut self, node: &Node<'_>, what: &str) -> Option<BTreeMap<String, String>> {
        let table = self.table(node, what)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in table.iter() {
            let text = match value.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) => i.as_str().to_string(),
                DeValue::Float(f) => f.as_str().to_string(),
                DeValue::Boolean(b) => b.to_string(),
                _ => {
                    self.wrong_type(value, &format!("`{}` in {what}", key.get_ref()), "a string");
                    ok = false;
                    continue;
                }
            };
            out.insert(key.get_ref().to_string(), text);
        }
        ok.then_some(out)
    }
}
