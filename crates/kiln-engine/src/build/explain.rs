//! `kiln explain TARGET`: why a target would run now, or why it ran last time.
//!
//! The target's key is computed as a build would (inputs hashed through the stat cache),
//! with each dependency counted by the output digest its last build recorded. Against the
//! manifest stored with the target's last build this gives every difference: files added,
//! removed and changed, env, command, dir and declared outputs, and dependency outputs.
//! Dependencies whose own keys changed are listed too: they rebuild first, and their new
//! outputs cannot be known before they do. Nothing is written and nothing runs.

use std::collections::{BTreeSet, HashMap};

use kiln_config::{Config, TargetKind};
use serde::Serialize;

use crate::build::target_inputs::{Patterns, hash_inputs, image_inputs};
use crate::cache::digest::Digest;
use crate::cache::manifest::{Change, Manifest, summarize};
use crate::cache::stat_cache::StatCache;
use crate::cache::state::{State, TargetRecord};
use crate::cache::store::{Cache, current_digest};
use crate::fs::file_index::FileIndex;
use crate::fs::layout::Layout;
use crate::graph::target_graph::{Graph, TargetId};

/// Everything `explain` found about one target.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub target: String,
    /// The last build that produced its outputs, if any.
    pub last: Option<TargetRecord>,
    /// The manifest of that build, if the cache still has it.
    pub previous: Option<Manifest>,
    /// The manifest as it would be now.
    pub current: Manifest,
    /// Differences from `previous` (empty when the key is unchanged).
    pub changes: Vec<Change>,
    /// Dependencies (direct or not) that would rebuild first.
    pub stale_deps: Vec<String>,
    /// With an unchanged key: outputs missing or modified on disk (restored from the cache).
    pub damaged_outputs: Vec<String>,
    /// With an unchanged key, for an image target: why the engine no longer has its image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_image: Option<String>,
}

impl Explanation {
    pub fn up_to_date(&self) -> bool {
        self.last.as_ref().is_some_and(|l| l.key == self.current.key())
            && self.stale_deps.is_empty()
            && self.damaged_outputs.is_empty()
            && self.missing_image.is_none()
    }

    /// The one-line reason, as a build would print it.
    pub fn reason(&self) -> String {
        if self.up_to_date() {
            return "up to date".into();
        }
        let mut parts = Vec::new();
        if self.last.is_none() {
            parts.push("no previous build".to_string());
        } else if self.previous.is_none() && self.last.as_ref().is_some_and(|l| l.key != self.current.key()) {
            parts.push("inputs or definition changed".to_string());
        } else if !self.changes.is_empty() {
            parts.push(summarize(&self.changes));
        }
        if !self.stale_deps.is_empty() {
            parts.push(format!("dependency {} is out of date", self.stale_deps.join(", ")));
        }
        if let Some(first) = self.damaged_outputs.first() {
            parts.push(format!("output {first} is missing or modified"));
        }
        if let Some(why) = &self.missing_image {
            parts.push(why.clone());
        }
        parts.join("; ")
    }
}

/// Failures of `explain` itself.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("unknown target `{name}`{hint}")]
    UnknownTarget { name: String, hint: String },
    #[error("{0}")]
    Read(String),
}

/// Explains `name` in the project of `config`.
pub fn explain(config: &Config, name: &str) -> Result<Explanation, ExplainError> {
    let graph = Graph::from_config(config);
    let id = crate::build::build_options::resolve_targets(&graph, &[name.to_string()]).map_err(|e| match e {
        crate::build::build_options::BuildError::UnknownTarget { name, hint } => {
            ExplainError::UnknownTarget { name, hint }
        }
        other => ExplainError::Read(other.to_string()),
    })?[0];
    let layout = Layout::new(&config.root);
    let state = State::load(&layout.state().join("targets.json"));
    let stat = StatCache::load(&layout.state().join("stat.bin"));
    let cache = Cache::new(config.root.clone(), layout.cache());
    let patterns = Patterns::compile(config, &graph);
    let closure = graph.with_deps([id]);
    let prefixes = closure.iter().flat_map(|&t| patterns.inputs[t].iter().map(|p| p.prefix.clone()));
    let index = FileIndex::scan(&config.root, prefixes, true);

    // Keys of the whole closure, deps first; a target is stale if its key moved or a
    // dependency of it is stale.
    let mut stale: BTreeSet<TargetId> = BTreeSet::new();
    let mut manifests: HashMap<TargetId, Manifest> = HashMap::new();
    for t in graph.topo_order(&closure) {
        let target = &config.targets[graph.name(t)];
        let mut manifest = Manifest::for_target(target, &config.env);
        if let Some(unreadable) = index.unreadable_in(&patterns.inputs[t], &patterns.outputs[t]) {
            return Err(ExplainError::Read(format!("target `{}`: {}", graph.name(t), unreadable.message("input"))));
        }
        let selected = index.select(&patterns.inputs[t], &patterns.outputs[t]);
        let context;
        let files = match &target.kind {
            TargetKind::Image(spec) => {
                context = image_inputs(&config.root, spec, &selected).map_err(ExplainError::Read)?;
                context.iter().collect()
            }
            TargetKind::Cmd(_) => selected,
        };
        hash_inputs(&config.root, &stat, &files, &mut manifest).map_err(ExplainError::Read)?;
        manifest.deps = graph
            .deps(t)
            .iter()
            .map(|d| {
                let dep = graph.name(*d);
                let digest =
                    state.targets.get(dep).map_or_else(|| Digest::of_bytes(b"never built"), |r| r.output_digest);
                (dep.to_string(), digest)
            })
            .collect();
        let record = state.targets.get(graph.name(t));
        if record.is_none_or(|r| r.key != manifest.key()) || graph.deps(t).iter().any(|d| stale.contains(d)) {
            stale.insert(t);
        }
        manifests.insert(t, manifest);
    }

    let current = manifests.remove(&id).expect("the target is in its own closure");
    let last = state.targets.get(name).cloned();
    let previous = last.as_ref().and_then(|l| cache.lookup(&l.key)).map(|r| r.manifest);
    let changes = previous.as_ref().map(|p| current.changes_since(p)).unwrap_or_default();
    let deps_closure = graph.with_deps(graph.deps(id).iter().copied());
    let stale_deps = deps_closure.iter().filter(|d| stale.contains(d)).map(|d| graph.name(*d).to_string()).collect();
    let damaged_outputs = match &last {
        Some(l) if l.key == current.key() => l
            .outputs
            .iter()
            .filter(|o| current_digest(&config.root, &o.path, &stat) != Some(o.digest))
            .map(|o| crate::fs::rel_path::display(&o.path).into_owned())
            .collect(),
        _ => Vec::new(),
    };
    // An image target is up to date only while the engine has its image (as a build sees it).
    let missing_image = match (&config.targets[name].kind, &last) {
        (TargetKind::Image(spec), Some(l)) if l.key == current.key() => {
            let tag = crate::container::engine::image_tag(spec, &l.key);
            match crate::container::engine::Engine::find(config.settings.engine) {
                Ok(engine) => {
                    engine.image_id(&tag).err().map(|_| format!("image {tag} is no longer in {}", engine.name()))
                }
                Err(why) => Some(why),
            }
        }
        _ => None,
    };
    Ok(Explanation {
        target: name.to_string(),
        last,
        previous,
        current,
        changes,
        stale_deps,
        damaged_outputs,
        missing_image,
    })
}
