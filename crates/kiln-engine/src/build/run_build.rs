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
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kiln_config::Config;
use tokio::sync::{mpsc, watch};

use crate::build::build_ctx::{Ctx, Done, EvalJob, Evaluation, Msg, RunRequest, Track, failed, millis};
use crate::build::build_options::{BuildError, BuildOptions, PlanAction, PlanEntry, RunSummary, resolve_targets};
use crate::build::build_session::BuildSession;
use crate::build::evaluate::evaluate;
use crate::build::execute::execute;
use crate::build::scheduler::{Halt, Scheduler};
use crate::build::target_inputs::Patterns;
use crate::build::worker_panic::{catch, catch_async};
use crate::cache::digest::Digest;
use crate::cache::state::TargetRecord;
use crate::event::event_gate::EventGate;
use crate::event::{Event, EventBus, NoticeLevel, TargetStatus};
use crate::fs::cpus::cpus;
use crate::fs::file_index::FileIndex;
use crate::fs::no_follow::ensure_dir;
use crate::fs::path_pattern::{PathPattern, is_under};
use crate::graph::target_graph::{Graph, TargetId};

/// Runs a build to completion (or until `cancel` turns true), publishing events on `bus`.
pub async fn run_build(
    config: Arc<Config>,
    options: BuildOptions,
    bus: Arc<EventBus>,
    cancel: watch::Receiver<bool>,
) -> Result<RunSummary, BuildError> {
    // A dry run writes nothing: it needs no lock, and answers while `kiln up` runs.
    let session = Arc::new(BuildSession::open(&config.root, !options.dry_run).await?);
    run_round(&session, config, options, bus, cancel).await
}

/// One run over a session: `kiln build` has one, each round of `kiln up` is one. It holds
/// the project lock while it runs, reads the state file when it starts and merges the
/// records it made into it before `run.finished`; they also come back in
/// [`RunSummary::records`].
pub async fn run_round(
    session: &Arc<BuildSession>,
    config: Arc<Config>,
    options: BuildOptions,
    bus: Arc<EventBus>,
    mut cancel: watch::Receiver<bool>,
) -> Result<RunSummary, BuildError> {
    let _hold = session.hold(&bus).await?;
    let prev = session.load_state();
    let started = Instant::now();
    let layout = session.layout.clone();
    let graph = Graph::from_config(&config);
    let roots = if options.targets.is_empty() {
        (0..graph.len()).collect()
    } else {
        resolve_targets(&graph, &options.targets)?
    };
    let selected = graph.with_deps(roots);
    // kiln's directories are checked once a run, with the lock held: one that is not a
    // real directory (a planted link, a file) is never written through, and says so once.
    let mut notices = Vec::new();
    let mut cache = session.cache.clone();
    if let Err(e) = cache.prepare() {
        notices.push(e.to_string());
        cache = cache.turned_off();
    }
    let logs_kept = match ensure_dir(&layout.kiln, &layout.logs()) {
        Ok(()) => true,
        Err(e) => {
            notices.push(format!("targets' output is not kept in .kiln/logs this run: {e}"));
            false
        }
    };
    let stat = session.stat.clone();
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

    let jobs = if options.jobs == 0 { config.settings.jobs.unwrap_or_else(cpus) } else { options.jobs };
    let weights: HashMap<TargetId, u64> =
        selected.iter().map(|&id| (id, prev.targets.get(graph.name(id)).map_or(1, |r| r.duration_ms.max(1)))).collect();
    let priority = graph.remaining_path(&selected, |id| weights.get(&id).copied().unwrap_or(1));
    let mut sched = Scheduler::new(&graph, &selected, priority, jobs, options.keep_going);

    let gate = options.gate.clone().map(|prelude| EventGate::new(bus.clone(), prelude));
    let bus = gate.as_ref().map_or(bus, EventGate::bus);
    let graph_len = graph.len();
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
        logs_kept,
        force: options.force.clone(),
        stale: options.stale.clone(),
        commands: session.commands.clone(),
        bus: bus.clone(),
        started,
        engine: OnceLock::new(),
        lookups: (0..graph_len).map(|_| AtomicU8::new(0)).collect(),
    });
    let mode = if options.watch_mode { "up" } else { "build" };
    bus.publish(Event::RunStarted { mode: mode.into(), targets: selected.len() });
    for message in notices {
        bus.publish(Event::Notice { level: NoticeLevel::Warning, message });
    }
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
        records: BTreeMap::new(),
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
        for message in session.persist(&run.records) {
            bus.publish(Event::Notice { level: NoticeLevel::Warning, message });
        }
    }
    run.summary.records = std::mem::take(&mut run.records);
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
pub(crate) struct RunLoop<'s> {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) sched: &'s mut Scheduler,
    /// The records this run made, by target.
    pub(crate) records: BTreeMap<String, TargetRecord>,
    /// Output digests of finished targets (`None` in a dry run when it would rebuild).
    pub(crate) digests: HashMap<TargetId, Option<Digest>>,
    /// Targets whose outputs this run wrote; their dependents list inputs anew.
    pub(crate) touched: BTreeSet<TargetId>,
    /// Manifests of targets waiting for a job slot.
    pub(crate) pending: HashMap<TargetId, RunRequest>,
    pub(crate) summary: RunSummary,
    pub(crate) started_at: HashMap<TargetId, Instant>,
    /// Holds the run's events until something is not fresh.
    pub(crate) gate: Option<EventGate>,
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
                let eval = catch(|| evaluate(&self.ctx, job.id, &job.deps, job.refresh))
                    .unwrap_or_else(|reason| failed(reason, None));
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
                    let eval = catch(|| evaluate(&ctx, job.id, &job.deps, job.refresh))
                        .unwrap_or_else(|reason| failed(reason, None));
                    ctx.span(ctx.graph.name(job.id), "evaluate", Track::Worker, evaluating);
                    let _ = tx.send(Msg::Evaluated(job.id, eval));
                }
            });
        }
    }

    fn on_evaluated(&mut self, id: TargetId, eval: Evaluation) {
        if let Some(gate) = self.gate.as_mut()
            && !gate.is_open()
            && (!matches!(&eval, Evaluation::Done(d) if d.status == TargetStatus::Fresh)
                || self.ctx.stale.contains(self.ctx.graph.name(id)))
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
            let worker_tx = tx.clone();
            let done = catch_async(async move {
                // Every round of the session together keeps to `jobs` commands at once.
                let _permit = match &ctx.commands {
                    Some(commands) => Some(commands.clone().acquire_owned().await),
                    None => None,
                };
                execute(&ctx, id, slot, request, cancel, &worker_tx).await
            })
            .await
            .unwrap_or_else(|reason| Done {
                record: None,
                status: TargetStatus::Failed,
                reason,
                key: None,
                log: None,
            });
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
        let saved_ms = (done.status == TargetStatus::Cached).then(|| done.record.as_ref().map_or(0, |r| r.duration_ms));
        if let Some(record) = done.record {
            let prev = self.ctx.prev.targets.get(&name);
            if prev.is_none_or(|p| p.output_digest != record.output_digest) {
                self.summary.changed.insert(name.clone());
            }
            self.digests.insert(id, Some(record.output_digest));
            if let Some(image) = &record.image {
                self.summary.images.insert(name.clone(), image.clone());
            }
            // A record as it was needs no keeping: the caller has it.
            if prev != Some(&record) {
                self.records.insert(name.clone(), record);
            }
        }
        self.ctx.bus.publish(Event::TargetFinished {
            target: name,
            status: done.status,
            duration_ms: millis(elapsed),
            key: done.key.map(|k| k.hex()),
            reason: done.reason,
            log: done.log,
            saved_ms,
            cache: self.ctx.lookup_of(id),
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
                cache: None,
            });
        }
    }
}

/// Whether files written under `outputs` could be listed by `inputs`.
pub(crate) fn overlaps(outputs: &[PathPattern], inputs: &[PathPattern]) -> bool {
    outputs.iter().any(|o| inputs.iter().any(|i| is_under(&o.prefix, &i.prefix) || is_under(&i.prefix, &o.prefix)))
}
