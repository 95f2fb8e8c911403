//! The ready queue over the target graph, as pure decisions (no I/O, no clock).
//!
//! In: the selected targets, their priorities, `jobs`, and what happens to each target
//! (evaluated as needing a run, finished with a status). Out: which targets to evaluate next
//! (all their deps succeeded), which to start running (highest priority first, at most
//! `jobs` at once), and which to skip. A target starts the moment its deps are done, not
//! wave by wave.
//!
//! On a failure without keep-going, or on cancel, nothing new starts; what runs finishes,
//! and everything not started ends as skipped. With keep-going, only the dependents of a
//! failure are skipped.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use crate::event::TargetStatus;
use crate::graph::target_graph::{Graph, TargetId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Waiting for this many deps to finish.
    Waiting(usize),
    /// Deps done; not yet handed out for evaluation.
    Ready,
    Evaluating,
    /// Evaluated as needing its command; waiting for a job slot.
    Queued,
    Running,
    /// Its command has exited; its outputs are being stored. Holds no job slot.
    Storing,
    Done(TargetStatus),
}

/// Why the scheduler stopped starting work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    Failure,
    Cancelled,
}

impl Halt {
    /// The reason given to a target that was not started because of it.
    pub fn not_started(self) -> &'static str {
        match self {
            Halt::Cancelled => "not started: the run was interrupted",
            Halt::Failure => {
                "not started: an earlier target failed (use --keep-going to build what does not depend on it)"
            }
        }
    }
}

pub struct Scheduler {
    slots: HashMap<TargetId, Slot>,
    dependents: HashMap<TargetId, Vec<TargetId>>,
    priority: HashMap<TargetId, u64>,
    queue: BinaryHeap<(u64, Reverse<TargetId>)>,
    ready: BinaryHeap<(u64, Reverse<TargetId>)>,
    jobs: usize,
    running: usize,
    /// Targets whose command exited and whose outputs are being stored.
    storing: usize,
    evaluating: usize,
    keep_going: bool,
    halt: Option<Halt>,
    /// How many targets are done.
    done: usize,
    /// Job slots not in use, and the slot of each running target.
    free_slots: std::collections::BTreeSet<usize>,
    slot_of: HashMap<TargetId, usize>,
    /// Priorities of targets that are ready or evaluating (a multiset), so `take_runs` knows
    /// in O(log n) whether something not yet evaluated outranks the queue.
    unevaluated: std::collections::BTreeMap<u64, usize>,
}

impl Scheduler {
    pub fn new(
        graph: &Graph,
        selected: &BTreeSet<TargetId>,
        priority: HashMap<TargetId, u64>,
        jobs: usize,
        keep_going: bool,
    ) -> Scheduler {
        let mut slots = HashMap::new();
        let mut dependents: HashMap<TargetId, Vec<TargetId>> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for &id in selected {
            let deps: Vec<TargetId> = graph.deps(id).iter().copied().filter(|d| selected.contains(d)).collect();
            for &d in &deps {
                dependents.entry(d).or_default().push(id);
            }
            if deps.is_empty() {
                slots.insert(id, Slot::Ready);
                ready.push((priority.get(&id).copied().unwrap_or(0), Reverse(id)));
            } else {
                slots.insert(id, Slot::Waiting(deps.len()));
            }
        }
        let mut unevaluated = std::collections::BTreeMap::new();
        for (prio, _) in &ready {
            *unevaluated.entry(*prio).or_insert(0) += 1;
        }
        Scheduler {
            slots,
            dependents,
            priority,
            queue: BinaryHeap::new(),
            ready,
            jobs: jobs.max(1),
            running: 0,
            storing: 0,
            evaluating: 0,
            keep_going,
            halt: None,
            done: 0,
            unevaluated,
            free_slots: (0..jobs.max(1)).collect(),
            slot_of: HashMap::new(),
        }
    }

    /// Moves `id` to `slot`, keeping the counters in step.
    fn set(&mut self, id: TargetId, slot: Slot) {
        let prio = self.prio(id);
        let old = self.slots.insert(id, slot);
        if matches!(old, Some(Slot::Ready | Slot::Evaluating))
            && let Some(n) = self.unevaluated.get_mut(&prio)
        {
            *n -= 1;
            if *n == 0 {
                self.unevaluated.remove(&prio);
            }
        }
        if matches!(slot, Slot::Ready | Slot::Evaluating) {
            *self.unevaluated.entry(prio).or_insert(0) += 1;
        }
        if matches!(old, Some(Slot::Done(_))) {
            self.done -= 1;
        }
        if matches!(slot, Slot::Done(_)) {
            self.done += 1;
        }
    }

    fn prio(&self, id: TargetId) -> u64 {
        self.priority.get(&id).copied().unwrap_or(0)
    }

    /// Targets whose deps all succeeded, to be evaluated (keyed, checked against the cache);
    /// at most `limit` evaluations in flight.
    pub fn take_evaluations(&mut self, limit: usize) -> Vec<TargetId> {
        let mut out = Vec::new();
        while self.evaluating < limit {
            let Some((_, Reverse(id))) = self.ready.pop() else {
                break;
            };
            self.set(id, Slot::Evaluating);
            self.evaluating += 1;
            out.push(id);
        }
        out
    }

    /// The evaluation of `id` says its command must run.
    pub fn needs_run(&mut self, id: TargetId) {
        self.evaluating -= 1;
        self.set(id, Slot::Queued);
        self.queue.push((self.prio(id), Reverse(id)));
    }

    /// Targets to start now, highest remaining path first, within `jobs`.
    pub fn take_runs(&mut self) -> Vec<TargetId> {
        let mut out = Vec::new();
        if self.halt.is_some() {
            return out;
        }
        // A target still being evaluated (or waiting to be) may need to run and outrank
        // what is queued; evaluations take milliseconds, so wait for them.
        let outranking = self.unevaluated.keys().next_back().copied();
        while self.running < self.jobs {
            let Some(&(prio, Reverse(id))) = self.queue.peek() else {
                break;
            };
            if outranking.is_some_and(|o| o > prio) {
                break;
            }
            self.queue.pop();
            self.set(id, Slot::Running);
            self.running += 1;
            let slot = self.free_slots.pop_first().expect("a free slot exists while running < jobs");
            self.slot_of.insert(id, slot);
            out.push(id);
        }
        out
    }

    /// The job slot (0..jobs) a running target occupies: trace views draw one track per slot.
    pub fn slot_of(&self, id: TargetId) -> Option<usize> {
        self.slot_of.get(&id).copied()
    }

    fn free_slot(&mut self, id: TargetId) {
        if let Some(slot) = self.slot_of.remove(&id) {
            self.free_slots.insert(slot);
        }
    }

    pub fn is_halted(&self) -> Option<Halt> {
        self.halt
    }

    /// The command of `id` has exited: its job slot is free for the next command while its
    /// outputs are stored.
    pub fn release_slot(&mut self, id: TargetId) {
        if self.slots.get(&id) == Some(&Slot::Running) {
            self.running -= 1;
            self.free_slot(id);
            self.storing += 1;
            self.set(id, Slot::Storing);
        }
    }

    /// Records how `id` ended; returns the targets skipped as a consequence, each with the
    /// dependency that did not succeed.
    pub fn finish(&mut self, id: TargetId, status: TargetStatus) -> Vec<(TargetId, TargetId)> {
        match self.slots.get(&id) {
            Some(Slot::Running) => {
                self.running -= 1;
                self.free_slot(id);
            }
            Some(Slot::Storing) => self.storing -= 1,
            Some(Slot::Evaluating) => self.evaluating -= 1,
            _ => {}
        }
        self.set(id, Slot::Done(status));
        let mut skipped = Vec::new();
        match status {
            TargetStatus::Built | TargetStatus::Cached | TargetStatus::Fresh => {
                for dep in self.dependents.get(&id).cloned().unwrap_or_default() {
                    if let Some(Slot::Waiting(n)) = self.slots.get_mut(&dep) {
                        *n -= 1;
                        if *n == 0 {
                            self.set(dep, Slot::Ready);
                            self.ready.push((self.prio(dep), Reverse(dep)));
                        }
                    }
                }
            }
            TargetStatus::Failed | TargetStatus::Skipped => {
                if status == TargetStatus::Failed && !self.keep_going && self.halt.is_none() {
                    self.halt = Some(Halt::Failure);
                }
                let mut stack = vec![id];
                while let Some(cur) = stack.pop() {
                    for dep in self.dependents.get(&cur).cloned().unwrap_or_default() {
                        if matches!(self.slots.get(&dep), Some(Slot::Waiting(_))) {
                            self.set(dep, Slot::Done(TargetStatus::Skipped));
                            skipped.push((dep, cur));
                            stack.push(dep);
                        }
                    }
                }
            }
        }
        skipped
    }

    /// Stops starting anything; queued and waiting targets will be skipped.
    pub fn cancel(&mut self) {
        self.halt = Some(Halt::Cancelled);
    }

    /// Whether something is still evaluating or running.
    pub fn busy(&self) -> bool {
        self.running > 0 || self.storing > 0 || self.evaluating > 0
    }

    /// When halted and idle: every target not yet done, now skipped.
    pub fn drain_unstarted(&mut self) -> Vec<TargetId> {
        if self.halt.is_none() || self.busy() {
            return Vec::new();
        }
        let mut out: Vec<TargetId> =
            self.slots.iter().filter(|(_, s)| !matches!(s, Slot::Done(_))).map(|(id, _)| *id).collect();
        out.sort_unstable();
        for id in &out {
            self.set(*id, Slot::Done(TargetStatus::Skipped));
        }
        self.queue.clear();
        self.ready.clear();
        out
    }

    /// Whether every selected target has finished.
    pub fn is_done(&self) -> bool {
        self.done == self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        // core ← {a, b, c}; a ← app
        Graph::from_edges([
            ("a".to_string(), vec!["core".to_string()]),
            ("app".to_string(), vec!["a".to_string()]),
            ("b".to_string(), vec!["core".to_string()]),
            ("c".to_string(), vec!["core".to_string()]),
            ("core".to_string(), vec![]),
        ])
    }

    fn sched(g: &Graph, jobs: usize, keep_going: bool) -> Scheduler {
        let all: BTreeSet<TargetId> = (0..g.len()).collect();
        let prio = g.remaining_path(&all, |_| 1);
        Scheduler::new(g, &all, prio, jobs, keep_going)
    }

    fn id(g: &Graph, n: &str) -> TargetId {
        g.id(n).expect("target exists")
    }

    /// Runs `core` to success, then evaluates its dependents as needing to run.
    fn build_core_then_queue_the_rest(g: &Graph, s: &mut Scheduler) {
        s.take_evaluations(10);
        s.needs_run(id(g, "core"));
        s.take_runs();
        s.finish(id(g, "core"), TargetStatus::Built);
        for e in s.take_evaluations(10) {
            s.needs_run(e);
        }
    }

    #[test]
    fn starts_dependents_as_soon_as_deps_finish_and_prefers_long_paths() {
        let g = graph();
        let mut s = sched(&g, 2, false);
        assert_eq!(s.take_evaluations(10), vec![id(&g, "core")]);
        s.needs_run(id(&g, "core"));
        assert_eq!(s.take_runs(), vec![id(&g, "core")]);
        s.finish(id(&g, "core"), TargetStatus::Built);
        let evals = s.take_evaluations(10);
        assert_eq!(evals[0], id(&g, "a"), "a has the longest remaining path");
        for e in &evals {
            s.needs_run(*e);
        }
        assert_eq!(s.take_runs().len(), 2, "bounded by jobs");
        let mut slots: Vec<usize> = (0..g.len()).filter_map(|t| s.slot_of(t)).collect();
        slots.sort_unstable();
        assert_eq!(slots, vec![0, 1], "each running target has its own slot");
        assert!(s.take_runs().is_empty());
    }

    #[test]
    fn a_queued_target_waits_for_the_evaluation_of_a_longer_path() {
        let g = Graph::from_edges([
            ("lone".to_string(), vec![]),
            ("z1".to_string(), vec![]),
            ("z2".to_string(), vec!["z1".to_string()]),
        ]);
        let all: BTreeSet<TargetId> = (0..g.len()).collect();
        let mut s = Scheduler::new(&g, &all, g.remaining_path(&all, |_| 1), 1, false);
        assert_eq!(s.take_evaluations(10).len(), 2);
        s.needs_run(id(&g, "lone"));
        assert!(s.take_runs().is_empty(), "z1 is still being evaluated and outranks lone");
        s.needs_run(id(&g, "z1"));
        assert_eq!(s.take_runs(), vec![id(&g, "z1")]);
    }

    #[test]
    fn a_storing_target_frees_its_job_slot_but_not_its_dependents() {
        let g = graph();
        let mut s = sched(&g, 1, false);
        s.take_evaluations(10);
        s.needs_run(id(&g, "core"));
        assert_eq!(s.take_runs(), vec![id(&g, "core")]);
        s.release_slot(id(&g, "core"));
        assert!(s.take_evaluations(10).is_empty(), "dependents wait for the stored outputs");
        s.cancel();
        assert!(s.drain_unstarted().is_empty(), "a target being stored is still in flight");
        s.halt = None;
        s.finish(id(&g, "core"), TargetStatus::Built);
        for e in s.take_evaluations(10) {
            s.needs_run(e);
        }
        assert_eq!(s.take_runs().len(), 1, "the slot was not counted twice");
    }

    #[test]
    fn failure_halts_new_work_and_skips_the_rest() {
        let g = graph();
        let mut s = sched(&g, 1, false);
        build_core_then_queue_the_rest(&g, &mut s);
        let first = s.take_runs();
        assert_eq!(first, vec![id(&g, "a")]);
        let skipped = s.finish(id(&g, "a"), TargetStatus::Failed);
        assert_eq!(skipped.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![id(&g, "app")]);
        assert_eq!(s.is_halted(), Some(Halt::Failure));
        assert!(s.take_runs().is_empty(), "nothing new starts");
        assert_eq!(s.drain_unstarted(), vec![id(&g, "b"), id(&g, "c")]);
        assert!(s.is_done());
    }

    #[test]
    fn keep_going_runs_everything_independent_of_the_failure() {
        let g = graph();
        let mut s = sched(&g, 4, true);
        build_core_then_queue_the_rest(&g, &mut s);
        assert_eq!(s.take_runs().len(), 3);
        let skipped = s.finish(id(&g, "a"), TargetStatus::Failed);
        assert_eq!(skipped.len(), 1);
        assert_eq!(s.is_halted(), None);
        s.finish(id(&g, "b"), TargetStatus::Built);
        s.finish(id(&g, "c"), TargetStatus::Built);
        assert!(s.is_done());
    }

    #[test]
    fn cancel_skips_everything_not_started() {
        let g = graph();
        let mut s = sched(&g, 4, true);
        s.take_evaluations(10);
        s.cancel();
        assert!(s.drain_unstarted().is_empty(), "waits for the evaluation in flight");
        s.finish(id(&g, "core"), TargetStatus::Skipped);
        assert_eq!(s.drain_unstarted(), Vec::<TargetId>::new(), "dependents were skipped with core");
        assert!(s.is_done());
    }
}
