//! What one configuration of `kiln up` keeps up to date: the selected targets (with their
//! deps), the selected services, the compiled patterns, and which changed paths concern
//! them.
//!
//! The watch scope filter lives here: a path that no watched pattern of a selected target
//! can match (a log file appended in the project root, say) is dropped before the debouncer,
//! so it neither opens nor extends a quiet window.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use kiln_config::Config;

use crate::build::build_options::{BuildError, resolve_targets};
use crate::build::target_inputs::Patterns;
use crate::fs::path_pattern::{PathPattern, is_under};
use crate::graph::target_graph::{Graph, TargetId};
use crate::up::sync_plan::SyncRules;
use crate::watch::watch_scope::WatchScope;

pub struct Selection {
    pub config: Arc<Config>,
    pub graph: Graph,
    pub patterns: Patterns,
    /// The selected targets and their deps (including the deps of selected services).
    pub targets: BTreeSet<TargetId>,
    /// The selected services.
    pub services: BTreeSet<String>,
    /// The selected services' `sync` rules and `watch` globs, for those that have any.
    pub live: BTreeMap<String, LiveRules>,
}

/// What changes a service follows itself, without a build.
pub struct LiveRules {
    pub sync: SyncRules,
    pub watch: Vec<PathPattern>,
    /// The image target it runs, if it runs one.
    pub image_target: Option<String>,
}

impl LiveRules {
    /// Whether a changed path (or a directory on the way to or under one) concerns it.
    fn concerns(&self, path: &str, is_dir: bool) -> bool {
        self.sync.covers(path, is_dir) || self.watch.iter().any(|pat| overlaps(pat, path, is_dir))
    }
}

fn overlaps(pat: &PathPattern, path: &str, is_dir: bool) -> bool {
    pat.matches(path) || (is_dir && (is_under(path, &pat.prefix) || is_under(&pat.prefix, path)))
}

impl Selection {
    pub fn new(config: Config, names: &[String]) -> Result<Selection, BuildError> {
        let graph = Graph::from_config(&config);
        // A name is a service or a target; with no names, everything.
        let services: BTreeSet<String> = if names.is_empty() {
            config.services.keys().cloned().collect()
        } else {
            names.iter().filter(|n| config.services.contains_key(*n)).cloned().collect()
        };
        let target_names: Vec<String> = names.iter().filter(|n| !config.services.contains_key(*n)).cloned().collect();
        let mut roots: Vec<TargetId> =
            if names.is_empty() { (0..graph.len()).collect() } else { resolve_targets(&graph, &target_names)? };
        for s in &services {
            roots.extend(config.services[s].deps.iter().filter_map(|d| graph.id(d)));
        }
        let targets = graph.with_deps(roots);
        let patterns = Patterns::compile(&config, &graph);
        let live = services
            .iter()
            .map(|name| (name, &config.services[name]))
            .filter(|(_, s)| !s.sync.is_empty() || !s.watch.is_empty())
            .map(|(name, s)| {
                let image_target = match &s.kind {
                    kiln_config::ServiceKind::Image(image) if graph.id(image).is_some() => Some(image.clone()),
                    _ => None,
                };
                let rules = LiveRules {
                    sync: SyncRules::new(&s.sync),
                    watch: s.watch.iter().map(|w| PathPattern::new(w)).collect(),
                    image_target,
                };
                (name.clone(), rules)
            })
            .collect();
        Ok(Selection { config: Arc::new(config), graph, patterns, targets, services, live })
    }

    pub fn scope(&self) -> WatchScope {
        let synced: Vec<PathPattern> = self
            .live
            .values()
            .flat_map(|l| l.sync.paths().map(str::to_string))
            .chain(self.config.env_files())
            .map(|p| PathPattern::new(&p))
            .collect();
        let inputs: Vec<&PathPattern> = self
            .targets
            .iter()
            .flat_map(|&t| self.patterns.watched(t))
            .chain(&synced)
            .chain(self.live.values().flat_map(|l| &l.watch))
            .collect();
        let outputs: Vec<&PathPattern> = (0..self.graph.len()).flat_map(|t| &self.patterns.outputs[t]).collect();
        WatchScope::new(&inputs, &outputs)
    }

    /// Whether a changed path can concern a selected target: a watched pattern matches it,
    /// or it is a directory (existing, or one that vanished) on the way to or under one.
    pub fn concerns(&self, path: &str, is_dir: bool) -> bool {
        self.targets.iter().flat_map(|&t| self.patterns.watched(t)).any(|pat| overlaps(pat, path, is_dir))
            || self.live.values().any(|l| l.concerns(path, is_dir))
    }

    /// The selected targets a batch of changed paths concerns, with the paths that concern
    /// each: a target an input of which a path may be, or may have held, and every target
    /// that depends on it (with the paths of what it depends on). A rescan concerns every
    /// target, with every path.
    pub fn affected(
        &self,
        paths: &BTreeSet<String>,
        gone_dirs: &BTreeSet<String>,
        rescan: bool,
    ) -> BTreeMap<String, BTreeSet<String>> {
        if rescan {
            return self.targets.iter().map(|&t| (self.graph.name(t).to_string(), paths.clone())).collect();
        }
        let root: &Path = &self.config.root;
        let mut direct: BTreeMap<TargetId, BTreeSet<String>> = BTreeMap::new();
        for p in paths {
            for &t in &self.targets {
                let reads = self.patterns.watched(t).any(|pat| {
                    let overlaps = is_under(p, &pat.prefix) || is_under(&pat.prefix, p);
                    // A directory, or one that was deleted, may have held inputs: let the
                    // content gate decide. A file counts only if the pattern matches it.
                    overlaps
                        && (pat.matches(p) || gone_dirs.contains(p) || crate::fs::rel_path::under(root, p).is_dir())
                });
                if reads && !self.patterns.outputs[t].iter().any(|o| o.matches(p)) {
                    direct.entry(t).or_default().insert(p.clone());
                }
            }
        }
        let mut affected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (t, ps) in direct {
            for d in self.with_dependents([t]) {
                affected.entry(self.graph.name(d).to_string()).or_default().extend(ps.iter().cloned());
            }
        }
        affected
    }

    /// Whether a path is a declared output of some target: a build's own writes.
    pub fn is_output(&self, path: &str) -> bool {
        self.patterns.outputs.iter().flatten().any(|o| o.matches(path))
    }

    pub fn names(&self, ids: impl IntoIterator<Item = TargetId>) -> Vec<String> {
        ids.into_iter().map(|t| self.graph.name(t).to_string()).collect()
    }

    /// `ids` with their dependents, within the selection.
    pub fn with_dependents(&self, ids: impl IntoIterator<Item = TargetId>) -> BTreeSet<TargetId> {
        self.graph.with_dependents(ids).intersection(&self.targets).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(toml: &str) -> Selection {
        let root = std::env::temp_dir();
        let config = kiln_config::parse_str(toml, Path::new("kiln.toml"), &root, None).expect("valid");
        Selection::new(config, &[]).expect("selects")
    }

    #[test]
    fn a_path_no_pattern_can_match_concerns_nobody() {
        let sel = selection(
            "[target.a]\ncmd = \"true\"\ninputs = [\"src/**/*.c\"]\n[target.b]\ncmd = \"true\"\ninputs = [\"docs/*.md\"]\n",
        );
        assert!(sel.concerns("src/x/y.c", false));
        assert!(sel.concerns("docs/a.md", false));
        assert!(!sel.concerns("app.log", false), "a file in the root matches no pattern");
        assert!(!sel.concerns("src/x/y.o", false), "under a prefix, but not matching");
        assert!(sel.concerns("src/x", true), "a directory under a prefix may hold inputs");
        assert!(sel.concerns("src", true));
        assert!(!sel.concerns("logs", true), "a directory away from every prefix");
    }

    #[test]
    fn synced_and_watched_paths_concern_their_services() {
        let sel = selection(
            "[service.web]\nimage = \"localhost/web:1\"\nsync = [{ path = \"static\", target = \"/www\" }]\n\
             [service.api]\ncmd = \"./api\"\nwatch = [\"config/*.toml\"]\n",
        );
        assert!(sel.concerns("static/a/b.css", false), "under a sync rule, though no target reads it");
        assert!(sel.concerns("config/app.toml", false));
        assert!(!sel.concerns("config/app.json", false));
        assert!(sel.concerns("config", true));
        assert!(!sel.concerns("staticx/a", false));
        assert_eq!(sel.live["web"].image_target, None, "an image reference");
        assert!(sel.scope() != WatchScope::new(&[], &[]), "the watch scope holds them");
    }
}
