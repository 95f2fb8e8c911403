//! The target graph: targets as dense indices, edges both ways, selection and priorities.
//!
//! Built from a checked [`kiln_config::Config`], which guarantees every dependency exists and
//! there is no cycle, so every function here is total.

use std::collections::{BTreeSet, HashMap};

use kiln_config::Config;

/// A target's position in the graph.
pub type TargetId = usize;

/// Targets and their dependency edges, indexed densely in name order.
#[derive(Debug, Clone)]
pub struct Graph {
    names: Vec<String>,
    index: HashMap<String, TargetId>,
    deps: Vec<Vec<TargetId>>,
    dependents: Vec<Vec<TargetId>>,
}

impl Graph {
    pub fn from_config(config: &Config) -> Graph {
        Graph::from_edges(config.targets.values().map(|t| (t.name.clone(), t.deps.clone())))
    }

    /// Builds a graph from (name, dependency names); unknown dependency names are ignored.
    pub fn from_edges(edges: impl IntoIterator<Item = (String, Vec<String>)>) -> Graph {
        let edges: Vec<(String, Vec<String>)> = edges.into_iter().collect();
        let names: Vec<String> = edges.iter().map(|(n, _)| n.clone()).collect();
        let index: HashMap<String, TargetId> = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let mut deps = vec![Vec::new(); names.len()];
        let mut dependents = vec![Vec::new(); names.len()];
        for (id, (_, ds)) in edges.iter().enumerate() {
            for d in ds {
                if let Some(&dep) = index.get(d)
                    && !deps[id].contains(&dep)
                {
                    deps[id].push(dep);
                    dependents[dep].push(id);
                }
            }
        }
        Graph { names, index, deps, dependents }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, id: TargetId) -> &str {
        &self.names[id]
    }

    pub fn id(&self, name: &str) -> Option<TargetId> {
        self.index.get(name).copied()
    }

    pub fn deps(&self, id: TargetId) -> &[TargetId] {
        &self.deps[id]
    }

    pub fn dependents(&self, id: TargetId) -> &[TargetId] {
        &self.dependents[id]
    }

    /// The given targets and everything they need, transitively.
    pub fn with_deps(&self, roots: impl IntoIterator<Item = TargetId>) -> BTreeSet<TargetId> {
        self.closure(roots, |id| self.deps(id))
    }

    /// The given targets and everything that depends on them, transitively.
    pub fn with_dependents(&self, roots: impl IntoIterator<Item = TargetId>) -> BTreeSet<TargetId> {
        self.closure(roots, |id| self.dependents(id))
    }

    fn closure<'a>(
        &'a self,
        roots: impl IntoIterator<Item = TargetId>,
        next: impl Fn(TargetId) -> &'a [TargetId],
    ) -> BTreeSet<TargetId> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<TargetId> = roots.into_iter().collect();
        while let Some(id) = stack.pop() {
            if seen.insert(id) {
                stack.extend_from_slice(next(id));
            }
        }
        seen
    }

    /// Targets in dependency order (each after all of its deps), restricted to `within`.
    pub fn topo_order(&self, within: &BTreeSet<TargetId>) -> Vec<TargetId> {
        let mut remaining: HashMap<TargetId, usize> =
            within.iter().map(|&id| (id, self.deps(id).iter().filter(|d| within.contains(d)).count())).collect();
        let mut ready: Vec<TargetId> = remaining.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
        ready.sort_unstable_by(|a, b| b.cmp(a));
        let mut order = Vec::with_capacity(within.len());
        while let Some(id) = ready.pop() {
            order.push(id);
            for &dep in self.dependents(id) {
                if let Some(n) = remaining.get_mut(&dep) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(dep);
                    }
                }
            }
        }
        order
    }

    /// For each target in `within`: its own weight plus the heaviest chain of dependents
    /// after it. Scheduling the largest first keeps the critical path moving.
    pub fn remaining_path(
        &self,
        within: &BTreeSet<TargetId>,
        weight: impl Fn(TargetId) -> u64,
    ) -> HashMap<TargetId, u64> {
        let mut out = HashMap::with_capacity(within.len());
        for &id in self.topo_order(within).iter().rev() {
            let tail = self.dependents(id).iter().filter_map(|d| out.get(d)).copied().max().unwrap_or(0);
            out.insert(id, weight(id) + tail);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diamond() -> Graph {
        // core ← a, core ← b, a + b ← app; lone has no edges.
        Graph::from_edges([
            ("a".to_string(), vec!["core".to_string()]),
            ("app".to_string(), vec!["a".to_string(), "b".to_string()]),
            ("b".to_string(), vec!["core".to_string()]),
            ("core".to_string(), vec![]),
            ("lone".to_string(), vec![]),
        ])
    }

    fn names(g: &Graph, ids: impl IntoIterator<Item = TargetId>) -> Vec<String> {
        ids.into_iter().map(|i| g.name(i).to_string()).collect()
    }

    #[test]
    fn selection_follows_deps_only() {
        let g = diamond();
        let a = g.id("a").expect("a exists");
        assert_eq!(names(&g, g.with_deps([a])), vec!["a", "core"]);
        let core = g.id("core").expect("core exists");
        assert_eq!(names(&g, g.with_dependents([core])), vec!["a", "app", "b", "core"]);
    }

    #[test]
    fn topo_order_puts_deps_first() {
        let g = diamond();
        let all: BTreeSet<_> = (0..g.len()).collect();
        let order = names(&g, g.topo_order(&all));
        let pos = |n: &str| order.iter().position(|x| x == n).expect("present");
        assert!(pos("core") < pos("a") && pos("core") < pos("b"));
        assert!(pos("a") < pos("app") && pos("b") < pos("app"));
        assert_eq!(order.len(), 5);
    }

    #[test]
    fn remaining_path_counts_longest_chain() {
        let g = diamond();
        let all: BTreeSet<_> = (0..g.len()).collect();
        let rp = g.remaining_path(&all, |_| 1);
        assert_eq!(rp[&g.id("core").expect("core")], 3);
        assert_eq!(rp[&g.id("app").expect("app")], 1);
        assert_eq!(rp[&g.id("lone").expect("lone")], 1);
    }
}
