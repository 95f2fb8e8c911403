//! `kiln up`: build, then keep the selected targets up to date as files change.
//!
//! The loop owns the configuration, the watch set and the debouncer; builds run as tasks
//! and report back. One round at a time: a round gates on content (a dry evaluation of the
//! affected targets; if no key changed, `watch.unchanged` and nothing runs) and then builds
//! the affected targets and their dependents with the same engine as `kiln build`. Changes
//! that arrive during a round are collected and cause exactly one follow-up round when it
//! ends, evaluated from the newest content. So no target ever has two builds in flight, and
//! no change is dropped.
//!
//! Batches wait while git holds `.git/index.lock` (a checkout, merge or rebase rewriting the
//! tree, up to 30 s), so that a checkout of thousands of files is one build, not one per
//! second of it.
//!
//! An edit to kiln.toml is parsed again: with errors, `config.invalid` carries the rendered
//! diagnostics and the previous configuration keeps running; otherwise the difference is
//! published as `config.reloaded`, the watch set follows (new inputs watched, removed ones
//! unwatched) and added or changed targets are built if their keys moved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kiln_config::{Config, LoadError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::build::run_build::{BuildError, BuildOptions, RunSummary, resolve_targets, run_build};
use crate::build::target_inputs::Patterns;
use crate::event::TargetStatus;
use crate::event::{Event, EventBus, NoticeLevel};
use crate::fs::path_pattern::{PathPattern, is_under};
use crate::graph::target_graph::{Graph, TargetId};
use crate::supervise::supervisor::Supervisor;
use crate::watch::debouncer::{Batch, Debouncer};
use crate::watch::watch_set::{RawEvent, WatchScope, WatchSet};

/// The longest a burst of changes is held back before a build starts anyway.
const MAX_WAIT: Duration = Duration::from_secs(1);

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpControl {
    /// Build a target (and its dependents) now, or restart a service's replicas.
    Trigger(String),
    /// Stop services and end `kiln up`.
    Stop,
}

/// Failures that stop `kiln up` before it starts watching.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot watch files: {0}")]
    Watch(String),
}

struct Selection {
    config: Arc<Config>,
    graph: Graph,
    patterns: Patterns,
    /// The selected targets and their deps (including the deps of selected services).
    targets: BTreeSet<TargetId>,
    /// The selected services.
    services: BTreeSet<String>,
}

impl Selection {
    fn new(config: Config, names: &[String]) -> Result<Selection, BuildError> {
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
        Ok(Selection { config: Arc::new(config), graph, patterns, targets, services })
    }

    fn scope(&self) -> WatchScope {
        let inputs: Vec<&PathPattern> = self.targets.iter().flat_map(|&t| self.patterns.watched(t)).collect();
        let outputs: Vec<&PathPattern> = (0..self.graph.len()).flat_map(|t| &self.patterns.outputs[t]).collect();
        WatchScope::new(&inputs, &outputs)
    }

    /// Selected targets an input of which a changed path may be, or may have held, and the
    /// paths that concern at least one of them.
    fn affected(
        &self,
        paths: &BTreeSet<String>,
        gone_dirs: &BTreeSet<String>,
        rescan: bool,
    ) -> (BTreeSet<TargetId>, BTreeSet<String>) {
        if rescan {
            return (self.targets.clone(), paths.clone());
        }
        let root = &self.config.root;
        let mut targets = BTreeSet::new();
        let mut relevant = BTreeSet::new();
        for p in paths {
            for &t in &self.targets {
                let reads = self.patterns.watched(t).any(|pat| {
                    let overlaps = is_under(p, &pat.prefix) || is_under(&pat.prefix, p);
                    // A directory, or one that was deleted, may have held inputs: let the
                    // content gate decide. A file counts only if the pattern matches it.
                    overlaps && (pat.matches(p) || gone_dirs.contains(p) || root.join(p).is_dir())
                });
                if reads && !self.patterns.outputs[t].iter().any(|o| o.matches(p)) {
                    targets.insert(t);
                    relevant.insert(p.clone());
                }
            }
        }
        (targets, relevant)
    }

    /// Whether a path is a declared output of some target: a build's own writes.
    fn is_output(&self, path: &str) -> bool {
        self.patterns.outputs.iter().flatten().any(|o| o.matches(path))
    }

    fn names(&self, ids: impl IntoIterator<Item = TargetId>) -> Vec<String> {
        ids.into_iter().map(|t| self.graph.name(t).to_string()).collect()
    }
}

/// Runs `kiln up` until `cancel` turns true.
pub async fn run_up(
    config: Config,
    options: UpOptions,
    bus: Arc<EventBus>,
    mut cancel: watch::Receiver<bool>,
    mut controls: mpsc::UnboundedReceiver<UpControl>,
) -> Result<UpExit, UpError> {
    let mut sel = Selection::new(config, &options.names)?;
    let root = sel.config.root.clone();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel();
    let mut watches = WatchSet::new(&root, raw_tx).map_err(|e| UpError::Watch(e.to_string()))?;
    let config_rel = options
        .config_file
        .strip_prefix(&root)
        .ok()
        .and_then(|p| p.to_str())
        .map(str::to_string)
        .unwrap_or_else(|| kiln_config::CONFIG_FILE.to_string());
    let mut scope = sel.scope();
    sync_watches(&mut watches, &scope, &bus);
    let window = options.debounce.unwrap_or(sel.config.settings.debounce);
    let mut debouncer = Debouncer::new(window, MAX_WAIT);
    bus.publish(Event::WatchStarted { dirs: watches.watched_dirs(), targets: sel.targets.len() });

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Option<RunSummary>>();
    let mut supervisor = Supervisor::new(bus.clone());
    // Targets whose last build succeeded: a service starts once all its deps are here.
    let mut good: BTreeSet<String> = BTreeSet::new();
    // Image targets and the image each last stood for: what their container services run.
    let mut images: BTreeMap<String, String> = BTreeMap::new();
    remove_leftovers(&sel.config, &bus).await;
    let mut building = false;
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut pending_paths: BTreeSet<String> = BTreeSet::new();
    let mut held_since: Option<Instant> = None;
    // Targets triggered through the control API: they run even if up to date.
    let mut forced: BTreeSet<String> = BTreeSet::new();
    // Watched directories that vanished since the last batch: they may have held inputs.
    let mut gone_dirs: BTreeSet<String> = BTreeSet::new();
    if !options.no_build {
        start_round(
            &sel,
            &options,
            Round { names: sel.names(sel.targets.iter().copied()), paths: None, force: BTreeSet::new() },
            &bus,
            &cancel,
            &done_tx,
        );
        building = true;
    }

    loop {
        let deadline = debouncer.deadline();
        tokio::select! {
            raw = raw_rx.recv() => {
                let Some(raw) = raw else { break };
                let mut raws = vec![raw];
                while let Ok(more) = raw_rx.try_recv() {
                    raws.push(more);
                }
                let mut paths = Vec::new();
                let mut rescan = false;
                for raw in raws {
                    match raw {
                        RawEvent::Rescan => rescan = true,
                        RawEvent::Error(e) => bus.publish(Event::Notice { level: NoticeLevel::Warning, message: format!("file watcher: {e}") }),
                        RawEvent::Paths(ps) => {
                            for p in ps {
                                let Some(rel) = watches.relevant(&p) else { continue };
                                let (found, was_dir) = follow_directory(&mut watches, &scope, &rel, &root);
                                paths.extend(found);
                                if was_dir {
                                    gone_dirs.insert(rel.clone());
                                }
                                if rel == config_rel || !sel.is_output(&rel) {
                                    paths.push(rel);
                                }
                            }
                        }
                    }
                }
                debouncer.add(Instant::now(), paths, rescan);
            }
            () = sleep_until(deadline) => {
                if git_busy(&root) && held_since.get_or_insert_with(Instant::now).elapsed() < MAX_GIT_HOLD {
                    debouncer.hold(Instant::now());
                    continue;
                }
                held_since = None;
                let Some(batch) = debouncer.take_due(Instant::now()) else { continue };
                let mut reload_targets = BTreeSet::new();
                if batch.paths.contains(&config_rel)
                    && let Some((next, changed)) = reload(&sel, &options, &bus)
                {
                    // Services removed or redefined stop now; redefined ones start again
                    // after the next round, which their deps are added to.
                    for (name, old) in &sel.config.services {
                        let now = next.config.services.get(name);
                        if now != Some(old) && supervisor.is_started(name) {
                            supervisor.stop(name).await;
                        }
                    }
                    let mut changed = changed;
                    for name in &next.services {
                        if !supervisor.is_started(name) {
                            changed.extend(next.config.services[name].deps.iter().cloned());
                        }
                    }
                    sel = next;
                    reconcile_services(&sel, &mut supervisor, &mut good, &mut images, &RunSummary::default());
                    debouncer.set_window(options.debounce.unwrap_or(sel.config.settings.debounce));
                    let next_scope = sel.scope();
                    if next_scope != scope {
                        scope = next_scope;
                        sync_watches(&mut watches, &scope, &bus);
                    }
                    reload_targets = changed;
                }
                if batch.rescan {
                    sync_watches(&mut watches, &scope, &bus);
                }
                let gone = std::mem::take(&mut gone_dirs);
                let (affected, relevant) = affected_by(&sel, &batch, &gone, &config_rel, &bus, options.no_build);
                let targets: BTreeSet<String> = affected.into_iter().chain(reload_targets).collect();
                if options.no_build || targets.is_empty() {
                    continue;
                }
                pending.extend(targets);
                pending_paths.extend(relevant);
                if !building {
                    let round = Round::take(&mut pending, &mut pending_paths, &mut forced);
                    start_round(&sel, &options, round, &bus, &cancel, &done_tx);
                    building = true;
                }
            }
            Some(summary) = done_rx.recv() => {
                building = false;
                if *cancel.borrow() {
                    supervisor.stop_all().await;
                    return Ok(UpExit::Interrupted);
                }
                if let Some(summary) = summary {
                    reconcile_services(&sel, &mut supervisor, &mut good, &mut images, &summary);
                }
                if !pending.is_empty() {
                    let round = Round::take(&mut pending, &mut pending_paths, &mut forced);
                    start_round(&sel, &options, round, &bus, &cancel, &done_tx);
                    building = true;
                }
            }
            Some(control) = controls.recv() => match control {
                UpControl::Stop => {
                    if building {
                        let _ = done_rx.recv().await;
                    }
                    supervisor.stop_all().await;
                    return Ok(UpExit::Stopped);
                }
                UpControl::Trigger(name) => {
                    if supervisor.is_started(&name) {
                        supervisor.roll(&name);
                    } else if let Some(id) = sel.graph.id(&name).filter(|id| sel.targets.contains(id)) {
                        let ids: BTreeSet<TargetId> = sel.graph.with_dependents([id]).intersection(&sel.targets).copied().collect();
                        pending.extend(sel.names(ids));
                        forced.insert(name);
                        if !building {
                            let names = std::mem::take(&mut pending).into_iter().collect();
                            let force = std::mem::take(&mut forced);
                            start_round(&sel, &options, Round { names, paths: None, force }, &bus, &cancel, &done_tx);
                            building = true;
                        }
                    } else {
                        bus.publish(Event::Notice { level: NoticeLevel::Warning, message: format!("trigger: no target or running service named `{name}`") });
                    }
                }
            },
            changed = cancel.changed() => {
                if changed.is_err() || *cancel.borrow() {
                    if building {
                        // The round sees the same signal, kills its commands and reports.
                        let _ = done_rx.recv().await;
                    }
                    supervisor.stop_all().await;
                    return Ok(UpExit::Interrupted);
                }
            }
        }
    }
    Ok(UpExit::Interrupted)
}

/// After a round: starts the services whose deps are now all built, and rolls those whose
/// deps produced new outputs. A failed build starts or restarts nothing: what runs keeps
/// serving.
fn reconcile_services(
    sel: &Selection,
    supervisor: &mut Supervisor,
    good: &mut BTreeSet<String>,
    images: &mut BTreeMap<String, String>,
    summary: &RunSummary,
) {
    images.extend(summary.images.iter().map(|(t, i)| (t.clone(), i.clone())));
    for (target, status) in &summary.outcomes {
        if matches!(status, TargetStatus::Built | TargetStatus::Cached | TargetStatus::Fresh) {
            good.insert(target.clone());
        } else {
            good.remove(target);
        }
    }
    for name in &sel.services {
        let service = &sel.config.services[name];
        if !service.deps.iter().all(|d| good.contains(d)) {
            continue;
        }
        if supervisor.is_started(name) {
            let failed_now = service.deps.iter().any(|d| {
                summary
                    .outcomes
                    .get(d)
                    .is_some_and(|s| !matches!(s, TargetStatus::Built | TargetStatus::Cached | TargetStatus::Fresh))
            });
            if !failed_now && service.deps.iter().any(|d| summary.changed.contains(d)) {
                if let Ok(spec) = Supervisor::spec(&sel.config, service, images) {
                    supervisor.update(name, spec);
                }
                supervisor.roll(name);
            }
        } else {
            match Supervisor::spec(&sel.config, service, images) {
                Ok(spec) => supervisor.start(spec, service.replicas, &service.after),
                Err(why) => supervisor.refuse(name, service.replicas, &why),
            }
        }
    }
}

/// Removes containers of this project that an earlier kiln left running (it was killed
/// before it could stop them), and says so.
async fn remove_leftovers(config: &Config, bus: &EventBus) {
    if !config.runs_containers() {
        return;
    }
    let Ok(engine) = crate::container::engine::Engine::find(config.settings.engine) else { return };
    let root = config.root.clone();
    let removed = tokio::task::spawn_blocking(move || crate::container::engine::remove_leftovers(&engine, &root))
        .await
        .expect("leftover removal does not panic");
    match removed {
        Ok(names) if names.is_empty() => {}
        Ok(names) => bus.publish(Event::Notice {
            level: NoticeLevel::Warning,
            message: crate::container::engine::leftovers_message(&names),
        }),
        Err(why) => bus.publish(Event::Notice {
            level: NoticeLevel::Warning,
            message: format!("cannot look for containers an earlier kiln left: {why}"),
        }),
    }
}

/// The longest a batch waits for a git operation to finish.
const MAX_GIT_HOLD: Duration = Duration::from_secs(30);

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

/// A directory that appeared (or was moved in) is watched at once, with everything below
/// it; the files already in it count as changed. One that vanished is forgotten, and the
/// second value says it was one.
fn follow_directory(
    watches: &mut WatchSet,
    scope: &WatchScope,
    rel: &str,
    root: &std::path::Path,
) -> (Vec<String>, bool) {
    let abs = root.join(rel);
    if abs.is_dir() {
        let dirs = watches.dirs_for(scope, Some(rel));
        if dirs.is_empty() {
            return (Vec::new(), false);
        }
        watches.rewatch(&dirs);
        let prefixes: Vec<String> = dirs.iter().cloned().collect();
        return (crate::fs::file_index::FileIndex::scan_small(root, prefixes, true).paths(), false);
    }
    if !abs.exists() && watches.is_watched(rel) {
        watches.forget(rel);
        return (Vec::new(), true);
    }
    (Vec::new(), false)
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

/// The names of the targets a batch affects (with their dependents) and the paths that
/// concern them; with `--no-build` this is reported right away, otherwise the round
/// reports it after the content gate.
fn affected_by(
    sel: &Selection,
    batch: &Batch,
    gone_dirs: &BTreeSet<String>,
    config_rel: &str,
    bus: &EventBus,
    no_build: bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let paths: BTreeSet<String> = batch.paths.iter().filter(|p| *p != config_rel).cloned().collect();
    let (affected, relevant) = sel.affected(&paths, gone_dirs, batch.rescan);
    if affected.is_empty() {
        // Nothing any selected target reads: not a change that concerns anyone.
        return (BTreeSet::new(), BTreeSet::new());
    }
    let with_dependents: BTreeSet<TargetId> =
        sel.graph.with_dependents(affected.iter().copied()).intersection(&sel.targets).copied().collect();
    let names: BTreeSet<String> = sel.names(with_dependents).into_iter().collect();
    if no_build {
        bus.publish(Event::WatchChanged {
            paths: relevant.iter().cloned().collect(),
            targets: names.iter().cloned().collect(),
        });
    }
    (names, relevant)
}

/// Parses the configuration again; `None` (after publishing why) keeps the current one.
fn reload(sel: &Selection, options: &UpOptions, bus: &EventBus) -> Option<(Selection, BTreeSet<String>)> {
    let text = match std::fs::read_to_string(&options.config_file) {
        Ok(t) => t,
        Err(e) => {
            bus.publish(Event::ConfigInvalid {
                message: format!("cannot read {}: {e}", options.display_path.display()),
            });
            return None;
        }
    };
    let parsed = kiln_config::parse_str(&text, &options.display_path, &sel.config.root, options.profile.as_deref());
    let config = match parsed {
        Ok(mut c) => {
            if let Some(engine) = options.engine {
                c.settings.engine = engine;
            }
            c
        }
        Err(LoadError::Invalid(d)) => {
            bus.publish(Event::ConfigInvalid { message: d.render(false) });
            return None;
        }
        Err(e) => {
            bus.publish(Event::ConfigInvalid { message: e.to_string() });
            return None;
        }
    };
    let old = &sel.config.targets;
    let added: Vec<String> = config.targets.keys().filter(|k| !old.contains_key(*k)).cloned().collect();
    let removed: Vec<String> = old.keys().filter(|k| !config.targets.contains_key(*k)).cloned().collect();
    let changed: Vec<String> =
        config.targets.iter().filter(|(k, t)| old.get(*k).is_some_and(|o| o != *t)).map(|(k, _)| k.clone()).collect();
    let env_changed = config.env != sel.config.env;
    let names: Vec<String> = options.names.iter().filter(|n| config.targets.contains_key(*n)).cloned().collect();
    for gone in options.names.iter().filter(|n| !config.targets.contains_key(*n)) {
        bus.publish(Event::Notice {
            level: NoticeLevel::Warning,
            message: format!(
                "target `{gone}` is no longer in {}; it is not watched any more",
                options.display_path.display()
            ),
        });
    }
    let next = match Selection::new(config, &names) {
        Ok(s) => s,
        Err(e) => {
            bus.publish(Event::ConfigInvalid { message: e.to_string() });
            return None;
        }
    };
    let (old_services, services) = (&sel.config.services, &next.config.services);
    bus.publish(Event::ConfigReloaded {
        added: added.clone(),
        removed,
        changed: changed.clone(),
        services_added: services.keys().filter(|k| !old_services.contains_key(*k)).cloned().collect(),
        services_removed: old_services.keys().filter(|k| !services.contains_key(*k)).cloned().collect(),
        services_changed: services
            .iter()
            .filter(|(k, s)| old_services.get(*k).is_some_and(|o| o != *s))
            .map(|(k, _)| k.clone())
            .collect(),
    });
    let to_build: BTreeSet<String> = if env_changed {
        next.names(next.targets.iter().copied()).into_iter().collect()
    } else {
        added
            .into_iter()
            .chain(changed)
            .filter(|n| next.graph.id(n).is_some_and(|id| next.targets.contains(&id)))
            .collect()
    };
    let with_dependents: BTreeSet<TargetId> = next
        .graph
        .with_dependents(to_build.iter().filter_map(|n| next.graph.id(n)))
        .intersection(&next.targets)
        .copied()
        .collect();
    let to_build = next.names(with_dependents).into_iter().collect();
    Some((next, to_build))
}

/// What one round builds: the targets, the changed paths that caused it (which makes it a
/// gated round), and targets to run even if up to date.
struct Round {
    names: Vec<String>,
    paths: Option<BTreeSet<String>>,
    force: BTreeSet<String>,
}

impl Round {
    /// The follow-up round of everything collected so far, gated on the paths that changed.
    fn take(names: &mut BTreeSet<String>, paths: &mut BTreeSet<String>, force: &mut BTreeSet<String>) -> Round {
        Round {
            names: std::mem::take(names).into_iter().collect(),
            paths: Some(std::mem::take(paths)),
            force: std::mem::take(force),
        }
    }
}

/// Starts one round: the content gate (when `paths` says what triggered it), then the build.
fn start_round(
    sel: &Selection,
    options: &UpOptions,
    round: Round,
    bus: &Arc<EventBus>,
    cancel: &watch::Receiver<bool>,
    done: &mpsc::UnboundedSender<Option<RunSummary>>,
) {
    let config = sel.config.clone();
    let Round { names, paths, force } = round;
    let build = BuildOptions {
        targets: names,
        jobs: options.jobs,
        keep_going: options.keep_going,
        dry_run: false,
        replay_logs: options.replay_logs,
        spans: false,
        watch_mode: true,
        gate: None,
        force,
    };
    let bus = bus.clone();
    let cancel = cancel.clone();
    let done = done.clone();
    tokio::spawn(async move {
        // Gated on content: if every target is still fresh, the run publishes nothing.
        let build = match &paths {
            Some(paths) => BuildOptions {
                gate: Some(Event::WatchChanged {
                    paths: paths.iter().cloned().collect(),
                    targets: build.targets.clone(),
                }),
                ..build
            },
            None => build,
        };
        let summary = match run_build(config, build, bus.clone(), cancel).await {
            Ok(summary) => {
                if summary.quiet {
                    bus.publish(Event::WatchUnchanged { paths: paths.unwrap_or_default().into_iter().collect() });
                }
                Some(summary)
            }
            Err(e) => {
                bus.publish(Event::Notice {
                    level: NoticeLevel::Warning,
                    message: format!("build failed to start: {e}"),
                });
                None
            }
        };
        let _ = done.send(summary);
    });
}
