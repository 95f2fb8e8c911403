//! Which rounds `kiln up` starts, as pure decisions (no I/O, no clock).
//!
//! In: targets that need a look (from a batch of changes, a reload, a trigger), each with
//! the paths that concern it, or none for a round that reports whatever it finds; and the
//! rounds that end. Out: rounds to start now. A round is a build of some targets with their
//! deps (its *closure*). Guarantees:
//!
//! - at most one build per target in flight: a target whose closure meets a running round's
//!   waits for it (it is *dirty*) and then goes in exactly one follow-up, evaluated from the
//!   newest content, however many changes arrived meanwhile;
//! - an unrelated target does not wait: its round starts at once beside the running one.
//!
//! Targets are known by name, not by graph index: a reload renumbers the graph while rounds
//! run, and what waits or runs must stay the same targets.

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::target_graph::Graph;

/// Why a target needs a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The changed paths that concern it; `None` when the round reports whatever it finds
    /// (the first round, a trigger), which wins over a gated need.
    pub paths: Option<BTreeSet<String>>,
    /// Run it even if it is up to date (a trigger).
    pub force: bool,
}

/// Paths of two needs together; a need that reports whatever it finds (`None`) wins.
fn union(a: Option<BTreeSet<String>>, b: Option<BTreeSet<String>>) -> Option<BTreeSet<String>> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.extend(b);
            Some(a)
        }
        _ => None,
    }
}

/// A round to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundStart {
    pub id: u64,
    pub targets: BTreeSet<String>,
    /// The paths that caused it, when it is gated on content.
    pub paths: Option<BTreeSet<String>>,
    pub force: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct RoundPlan {
    /// Targets waiting for a round, and why.
    dirty: BTreeMap<String, Need>,
    /// Running rounds and their closures.
    running: BTreeMap<u64, BTreeSet<String>>,
    next_id: u64,
}

impl RoundPlan {
    /// Marks targets as needing a look.
    pub fn add<'a>(
        &mut self,
        targets: impl IntoIterator<Item = &'a str>,
        paths: Option<&BTreeSet<String>>,
        force: bool,
    ) {
        for t in targets {
            let need = self.dirty.entry(t.to_string()).or_insert(Need { paths: Some(BTreeSet::new()), force: false });
            need.paths = union(need.paths.take(), paths.cloned());
            need.force |= force;
        }
    }

    /// Forgets waiting targets that are no longer selected (a reload removed them).
    pub fn retain(&mut self, selected: impl Fn(&str) -> bool) {
        self.dirty.retain(|t, _| selected(t));
    }

    /// The round to start now, if any: every dirty target whose closure meets no running
    /// round. Call again after each start or end until `None`.
    pub fn next(&mut self, graph: &Graph) -> Option<RoundStart> {
        let busy: BTreeSet<&String> = self.running.values().flatten().collect();
        let closure = |t: &str| -> BTreeSet<String> {
            graph.with_deps(graph.id(t)).into_iter().map(|id| graph.name(id).to_string()).collect()
        };
        let free: Vec<String> = self
            .dirty
            .keys()
            .filter(|t| graph.id(t).is_some() && closure(t).iter().all(|c| !busy.contains(c)))
            .cloned()
            .collect();
        if free.is_empty() {
            return None;
        }
        let mut paths = Some(BTreeSet::new());
        let mut force = BTreeSet::new();
        let mut running = BTreeSet::new();
        for t in &free {
            let need = self.dirty.remove(t).expect("free targets are dirty");
            paths = union(paths, need.paths);
            if need.force {
                force.insert(t.clone());
            }
            running.extend(closure(t));
        }
        self.next_id += 1;
        self.running.insert(self.next_id, running);
        Some(RoundStart { id: self.next_id, targets: free.into_iter().collect(), paths, force })
    }

    /// A round ended: its targets may build again.
    pub fn finished(&mut self, id: u64) {
        self.running.remove(&id);
    }

    /// Whether a target waits for a round or is in one that runs.
    pub fn is_planned(&self, target: &str) -> bool {
        self.dirty.contains_key(target) || self.running.values().any(|c| c.contains(target))
    }

    /// Whether any round runs.
    pub fn is_running(&self) -> bool {
        !self.running.is_empty()
    }

    /// Whether anything waits for a round.
    #[cfg(test)]
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// core ← plugin ← check, and an unrelated docs.
    fn graph() -> Graph {
        let toml = r#"
[target.core]
cmd = "true"
[target.plugin]
cmd = "true"
deps = ["core"]
[target.check]
cmd = "true"
deps = ["plugin"]
[target.docs]
cmd = "true"
"#;
        let config = kiln_config::parse_str(toml, std::path::Path::new("kiln.toml"), &std::env::temp_dir(), None)
            .expect("valid");
        Graph::from_config(&config)
    }

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| (*s).to_string()).collect()
    }

    fn paths(p: &[&str]) -> BTreeSet<String> {
        p.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn an_unrelated_target_starts_beside_a_running_round() {
        let g = graph();
        let mut plan = RoundPlan::default();
        plan.add(["docs"], Some(&paths(&["docs/a.md"])), false);
        let docs = plan.next(&g).expect("docs starts");
        assert_eq!(docs.targets, names(&["docs"]));
        assert_eq!(docs.paths, Some(paths(&["docs/a.md"])));
        plan.add(["core", "plugin", "check"], Some(&paths(&["core/a.c"])), false);
        let core = plan.next(&g).expect("core does not wait for docs");
        assert_eq!(core.targets, names(&["core", "plugin", "check"]));
        assert!(plan.next(&g).is_none());
    }

    #[test]
    fn changes_during_a_round_cause_exactly_one_follow_up() {
        let g = graph();
        let mut plan = RoundPlan::default();
        plan.add(["core", "plugin", "check"], Some(&paths(&["core/a.c"])), false);
        let first = plan.next(&g).expect("starts");
        for i in 0..5 {
            plan.add(["core", "plugin", "check"], Some(&paths(&[&format!("core/{i}.c")])), false);
            assert!(plan.next(&g).is_none(), "waits for the running round");
        }
        // A dependent alone also waits: its closure holds the running core.
        plan.add(["check"], Some(&paths(&["check/t.sh"])), false);
        assert!(plan.next(&g).is_none());
        plan.finished(first.id);
        let follow_up = plan.next(&g).expect("one follow-up");
        assert_eq!(follow_up.targets, names(&["core", "plugin", "check"]));
        assert_eq!(follow_up.paths.expect("gated").len(), 6, "every path that arrived meanwhile");
        assert!(plan.next(&g).is_none(), "exactly one");
        plan.finished(follow_up.id);
        assert!(!plan.is_running() && !plan.has_dirty());
    }

    #[test]
    fn a_trigger_forces_and_reports_whatever_it_finds() {
        let g = graph();
        let mut plan = RoundPlan::default();
        plan.add(["plugin"], Some(&paths(&["plugin/p.c"])), false);
        plan.add(["plugin", "check"], None, true);
        let round = plan.next(&g).expect("starts");
        assert_eq!(round.paths, None, "ungated wins");
        assert_eq!(round.force, names(&["plugin", "check"]));
    }

    #[test]
    fn targets_removed_by_a_reload_are_forgotten() {
        let g = graph();
        let mut plan = RoundPlan::default();
        plan.add(["docs", "core"], Some(&paths(&["x"])), false);
        plan.retain(|t| t == "core");
        assert_eq!(plan.next(&g).expect("core").targets, names(&["core"]));
    }
}
