//! One build run: the loop that owns all state of the run, drives the [`Scheduler`], hands
//! work to workers and turns their reports into events.
//!
//! For each selected target, once its deps have succeeded:
//! 1. evaluate (a blocking worker): list and hash its inputs through the stat cache, fold in
//!    the deps' output digests, compute the key; then `fresh` if the last build had this key
//!    and its outputs are intact, `cached` if the cache has an entry for the key (restoring
//!    what is missing or altered), otherwise it must run, with the reason;
//! 2. run (an async worker, bounded by `jobs`): `sh -c` with retries and timeout, collect
//!    the declared outputs, store them in the cache;
//! 3. record the outcome; dependents become ready.
//!
//! Because a dependent's key holds its deps' output digests, not their keys, a dep that
//! rebuilds to identical bytes leaves its dependents `fresh` (early cutoff).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use kiln_config::{Config, ImageSpec, Target, TargetKind};
use tokio::sync::{mpsc, watch};

use crate::build::scheduler::{Halt, Scheduler};
use crate::build::target_inputs::{Patterns, hash_inputs, image_inputs};
use crate::cache::digest::Digest;
use crate::cache::fingerprint::fingerprint;
use crate::cache::manifest::{Manifest, summarize};
use crate::cache::stat_cache::StatCache;
use crate::cache::state::{State, TargetRecord};
use crate::cache::store::{Cache, CacheError, OutputFile, current_digest, output_digest};
use crate::container::engine::{Engine, image_tag};
use crate::event::event_gate::EventGate;
use crate::event::timestamp::rfc3339;
use crate::event::{Event, EventBus, NoticeLevel, Stream, TargetStatus};
use crate::exec::command::{CommandSpec, ExecOutcome};
use crate::fs::cpus::cpus;
use crate::fs::file_index::FileIndex;
use crate::fs::file_meta::FileMeta;
use crate::fs::layout::Layout;
use crate::fs::path_pattern::{PathPattern, is_under};
use crate::fs::project_lock::ProjectLock;
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

/// Read-only facts shared by the workers of a run.
struct Ctx {
    config: Arc<Config>,
    layout: Layout,
    graph: Graph,
    cache: Cache,
    stat: StatCache,
    index: FileIndex,
    prev: State,
    inputs: Vec<Vec<PathPattern>>,
    outputs: Vec<Vec<PathPattern>>,
    dry_run: bool,
    /// Replay the stored output of targets restored from the cache.
    replay_logs: bool,
    /// Publish `target.span` events.
    spans: bool,
    /// Targets to run even if they are up to date.
    force: BTreeSet<String>,
    bus: Arc<EventBus>,
    /// When the run started: spans are timed from here.
    started: Instant,
    /// The container engine, looked for when an image target first needs it.
    engine: OnceLock<Result<Engine, String>>,
}

impl Ctx {
    fn engine(&self) -> Result<&Engine, String> {
        self.engine.get_or_init(|| Engine::find(self.config.settings.engine)).as_ref().map_err(Clone::clone)
    }

    fn target(&self, id: TargetId) -> &Target {
        &self.config.targets[self.graph.name(id)]
    }

    /// Publishes a `target.span` that began at `start` and ends now, when spans were asked
    /// for (they are many; only a trace needs them).
    fn span(&self, target: &str, span: &str, track: Track, start: Instant) {
        if !self.spans {
            return;
        }
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.bus.publish(Event::TargetSpan {
            target: target.to_string(),
            span: span.to_string(),
            track: match track {
                Track::Job(slot) => format!("job {slot}"),
                Track::Worker => worker_track(),
            },
            start_us: micros(start.saturating_duration_since(self.started)),
            duration_us: micros(start.elapsed()),
        });
    }
}

/// A finished target's contribution to its dependents and to the state.
struct Done {
    record: Option<TargetRecord>,
    status: TargetStatus,
    reason: String,
    key: Option<Digest>,
    log: Option<String>,
}

/// A target that must run: what decides its key, why it runs, and the fingerprint of its
/// inputs' metadata as evaluated.
struct RunRequest {
    manifest: Manifest,
    reason: String,
    inputs_meta: Option<Digest>,
}

enum Evaluation {
    Done(Done),
    Run(RunRequest),
    Plan { action: PlanAction, reason: String, digest: Option<Digest> },
}

/// What an evaluation needs from the loop's state.
struct EvalJob {
    id: TargetId,
    deps: Vec<(String, Option<Digest>)>,
    /// A dep wrote outputs this run: list the inputs anew, they may include them.
    refresh: bool,
}

enum Msg {
    Evaluated(TargetId, Evaluation),
    /// The command exited; its outputs are being stored.
    Exited(TargetId),
    Ran(TargetId, Done),
}

/// Runs a build to completion (or until `cancel` turns true), publishing events on `bus`.
pub async fn run_build(
    config: Arc<Config>,
    options: BuildOptions,
    bus: Arc<EventBus>,
    mut cancel: watch::Receiver<bool>,
) -> Result<RunSummary, BuildError> {
    let started = Instant::now();
    let layout = Layout::new(&config.root);
    let setup = |path: PathBuf| move |source| BuildError::Setup { path, source };
    layout.ensure().map_err(setup(layout.kiln.clone()))?;
    let graph = Graph::from_config(&config);
    let roots = if options.targets.is_empty() {
        (0..graph.len()).collect()
    } else {
        resolve_targets(&graph, &options.targets)?
    };
    let selected = graph.with_deps(roots);

    let lock_path = layout.lock();
    let lock_bus = bus.clone();
    // Free in the common case; only a busy lock is waited for on a blocking thread.
    let _lock = match ProjectLock::try_acquire(&lock_path).map_err(setup(layout.lock()))? {
        Some(lock) => lock,
        None => tokio::task::spawn_blocking(move || {
            ProjectLock::acquire(&lock_path, |pid| {
                let who = pid.map_or_else(|| "another kiln".to_string(), |p| format!("another kiln (pid {p})"));
                lock_bus.publish(Event::Notice {
                    level: NoticeLevel::Info,
                    message: format!("waiting for {who} to finish in this project…"),
                });
            })
        })
        .await
        .expect("lock task does not panic")
        .map_err(setup(layout.lock()))?,
    };

    let cache = Cache::new(config.root.clone(), layout.cache());
    cache.sweep_tmp();
    let prev = State::load(&layout.state().join("targets.json"));
    // The stat cache loads while the tree is walked: neither needs the other.
    let stat_path = layout.state().join("stat.bin");
    let stat = tokio::task::spawn_blocking(move || StatCache::load(&stat_path));
    let Patterns { inputs, outputs, .. } = Patterns::compile(&config, &graph);
    let prefixes: Vec<String> = selected.iter().flat_map(|&id| inputs[id].iter().map(|p| p.prefix.clone())).collect();
    let root = config.root.clone();
    // A few prefixes are walked faster right here than by a hand-off to walker threads.
    let index = if prefixes.len() <= 16 {
        FileIndex::scan_small(&root, prefixes, true)
    } else {
        tokio::task::spawn_blocking(move || FileIndex::scan(&root, prefixes, true))
            .await
            .expect("scan task does not panic")
    };
    let stat = stat.await.expect("stat cache load does not panic");

    let jobs = if options.jobs == 0 { config.settings.jobs.unwrap_or_else(cpus) } else { options.jobs };
    let weights: HashMap<TargetId, u64> =
        selected.iter().map(|&id| (id, prev.targets.get(graph.name(id)).map_or(1, |r| r.duration_ms.max(1)))).collect();
    let priority = graph.remaining_path(&selected, |id| weights.get(&id).copied().unwrap_or(1));
    let mut sched = Scheduler::new(&graph, &selected, priority, jobs, options.keep_going);

    let gate = options.gate.clone().map(|prelude| EventGate::new(bus.clone(), prelude));
    let bus = gate.as_ref().map_or(bus, EventGate::bus);
    let ctx = Arc::new(Ctx {
        config,
        layout,
        graph,
        cache,
        stat,
        index,
        prev,
        inputs,
        outputs,
        dry_run: options.dry_run,
        replay_logs: options.replay_logs,
        spans: options.spans,
        force: options.force.clone(),
        bus: bus.clone(),
        started,
        engine: OnceLock::new(),
    });
    let mode = if options.watch_mode { "up" } else { "build" };
    bus.publish(Event::RunStarted { mode: mode.into(), targets: selected.len() });
    for &id in &selected {
        let name = ctx.graph.name(id);
        bus.publish(Event::TargetQueued {
            target: name.to_string(),
            deps: ctx
                .graph
                .deps(id)
                .iter()
                .filter(|d| selected.contains(d))
                .map(|d| ctx.graph.name(*d).to_string())
                .collect(),
            estimate_ms: ctx.prev.targets.get(name).map(|r| r.duration_ms),
        });
    }

    let mut run = RunLoop {
        ctx: ctx.clone(),
        sched: &mut sched,
        state: ctx.prev.clone(),
        digests: HashMap::new(),
        touched: BTreeSet::new(),
        pending: HashMap::new(),
        summary: RunSummary::default(),
        started_at: HashMap::new(),
        gate,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    // Enough evaluations in flight to keep every CPU busy with large batches.
    let eval_limit = 512;
    loop {
        if *cancel.borrow() && !run.summary.interrupted {
            run.summary.interrupted = true;
            run.sched.cancel();
        }
        let ready = run.sched.take_evaluations(eval_limit);
        run.start_evaluations(ready, &tx);
        for id in run.sched.take_runs() {
            run.start_run(id, tx.clone(), cancel.clone());
        }
        for id in run.sched.drain_unstarted() {
            let reason = run.sched.is_halted().unwrap_or(Halt::Failure).not_started().to_string();
            run.finish(id, Done { record: None, status: TargetStatus::Skipped, reason, key: None, log: None });
        }
        if run.sched.is_done() {
            break;
        }
        tokio::select! {
            msg = rx.recv() => {
                // Take every report that is already waiting before scheduling again.
                let mut next = msg;
                while let Some(msg) = next {
                    match msg {
                        Msg::Evaluated(id, eval) => run.on_evaluated(id, eval),
                        Msg::Exited(id) => run.sched.release_slot(id),
                        Msg::Ran(id, done) => run.finish(id, done),
                    }
                    next = rx.try_recv().ok();
                }
            }
            changed = cancel.changed(), if !run.summary.interrupted => {
                if changed.is_err() || *cancel.borrow() {
                    run.summary.interrupted = true;
                    run.sched.cancel();
                }
            }
        }
    }

    if !ctx.dry_run {
        let state_dir = ctx.layout.state();
        if run.state != ctx.prev {
            let _ = run.state.save(&state_dir.join("targets.json"));
        }
        let _ = ctx.stat.save(&state_dir.join("stat.bin"));
    }
    let gate = run.gate.take();
    let mut summary = run.summary;
    summary.duration = started.elapsed();
    bus.publish(Event::RunFinished {
        ok: summary.ok(),
        built: summary.built,
        cached: summary.cached,
        fresh: summary.fresh,
        failed: summary.failed,
        skipped: summary.skipped,
        duration_ms: millis(summary.duration),
        interrupted: summary.interrupted,
    });
    if let Some(gate) = gate {
        summary.quiet = !gate.finish().await;
    }
    Ok(summary)
}

/// The mutable state of one run, owned by the loop alone.
struct RunLoop<'s> {
    ctx: Arc<Ctx>,
    sched: &'s mut Scheduler,
    state: State,
    /// Output digests of finished targets (`None` in a dry run when it would rebuild).
    digests: HashMap<TargetId, Option<Digest>>,
    /// Targets whose outputs this run wrote; their dependents list inputs anew.
    touched: BTreeSet<TargetId>,
    /// Manifests of targets waiting for a job slot.
    pending: HashMap<TargetId, RunRequest>,
    summary: RunSummary,
    started_at: HashMap<TargetId, Instant>,
    /// Holds the run's events until something is not fresh.
    gate: Option<EventGate>,
}

impl RunLoop<'_> {
    /// Evaluates targets on blocking threads, in one batch per CPU: an evaluation takes
    /// microseconds when nothing changed, so a thread hand-off per target would dominate.
    fn start_evaluations(&mut self, ids: Vec<TargetId>, tx: &mpsc::UnboundedSender<Msg>) {
        if ids.is_empty() {
            return;
        }
        let jobs: Vec<EvalJob> = ids
            .into_iter()
            .map(|id| {
                self.started_at.insert(id, Instant::now());
                let graph = &self.ctx.graph;
                let deps = graph
                    .deps(id)
                    .iter()
                    .map(|d| (graph.name(*d).to_string(), self.digests.get(d).copied().flatten()))
                    .collect();
                let refresh = graph
                    .deps(id)
                    .iter()
                    .any(|d| self.touched.contains(d) && overlaps(&self.ctx.outputs[*d], &self.ctx.inputs[id]));
                EvalJob { id, deps, refresh }
            })
            .collect();
        if jobs.len() <= 2 {
            // One or two evaluations take less time than handing them to another thread.
            for job in jobs {
                let evaluating = Instant::now();
                let eval = evaluate(&self.ctx, job.id, &job.deps, job.refresh);
                self.ctx.span(self.ctx.graph.name(job.id), "evaluate", Track::Worker, evaluating);
                let _ = tx.send(Msg::Evaluated(job.id, eval));
            }
            return;
        }
        let per_thread = jobs.len().div_ceil(cpus());
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let batch: Vec<EvalJob> = jobs.by_ref().take(per_thread).collect();
            let ctx = self.ctx.clone();
            let tx = tx.clone();
            tokio::task::spawn_blocking(move || {
                for job in batch {
                    let evaluating = Instant::now();
                    let eval = evaluate(&ctx, job.id, &job.deps, job.refresh);
                    ctx.span(ctx.graph.name(job.id), "evaluate", Track::Worker, evaluating);
                    let _ = tx.send(Msg::Evaluated(job.id, eval));
                }
            });
        }
    }

    fn on_evaluated(&mut self, id: TargetId, eval: Evaluation) {
        if let Some(gate) = self.gate.as_mut()
            && !gate.is_open()
            && !matches!(&eval, Evaluation::Done(d) if d.status == TargetStatus::Fresh)
        {
            gate.open();
        }
        match eval {
            Evaluation::Done(done) => self.finish(id, done),
            Evaluation::Run(request) => {
                if let Some(halt) = self.sched.is_halted() {
                    let done = Done {
                        record: None,
                        status: TargetStatus::Skipped,
                        reason: halt.not_started().into(),
                        key: Some(request.manifest.key()),
                        log: None,
                    };
                    self.finish(id, done);
                } else {
                    self.pending.insert(id, request);
                    self.sched.needs_run(id);
                }
            }
            Evaluation::Plan { action, reason, digest } => {
                let name = self.ctx.graph.name(id).to_string();
                self.summary.plan.push(PlanEntry { target: name, action, reason: reason.clone() });
                self.digests.insert(id, digest);
                let status = if action == PlanAction::Fresh { TargetStatus::Fresh } else { TargetStatus::Built };
                self.sched.finish(id, status);
            }
        }
    }

    fn start_run(&mut self, id: TargetId, tx: mpsc::UnboundedSender<Msg>, cancel: watch::Receiver<bool>) {
        let request = self.pending.remove(&id).expect("a queued target has a request");
        let slot = self.sched.slot_of(id).expect("a running target has a slot");
        // A target that runs is timed from its start, not from its evaluation: time spent
        // waiting for a job slot is not its duration.
        self.started_at.insert(id, Instant::now());
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let done = execute(&ctx, id, slot, request, cancel, &tx).await;
            let _ = tx.send(Msg::Ran(id, done));
        });
    }

    fn finish(&mut self, id: TargetId, done: Done) {
        let name = self.ctx.graph.name(id).to_string();
        let elapsed = self.started_at.get(&id).map_or(Duration::ZERO, Instant::elapsed);
        match done.status {
            TargetStatus::Built => self.summary.built += 1,
            TargetStatus::Cached => self.summary.cached += 1,
            TargetStatus::Fresh => self.summary.fresh += 1,
            TargetStatus::Failed => self.summary.failed += 1,
            TargetStatus::Skipped => self.summary.skipped += 1,
        }
        if matches!(done.status, TargetStatus::Built | TargetStatus::Cached) {
            self.touched.insert(id);
        }
        self.summary.outcomes.insert(name.clone(), done.status);
        if let Some(record) = &done.record {
            if self.ctx.prev.targets.get(&name).is_none_or(|p| p.output_digest != record.output_digest) {
                self.summary.changed.insert(name.clone());
            }
            self.digests.insert(id, Some(record.output_digest));
            if let Some(image) = &record.image {
                self.summary.images.insert(name.clone(), image.clone());
            }
            self.state.targets.insert(name.clone(), record.clone());
        }
        self.ctx.bus.publish(Event::TargetFinished {
            target: name,
            status: done.status,
            duration_ms: millis(elapsed),
            key: done.key.map(|k| k.hex()),
            reason: done.reason,
            log: done.log,
            saved_ms: (done.status == TargetStatus::Cached).then(|| done.record.as_ref().map_or(0, |r| r.duration_ms)),
        });
        for (skipped, cause) in self.sched.finish(id, done.status) {
            let reason = format!("dependency {} did not succeed", self.ctx.graph.name(cause));
            self.summary.skipped += 1;
            self.summary.outcomes.insert(self.ctx.graph.name(skipped).to_string(), TargetStatus::Skipped);
            self.ctx.bus.publish(Event::TargetFinished {
                target: self.ctx.graph.name(skipped).to_string(),
                status: TargetStatus::Skipped,
                duration_ms: 0,
                key: None,
                reason,
                log: None,
                saved_ms: None,
            });
        }
    }
}

/// Where a span ran: a job slot, or the calling worker thread.
enum Track {
    Job(usize),
    Worker,
}

/// The trace track of the calling blocking thread: `worker N`, numbered in order of first
/// use. Work on one thread is sequential, so its spans never overlap.
fn worker_track() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static ID: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    ID.with(|id| format!("worker {id}"))
}

/// Whether files written under `outputs` could be listed by `inputs`.
fn overlaps(outputs: &[PathPattern], inputs: &[PathPattern]) -> bool {
    outputs.iter().any(|o| inputs.iter().any(|i| is_under(&o.prefix, &i.prefix) || is_under(&i.prefix, &o.prefix)))
}

/// Decides what a target needs: fresh, a restore from the cache, or a run.
fn evaluate(ctx: &Ctx, id: TargetId, deps: &[(String, Option<Digest>)], refresh: bool) -> Evaluation {
    let target = ctx.target(id);
    let root = &ctx.config.root;
    let hashing = Instant::now();
    if let Some((dep, _)) = deps.iter().find(|(_, d)| d.is_none()) {
        return Evaluation::Plan {
            action: PlanAction::Run,
            reason: format!("dependency {dep} would be rebuilt"),
            digest: None,
        };
    }
    let mut manifest = Manifest::for_target(target, &ctx.config.env);
    manifest.deps = deps.iter().map(|(n, d)| (n.clone(), d.expect("checked above"))).collect();
    let rescanned;
    let files = if refresh {
        rescanned = FileIndex::scan_small(root, ctx.inputs[id].iter().map(|p| p.prefix.clone()), true);
        rescanned.select(&ctx.inputs[id], &ctx.outputs[id])
    } else {
        ctx.index.select(&ctx.inputs[id], &ctx.outputs[id])
    };
    if let TargetKind::Image(spec) = &target.kind {
        return evaluate_image(ctx, target, spec, manifest, &files, hashing);
    }
    let name = &target.name;
    let prev = ctx.prev.targets.get(name);
    let inputs_meta = fingerprint(files.iter().map(|e| (e.0.as_str(), &e.1)));

    // Fast path: inputs' metadata and outputs' metadata exactly as recorded, and the deps'
    // outputs unchanged, so the key is the recorded one without reading any content.
    let forced = ctx.force.contains(name);
    if let Some(p) = prev
        && !forced
        && inputs_meta.is_some()
        && p.inputs_meta == inputs_meta
        && let Some(inputs_digest) = p.inputs_digest
        && manifest.key_with(&inputs_digest) == p.key
        && p.outputs_meta.is_some()
        && outputs_fingerprint(root, &p.outputs) == p.outputs_meta
    {
        ctx.span(name, "hash", Track::Worker, hashing);
        let done = Done {
            record: Some(p.clone()),
            status: TargetStatus::Fresh,
            reason: "up to date".into(),
            key: Some(p.key),
            log: None,
        };
        return plan_or(ctx, done, PlanAction::Fresh);
    }

    // The previous build's manifest: the reason for a rebuild is the difference from it, and
    // while the inputs' metadata is unchanged its per-file digests are still true.
    let looking = Instant::now();
    let previous = prev.and_then(|p| ctx.cache.lookup(&p.key));
    ctx.span(name, "lookup", Track::Worker, looking);
    let reusable = previous.as_ref().filter(|old| {
        inputs_meta.is_some()
            && prev.is_some_and(|p| p.inputs_meta == inputs_meta)
            && old.manifest.inputs.len() == files.len()
            && old.manifest.inputs.iter().zip(&files).all(|((a, _), b)| *a == b.0)
    });
    match reusable {
        Some(old) => manifest.inputs = old.manifest.inputs.clone(),
        None => {
            if let Err(reason) = hash_inputs(root, &ctx.stat, &files, &mut manifest) {
                return failed(reason, None);
            }
        }
    }
    let key = manifest.key();
    ctx.span(name, "hash", Track::Worker, hashing);
    if forced {
        return run_or_plan(ctx, RunRequest { manifest, reason: "triggered".into(), inputs_meta });
    }

    if let Some(prev) = prev.filter(|p| p.key == key) {
        let damaged: Vec<&OutputFile> =
            prev.outputs.iter().filter(|o| current_digest(root, &o.path, &ctx.stat) != Some(o.digest)).collect();
        if damaged.is_empty() {
            let record = record_for(
                root,
                &manifest,
                Produced {
                    output_digest: prev.output_digest,
                    outputs: prev.outputs.clone(),
                    duration_ms: prev.duration_ms,
                    at: prev.finished_at.clone(),
                    reason: prev.reason.clone(),
                },
                inputs_meta,
            );
            let done = Done {
                record: Some(record),
                status: TargetStatus::Fresh,
                reason: "up to date".into(),
                key: Some(key),
                log: None,
            };
            return plan_or(ctx, done, PlanAction::Fresh);
        }
        let what = describe_damage(&damaged, root);
        let request = RunRequest { manifest, reason: String::new(), inputs_meta };
        if !target.cache {
            return run_or_plan(
                ctx,
                RunRequest { reason: format!("{what} (cache disabled for this target)"), ..request },
            );
        }
        if previous.is_none() {
            // Pruned or cleaned away: nothing to restore from, and nothing wrong with that.
            return run_or_plan(ctx, RunRequest { reason: format!("{what}; the cache no longer has it"), ..request });
        }
        if ctx.dry_run {
            return Evaluation::Plan {
                action: PlanAction::Restore,
                reason: format!("{what}; would restore from cache"),
                digest: Some(prev.output_digest),
            };
        }
        return restore(ctx, name, request, prev.output_digest, prev.outputs.clone(), prev.duration_ms, what);
    }

    let reason = match (prev, &previous) {
        (None, _) => "no previous build".to_string(),
        (Some(_), Some(old)) => summarize(&manifest.changes_since(&old.manifest)),
        (Some(_), None) => "inputs or definition changed".to_string(),
    };
    let request = RunRequest { manifest, reason, inputs_meta };
    let looking = Instant::now();
    let hit = if target.cache { ctx.cache.lookup(&key) } else { None };
    ctx.span(name, "lookup", Track::Worker, looking);
    if let Some(rec) = hit {
        if ctx.dry_run {
            return Evaluation::Plan {
                action: PlanAction::Restore,
                reason: format!("{}; would restore from cache", request.reason),
                digest: Some(rec.output_digest),
            };
        }
        let why = request.reason.clone();
        return restore(ctx, name, request, rec.output_digest, rec.outputs, rec.duration_ms, why);
    }
    run_or_plan(ctx, request)
}

/// Decides what an image target needs. Its inputs are its build context (after the ignore
/// file), its Containerfile and any declared inputs outside the context; it is `fresh` when
/// the engine still has the image tagged with its key, `cached` when the engine has the tag
/// of a new key (an earlier build of the same content), and runs otherwise.
fn evaluate_image(
    ctx: &Ctx,
    target: &Target,
    spec: &ImageSpec,
    mut manifest: Manifest,
    declared: &[&(String, FileMeta)],
    hashing: Instant,
) -> Evaluation {
    let root = &ctx.config.root;
    let name = &target.name;
    let files = match image_inputs(root, spec, declared) {
        Ok(files) => files,
        Err(why) => return failed(why, None),
    };
    let refs: Vec<&(String, FileMeta)> = files.iter().collect();
    let inputs_meta = fingerprint(files.iter().map(|e| (e.0.as_str(), &e.1)));
    let prev = ctx.prev.targets.get(name);
    let forced = ctx.force.contains(name);

    // While the context's metadata is as recorded, its content digest is the recorded one.
    let reused = prev.and_then(|p| {
        let digest = p.inputs_digest?;
        (inputs_meta.is_some() && p.inputs_meta == inputs_meta && manifest.key_with(&digest) == p.key).then_some(digest)
    });
    let inputs_digest = match reused {
        Some(d) => d,
        None => {
            if let Err(reason) = hash_inputs(root, &ctx.stat, &refs, &mut manifest) {
                return failed(reason, None);
            }
            manifest.inputs_digest()
        }
    };
    let key = manifest.key_with(&inputs_digest);
    ctx.span(name, "hash", Track::Worker, hashing);
    let engine = match ctx.engine() {
        Ok(engine) => engine,
        Err(why) => return failed(why, Some(key)),
    };
    let tag = image_tag(spec, &key);
    let same_key = prev.is_some_and(|p| p.key == key);
    // Only a key this project built before can have its tag in the engine (the cache keeps
    // the record of every build): a new key goes straight to the build, without asking.
    // The tag is looked up on its own (listing every image costs podman seconds once it has
    // a few dozen); one that cannot be found counts as absent, and building it is correct.
    let known = same_key || ctx.cache.lookup(&key).is_some();
    let existing = if known { engine.image_id(&tag).ok().map(|id| image_digest(&id)) } else { None };
    let why = || -> String {
        match prev {
            None => "no previous build".to_string(),
            Some(p) => match ctx.cache.lookup(&p.key) {
                Some(old) if !manifest.inputs.is_empty() || old.manifest.inputs.is_empty() => {
                    summarize(&manifest.changes_since(&old.manifest))
                }
                _ => "inputs or definition changed".to_string(),
            },
        }
    };
    if let Some(output_digest) = existing.filter(|_| !forced) {
        let (status, reason, at) = match prev.filter(|_| same_key) {
            Some(p) => (TargetStatus::Fresh, "up to date".to_string(), p.finished_at.clone()),
            None => (
                TargetStatus::Cached,
                format!("{}; {} already has image {tag}", why(), engine.name()),
                rfc3339(SystemTime::now()),
            ),
        };
        if status == TargetStatus::Cached && !ctx.dry_run {
            // Its manifest, for the reasons and `explain` of the next change.
            let _ = ctx.cache.store_record(name, &manifest, output_digest, None, 0);
        }
        let record = TargetRecord {
            key,
            output_digest,
            outputs: Vec::new(),
            duration_ms: prev.map_or(0, |p| p.duration_ms),
            finished_at: at,
            reason: if status == TargetStatus::Fresh {
                prev.map_or_else(String::new, |p| p.reason.clone())
            } else {
                reason.clone()
            },
            inputs_meta,
            inputs_digest: Some(inputs_digest),
            outputs_meta: fingerprint(std::iter::empty()),
            image: Some(tag),
        };
        let done = Done { record: Some(record), status, reason, key: Some(key), log: None };
        let action = if status == TargetStatus::Fresh { PlanAction::Fresh } else { PlanAction::Restore };
        return plan_or(ctx, done, action);
    }
    let reason = if forced {
        "triggered".to_string()
    } else if same_key {
        format!("image {tag} is no longer in {}", engine.name())
    } else {
        why()
    };
    if reused.is_some()
        && let Err(reason) = hash_inputs(root, &ctx.stat, &refs, &mut manifest)
    {
        return failed(reason, Some(key));
    }
    run_or_plan(ctx, RunRequest { manifest, reason, inputs_meta })
}

/// An image ID (sha256 hex) as an output digest: dependents see exactly when it changes.
fn image_digest(id: &str) -> Digest {
    Digest::from_hex(id).unwrap_or_else(|| Digest::of_bytes(id.as_bytes()))
}

/// The fingerprint of recorded outputs as they are on disk now (`None` if one is missing).
fn outputs_fingerprint(root: &std::path::Path, outputs: &[OutputFile]) -> Option<Digest> {
    let metas: Option<Vec<FileMeta>> = outputs
        .iter()
        .map(|o| {
            std::fs::symlink_metadata(root.join(&o.path))
                .ok()
                .filter(std::fs::Metadata::is_file)
                .map(|m| FileMeta::of(&m))
        })
        .collect();
    let metas = metas?;
    fingerprint(outputs.iter().zip(&metas).map(|(o, m)| (o.path.as_str(), m)))
}

/// The state record of a target whose outputs are now intact on disk.
fn record_for(
    root: &std::path::Path,
    manifest: &Manifest,
    produced: Produced,
    inputs_meta: Option<Digest>,
) -> TargetRecord {
    TargetRecord {
        key: manifest.key(),
        output_digest: produced.output_digest,
        outputs_meta: outputs_fingerprint(root, &produced.outputs),
        outputs: produced.outputs,
        duration_ms: produced.duration_ms,
        finished_at: produced.at,
        reason: produced.reason,
        inputs_meta,
        inputs_digest: Some(manifest.inputs_digest()),
        image: None,
    }
}

/// Outputs as produced by a run or a restore: what they are, how long the command took,
/// when and why.
struct Produced {
    output_digest: Digest,
    outputs: Vec<OutputFile>,
    duration_ms: u64,
    at: String,
    reason: String,
}

impl Produced {
    fn now(output_digest: Digest, outputs: Vec<OutputFile>, duration_ms: u64, reason: &str) -> Produced {
        Produced { output_digest, outputs, duration_ms, at: rfc3339(SystemTime::now()), reason: reason.to_string() }
    }
}

fn run_or_plan(ctx: &Ctx, request: RunRequest) -> Evaluation {
    if ctx.dry_run {
        return Evaluation::Plan { action: PlanAction::Run, reason: request.reason, digest: None };
    }
    Evaluation::Run(request)
}

fn plan_or(ctx: &Ctx, done: Done, action: PlanAction) -> Evaluation {
    if ctx.dry_run {
        let digest = done.record.as_ref().map(|r| r.output_digest);
        return Evaluation::Plan { action, reason: done.reason, digest };
    }
    Evaluation::Done(done)
}

fn describe_damage(damaged: &[&OutputFile], root: &std::path::Path) -> String {
    let first = damaged[0];
    let how = if root.join(&first.path).exists() { "was modified" } else { "is missing" };
    match damaged.len() {
        1 => format!("output {} {how}", first.path),
        n => format!("output {} {how} (and {} more)", first.path, n - 1),
    }
}

/// Restores a cache entry's outputs; a corrupt entry is reported and the target runs
/// instead.
fn restore(
    ctx: &Ctx,
    name: &str,
    request: RunRequest,
    output_digest: Digest,
    outputs: Vec<OutputFile>,
    duration_ms: u64,
    why: String,
) -> Evaluation {
    let key = request.manifest.key();
    let restoring = Instant::now();
    let restored = ctx.cache.restore(&key, &outputs, &ctx.stat);
    ctx.span(name, "restore", Track::Worker, restoring);
    match restored {
        Ok(written) => {
            ctx.cache.touch(&key);
            let (status, reason) = if outputs.is_empty() {
                (TargetStatus::Cached, format!("{why}; succeeded before with this key (no outputs to restore)"))
            } else if written == 0 {
                (TargetStatus::Fresh, format!("{why}; outputs already match the cache"))
            } else {
                let files = if written == 1 { "1 file".to_string() } else { format!("{written} files") };
                (TargetStatus::Cached, format!("{why}; restored {files} from cache"))
            };
            restore_log(ctx, name, &key);
            let root = &ctx.config.root;
            let produced = Produced::now(output_digest, outputs, duration_ms, &reason);
            let record = record_for(root, &request.manifest, produced, request.inputs_meta);
            Evaluation::Done(Done { record: Some(record), status, reason, key: Some(key), log: None })
        }
        Err(e @ (CacheError::Corrupt { .. } | CacheError::Missing { .. })) => {
            ctx.bus.publish(Event::Notice { level: NoticeLevel::Warning, message: format!("{name}: {e}; rebuilding") });
            Evaluation::Run(RunRequest { reason: format!("{why}; the cache entry was damaged"), ..request })
        }
        Err(e) => failed(format!("cannot restore from cache: {e}"), Some(key)),
    }
}

/// Puts the output stored with a cache entry where `kiln logs` finds it, and replays it as
/// events when asked (`--verbose`).
fn restore_log(ctx: &Ctx, name: &str, key: &Digest) {
    let path = ctx.layout.log(name);
    let text = ctx.cache.lookup(key).and_then(|r| r.log).and_then(|d| ctx.cache.get_bytes(&d));
    match &text {
        Some(bytes) => {
            let _ = crate::fs::atomic_write::write(&path, bytes);
        }
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
    if ctx.replay_logs {
        for line in String::from_utf8_lossy(text.as_deref().unwrap_or_default()).lines() {
            ctx.bus.publish(Event::TargetOutput {
                target: name.to_string(),
                stream: Stream::Stdout,
                line: line.to_string(),
                replayed: true,
            });
        }
    }
}

fn failed(reason: String, key: Option<Digest>) -> Evaluation {
    Evaluation::Done(Done { record: None, status: TargetStatus::Failed, reason, key, log: None })
}

/// Runs the target's command (with retries), then collects and stores its outputs.
async fn execute(
    ctx: &Arc<Ctx>,
    id: TargetId,
    slot: usize,
    request: RunRequest,
    cancel: watch::Receiver<bool>,
    tx: &mpsc::UnboundedSender<Msg>,
) -> Done {
    let RunRequest { manifest, reason, inputs_meta } = request;
    let target = ctx.target(id).clone();
    let key = manifest.key();
    let log_path = ctx.layout.log(&target.name);
    let log_display = log_path.strip_prefix(&ctx.config.root).unwrap_or(&log_path).display().to_string();
    let (cmd, dir, image) = match &target.kind {
        TargetKind::Cmd(cmd) => (cmd.clone(), ctx.config.root.join(&target.dir), None),
        TargetKind::Image(spec) => match ctx.engine() {
            Ok(engine) => {
                let tag = image_tag(spec, &key);
                let iidfile = ctx.layout.state().join(format!("{}.iid", target.name));
                let _ = std::fs::remove_file(&iidfile);
                let cmd = engine.build_command(spec, &tag, &ctx.config.root, &iidfile);
                (cmd, ctx.config.root.clone(), Some((engine, tag)))
            }
            Err(reason) => {
                return Done { record: None, status: TargetStatus::Failed, reason, key: Some(key), log: None };
            }
        },
    };
    let spec =
        CommandSpec { cmd, dir, env: manifest.env.clone(), timeout: target.timeout, log: Some(log_path.clone()) };
    let mut attempt = 0;
    let started = Instant::now();
    let (outcome, captured) = loop {
        attempt += 1;
        ctx.bus.publish(Event::TargetStarted { target: target.name.clone(), attempt, slot });
        let attempt_started = Instant::now();
        let (lines_tx, mut lines_rx) = mpsc::unbounded_channel();
        let bus = ctx.bus.clone();
        let name = target.name.clone();
        let forward = tokio::spawn(async move {
            while let Some((stream, line)) = lines_rx.recv().await {
                bus.publish(Event::TargetOutput { target: name.clone(), stream, line, replayed: false });
            }
        });
        let (outcome, captured) = crate::exec::command::run(&spec, lines_tx, cancel.clone()).await;
        let _ = forward.await;
        ctx.span(&target.name, "run", Track::Job(slot), attempt_started);
        let retry = !outcome.success()
            && !matches!(outcome, ExecOutcome::Cancelled | ExecOutcome::SpawnFailed(_))
            && attempt <= target.retries;
        if !retry {
            break (outcome, captured);
        }
    };
    let duration_ms = millis(started.elapsed());
    // A silent command leaves no log file to point at.
    let log_display = log_path.exists().then_some(log_display);
    let fail = |reason: String| Done {
        record: None,
        status: TargetStatus::Failed,
        reason,
        key: Some(key),
        log: log_display.clone(),
    };
    match outcome {
        ExecOutcome::Exited(0) => {}
        ExecOutcome::Cancelled => {
            return Done {
                record: None,
                status: TargetStatus::Skipped,
                reason: "interrupted while running".into(),
                key: Some(key),
                log: log_display,
            };
        }
        other => {
            let why = describe_failure(&other, &captured, attempt);
            return fail(match &image {
                Some((engine, _)) => format!("`{} build` failed: {why}{}", engine.name(), engine_hint(&captured)),
                None => why,
            });
        }
    }

    let _ = tx.send(Msg::Exited(id));
    let ctx2 = ctx.clone();
    let reason2 = reason.clone();
    let image = image.map(|(engine, tag)| (engine.clone(), tag));
    let stored = tokio::task::spawn_blocking(move || {
        let storing = Instant::now();
        let ran = Ran { manifest: &manifest, inputs_meta, log: &captured, duration_ms, reason: &reason2 };
        let stored = match image {
            Some((engine, tag)) => store_image(&ctx2, id, &engine, tag, &ran),
            None => collect_and_store(&ctx2, id, &ran),
        };
        ctx2.span(ctx2.graph.name(id), "store", Track::Worker, storing);
        stored
    })
    .await
    .expect("store task does not panic");
    match stored {
        Ok(record) => {
            let reason = if attempt > 1 { format!("{reason} (succeeded on attempt {attempt})") } else { reason };
            Done { record: Some(record), status: TargetStatus::Built, reason, key: Some(key), log: log_display }
        }
        Err(why) => fail(why),
    }
}

fn describe_failure(outcome: &ExecOutcome, output: &[u8], attempts: u32) -> String {
    let tries = if attempts > 1 { format!(" after {attempts} attempts") } else { String::new() };
    match outcome {
        ExecOutcome::Exited(127) => {
            let text = String::from_utf8_lossy(output);
            let line = text.lines().rev().find(|l| l.contains("not found")).unwrap_or("").trim();
            let what = line.rsplit_once(": not found").map(|(head, _)| head.rsplit(": ").next().unwrap_or(head).trim());
            match what {
                Some(cmd) if !cmd.is_empty() => {
                    format!("command not found: `{cmd}` (exit 127{tries}); is it installed and on PATH?")
                }
                _ => format!("command not found (exit 127{tries}); is it installed and on PATH?"),
            }
        }
        ExecOutcome::Exited(code) => format!("exit code {code}{tries}"),
        ExecOutcome::Signalled(sig) => format!("killed by signal {sig}{tries}"),
        ExecOutcome::TimedOut(after) => {
            format!("timed out after {}{tries}; its process group was killed", kiln_config::format_duration(*after))
        }
        ExecOutcome::Cancelled => "interrupted".into(),
        ExecOutcome::SpawnFailed(why) => why.clone(),
    }
}

/// A hint for engine failures whose cause is the engine itself, not the build.
fn engine_hint(output: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(output);
    if text.contains("Cannot connect to the Docker daemon") {
        "; the docker daemon is not reachable: start it, or point DOCKER_HOST at a running one"
    } else {
        ""
    }
}

/// A command that succeeded, as its results are recorded.
struct Ran<'a> {
    manifest: &'a Manifest,
    inputs_meta: Option<Digest>,
    log: &'a [u8],
    duration_ms: u64,
    reason: &'a str,
}

/// Records a built image: its ID is the target's output digest, and the action record
/// (the manifest and the build's output) goes to the cache for `explain` and `logs`.
fn store_image(ctx: &Ctx, id: TargetId, engine: &Engine, tag: String, ran: &Ran) -> Result<TargetRecord, String> {
    let Ran { manifest, inputs_meta, log, duration_ms, reason } = *ran;
    // The build wrote the image ID; asking the engine costs another process.
    let iidfile = ctx.layout.state().join(format!("{}.iid", ctx.graph.name(id)));
    let written = std::fs::read_to_string(&iidfile).ok().map(|t| t.trim().trim_start_matches("sha256:").to_string());
    let _ = std::fs::remove_file(&iidfile);
    let image_id = match written.filter(|id| id.len() == 64) {
        Some(id) => id,
        None => engine.image_id(&tag).map_err(|e| format!("the build succeeded but the image is not there: {e}"))?,
    };
    let output_digest = image_digest(&image_id);
    ctx.cache
        .store_record(ctx.graph.name(id), manifest, output_digest, Some(log), duration_ms)
        .map_err(|e| format!("cannot record the build in the cache: {e}"))?;
    let produced = Produced::now(output_digest, Vec::new(), duration_ms, reason);
    let mut record = record_for(&ctx.config.root, manifest, produced, inputs_meta);
    record.image = Some(tag);
    Ok(record)
}

/// Lists the declared outputs, checks each was written, stores them in the cache.
fn collect_and_store(ctx: &Ctx, id: TargetId, ran: &Ran) -> Result<TargetRecord, String> {
    let Ran { manifest, inputs_meta, log, duration_ms, reason } = *ran;
    let target = ctx.target(id);
    let root = &ctx.config.root;
    let patterns = &ctx.outputs[id];
    let index = FileIndex::scan_small(root, patterns.iter().map(|p| p.prefix.clone()), false);
    let files: Vec<(String, FileMeta)> = index.select(patterns, &[]).into_iter().cloned().collect();
    if let Some(missing) = patterns.iter().find(|p| !files.iter().any(|(f, _)| p.matches(f))) {
        return Err(format!("the command succeeded but did not write declared output `{}`", missing.text));
    }
    let (output_digest, outputs) = if target.cache {
        let rec = ctx
            .cache
            .store(&target.name, manifest, &files, Some(log), duration_ms, &ctx.stat)
            .map_err(|e| format!("cannot store outputs in the cache: {e}"))?;
        (rec.output_digest, rec.outputs)
    } else {
        let mut outputs = Vec::new();
        for (path, meta) in &files {
            let digest = ctx.stat.digest(root, path, meta).map_err(|e| format!("cannot read output {path}: {e}"))?;
            outputs.push(OutputFile { path: path.clone(), digest, size: meta.size, executable: meta.executable });
        }
        (output_digest(&manifest.key(), &outputs), outputs)
    };
    Ok(record_for(root, manifest, Produced::now(output_digest, outputs, duration_ms, reason), inputs_meta))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
