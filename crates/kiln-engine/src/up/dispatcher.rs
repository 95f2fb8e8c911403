//! `kiln up`'s dispatcher: the one loop that owns every piece of its state.
//!
//! It holds the configuration, the watch set and the debouncer, each target's status and
//! last build record, the rounds in flight and the services. Workers (a round's build, a
//! replica) report with messages; the dispatcher decides through pure functions
//! ([`RoundPlan`] for what to build next, [`ReloadPlan`] for what a new configuration
//! changes) and acts. One `select!` over file events, the debounce deadline, round reports,
//! replica reports, the next backoff or rollout deadline, controls and the cancel signal.
//!
//! A round is gated on content: a dry evaluation of the affected targets, and if no key
//! changed, `watch.unchanged` and nothing runs. Rounds are per target: at most one build per
//! target in flight, changes that arrive meanwhile cause exactly one follow-up from the
//! newest content, and an unrelated target builds at once beside a long build. Each target's
//! status is what its last round decided, so a failed target whose inputs go back to the
//! content of its last success is reported `fresh` again.
//!
//! Batches wait while git holds `.git/index.lock` (a checkout, merge or rebase rewriting the
//! tree, up to 30 s), so that a checkout of thousands of files is one build. Paths no
//! watched pattern can match are dropped before the debouncer (see [`Selection::concerns`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kiln_config::Config;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::build::build_options::{BuildOptions, RunSummary};
use crate::build::build_session::BuildSession;
use crate::container::network::ProjectNetwork;
use crate::event::{Event, EventBus, NoticeLevel, Phase, RestartCause, TargetStatus};
use crate::fs::cpus::cpus;
use crate::fs::file_index::FileIndex;
use crate::fs::rel_path;
use crate::supervise::replica_runner::Report;
use crate::supervise::service_set::ServiceSet;
use crate::supervise::service_spec::{ContainerNetwork, Runner, ServiceSpec};
use crate::up::live_update::{LiveUpdates, SyncDone, Timing};
use crate::up::reload::{ReloadPlan, read_config, reloaded_event};
use crate::up::round_plan::{RoundPlan, RoundStart};
use crate::up::round_worker::{RoundJob, RoundReport, spawn_round};
use crate::up::selection::Selection;
use crate::up::sync_plan::{InImage, LiveService, SyncRules, plan as plan_batch};
use crate::up::up_graph::UpGraph;
use crate::up::up_options::{TriggerKind, Triggered, UpControl, UpError, UpExit, UpOptions};
use crate::watch::debouncer::{Batch, Debouncer};
use crate::watch::watch_scope::WatchScope;
use crate::watch::watch_set::{RawEvent, RawReceiver, RawSender, WatchSet};

/// The longest a burst of changes is held back before a build starts anyway.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// The longest a batch waits for a git operation to finish.
const MAX_GIT_HOLD: Duration = Duration::from_secs(30);

/// Runs `kiln up` until `cancel` turns true or a `Stop` control arrives.
pub async fn run_up(
    config: Config,
    options: UpOptions,
    bus: Arc<EventBus>,
    cancel: watch::Receiver<bool>,
    controls: mpsc::UnboundedReceiver<UpControl>,
) -> Result<UpExit, UpError> {
    let sel = Selection::new(config, &options.names)?;
    let root = sel.config.root.clone();
    let mut session = BuildSession::open(&root, true).await?;
    // Concurrent rounds together keep to `jobs` commands at once.
    let jobs = if options.jobs == 0 { sel.config.settings.jobs.unwrap_or_else(cpus) } else { options.jobs };
    session.commands = Some(Arc::new(tokio::sync::Semaphore::new(jobs.max(1))));
    let session = Arc::new(session);
    let (raw_tx, raw_rx) = RawSender::channel();
    let watches = WatchSet::new(&root, raw_tx).map_err(|e| UpError::Watch(e.to_string()))?;
    let config_rel = options
        .config_file
        .strip_prefix(&root)
        .ok()
        .and_then(|p| p.to_str())
        .map(str::to_string)
        .unwrap_or_else(|| kiln_config::CONFIG_FILE.to_string());
    let window = options.debounce.unwrap_or(sel.config.settings.debounce);
    let (round_tx, round_rx) = mpsc::unbounded_channel();
    let (services, replica_rx) = ServiceSet::new(bus.clone());
    // What rounds watch to stop early: Ctrl-C or SIGTERM, and `kiln down`.
    let (round_cancel, round_cancel_rx) = watch::channel(false);
    let (live, sync_rx) = LiveUpdates::new(&sel);
    live.warm_up();
    warn_missing_sync_paths(&sel, &bus);
    let mut d = Dispatcher {
        live,
        pending: Vec::new(),
        scope: sel.scope(),
        services,
        sel,
        options,
        bus,
        session,
        statuses: BTreeMap::new(),
        images: BTreeMap::new(),
        plan: RoundPlan::default(),
        watches,
        debouncer: Debouncer::new(window, MAX_WAIT),
        config_rel,
        gone_dirs: BTreeSet::new(),
        held_since: None,
        round_tx,
        cancel: round_cancel_rx,
        round_cancel,
        stopping: false,
        networks: Vec::new(),
    };
    sync_watches(&mut d.watches, &d.scope, &d.bus);
    d.bus.publish(Event::WatchStarted { dirs: d.watches.watched_dirs(), targets: d.sel.targets.len() });
    remove_leftovers(&d.sel.config, &d.bus).await;
    if !d.options.no_build {
        let all = d.sel.names(d.sel.targets.iter().copied());
        d.plan.add(all.iter().map(String::as_str), None, false);
        d.start_rounds();
        if d.plan.is_running() {
            d.announce_pending();
        } else {
            // Nothing to build: services start now rather than after a round.
            d.reconcile_services(&RunSummary::default());
        }
    }
    let exit = d.run(raw_rx, round_rx, replica_rx, sync_rx, controls, cancel).await;
    // Every container is gone: the project network goes too, before `kiln up` lets go of its
    // lock (which is what `kiln down` waits for).
    d.remove_networks().await;
    d.live.shutdown().await;
    exit
}

struct Dispatcher {
    sel: Selection,
    options: UpOptions,
    bus: Arc<EventBus>,
    session: Arc<BuildSession>,
    /// How each target's last round ended: what `kiln status` shows.
    statuses: BTreeMap<String, TargetStatus>,
    /// Image targets and the image each last stood for: what their container services run.
    images: BTreeMap<String, String>,
    plan: RoundPlan,
    watches: WatchSet,
    scope: WatchScope,
    debouncer: Debouncer,
    config_rel: String,
    /// Watched directories that vanished since the last batch: they may have held inputs.
    gone_dirs: BTreeSet<String>,
    held_since: Option<Instant>,
    /// Every service and replica.
    services: ServiceSet,
    round_tx: mpsc::UnboundedSender<RoundReport>,
    /// Turns true when the rounds in flight are to stop (a signal or `kiln down`).
    cancel: watch::Receiver<bool>,
    round_cancel: watch::Sender<bool>,
    /// `kiln up` is ending: nothing more starts.
    stopping: bool,
    /// Sync rules and watch globs at work.
    live: LiveUpdates,
    /// Saves on their way to running code: waiting for a build or for services to be ready.
    pending: Vec<PendingUpdate>,
    /// The project network every container service on it shares (one per engine: a reload
    /// may switch `settings.engine`), removed when `kiln up` ends.
    networks: Vec<Arc<ProjectNetwork>>,
}

/// A save on its way to running code, for `update.completed`.
struct PendingUpdate {
    timing: Timing,
    how: &'static str,
    /// What it waits to be built (`rebuilt`), before any service restarts.
    targets: BTreeSet<String>,
    /// The services whose restart it waits for, and those that already settled.
    services: BTreeSet<String>,
    settled: BTreeSet<String>,
    /// When the build ended, and when the last new replica began.
    built: Option<Instant>,
    deployed: Option<Instant>,
}

impl PendingUpdate {
    /// A save that waits for `targets` to be built, then for the services that run them.
    fn rebuild(timing: Timing, targets: BTreeSet<String>) -> PendingUpdate {
        PendingUpdate {
            timing,
            how: "rebuilt",
            targets,
            services: BTreeSet::new(),
            settled: BTreeSet::new(),
            built: None,
            deployed: None,
        }
    }

    /// A save that restarts `service`, nothing to build (its deploy starts at `from`).
    fn restart(timing: Timing, service: String, from: Instant) -> PendingUpdate {
        PendingUpdate {
            timing,
            how: "restarted",
            targets: BTreeSet::new(),
            services: BTreeSet::from([service]),
            settled: BTreeSet::new(),
            built: Some(from),
            deployed: None,
        }
    }
}

fn succeeded(status: TargetStatus) -> bool {
    matches!(status, TargetStatus::Built | TargetStatus::Cached | TargetStatus::Fresh)
}

impl Dispatcher {
    async fn run(
        &mut self,
        mut raw_rx: RawReceiver,
        mut round_rx: mpsc::UnboundedReceiver<RoundReport>,
        mut replica_rx: mpsc::UnboundedReceiver<Report>,
        mut sync_rx: mpsc::UnboundedReceiver<SyncDone>,
        mut controls: mpsc::UnboundedReceiver<UpControl>,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<UpExit, UpError> {
        loop {
            let deadline = self.debouncer.deadline();
            let service_deadline = self.services.next_deadline();
            tokio::select! {
                raw = raw_rx.rx.recv() => {
                    let Some(raw) = raw else { break };
                    let mut raws = vec![raw];
                    while let Ok(more) = raw_rx.rx.try_recv() {
                        raws.push(more);
                    }
                    if raw_rx.take_lost() {
                        raws.push(RawEvent::Rescan);
                    }
                    self.on_file_events(raws);
                }
                () = sleep_until(deadline) => self.on_deadline(),
                Some(report) = replica_rx.recv() => {
                    self.services.on_report(report);
                    // A service stopped for a restart starts again once its replicas are gone.
                    if !self.stopping {
                        self.reconcile_services(&RunSummary::default());
                    }
                    self.on_settled();
                }
                () = tokio::time::sleep_until(service_deadline.unwrap_or_else(Instant::now)), if service_deadline.is_some() => {
                    self.services.on_deadline(Instant::now());
                    self.on_settled();
                }
                Some(done) = sync_rx.recv() => self.on_synced(done),
                Some(report) = round_rx.recv() => {
                    self.on_round_done(report);
                    if !*self.cancel.borrow() {
                        self.start_rounds();
                    }
                }
                Some(control) = controls.recv() => match control {
                    UpControl::Stop => {
                        // Running rounds kill their commands (as on Ctrl-C) and start nothing.
                        self.stopping = true;
                        self.round_cancel.send_replace(true);
                        self.drain_rounds(&mut round_rx).await;
                        self.stop_services(&mut replica_rx).await;
                        return Ok(UpExit::Stopped);
                    }
                    UpControl::Trigger { name, kind, reply } => {
                        // The asker may have given up waiting; the trigger stands.
                        let _ = reply.send(self.on_trigger(&name, kind));
                    }
                    UpControl::Graph { reply } => {
                        let _ = reply.send(UpGraph::of(&self.sel));
                    }
                },
                changed = cancel.changed() => {
                    if changed.is_err() || *cancel.borrow() {
                        self.round_cancel.send_replace(true);
                        // Running rounds see the same signal, kill their commands and report.
                        self.drain_rounds(&mut round_rx).await;
                        self.stop_services(&mut replica_rx).await;
                        return Ok(UpExit::Interrupted);
                    }
                }
            }
        }
        self.stop_services(&mut replica_rx).await;
        Ok(UpExit::Interrupted)
    }

    /// Stops every service gracefully and waits until their processes are gone: each stop
    /// ends within its `stop_timeout` (then SIGKILL), so this waits that long and some slack,
    /// never forever.
    async fn stop_services(&mut self, replica_rx: &mut mpsc::UnboundedReceiver<Report>) {
        self.stopping = true;
        // Dependents first: each `after` level gets its stop_timeout.
        let levels = u32::try_from(self.services.len()).unwrap_or(u32::MAX).clamp(1, 8);
        let limit = self.services.longest_stop() * levels + Duration::from_secs(15);
        let waited = tokio::time::timeout(limit, async {
            let mut later = self.services.stop_in_order();
            while self.services.any_live() {
                // A level with nothing running (pending, failed) is gone at once: no report
                // will come for it, so the next level is stopped now.
                while later {
                    let before = self.services.len();
                    later = self.services.stop_in_order();
                    if self.services.len() == before {
                        break;
                    }
                }
                if !self.services.any_live() {
                    break;
                }
                match replica_rx.recv().await {
                    Some(report) => self.services.on_report(report),
                    None => break,
                }
                if later {
                    later = self.services.stop_in_order();
                }
            }
        })
        .await;
        // Whatever is left past the limit is stopped at once.
        self.services.stop_all();
        if waited.is_err() {
            self.bus.publish(Event::Notice {
                level: NoticeLevel::Warning,
                message: format!("services did not stop within {}; leaving them", kiln_config::format_duration(limit)),
            });
        }
    }

    /// While the first builds run, every selected service is `pending`, saying what it waits
    /// for (`kiln ps` and `kiln status` show it from the start).
    fn announce_pending(&self) {
        for name in &self.sel.services {
            let service = &self.sel.config.services[name];
            let deps: Vec<&str> =
                service.deps.iter().filter(|d| self.sel.graph.id(d).is_some()).map(String::as_str).collect();
            let reason = if deps.is_empty() {
                "waiting for the first build".to_string()
            } else {
                format!("waiting for its deps: {}", deps.join(", "))
            };
            for replica in 0..service.replicas {
                self.bus.publish(Event::ServicePhase {
                    service: name.clone(),
                    replica,
                    phase: Phase::Pending,
                    reason: reason.clone(),
                    restarts: 0,
                    next_try_ms: None,
                    image: None,
                    replicas: service.replicas,
                    cause: None,
                });
            }
        }
    }

    /// Waits for every running round to report.
    async fn drain_rounds(&mut self, round_rx: &mut mpsc::UnboundedReceiver<RoundReport>) {
        while self.plan.is_running() {
            match round_rx.recv().await {
                Some(report) => self.on_round_done(report),
                None => break,
            }
        }
    }

    /// Raw file events: relevant paths go to the debouncer, the rest are dropped.
    fn on_file_events(&mut self, raws: Vec<RawEvent>) {
        let root = self.sel.config.root.clone();
        let mut paths = Vec::new();
        let mut rescan = false;
        for raw in raws {
            match raw {
                RawEvent::Rescan => rescan = true,
                RawEvent::Error(e) => self
                    .bus
                    .publish(Event::Notice { level: NoticeLevel::Warning, message: format!("file watcher: {e}") }),
                RawEvent::Paths(ps) => {
                    for p in ps {
                        let Some(rel) = self.watches.relevant(&p) else { continue };
                        if rel == self.config_rel || self.sel.config.env_files().contains(&rel) {
                            paths.push(rel);
                            continue;
                        }
                        let (found, was_dir, is_dir) = self.follow_directory(&rel, &root);
                        paths.extend(
                            found.into_iter().filter(|f| self.sel.concerns(f, false) && !self.sel.is_output(f)),
                        );
                        if was_dir {
                            self.gone_dirs.insert(rel.clone());
                        }
                        if !self.sel.is_output(&rel) && self.sel.concerns(&rel, was_dir || is_dir) {
                            paths.push(rel);
                        }
                    }
                }
            }
        }
        self.debouncer.add(Instant::now(), paths, rescan);
    }

    /// A directory that appeared (or was moved in) is watched at once, with everything below
    /// it; the files already in it count as changed. One that vanished is forgotten. Returns
    /// the files found, whether it was a watched directory that vanished, and whether it is
    /// a directory now.
    fn follow_directory(&mut self, rel: &str, root: &Path) -> (Vec<String>, bool, bool) {
        let abs = rel_path::under(root, rel);
        if abs.is_dir() {
            let dirs = self.watches.dirs_for(&self.scope, Some(rel));
            if dirs.is_empty() {
                return (Vec::new(), false, true);
            }
            self.watches.rewatch(&dirs);
            let prefixes: Vec<String> = dirs.iter().cloned().collect();
            return (FileIndex::scan_small(root, prefixes, true).paths(), false, true);
        }
        if !abs.exists() && self.watches.is_watched(rel) {
            self.watches.forget(rel);
            return (Vec::new(), true, false);
        }
        (Vec::new(), false, false)
    }

    /// The debounce window closed: evaluate the batch.
    fn on_deadline(&mut self) {
        let root = self.sel.config.root.clone();
        if git_busy(&root) && self.held_since.get_or_insert_with(Instant::now).elapsed() < MAX_GIT_HOLD {
            self.debouncer.hold(Instant::now());
            return;
        }
        self.held_since = None;
        let Some(batch) = self.debouncer.take_due(Instant::now()) else { return };
        let mut reload_build = BTreeSet::new();
        let env_files = self.sel.config.env_files();
        let files: Vec<String> =
            batch.paths.iter().filter(|p| **p == self.config_rel || env_files.contains(*p)).cloned().collect();
        if !files.is_empty()
            && let Some(next) = read_config(&self.sel, &self.options, &self.bus)
        {
            reload_build = self.apply_reload(next, &files);
        }
        if batch.rescan {
            sync_watches(&mut self.watches, &self.scope, &self.bus);
        }
        let mut affected = self.affected_by(&batch);
        let timing = Timing::of(&root, &batch.paths, batch.first);
        self.live_updates(&batch, &mut affected, &timing);
        if self.options.no_build {
            return;
        }
        if !affected.is_empty() {
            let cause: BTreeSet<&String> = affected.values().flatten().collect();
            let timing = Timing { cause: rel_path::display_all(cause), ..timing };
            self.pending.push(PendingUpdate::rebuild(timing, affected.keys().cloned().collect()));
        }
        // What a reload asks to build, it builds because of kiln.toml.
        let config = BTreeSet::from([self.config_rel.clone()]);
        self.plan.add(reload_build.iter().map(String::as_str), Some(&config), false);
        for (target, paths) in &affected {
            self.plan.add([target.as_str()], Some(paths), false);
        }
        self.start_rounds();
    }

    /// Switches to a new configuration; returns the targets it asks to build.
    fn apply_reload(&mut self, next: Selection, files: &[String]) -> BTreeSet<String> {
        // Services whose sync rules changed get everything under them copied anew (a new
        // `target` is filled, a narrower `ignore` takes effect).
        let resync: Vec<String> = next
            .live
            .keys()
            .filter(|name| {
                let before = self.sel.config.services.get(*name).map(|s| &s.sync);
                before.is_some_and(|b| *b != next.config.services[*name].sync)
            })
            .cloned()
            .collect();
        self.bus.publish(reloaded_event(&self.sel.config, &next.config, files));
        let plan = ReloadPlan::between(&self.sel, &next);
        // A running service redefined with as many replicas, the same `deps` and `after`
        // rolls onto its new definition one replica at a time (the others keep serving);
        // any other is stopped, and starts again once its replicas are gone (see
        // `reconcile_services`).
        let rolls: Vec<String> = plan
            .restart
            .iter()
            .filter(|name| {
                let (before, now) = (&self.sel.config.services[*name], &next.config.services[*name]);
                self.services.is_started(name)
                    && (before.replicas, &before.deps, &before.after) == (now.replicas, &now.deps, &now.after)
            })
            .cloned()
            .collect();
        for name in &plan.stop {
            self.services.stop(name, "no longer selected in kiln.toml");
        }
        for name in plan.restart.iter().filter(|n| !rolls.contains(n)) {
            self.services.stop(name, "its definition changed");
        }
        for (name, (_, to)) in &plan.scale {
            self.services.scale(name, *to);
        }
        let mut build: BTreeSet<String> = next.names(plan.build).into_iter().collect();
        // Services that are not running yet start after a round of their deps.
        for name in &next.services {
            if !self.services.is_started(name) {
                build.extend(next.config.services[name].deps.iter().filter(|d| next.graph.id(d).is_some()).cloned());
            }
        }
        self.sel = next;
        self.live.follow(&self.sel);
        warn_missing_sync_paths(&self.sel, &self.bus);
        for service in resync {
            self.resync(&service);
        }
        // Sync rules added or changed without a restart: the next containers of a service
        // are given what is synced into it from now on.
        let config = self.sel.config.clone();
        let live: Vec<String> = self.sel.live.keys().cloned().collect();
        for name in &live {
            if self.services.is_started(name)
                && let Ok(spec) = self.spec_of(&config.services[name])
            {
                self.services.update(name, spec);
            }
        }
        for name in &rolls {
            match self.spec_of(&config.services[name]) {
                Ok(spec) => {
                    self.services.update(name, spec);
                    self.services.roll(name, RestartCause::Config);
                }
                Err(_) => self.services.stop(name, "its definition changed"),
            }
        }
        let sel = &self.sel;
        self.plan.retain(|t| sel.graph.id(t).is_some_and(|id| sel.targets.contains(&id)));
        self.reconcile_services(&RunSummary::default());
        self.debouncer.set_window(self.options.debounce.unwrap_or(self.sel.config.settings.debounce));
        let scope = self.sel.scope();
        if scope != self.scope {
            self.scope = scope;
            sync_watches(&mut self.watches, &self.scope, &self.bus);
        }
        build
    }

    /// The targets a batch affects (with their dependents) and the paths that concern each;
    /// with `--no-build` this is reported right away, otherwise each round reports it after
    /// the content gate.
    fn affected_by(&mut self, batch: &Batch) -> BTreeMap<String, BTreeSet<String>> {
        let paths: BTreeSet<String> = batch.paths.iter().filter(|p| **p != self.config_rel).cloned().collect();
        let gone = std::mem::take(&mut self.gone_dirs);
        let affected = self.sel.affected(&paths, &gone, batch.rescan);
        if self.options.no_build && !affected.is_empty() {
            let relevant: BTreeSet<&String> = affected.values().flatten().collect();
            self.bus.publish(Event::WatchChanged {
                paths: rel_path::display_all(relevant),
                targets: affected.keys().cloned().collect(),
            });
        }
        affected
    }

    /// A trigger of `name`: with `kind`, only that kind; without, a running service first
    /// (a target and a service may share a name), then a selected target.
    fn on_trigger(&mut self, name: &str, kind: Option<TriggerKind>) -> Triggered {
        let target = self.sel.graph.id(name).filter(|id| self.sel.targets.contains(id));
        if kind != Some(TriggerKind::Target) && self.services.is_started(name) {
            self.services.roll(name, RestartCause::Trigger);
            Triggered::Service
        } else if let Some(id) = target.filter(|_| kind != Some(TriggerKind::Service)) {
            let dependents = self.sel.names(self.sel.with_dependents([id]));
            self.plan.add(dependents.iter().map(String::as_str), None, false);
            self.plan.add([name], None, true);
            self.start_rounds();
            Triggered::Target
        } else {
            self.bus.publish(Event::Notice {
                level: NoticeLevel::Warning,
                message: match kind {
                    None => format!("trigger: no target or running service named `{name}`"),
                    Some(TriggerKind::Target) => format!("trigger: no selected target named `{name}`"),
                    Some(TriggerKind::Service) => format!("trigger: no running service named `{name}`"),
                },
            });
            let mut targets = self.sel.names(self.sel.targets.iter().copied());
            targets.sort();
            let services = self.sel.services.iter().filter(|s| self.services.is_started(s)).cloned().collect();
            Triggered::Unknown { targets, services }
        }
    }

    /// Starts every round the plan allows now.
    fn start_rounds(&mut self) {
        while let Some(round) = self.plan.next(&self.sel.graph) {
            self.start_round(round);
        }
    }

    fn start_round(&mut self, round: RoundStart) {
        let RoundStart { id, targets, paths, force } = round;
        let ids = targets.iter().filter_map(|t| self.sel.graph.id(t));
        let closure = self.sel.graph.with_deps(ids);
        // Targets whose last status was not a success, or that have none yet: that they are
        // fresh now is news.
        let stale = self
            .sel
            .names(closure)
            .into_iter()
            .filter(|n| self.statuses.get(n).is_none_or(|s| !succeeded(*s)))
            .collect();
        let build = BuildOptions {
            targets: targets.into_iter().collect(),
            jobs: self.options.jobs,
            keep_going: self.options.keep_going,
            replay_logs: self.options.replay_logs,
            watch_mode: true,
            force,
            stale,
            ..BuildOptions::default()
        };
        let job = RoundJob { id, session: self.session.clone(), config: self.sel.config.clone(), build, paths };
        spawn_round(job, self.bus.clone(), self.cancel.clone(), self.round_tx.clone());
    }

    /// A round ended: keep what it decided, then start or restart the services it concerns.
    fn on_round_done(&mut self, report: RoundReport) {
        self.plan.finished(report.id);
        let summary = match report.result {
            Ok(summary) => summary,
            Err(why) => {
                for target in report.targets {
                    self.statuses.insert(target.clone(), TargetStatus::Failed);
                    self.bus.publish(Event::TargetFinished {
                        target,
                        status: TargetStatus::Failed,
                        duration_ms: 0,
                        key: None,
                        reason: why.clone(),
                        log: None,
                        saved_ms: None,
                        cache: None,
                    });
                }
                return;
            }
        };
        self.statuses.extend(summary.outcomes.iter().map(|(t, s)| (t.clone(), *s)));
        if *self.cancel.borrow() || self.stopping {
            return;
        }
        self.reconcile_services(&summary);
        // A save whose targets are all decided and restarted nothing reached no running code.
        let plan = &self.plan;
        self.pending.retain(|u| u.built.is_some() || u.targets.iter().any(|t| plan.is_planned(t)));
    }

    /// After a round: starts the services whose deps are now all built, and rolls those whose
    /// deps produced new outputs. A failed build starts or restarts nothing: what runs keeps
    /// serving.
    fn reconcile_services(&mut self, summary: &RunSummary) {
        self.images.extend(summary.images.iter().map(|(t, i)| (t.clone(), i.clone())));
        let mut rolled: Vec<(String, Vec<String>)> = Vec::new();
        let names: Vec<String> = self.sel.services.iter().cloned().collect();
        let config = self.sel.config.clone();
        for name in &names {
            let service = &config.services[name];
            let good = |d: &String| self.statuses.get(d).is_some_and(|s| succeeded(*s));
            if !service.deps.iter().all(good) {
                continue;
            }
            if self.services.is_live(name) && !self.services.is_started(name) {
                // Still stopping for a restart: it starts once its replicas are gone.
                continue;
            }
            if self.services.is_started(name) {
                let failed_now = service.deps.iter().any(|d| summary.outcomes.get(d).is_some_and(|s| !succeeded(*s)));
                if !failed_now && service.deps.iter().any(|d| summary.changed.contains(d)) {
                    if let Ok(spec) = self.spec_of(service) {
                        self.services.update(name, spec);
                    }
                    self.services.roll(name, RestartCause::Build);
                    rolled.push((name.clone(), service.deps.clone()));
                    if let Some(rules) = self.sel.live.get(name) {
                        self.live.note_present(name, &rules.sync);
                    }
                }
            } else {
                // `after` waits for the services of this session, not for ones not selected.
                let after: Vec<String> =
                    service.after.iter().filter(|a| self.sel.services.contains(*a)).cloned().collect();
                match self.spec_of(service) {
                    Ok(spec) => self.services.start(spec, service.replicas, &after),
                    Err(why) => self.services.refuse(name, service.replicas, &why),
                }
            }
        }
        // Saves whose build just produced what these services run now wait for them.
        let now = Instant::now();
        for update in self.pending.iter_mut().filter(|u| u.built.is_none()) {
            let waiting: Vec<&String> = rolled
                .iter()
                .filter(|(_, deps)| deps.iter().any(|d| update.targets.contains(d)))
                .map(|(name, _)| name)
                .collect();
            if !waiting.is_empty() {
                update.built = Some(now);
                update.services.extend(waiting.into_iter().cloned());
            }
        }
    }

    /// What a service's replicas run, with the drift its new containers are given.
    fn spec_of(&mut self, service: &kiln_config::Service) -> Result<ServiceSpec, String> {
        let mut spec = ServiceSpec::of(&self.sel.config, service, &self.images)?;
        if let Runner::Container(run) = &mut spec.runner {
            if !service.sync.is_empty() {
                run.drift = Some(self.live.drift(&service.name));
            }
            if let ContainerNetwork::Project(own) = &run.network {
                let shared = match self.networks.iter().find(|n| n.engine == own.engine) {
                    Some(shared) => shared.clone(),
                    None => {
                        self.networks.push(own.clone());
                        own.clone()
                    }
                };
                run.network = ContainerNetwork::Project(shared);
            }
        }
        Ok(spec)
    }

    /// Removes the project network this session created, saying so; one that cannot be
    /// removed is a warning with what to run by hand.
    async fn remove_networks(&mut self) {
        for network in std::mem::take(&mut self.networks) {
            match network.remove().await {
                Ok(true) => self.bus.publish(Event::NetworkRemoved { network: network.name.clone() }),
                Ok(false) => {}
                Err(why) => self.bus.publish(Event::Notice { level: NoticeLevel::Warning, message: why }),
            }
        }
    }

    /// A batch's live updates: files synced into running containers (the image targets they
    /// spare are taken out of `affected`), fallbacks named, watched files restarting their
    /// services.
    fn live_updates(&mut self, batch: &Batch, affected: &mut BTreeMap<String, BTreeSet<String>>, timing: &Timing) {
        if self.sel.live.is_empty() {
            return;
        }
        let mut paths: BTreeSet<String> = batch.paths.iter().filter(|p| **p != self.config_rel).cloned().collect();
        if batch.rescan {
            // Events were lost: every file under a sync rule or a watch glob is looked at.
            paths.extend(self.live.all_paths(&self.sel));
        }
        let running: BTreeMap<&str, Vec<(u32, u64)>> =
            self.sel.live.keys().map(|name| (name.as_str(), self.services.running_replicas(name))).collect();
        let services: Vec<LiveService<'_>> = self
            .sel
            .live
            .iter()
            .map(|(name, rules)| LiveService {
                name,
                image_target: rules.image_target.as_deref(),
                rules: &rules.sync,
                running: !running[name.as_str()].is_empty(),
            })
            .collect();
        // Services without rules that run an image target need it rebuilt.
        let plain: Vec<(String, Option<String>)> = self
            .sel
            .services
            .iter()
            .filter(|s| !self.sel.live.contains_key(*s))
            .map(|s| match &self.sel.config.services[s].kind {
                kiln_config::ServiceKind::Image(image) => (s.clone(), Some(image.clone())),
                _ => (s.clone(), None),
            })
            .collect();
        let empty = SyncRules::default();
        let plain_services: Vec<LiveService<'_>> = plain
            .iter()
            .map(|(name, image)| LiveService { name, image_target: image.as_deref(), rules: &empty, running: true })
            .collect();
        let all: Vec<LiveService<'_>> = services.into_iter().chain(plain_services).collect();
        let sel = &self.sel;
        let has_dependent_targets =
            |target: &str| sel.graph.id(target).is_some_and(|id| sel.with_dependents([id]).len() > 1);
        let ignores = std::cell::RefCell::new(BTreeMap::new());
        let in_image = |target: &str, path: &str| image_sees(sel, target, path, &mut ignores.borrow_mut());
        let mut plan = plan_batch(&paths, affected, &all, has_dependent_targets, in_image);
        drop(all);
        if batch.rescan {
            // What changed unseen may be anything: every image is looked at by its round.
            plan.spared.clear();
            plan.fallbacks.clear();
        }
        for target in &plan.spared {
            affected.remove(target);
        }
        for f in plan.fallbacks {
            self.bus.publish(Event::UpdateFallback {
                service: f.service,
                target: f.target,
                path: rel_path::display(&f.path).into_owned(),
                reason: f.reason.to_string(),
            });
        }
        for (service, share) in plan.syncs {
            let replicas = running.get(service.as_str()).cloned().unwrap_or_default();
            self.live.sync(&self.sel, &service, share, timing.clone(), replicas);
        }
        for (service, why) in self.live.watch_restarts(&self.sel, &paths) {
            if !self.services.is_started(&service) {
                continue;
            }
            self.bus.publish(Event::Notice {
                level: NoticeLevel::Info,
                message: format!("{service}: restarting: {} changed", why.join(", ")),
            });
            self.services.roll(&service, RestartCause::Watch);
            self.pending.push(PendingUpdate::restart(Timing { cause: why, ..timing.clone() }, service, timing.batch));
        }
        self.on_settled();
    }

    /// Copies every file under a service's sync rules into its running replicas.
    fn resync(&mut self, service: &str) {
        let Some(rules) = self.sel.live.get(service) else { return };
        let roots: Vec<String> = rules.sync.paths().map(str::to_string).collect();
        let paths: BTreeSet<String> =
            FileIndex::scan_small(&self.sel.config.root, roots, false).paths().into_iter().collect();
        let replicas = self.services.running_replicas(service);
        let one = [LiveService {
            name: service,
            image_target: rules.image_target.as_deref(),
            rules: &rules.sync,
            running: !replicas.is_empty(),
        }];
        let mut plan = plan_batch(&paths, &BTreeMap::new(), &one, |_| false, |_, _| InImage::Input);
        if let Some(share) = plan.syncs.remove(service) {
            let timing = Timing::of(&self.sel.config.root, &BTreeSet::new(), None);
            self.live.sync(&self.sel, service, share, timing, replicas);
        }
    }

    /// A sync job reported: failures are said on the service, a `sync+restart` restarts it,
    /// a plain sync has reached running code.
    fn on_synced(&mut self, mut done: SyncDone) {
        let replicas = self.services.running_replicas(&done.service);
        self.live.finished(&self.sel, &mut done, replicas);
        let SyncDone { service, results, restart, gone, timing, finished, .. } = done;
        let batch_at = timing.batch;
        // A replica replaced while its copy ran has a new container, which is given every
        // synced file before it starts: what happened to the old one no longer matters.
        let current: BTreeMap<u32, u64> = self.services.running_replicas(&service).into_iter().collect();
        let mut failed = false;
        let mut reached = false;
        let mut files = None;
        for r in results {
            if r.replica != u32::MAX && current.get(&r.replica) != Some(&r.attempt) {
                continue;
            }
            reached |= r.error.is_none();
            if r.error.is_none() {
                files = files.max(Some(r.files + r.deleted));
            }
            if let Some(why) = &r.error {
                failed = true;
                self.services.note(&service, r.replica, format!("sync failed: {why}"));
            }
            self.bus.publish(Event::ServiceSynced {
                service: service.clone(),
                replica: r.replica,
                files: r.files,
                deleted: r.deleted,
                bytes: r.bytes,
                duration_ms: r.duration_ms,
                error: r.error,
            });
        }
        if failed || !reached {
            return;
        }
        // A new container starts from the image, before anything can run in it: a file the
        // image holds that was deleted would be there when its process starts. The image is
        // built again instead (without it), and the service rolls to it.
        let image = self.sel.live.get(&service).and_then(|l| l.image_target.clone());
        let held = image.as_ref().and_then(|t| {
            let mut ignores = BTreeMap::new();
            gone.iter()
                .find(|p| {
                    self.live.image_may_hold(&service, p) && image_sees(&self.sel, t, p, &mut ignores) == InImage::Input
                })
                .map(|p| (t.clone(), p.clone()))
        });
        if restart
            && self.services.is_started(&service)
            && let Some((target, path)) = held
        {
            self.bus.publish(Event::UpdateFallback {
                service: service.clone(),
                target: target.clone(),
                path: rel_path::display(&path).into_owned(),
                reason: "a file the image holds was deleted: a new container needs an image without it".into(),
            });
            let paths: BTreeSet<String> = gone.iter().cloned().collect();
            self.pending.push(PendingUpdate::rebuild(timing, BTreeSet::from([target.clone()])));
            self.plan.add([target.as_str()], Some(&paths), false);
            self.start_rounds();
            return;
        }
        if restart && self.services.is_started(&service) {
            self.services.roll(&service, RestartCause::Sync);
            // Nothing is built: copying and replacing the containers are the deploy.
            self.pending.push(PendingUpdate::restart(timing, service, batch_at));
            return;
        }
        let latency = timing.latency(timing.batch, finished, finished);
        self.bus.publish(Event::UpdateCompleted {
            cause: timing.cause,
            targets: Vec::new(),
            services: vec![service],
            how: "synced".into(),
            files,
            latency_ms: latency,
        });
    }

    /// Services whose rolling restart ended: the saves waiting for them have reached
    /// running code.
    fn on_settled(&mut self) {
        let now = Instant::now();
        for (service, started) in self.services.take_settled() {
            for update in self.pending.iter_mut().filter(|u| u.services.contains(&service)) {
                update.settled.insert(service.clone());
                update.deployed = update.deployed.max(started);
            }
        }
        let (done, waiting): (Vec<PendingUpdate>, Vec<PendingUpdate>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|u| u.built.is_some() && !u.services.is_empty() && u.services == u.settled);
        self.pending = waiting;
        for u in done {
            let built = u.built.unwrap_or(now);
            let deployed = u.deployed.unwrap_or(now).max(built);
            self.bus.publish(Event::UpdateCompleted {
                cause: u.timing.cause.clone(),
                targets: u.targets.iter().cloned().collect(),
                services: u.services.iter().cloned().collect(),
                how: u.how.into(),
                files: None,
                latency_ms: u.timing.latency(built, deployed, now),
            });
        }
    }
}

/// What a changed path is to an image target: an input of a target it builds on, one of its
/// own (its declared inputs, its Containerfile, a file of its context that the ignore file
/// keeps), or outside what its build sees. `ignores` keeps each context's ignore rules for
/// the batch.
fn image_sees(
    sel: &Selection,
    target: &str,
    path: &str,
    ignores: &mut BTreeMap<String, Option<crate::container::image_context::IgnoreRules>>,
) -> InImage {
    let Some(id) = sel.graph.id(target) else { return InImage::Input };
    let dep_reads = sel.graph.with_deps([id]).into_iter().filter(|d| *d != id).any(|d| {
        sel.patterns.watched(d).any(|pat| pat.matches(path)) && !sel.patterns.outputs[d].iter().any(|o| o.matches(path))
    });
    if dep_reads {
        return InImage::OfADep;
    }
    let Some(kiln_config::TargetKind::Image(spec)) = sel.config.targets.get(target).map(|t| &t.kind) else {
        return InImage::Input;
    };
    let root = &sel.config.root;
    if path == crate::container::engine::containerfile(spec, root)
        || sel.patterns.inputs[id].iter().any(|p| p.matches(path))
    {
        return InImage::Input;
    }
    let context = spec.context.trim_end_matches('/');
    let inside = if context == "." || context.is_empty() {
        path
    } else {
        match path.strip_prefix(context).and_then(|r| r.strip_prefix('/')) {
            Some(inside) => inside,
            None => return InImage::Outside,
        }
    };
    let rules = ignores.entry(context.to_string()).or_insert_with(|| {
        crate::container::image_context::IgnoreRules::load(&root.join(if context.is_empty() { "." } else { context }))
            .ok()
    });
    match rules {
        // An ignore file that cannot be read: the build will say so; count it as an input.
        None => InImage::Input,
        Some(rules) if rules.excludes(inside) => InImage::Outside,
        Some(_) => InImage::Input,
    }
}

/// Says which sync rules name a path that does not exist (a typo, or made later): they
/// sync nothing until it does.
fn warn_missing_sync_paths(sel: &Selection, bus: &EventBus) {
    for (service, rules) in &sel.live {
        for path in rules.sync.paths() {
            if std::fs::symlink_metadata(rel_path::under(&sel.config.root, path)).is_err() {
                bus.publish(Event::Notice {
                    level: NoticeLevel::Warning,
                    message: format!(
                        "service `{service}`: the sync path `{path}` does not exist; nothing under it is synced until it does (a typo in kiln.toml?)"
                    ),
                });
            }
        }
    }
}

/// Removes containers of this project that an earlier kiln left running (it was killed
/// before it could stop them), then its network, and says so.
async fn remove_leftovers(config: &Config, bus: &EventBus) {
    if !config.runs_containers() {
        return;
    }
    let Ok(engine) = crate::container::engine::Engine::find(config.settings.engine) else { return };
    let root = config.root.clone();
    let removed = tokio::task::spawn_blocking(move || crate::container::leftovers::remove_leftovers(&engine, &root))
        .await
        .expect("leftover removal does not panic");
    match removed {
        Ok(left) if left.is_empty() => {}
        Ok(left) => {
            // One notice: what was removed, and what could not be.
            let removed = (!left.containers.is_empty() || !left.networks.is_empty())
                .then(|| crate::container::leftovers::leftovers_message(&left));
            let message = [removed, left.network_error].into_iter().flatten().collect::<Vec<_>>().join("; ");
            bus.publish(Event::Notice { level: NoticeLevel::Warning, message });
        }
        Err(why) => bus.publish(Event::Notice {
            level: NoticeLevel::Warning,
            message: format!("cannot look for containers an earlier kiln left: {why}"),
        }),
    }
}

/// Whether git is in the middle of rewriting the work tree (checkout, merge, rebase): it
/// holds `.git/index.lock` until done, and a build in between would see half of it.
fn git_busy(root: &std::path::Path) -> bool {
    root.ancestors().map(|d| d.join(".git")).find(|g| g.exists()).is_some_and(|g| g.join("index.lock").exists())
}

/// Sleeps until `deadline` to within a few microseconds: the runtime's timer works in whole
/// milliseconds and rounds up, which a debounce of 50 ms would feel on every build. The last
/// millisecond is slept on the thread itself.
async fn sleep_until(deadline: Option<Instant>) {
    let Some(deadline) = deadline else { return std::future::pending().await };
    let coarse = deadline.checked_sub(Duration::from_millis(2)).unwrap_or(deadline);
    tokio::time::sleep_until(coarse).await;
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}

fn sync_watches(watches: &mut WatchSet, scope: &WatchScope, bus: &EventBus) {
    let mut dirs = watches.dirs_for(scope, None);
    dirs.insert(String::new());
    watches.sync(&dirs, false);
    if !watches.refused.is_empty() {
        bus.publish(Event::Notice {
            level: NoticeLevel::Warning,
            message: format!(
                "the inotify watch limit is reached (fs.inotify.max_user_watches): {} directories are polled every second instead ({}…); raise it with `sysctl fs.inotify.max_user_watches=524288`",
                watches.refused.len(),
                watches.refused[0]
            ),
        });
    }
}
