//! How `kiln up` is asked to run, how it ends, and the orders it takes from outside.

use std::path::PathBuf;
use std::time::Duration;

use crate::build::build_options::BuildError;

/// How `kiln up` runs.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The configuration file, to reload when it changes.
    pub config_file: PathBuf,
    /// How diagnostics name it.
    pub display_path: PathBuf,
    pub profile: Option<String>,
    /// Targets to keep up to date, with their deps; empty means all.
    pub names: Vec<String>,
    pub jobs: usize,
    pub keep_going: bool,
    /// Only watch and report which targets each change affects.
    pub no_build: bool,
    /// Overrides `settings.debounce`.
    pub debounce: Option<Duration>,
    pub replay_logs: bool,
    /// Overrides `settings.engine` (`--engine`), also after a reload.
    pub engine: Option<kiln_config::EngineChoice>,
}

/// How `kiln up` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpExit {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Asked to stop through the control API (`kiln down`).
    Stopped,
}

/// Orders from outside the loop (the control API).
#[derive(Debug)]
pub enum UpControl {
    /// Build a target (and its dependents) now, or restart a service's replicas; `reply`
    /// says whether the name was one the session knows. `kind` says which of the two, for a
    /// name that is both; without it a running service comes first.
    Trigger { name: String, kind: Option<TriggerKind>, reply: tokio::sync::oneshot::Sender<Triggered> },
    /// Stop services and end `kiln up`.
    Stop,
    /// The graph of the configuration running now.
    Graph { reply: tokio::sync::oneshot::Sender<crate::up::up_graph::UpGraph> },
}

/// Which of a target and a service of one name a trigger means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Target,
    Service,
}

/// What `kiln up` did with a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triggered {
    /// A selected target: it builds now, with its dependents.
    Target,
    /// A running service: its replicas restart.
    Service,
    /// Neither (or not the `kind` asked for): the names that can be triggered (selected
    /// targets, running services), sorted.
    Unknown { targets: Vec<String>, services: Vec<String> },
}

/// Failures that stop `kiln up` before it starts watching.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot watch files: {0}")]
    Watch(String),
}
