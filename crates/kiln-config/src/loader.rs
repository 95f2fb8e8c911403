//! Finding, reading and checking kiln.toml.
//!
//! The text is parsed into a spanned tree; the selected profile is merged over it; then each
//! section is read into typed values, collecting every mistake. Unselected profiles are
//! checked the same way, so a typo in `[profile.debug]` is found before anyone selects it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use crate::config::{Config, EngineChoice, Settings};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::profile::deep_merge;
use crate::reader::{Located, Node, Reader};
use crate::validate::{Names, check_cycles};
use crate::{Service, SourceText, Target, did_you_mean};

/// The name of the configuration file.
pub const CONFIG_FILE: &str = "kiln.toml";

const TOP_KEYS: &[&str] = &["settings", "env", "target", "service", "profile"];
const SETTINGS_KEYS: &[&str] = &["jobs", "debounce", "engine", "log_limit", "events_sink"];

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io { path: PathBuf, error: std::io::Error },
    /// The file has mistakes; each is a diagnostic with a span.
    Invalid(Diagnostics),
    /// `--profile NAME` names no `[profile.NAME]` table.
    UnknownProfile { name: String, available: Vec<String> },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            LoadError::Invalid(d) => write!(f, "{d}"),
            LoadError::UnknownProfile { name, available } => {
                write!(f, "no profile named `{name}` in kiln.toml")?;
                match did_you_mean(name, available.iter().map(String::as_str)) {
                    Some(s) => write!(f, " (did you mean `{s}`?)"),
                    None if available.is_empty() => {
                        write!(f, " (it defines no [profile.*] tables)")
                    }
                    None => write!(f, " (profiles: {})", available.join(", ")),
                }
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Walks up from `start` to the first directory holding kiln.toml, like Cargo does.
pub fn find_config(start: &Path) -> Option<PathBuf> {
    start.ancestors().map(|dir| dir.join(CONFIG_FILE)).find(|p| p.is_file())
}

/// Reads and checks the configuration file at `file`, merging `profile` if given.
pub fn load(file: &Path, profile: Option<&str>) -> Result<Config, LoadError> {
    let bytes = std::fs::read(file).map_err(|error| LoadError::Io { path: file.to_path_buf(), error })?;
    let root = file.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    parse_bytes(&bytes, file, &root, profile)
}

/// Checks the bytes of a configuration file as read from disk: text that is not UTF-8 is an
/// error at the line and column of its first bad byte. `display_path` is the file name
/// shown in diagnostics.
pub fn parse_bytes(bytes: &[u8], display_path: &Path, root: &Path, profile: Option<&str>) -> Result<Config, LoadError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(text, display_path, root, profile),
        Err(e) => Err(LoadError::Invalid(not_utf8(bytes, &e, display_path).into())),
    }
}

/// The error for a file that is not UTF-8, shown on its text with the bad bytes replaced
/// (the valid text before them is the same, so the offset stays right).
fn not_utf8(bytes: &[u8], error: &std::str::Utf8Error, display_path: &Path) -> Diagnostic {
    let at = error.valid_up_to();
    let bad = &bytes[at..at + error.error_len().unwrap_or(bytes.len() - at)];
    let shown: Vec<String> = bad.iter().map(|b| format!("0x{b:02X}")).collect();
    Diagnostic {
        path: display_path.to_path_buf(),
        source: Arc::new(SourceText::new(String::from_utf8_lossy(bytes))),
        span: at..at + char::REPLACEMENT_CHARACTER.len_utf8(),
        message: format!("{} is not valid UTF-8: invalid byte {}", file_name(display_path), shown.join(" ")),
        label: "not UTF-8".into(),
        help: Some("save the file as UTF-8 (for example `iconv -f LATIN1 -t UTF-8`)".into()),
    }
}

/// The name of the configuration file as the user wrote it (`kiln.toml`, or `--file`'s).
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| CONFIG_FILE.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Checks configuration text; `display_path` is the file name shown in diagnostics.
pub fn parse_str(text: &str, display_path: &Path, root: &Path, profile: Option<&str>) -> Result<Config, LoadError> {
    let source = Arc::new(SourceText::new(text));
    let mut reader = Reader::new(display_path.to_path_buf(), source);
    reader.root = root.to_path_buf();
    let mut doc = match DeTable::parse(text) {
        Ok(doc) => doc.into_inner(),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().lines().next().unwrap_or("invalid TOML").trim_end_matches('.').to_string();
            reader.error(span, format!("invalid TOML: {message}"), "here", None);
            return Err(LoadError::Invalid(Diagnostics(reader.finish())));
        }
    };
    reader.check_keys(&doc, TOP_KEYS, &file_name(display_path));
    let profiles = take_profiles(&mut reader, &mut doc);
    let names: Vec<String> = profiles.keys().cloned().collect();

    let selected = match profile {
        Some(name) => match profiles.get(name) {
            Some(overlay) => {
                let mut merged = doc.clone();
                deep_merge(&mut merged, overlay);
                Some(merged)
            }
            None => {
                return Err(LoadError::UnknownProfile { name: name.to_string(), available: names });
            }
        },
        None => None,
    };
    let config = read_config(&mut reader, selected.as_ref().unwrap_or(&doc), root, display_path, names);
    for (name, overlay) in &profiles {
        if Some(name.as_str()) != profile {
            let mut merged = doc.clone();
            deep_merge(&mut merged, overlay);
            read_config(&mut reader, &merged, root, display_path, Vec::new());
        }
    }
    match config {
        Some(config) if reader.is_clean() => Ok(config),
        _ => Err(LoadError::Invalid(Diagnostics(reader.finish()))),
    }
}

/// Removes `[profile.*]` from the document and returns each profile's table.
fn take_profiles<'i>(r: &mut Reader, doc: &mut DeTable<'i>) -> BTreeMap<String, DeTable<'i>> {
    let mut out = BTreeMap::new();
    let Some(node) = doc.remove("profile") else {
        return out;
    };
    let Some(table) = r.table(&node, "[profile]") else {
        return out;
    };
    for (name, value) in table.iter() {
        if let Some(t) = r.table(value, &format!("[profile.{}]", name.get_ref())) {
            out.insert(name.get_ref().to_string(), t.clone());
        }
    }
    out
}

fn read_config(r: &mut Reader, doc: &DeTable<'_>, root: &Path, file: &Path, profiles: Vec<String>) -> Option<Config> {
    let settings = doc.get("settings").map_or(Some(Settings::default()), |n| read_settings(r, n));
    let env = doc.get("env").map_or(Some(BTreeMap::new()), |n| r.string_map(n, "[env]"));
    let target_nodes = named_tables(r, doc.get("target"), "target");
    let service_nodes = named_tables(r, doc.get("service"), "service");
    let names = Names::new(
        target_nodes
            .iter()
            .map(|(name, node)| {
                let is_image = matches!(node.get_ref(), DeValue::Table(t) if t.contains_key("image"));
                (name.text.clone(), is_image)
            })
            .collect(),
        service_nodes.iter().map(|(name, _)| name.text.clone()).collect(),
    );

    let mut targets = BTreeMap::new();
    let mut target_edges = BTreeMap::new();
    let mut ok = true;
    for (name, node) in &target_nodes {
        match Target::read(r, name, node, &names) {
            Some(read) => {
                target_edges.insert(name.text.clone(), read.deps);
                targets.insert(name.text.clone(), read.target);
            }
            None => ok = false,
        }
    }
    let mut services = BTreeMap::new();
    let mut service_edges = BTreeMap::new();
    for (name, node) in &service_nodes {
        match Service::read(r, name, node, &names) {
            Some(read) => {
                service_edges.insert(name.text.clone(), read.after);
                services.insert(name.text.clone(), read.service);
            }
            None => ok = false,
        }
    }
    check_cycles(r, &target_edges, "dependency");
    check_cycles(r, &service_edges, "`after`");
    if !ok {
        return None;
    }
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let file = root.join(file.file_name().unwrap_or(CONFIG_FILE.as_ref()));
    Some(Config { root, file, settings: settings?, env: env?, targets, services, profiles })
}

/// `[target.NAME]` tables: their names (checked) and nodes.
fn named_tables<'t, 'i>(r: &mut Reader, node: Option<&'t Node<'i>>, kind: &str) -> Vec<(Located, &'t Node<'i>)> {
    let Some(node) = node else { return Vec::new() };
    let Some(table) = r.table(node, &format!("[{kind}]")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in table.iter() {
        let text = name.get_ref().to_string();
        let valid = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            r.error(
                name.span(),
                format!("invalid {kind} name `{text}`"),
                "not a valid name",
                Some("names use letters, digits, `-`, `_` and `.`".into()),
            );
            continue;
        }
        out.push((Located { text, span: name.span() }, value));
    }
    out
}

fn read_settings(r: &mut Reader, node: &Node<'_>) -> Option<Settings> {
    let table = r.table(node, "[settings]")?;
    r.check_keys(table, SETTINGS_KEYS, "[settings]");
    let jobs = match table.get("jobs") {
        Some(n) => Some(Some(usize::try_from(r.integer(n, "`jobs` in [settings]", 1, 1024)?).ok()?)),
        None => Some(None),
    };
    let debounce =
        table.get("debounce").map_or(Some(Settings::default().debounce), |n| r.duration(n, "`debounce` in [settings]"));
    let engine = table.get("engine").map_or(Some(EngineChoice::Auto), |n| {
        let text = r.located(n, "`engine` in [settings]")?;
        let engine = EngineChoice::parse(&text.text);
        if engine.is_none() {
            let hint = did_you_mean(&text.text, EngineChoice::NAMES)
                .map_or_else(|| "use auto, podman or docker".to_string(), |s| format!("did you mean `{s}`?"));
            r.error(text.span, format!("unknown container engine `{}`", text.text), "unknown engine", Some(hint));
        }
        engine
    });
    let log_limit = table.get("log_limit").map_or(Some(Settings::default().log_limit), |n| {
        let text = r.located(n, "`log_limit` in [settings]")?;
        match crate::size::parse_size(&text.text) {
            Ok(0) => {
                r.error(text.span, "`log_limit` must be more than 0 bytes", "zero", None::<String>);
                None
            }
            Ok(bytes) => Some(bytes),
            Err(why) => {
                let hint = Some("write sizes like \"16MiB\", \"512KiB\" or \"1GiB\"".into());
                r.error(text.span, format!("bad size for `log_limit` in [settings]: {why}"), "not a size", hint);
                None
            }
        }
    });
    let events_sink = match table.get("events_sink") {
        None => Some(None),
        Some(n) => {
            let text = r.located(n, "`events_sink` in [settings]")?;
            match crate::SinkUrl::check(&text.text, "`events_sink` in [settings]") {
                Ok(url) => Some(Some(url)),
                Err(problem) => {
                    r.problem(&text, problem);
                    None
                }
            }
        }
    };
    Some(Settings {
        jobs: jobs?,
        debounce: debounce?,
        engine: engine?,
        log_limit: log_limit?,
        events_sink: events_sink?,
    })
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ProbeCheck, RestartPolicy, ServiceKind, TargetKind};

    const FULL: &str = r#"
[settings]
jobs = 4
debounce = "250ms"
engine = "podman"

[env]
RUST_LOG = "info"
LEVEL = 3

[target.core]
cmd = "cc -c core.c"
inputs = ["core/**/*.c"]
outputs = ["out/core.o"]
env = { CFLAGS = "-O2" }
timeout = "10m"
retries = 2
cache = false

[target.api-image]
deps = ["core"]
inputs = ["api/**"]
image = { name = "localhost/demo-api", context = "api", file = "api/Containerfile", stage = "production", args = { VERSION = "dev" } }

[service.db]
cmd = "postgres"
ready = { cmd = "pg_isready", period = "500ms" }

[service.api]
image = "api-image"
deps = ["core"]
after = ["db"]
ports = ["8080:8080"]
replicas = 2
restart = "always"
ready = { http = "http://127.0.0.1:8080/health", timeout = "3s", failures = 5 }
stop_signal = "SIGINT"
stop_timeout = "4s"

[profile.debug]
target.api-image.image.stage = "debug"
settings.jobs = 1
"#;

    fn parse(profile: Option<&str>) -> Config {
        match parse_str(FULL, Path::new("kiln.toml"), Path::new("/nonexistent"), profile) {
            Ok(c) => c,
            Err(LoadError::Invalid(d)) => panic!("{}", d.render(false)),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn reads_the_whole_contract() {
        let c = parse(None);
        assert_eq!(c.settings.jobs, Some(4));
        assert_eq!(c.settings.debounce, Duration::from_millis(250));
        assert_eq!(c.settings.engine, EngineChoice::Podman);
        assert_eq!(c.env["LEVEL"], "3");
        let core = &c.targets["core"];
        assert_eq!(core.kind, TargetKind::Cmd("cc -c core.c".into()));
        assert_eq!((core.retries, core.cache, core.timeout), (2, false, Some(Duration::from_secs(600))));
        let TargetKind::Image(image) = &c.targets["api-image"].kind else { panic!("an image target") };
        assert_eq!(image.stage.as_deref(), Some("production"));
        assert_eq!(image.args["VERSION"], "dev");
        let api = &c.services["api"];
        assert_eq!(api.kind, ServiceKind::Image("api-image".into()));
        assert_eq!((api.replicas, api.restart), (2, RestartPolicy::Always));
        let probe = api.ready.as_ref().expect("probe");
        assert_eq!(probe.check, ProbeCheck::Http("http://127.0.0.1:8080/health".into()));
        assert_eq!((probe.timeout, probe.failures, probe.period), (Duration::from_secs(3), 5, Duration::from_secs(1)));
        assert_eq!(c.services["db"].restart, RestartPolicy::OnFailure, "default policy");
        assert_eq!(c.profiles, vec!["debug".to_string()]);
    }

    #[test]
    fn a_profile_deep_merges_over_the_file() {
        let c = parse(Some("debug"));
        let TargetKind::Image(image) = &c.targets["api-image"].kind else { panic!("an image target") };
        assert_eq!(image.stage.as_deref(), Some("debug"));
        assert_eq!(image.name, "localhost/demo-api", "untouched keys stay");
        assert_eq!(c.settings.jobs, Some(1));
    }
}
