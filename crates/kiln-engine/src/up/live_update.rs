//! Live updates of running services, owned by the dispatcher: files copied into running
//! containers (`sync` rules) and restarts on content changes (`watch` globs).
//!
//! A batch's share for a service (see [`crate::up::sync_plan`]) becomes one sync job: one
//! transfer per running replica (the tar through the engine's API, deletions first), then
//! each `exec` of a `sync+exec` rule in each replica. At most one job per service is in
//! flight; shares that arrive meanwhile are merged and sent once it reports. A job's
//! failure is reported on the service (its replicas' phase reason and `service.synced` with
//! the error), never turned into a rebuild.
//!
//! Every path synced in the session is remembered (the service's "drift"): a new container
//! of the service (a restart, a crash, a scale-up) starts from the image, which does not
//! hold those changes, so it is given the current content of every one of them before its
//! process starts (see `supervise/replica_runner.rs`).
//!
//! `watch` globs restart a service when the content of a file under them changes: the
//! digests of the watched files are read when `kiln up` starts and kept, so a touch, or a
//! save of the same bytes, restarts nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cache::digest::Digest;
use crate::container::engine::{Engine, container_name};
use crate::container::engine_api::{EngineApi, Owner};
use crate::container::sync_batch::{SyncBatch, SyncCopy, apply};
use crate::event::Latency;
use crate::fs::file_index::FileIndex;
use crate::fs::layout::Layout;
use crate::fs::rel_path;
use crate::supervise::service_spec::Drift;
use crate::up::selection::Selection;
use crate::up::sync_plan::{Fate, ServiceSync, SyncRules};

/// How long one `exec` of a `sync+exec` rule may run.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// When a batch's changes were made and seen: what `update.completed` measures from.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The changed paths, for people.
    pub cause: Vec<String>,
    /// The newest status-change time (ctime) of the changed paths that still exist: the
    /// save. Not the modification time, which a rename (`mv`), `cp -p` or `touch -d` leave
    /// in the past while the change happened now.
    pub saved: Option<SystemTime>,
    /// When the batch's first file event arrived.
    pub first: Instant,
    /// When the batch was taken (the quiet window closed).
    pub batch: Instant,
}

impl Timing {
    /// The timing of a batch of `paths` taken now, its first event at `first`.
    pub fn of(root: &Path, paths: &BTreeSet<String>, first: Option<Instant>) -> Timing {
        let batch = Instant::now();
        let saved = paths
            .iter()
            .filter_map(|p| std::fs::symlink_metadata(rel_path::under(root, p)).ok())
            .filter_map(|m| changed_at(&m))
            .max();
        Timing { cause: rel_path::display_all(paths), saved, first: first.unwrap_or(batch), batch }
    }

    /// The breakdown of an update that `build` took until `built`, was deployed by
    /// `deployed` and ready again at `ready`.
    pub fn latency(&self, built: Instant, deployed: Instant, ready: Instant) -> Latency {
        let ms = |from: Instant, to: Instant| {
            u64::try_from(to.saturating_duration_since(from).as_millis()).unwrap_or(u64::MAX)
        };
        // The save happened before the first event by what the file's time says; a time in
        // the future (another clock, a copied file) counts as no delay.
        let now_wall = SystemTime::now();
        let first_wall = now_wall.checked_sub(Instant::now().saturating_duration_since(self.first)).unwrap_or(now_wall);
        let detect = self
            .saved
            .and_then(|s| first_wall.duration_since(s).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            // A path whose change time is far older than its event was not changed just now
            // (another clock, an event for an older change): its detection delay is not known.
            .min(10_000);
        let detect = if detect == 10_000 { 0 } else { detect };
        Latency {
            detect,
            debounce: ms(self.first, self.batch),
            build: ms(self.batch, built),
            deploy: ms(built, deployed),
            ready: ms(deployed, ready),
            total: detect + ms(self.first, ready),
        }
    }
}

/// One replica's share of a sync job.
#[derive(Debug, Clone)]
pub struct ReplicaSynced {
    pub replica: u32,
    /// The attempt (container) it was copied into.
    pub attempt: u64,
    pub files: u64,
    pub deleted: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// When a path's inode last changed (content, name or metadata): its ctime.
fn changed_at(m: &std::fs::Metadata) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let secs = u64::try_from(m.ctime()).ok()?;
    let nanos = u32::try_from(m.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// What a sync job reports when every replica is done.
#[derive(Debug)]
pub struct SyncDone {
    pub service: String,
    /// Per replica: what was copied, or why not.
    pub results: Vec<ReplicaSynced>,
    /// The users' ids learned, per replica with its attempt: reused while it runs.
    owners: Vec<(u32, (u64, Owner))>,
    /// The share asked for a restart afterwards (`sync+restart`).
    pub restart: bool,
    /// Paths the job removed from the containers (gone from the tree).
    pub gone: Vec<String>,
    pub timing: Timing,
    pub finished: Instant,
}

#[derive(Default)]
struct ServiceLive {
    in_flight: bool,
    /// Changes that arrived while a job ran: sent together once it reports.
    queued: Option<(ServiceSync, Timing)>,
    /// Every path synced this session, with its rule's host root and container root.
    drift: BTreeMap<String, (String, String)>,
    /// The digests of the files its `watch` globs match (`None`: absent).
    watched: BTreeMap<String, Option<Digest>>,
    /// The drift as its new containers read it.
    handle: Option<Arc<Drift>>,
    /// Each replica's container user, by the attempt that runs it.
    owners: BTreeMap<u32, (u64, Owner)>,
    /// Paths under its sync rules that its containers may hold: files there when its image
    /// was built (or `kiln up` started), and everything synced.
    present: BTreeSet<String>,
    /// The files under its sync rules when its image was last built (or `kiln up` started).
    imaged: BTreeSet<String>,
    /// Its sync rules.
    rules: SyncRules,
}

impl ServiceLive {
    /// Whether a container of the service may hold `path` (a file, or a directory with files).
    fn may_hold(&self, path: &str) -> bool {
        if self.present.contains(path) {
            return true;
        }
        let dir = format!("{path}/");
        self.present.range(dir.clone()..).next().is_some_and(|p| p.starts_with(&dir))
    }
}

/// The engine's API, connected on first use (starting `podman system service` takes a
/// moment, so it starts with `kiln up` when a service has sync rules).
type Api = Arc<tokio::sync::Mutex<Option<Arc<EngineApi>>>>;

/// The API, connected now if it is not (or its `podman system service` has gone: it is
/// started again); a failure is not kept, so the next job tries again.
async fn api_now(api: &Api, engine: &Engine, kiln: &Path, run_dir: &Path) -> Result<Arc<EngineApi>, String> {
    let mut held = api.lock().await;
    // One ping (about a millisecond) tells a live service from one that is gone.
    if let Some(current) = held.as_ref()
        && current.ping(Duration::from_secs(2)).await.is_ok()
    {
        return Ok(current.clone());
    }
    *held = None;
    let fresh = connect(engine.clone(), kiln.to_path_buf(), run_dir.to_path_buf()).await?;
    *held = Some(fresh.clone());
    Ok(fresh)
}

pub struct LiveUpdates {
    root: PathBuf,
    layout: Layout,
    engine: Option<Engine>,
    api: Api,
    services: BTreeMap<String, ServiceLive>,
    done_tx: mpsc::UnboundedSender<SyncDone>,
}

impl LiveUpdates {
    pub fn new(sel: &Selection) -> (LiveUpdates, mpsc::UnboundedReceiver<SyncDone>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let root = sel.config.root.clone();
        let engine = sel
            .live
            .values()
            .any(|l| !l.sync.is_empty())
            .then(|| Engine::find(sel.config.settings.engine).ok())
            .flatten();
        let mut live = LiveUpdates {
            layout: Layout::new(&root),
            root,
            engine,
            api: Arc::new(tokio::sync::Mutex::new(None)),
            services: BTreeMap::new(),
            done_tx,
        };
        live.follow(sel);
        (live, done_rx)
    }

    /// Takes a new selection's services (a reload): new watched files are read, services no
    /// longer selected forgotten.
    pub fn follow(&mut self, sel: &Selection) {
        self.services.retain(|name, _| sel.live.contains_key(name));
        if self.engine.is_none() && sel.live.values().any(|l| !l.sync.is_empty()) {
            self.engine = Engine::find(sel.config.settings.engine).ok();
        }
        for (name, rules) in &sel.live {
            self.note_present(name, &rules.sync);
            self.services.entry(name.clone()).or_default().rules = rules.sync.clone();
            let state = self.services.entry(name.clone()).or_default();
            if rules.watch.is_empty() {
                state.watched.clear();
                continue;
            }
            let prefixes: Vec<String> = rules.watch.iter().map(|w| w.prefix.clone()).collect();
            let files = FileIndex::scan_small(&self.root, prefixes, true).paths();
            let mut watched = BTreeMap::new();
            for f in files.into_iter().filter(|f| rules.watch.iter().any(|w| w.matches(f))) {
                let known = state.watched.get(&f).cloned().unwrap_or_else(|| digest(&self.root, &f));
                watched.insert(f, known);
            }
            state.watched = watched;
        }
    }

    /// Notes the files under a service's sync rules now: its image, built from the tree,
    /// may hold them (called when `kiln up` starts and when the image is built again).
    pub fn note_present(&mut self, service: &str, rules: &crate::up::sync_plan::SyncRules) {
        if rules.is_empty() {
            return;
        }
        let roots: Vec<String> = rules.paths().map(str::to_string).collect();
        let files = FileIndex::scan_small(&self.root, roots, false).paths();
        let state = self.services.entry(service.to_string()).or_default();
        state.imaged = files.iter().cloned().collect();
        state.present.extend(files);
    }

    /// Whether the service's image may hold `path`: it was there when the image was last
    /// built (or `kiln up` started).
    pub fn image_may_hold(&self, service: &str, path: &str) -> bool {
        self.services.get(service).is_some_and(|s| {
            let dir = format!("{path}/");
            s.imaged.contains(path) || s.imaged.range(dir.clone()..).next().is_some_and(|p| p.starts_with(&dir))
        })
    }

    /// Every file under the selected services' sync rules and watch globs (after lost
    /// events: a rescan).
    pub fn all_paths(&self, sel: &Selection) -> BTreeSet<String> {
        let mut roots: Vec<String> = Vec::new();
        for rules in sel.live.values() {
            roots.extend(rules.sync.paths().map(str::to_string));
            roots.extend(rules.watch.iter().map(|w| w.prefix.clone()));
        }
        let mut paths: BTreeSet<String> = FileIndex::scan_small(&self.root, roots, false).paths().into_iter().collect();
        // And what they held that is gone now.
        for state in self.services.values() {
            paths.extend(state.drift.keys().cloned());
            paths.extend(state.present.iter().cloned());
            paths.extend(state.watched.keys().cloned());
        }
        paths
    }

    /// Starts connecting to the engine's API in the background, if a service syncs.
    pub fn warm_up(&self) {
        if let Some(engine) = self.engine.clone() {
            let api = self.api.clone();
            let run_dir = self.run_dir();
            let kiln = self.layout.kiln.clone();
            tokio::spawn(async move {
                let _ = api_now(&api, &engine, &kiln, &run_dir).await;
            });
        }
    }

    fn run_dir(&self) -> PathBuf {
        self.layout.kiln.join("run")
    }

    /// The services among `changed` whose watched files now hold other content.
    pub fn watch_restarts(&mut self, sel: &Selection, changed: &BTreeSet<String>) -> Vec<(String, Vec<String>)> {
        let mut restarts = Vec::new();
        for (name, rules) in &sel.live {
            if rules.watch.is_empty() {
                continue;
            }
            let state = self.services.entry(name.clone()).or_default();
            let mut why = Vec::new();
            for p in changed {
                // A directory that vanished takes the watched files under it along.
                let gone: Vec<String> = state
                    .watched
                    .keys()
                    .filter(|k| crate::fs::path_pattern::is_under(k, p) && k.as_str() != p)
                    .cloned()
                    .collect();
                for g in gone {
                    if !rel_path::under(&self.root, &g).exists()
                        && state.watched.insert(g.clone(), None).is_some_and(|d| d.is_some())
                    {
                        why.push(g);
                    }
                }
                if !rules.watch.iter().any(|w| w.matches(p)) {
                    continue;
                }
                let now = digest(&self.root, p);
                let before = state.watched.insert(p.clone(), now);
                if before.flatten() != now {
                    why.push(p.clone());
                }
            }
            if !why.is_empty() {
                restarts.push((name.clone(), rel_path::display_all(&why)));
            }
        }
        restarts
    }

    /// Sends a service's share of a batch to its running replicas (`replicas`), now or once
    /// the job in flight reports.
    pub fn sync(
        &mut self,
        sel: &Selection,
        service: &str,
        share: ServiceSync,
        timing: Timing,
        replicas: Vec<(u32, u64)>,
    ) {
        let mut share = share;
        let state = self.services.entry(service.to_string()).or_default();
        // A path gone from the tree that no container can hold (a temporary file made and
        // renamed within the batch, say) needs no `rm`.
        let root = &self.root;
        share.paths.retain(|p, _| std::fs::symlink_metadata(rel_path::under(root, p)).is_ok() || state.may_hold(p));
        if share.paths.is_empty() {
            return;
        }
        // What reached the service is what was synced, not the whole batch.
        let timing = Timing { cause: rel_path::display_all(share.paths.keys()), ..timing };
        for (path, to) in &share.paths {
            state.drift.insert(path.clone(), to.roots.clone());
            state.present.insert(path.clone());
        }
        self.refresh(service);
        if replicas.is_empty() {
            // Nothing runs to copy into: its next containers are given the files.
            return;
        }
        let state = self.services.entry(service.to_string()).or_default();
        if state.in_flight {
            match state.queued.as_mut() {
                Some((queued, queued_timing)) => {
                    queued.paths.extend(share.paths);
                    queued.restart |= share.restart;
                    for cmd in share.exec {
                        if !queued.exec.contains(&cmd) {
                            queued.exec.push(cmd);
                        }
                    }
                    // One update for both: measured from the first save, its wait behind the
                    // job in flight counted as deploying.
                    queued_timing.cause.extend(timing.cause);
                }
                None => state.queued = Some((share, timing)),
            }
            return;
        }
        self.start_job(sel, service, share, timing, replicas);
    }

    /// A job reported: the next one starts if changes are waiting.
    pub fn finished(&mut self, sel: &Selection, done: &mut SyncDone, replicas: Vec<(u32, u64)>) {
        let service = done.service.clone();
        let service = service.as_str();
        self.refresh(service);
        let Some(state) = self.services.get_mut(service) else { return };
        state.owners.extend(done.owners.drain(..));
        state.in_flight = false;
        if let Some((share, timing)) = state.queued.take() {
            self.start_job(sel, service, share, timing, replicas);
        }
    }

    /// What a new container of `service` is given before its process starts: every path
    /// synced into the service this session (kept up to date as more are synced).
    pub fn drift(&mut self, service: &str) -> Arc<Drift> {
        let tmp = self.run_dir();
        let state = self.services.entry(service.to_string()).or_default();
        let handle = state.handle.get_or_insert_with(|| Arc::new(Drift::new(tmp))).clone();
        self.refresh(service);
        handle
    }

    /// Brings a service's drift handle up to date: its paths, and the API once connected.
    fn refresh(&mut self, service: &str) {
        let connected = self.api.try_lock().ok().map(|held| held.clone());
        let Some(state) = self.services.get(service) else { return };
        let Some(handle) = &state.handle else { return };
        // Being connected right now: the handle keeps the API it has.
        let api = connected.unwrap_or_else(|| handle.api.lock().expect("drift lock is never poisoned").clone());
        handle.set(copies(&self.root, &state.rules, state.drift.iter()), api);
    }

    fn start_job(
        &mut self,
        sel: &Selection,
        service: &str,
        share: ServiceSync,
        timing: Timing,
        replicas: Vec<(u32, u64)>,
    ) {
        let Some(state) = self.services.get_mut(service) else { return };
        state.in_flight = true;
        let batch = SyncBatch {
            copies: copies(&self.root, &state.rules, share.paths.iter().map(|(p, to)| (p, &to.roots))),
            deletes: Vec::new(),
        };
        let containers: Vec<Replica> = replicas
            .into_iter()
            .map(|(replica, attempt)| Replica {
                replica,
                attempt,
                container: container_name(&sel.config.root, service, replica),
                owner: state.owners.get(&replica).filter(|(a, _)| *a == attempt).map(|(_, o)| *o),
            })
            .collect();
        let job = Job {
            service: service.to_string(),
            containers,
            batch,
            exec: share.exec,
            restart: share.restart,
            gone: share
                .paths
                .keys()
                .filter(|p| std::fs::symlink_metadata(rel_path::under(&self.root, p)).is_err())
                .cloned()
                .collect(),
            timing,
            engine: self.engine.clone(),
            api: self.api.clone(),
            kiln: self.layout.kiln.clone(),
            run_dir: self.run_dir(),
        };
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let _ = done.send(job.run().await);
        });
    }

    /// Stops the engine's API service if kiln started one (gracefully; a sync job still
    /// holding it kills it when it ends, and the watchdog if kiln dies).
    pub async fn shutdown(&mut self) {
        // New containers hold the API through their drift: none starts any more.
        for state in self.services.values() {
            if let Some(handle) = &state.handle {
                *handle.api.lock().expect("drift lock is never poisoned") = None;
            }
        }
        let held = self.api.lock().await.take();
        if let Some(api) = held.and_then(Arc::into_inner) {
            api.shutdown().await;
        }
    }
}

/// The copies of changed paths. A directory (one moved in, say) is given as the files
/// below it that its rules sync: what `ignore` leaves out, or `include` does not take, stays
/// out of the container however it arrives.
fn copies<'a>(
    root: &Path,
    rules: &SyncRules,
    paths: impl Iterator<Item = (&'a String, &'a (String, String))>,
) -> Vec<SyncCopy> {
    let mut out = Vec::new();
    for (path, (host_root, container_root)) in paths {
        let host_root = rel_path::under(root, host_root);
        let is_dir = std::fs::symlink_metadata(rel_path::under(root, path)).is_ok_and(|m| m.is_dir());
        if !is_dir {
            out.extend(SyncCopy::under(&host_root, container_root, &rel_path::under(root, path)));
            continue;
        }
        for file in FileIndex::scan_small(root, [path.clone()], false).paths() {
            if matches!(rules.fate(&file), Fate::Sync { .. }) {
                out.extend(SyncCopy::under(&host_root, container_root, &rel_path::under(root, &file)));
            }
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|c| seen.insert(c.host_path()));
    out
}

fn digest(root: &Path, rel: &str) -> Option<Digest> {
    let path = rel_path::under(root, rel);
    std::fs::symlink_metadata(&path).ok().filter(|m| m.is_file())?;
    Digest::of_file(&path).ok()
}

async fn connect(engine: Engine, kiln: PathBuf, run_dir: PathBuf) -> Result<Arc<EngineApi>, String> {
    crate::fs::no_follow::ensure_dir(&kiln, &run_dir)
        .map_err(|e| format!("cannot make {} for the engine's API: {e}", run_dir.display()))?;
    EngineApi::connect(&engine, &run_dir).await.map(Arc::new).map_err(|e| e.to_string())
}

struct Job {
    service: String,
    containers: Vec<Replica>,
    batch: SyncBatch,
    exec: Vec<String>,
    restart: bool,
    gone: Vec<String>,
    timing: Timing,
    engine: Option<Engine>,
    api: Api,
    kiln: PathBuf,
    run_dir: PathBuf,
}

impl Job {
    async fn run(self) -> SyncDone {
        let api = match &self.engine {
            None => Err("no container engine was found (podman or docker)".to_string()),
            Some(engine) => api_now(&self.api, engine, &self.kiln, &self.run_dir).await,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for Replica { replica, attempt, container, owner } in self.containers.clone() {
            let api = api.clone();
            let batch = self.batch.clone();
            let exec = self.exec.clone();
            let tmp = self.run_dir.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let mut known = owner;
                let result = match api {
                    Ok(api) => {
                        if known.is_none() {
                            known = api.container_owner(&container).await.ok();
                        }
                        sync_one(&api, &container, known, &batch, &exec, &tmp).await
                    }
                    Err(why) => Err((format!("cannot reach the container engine's API: {why}"), None)),
                };
                let (report, error) = match result {
                    Ok(report) => (Some(report), None),
                    Err((why, report)) => (report, Some(why)),
                };
                let synced = ReplicaSynced {
                    replica,
                    attempt,
                    files: report.as_ref().map_or(0, |r| r.files),
                    deleted: report.as_ref().map_or(0, |r| r.deleted),
                    bytes: report.as_ref().map_or(0, |r| r.bytes),
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    error,
                };
                (synced, known.map(|o| (replica, (attempt, o))))
            });
        }
        let mut results = Vec::new();
        let mut owners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((synced, owner)) => {
                    owners.extend(owner);
                    results.push(synced);
                }
                // A panic in one replica's copy: its replica is not known here; the
                // service is told.
                Err(e) => results.push(ReplicaSynced {
                    replica: u32::MAX,
                    attempt: 0,
                    files: 0,
                    deleted: 0,
                    bytes: 0,
                    duration_ms: 0,
                    error: Some(format!("the sync worker failed: {e}")),
                }),
            }
        }
        results.sort_by_key(|r| r.replica);
        SyncDone {
            service: self.service,
            results,
            owners,
            restart: self.restart,
            gone: self.gone,
            timing: self.timing,
            finished: Instant::now(),
        }
    }
}

type SyncFailure = (String, Option<crate::container::sync_batch::SyncReport>);

/// One replica a job copies into.
#[derive(Debug, Clone)]
struct Replica {
    replica: u32,
    attempt: u64,
    container: String,
    /// Its user's ids, when known from an earlier sync into the same container.
    owner: Option<Owner>,
}

/// One replica: its owner, the transfer, then each command.
async fn sync_one(
    api: &EngineApi,
    container: &str,
    owner: Option<Owner>,
    batch: &SyncBatch,
    exec: &[String],
    tmp: &Path,
) -> Result<crate::container::sync_batch::SyncReport, SyncFailure> {
    let owner = match owner {
        Some(owner) => owner,
        None => api.container_owner(container).await.map_err(|e| (e.to_string(), None))?,
    };
    let report = apply(api, container, batch, owner, tmp).await.map_err(|e| (e.to_string(), None))?;
    for cmd in exec {
        let argv = vec!["sh".to_string(), "-c".to_string(), cmd.clone()];
        match api.exec(container, &argv, None, EXEC_TIMEOUT).await {
            Ok(out) if out.exit_code == 0 => {}
            Ok(out) => {
                let tail = out.output.trim_end();
                let tail = tail.lines().last().unwrap_or("");
                let why = format!(
                    "`{cmd}` exited with {} after the copy{}",
                    out.exit_code,
                    if tail.is_empty() { String::new() } else { format!(": {tail}") }
                );
                return Err((why, Some(report)));
            }
            Err(e) => return Err((format!("`{cmd}` could not run after the copy: {e}"), Some(report))),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_may_hold_what_was_there_and_what_was_synced() {
        let mut s = ServiceLive::default();
        s.present.extend(["static/a.html".to_string(), "static/sub/b.css".to_string()]);
        assert!(s.may_hold("static/a.html"));
        assert!(s.may_hold("static/sub"), "a directory with files");
        assert!(!s.may_hold("static/su"), "a prefix of a name is not a directory");
        assert!(!s.may_hold("static/sedX1b2c3"), "a temporary made and renamed in one batch");
    }

    #[tokio::test(start_paused = true)]
    async fn the_breakdown_adds_up_to_the_total() {
        let first = Instant::now();
        tokio::time::advance(Duration::from_millis(50)).await;
        let batch = Instant::now();
        let timing = Timing { cause: vec!["a".into()], saved: None, first, batch };
        tokio::time::advance(Duration::from_millis(7)).await;
        let deployed = Instant::now();
        tokio::time::advance(Duration::from_millis(30)).await;
        let l = timing.latency(batch, deployed, Instant::now());
        assert_eq!((l.detect, l.debounce, l.build, l.deploy, l.ready), (0, 50, 0, 7, 30));
        assert_eq!(l.total, 87);
    }

    #[test]
    fn a_renamed_path_was_saved_when_it_was_renamed_not_when_last_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/one.txt"), "1").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        for p in ["a/one.txt", "a"] {
            std::fs::File::open(dir.path().join(p)).unwrap().set_modified(long_ago).unwrap();
        }
        std::fs::rename(dir.path().join("a"), dir.path().join("b")).unwrap();
        let paths: BTreeSet<String> = ["a", "b", "b/one.txt"].iter().map(|p| p.to_string()).collect();
        let timing = Timing::of(dir.path(), &paths, None);
        let saved = timing.saved.expect("b exists");
        let age = SystemTime::now().duration_since(saved).unwrap_or_default();
        assert!(age < Duration::from_secs(60), "saved {age:?} ago");
        assert_eq!(timing.cause, ["a", "b", "b/one.txt"]);
    }
}
