//! The checked configuration of one project.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Service, Target};

/// A validated kiln.toml: every reference resolves, the target graph has no cycle.
#[derive(Debug, Clone)]
pub struct Config {
    /// The project root: the directory holding the configuration file.
    pub root: PathBuf,
    /// The configuration file itself.
    pub file: PathBuf,
    pub settings: Settings,
    /// Environment for every target and service.
    pub env: BTreeMap<String, String>,
    pub targets: BTreeMap<String, Target>,
    pub services: BTreeMap<String, Service>,
    /// Names of the `[profile.*]` tables present in the file.
    pub profiles: Vec<String>,
}

impl Config {
    /// The `env_file`s of targets and services, relative to the root: read with kiln.toml,
    /// so a change to one is a change of the configuration.
    pub fn env_files(&self) -> std::collections::BTreeSet<String> {
        let targets = self.targets.values().filter_map(|t| t.env_file.clone());
        targets.chain(self.services.values().filter_map(|s| s.env_file.clone())).collect()
    }

    /// Whether some service runs a container (so a container engine is involved).
    pub fn runs_containers(&self) -> bool {
        self.services.values().any(|s| matches!(s.kind, crate::ServiceKind::Image(_)))
    }
}

/// `[settings]`: knobs for the whole project.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Parallel targets; `None` means the number of CPUs.
    pub jobs: Option<usize>,
    /// Quiet window after the last file event in watch mode.
    pub debounce: Duration,
    pub engine: EngineChoice,
    /// Bytes of output kept on disk per target and per service replica (the last ones).
    pub log_limit: u64,
    /// Where every event is POSTed as a CloudEvent (`--events-sink` and `$K_SINK` win).
    pub events_sink: Option<crate::SinkUrl>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            jobs: None,
            debounce: Duration::from_millis(100),
            engine: EngineChoice::Auto,
            log_limit: 16 << 20,
            events_sink: None,
        }
    }
}

/// Which container engine CLI drives image targets and container services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Auto,
    Podman,
    Docker,
}

impl EngineChoice {
    pub const NAMES: [&'static str; 3] = ["auto", "podman", "docker"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(EngineChoice::Auto),
            "podman" => Some(EngineChoice::Podman),
            "docker" => Some(EngineChoice::Docker),
            _ => None,
        }
    }
}
