//! What a build is asked to do (targets, jobs, dry run, …), what it reports (counts,
//! outcomes, records), and the errors that stop it before any target starts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::cache::state::TargetRecord;
use crate::event::{Event, TargetStatus};
use crate::graph::target_graph::{Graph, TargetId};

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Targets to build with their deps; empty means all.
    pub targets: Vec<String>,
    /// Commands running at once; 0 means the number of CPUs.
    pub jobs: usize,
    pub keep_going: bool,
    /// Decide and report, run nothing.
    pub dry_run: bool,
    /// On a cache hit, replay the stored output as `target.output` events.
    pub replay_logs: bool,
    /// Publish `target.span` events (timed hashing, lookups, restores, runs, stores).
    pub spans: bool,
    /// Part of `kiln up` (the `mode` of `run.started`).
    pub watch_mode: bool,
    /// Publish nothing unless some target turns out not to be fresh; then publish this
    /// event first (see [`crate::event::event_gate`]).
    pub gate: Option<Event>,
    /// Targets to run even if they are up to date (a trigger from the control API).
    pub force: BTreeSet<String>,
    /// Targets whose last reported status was not a success: that they are fresh now is
    /// news, so a gated run reports them (a failed target whose inputs went back to the
    /// content of its last success is `fresh` again, and says so).
    pub stale: BTreeSet<String>,
}

/// What a dry run would do with a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanAction {
    Fresh,
    Restore,
    Run,
}

/// One line of a dry run's plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanEntry {
    pub target: String,
    pub action: PlanAction,
    pub reason: String,
}

/// Counts and outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub built: usize,
    pub cached: usize,
    pub fresh: usize,
    pub failed: usize,
    pub skipped: usize,
    pub duration: Duration,
    pub interrupted: bool,
    /// A gated run in which every target was fresh: it published nothing.
    pub quiet: bool,
    /// How each target of the run ended.
    pub outcomes: BTreeMap<String, TargetStatus>,
    /// Targets whose outputs are different from before the run (built or restored anew).
    pub changed: BTreeSet<String>,
    /// Filled by dry runs, in the order decisions were made.
    pub plan: Vec<PlanEntry>,
    /// Image targets of the run that succeeded, and the image each now stands for.
    pub images: BTreeMap<String, String>,
    /// The record of each target that ended with intact outputs (fresh, cached or built).
    pub records: BTreeMap<String, TargetRecord>,
}

impl RunSummary {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.skipped == 0 && !self.interrupted
    }
}

/// Failures that stop a run before any target starts.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("unknown target `{name}`{hint}")]
    UnknownTarget { name: String, hint: String },
    #[error("cannot prepare {}: {source}", path.display())]
    Setup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Resolves target names (with a "did you mean" hint for typos) to graph ids.
pub fn resolve_targets(graph: &Graph, names: &[String]) -> Result<Vec<TargetId>, BuildError> {
    names
        .iter()
        .map(|name| {
            graph.id(name).ok_or_else(|| {
                let all: Vec<&str> = (0..graph.len()).map(|i| graph.name(i)).collect();
                let hint = match kiln_config::did_you_mean(name, all.iter().copied()) {
                    Some(s) => format!(" (did you mean `{s}`?)"),
                    None => format!(" (targets: {})", all.join(", ")),
                };
                BuildError::UnknownTarget { name: name.clone(), hint }
            })
        })
        .collect()
}
