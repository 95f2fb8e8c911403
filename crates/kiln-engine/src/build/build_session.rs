//! What the runs of one kiln process share: the `.kiln` layout, the cache, the stat cache,
//! the project lock and the state file.
//!
//! The project lock is held while at least one run of the session is in progress, and let
//! go between runs, so that `kiln build`, `kiln clean` or `kiln cache prune` in the same
//! project get their turn while `kiln up` waits for changes. Several rounds of one `kiln up`
//! may run at once (on disjoint targets): they share one hold of the lock. Temporary files a
//! killed run left in the cache are swept the first time the lock is taken.
//!
//! Each run reads the state file when it starts (another kiln may have built since) and
//! merges its records into it before it reports `run.finished`, one run at a time, so that
//! concurrent rounds never overwrite each other's records. While the lock stays held, only
//! this process writes the file, so what it last read or wrote is kept and used instead of
//! parsing the file again; taking the lock anew forgets it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::build::build_options::BuildError;
use crate::cache::stat_cache::StatCache;
use crate::cache::state::{State, TargetRecord};
use crate::cache::store::Cache;
use crate::event::{Event, EventBus, NoticeLevel};
use crate::fs::layout::Layout;
use crate::fs::no_follow::shown;
use crate::fs::project_lock::ProjectLock;

pub struct BuildSession {
    pub layout: Layout,
    pub cache: Cache,
    pub stat: Arc<StatCache>,
    /// `None` for a dry run, which writes nothing and needs no lock.
    lock: Option<SharedLock>,
    /// Bounds the commands running at once across every run of the session (`kiln up`'s
    /// concurrent rounds together keep to `jobs`).
    pub commands: Option<Arc<Semaphore>>,
    /// The state file as this process last read or wrote it, while the lock has been held
    /// since; the mutex also serialises read-merge-write.
    state: Mutex<Option<Arc<State>>>,
}

struct SharedLock {
    path: PathBuf,
    /// How many runs hold it, and the lock while any does.
    held: Mutex<(usize, Option<ProjectLock>)>,
    /// One acquisition at a time (the second run waits for the first's).
    acquiring: tokio::sync::Mutex<bool>,
}

/// A run's share of the project lock; the last one to go releases it.
pub struct LockHold {
    session: Option<Arc<BuildSession>>,
}

impl Drop for LockHold {
    fn drop(&mut self) {
        let Some(lock) = self.session.as_ref().and_then(|s| s.lock.as_ref()) else { return };
        let mut held = lock.held.lock().expect("lock state is never poisoned");
        held.0 -= 1;
        if held.0 == 0 {
            held.1 = None;
        }
    }
}

impl BuildSession {
    /// Prepares `.kiln` and starts loading the stat cache. Without `lock` (a dry run, which
    /// writes nothing), runs take no lock and sweep nothing.
    pub async fn open(root: &Path, lock: bool) -> Result<BuildSession, BuildError> {
        let layout = Layout::new(root);
        layout.ensure().map_err(|source| BuildError::Setup { path: layout.kiln.clone(), source })?;
        let stat_path = layout.state().join("stat.bin");
        let stat = tokio::task::spawn_blocking(move || StatCache::load(&stat_path));
        let cache = Cache::new(root.to_path_buf(), layout.cache());
        let lock = lock.then(|| SharedLock {
            path: layout.lock(),
            held: Mutex::new((0, None)),
            acquiring: tokio::sync::Mutex::new(false),
        });
        let stat = Arc::new(stat.await.expect("stat cache load does not panic"));
        Ok(BuildSession { layout, cache, stat, lock, commands: None, state: Mutex::new(None) })
    }

    /// Takes (or joins) the project lock for one run, saying so while another kiln holds it.
    pub async fn hold(self: &Arc<Self>, bus: &Arc<EventBus>) -> Result<LockHold, BuildError> {
        let Some(shared) = &self.lock else { return Ok(LockHold { session: None }) };
        let mut swept = shared.acquiring.lock().await;
        {
            let mut held = shared.held.lock().expect("lock state is never poisoned");
            if held.1.is_some() {
                held.0 += 1;
                return Ok(LockHold { session: Some(self.clone()) });
            }
        }
        let setup = |source| BuildError::Setup { path: shared.path.clone(), source };
        // Free in the common case; only a busy lock is waited for on a blocking thread.
        let lock = match ProjectLock::try_acquire(&shared.path).map_err(setup)? {
            Some(lock) => lock,
            None => {
                let (path, bus) = (shared.path.clone(), bus.clone());
                tokio::task::spawn_blocking(move || {
                    ProjectLock::acquire(&path, |pid| {
                        let who = pid.map_or_else(|| "another kiln".to_string(), |p| format!("another kiln (pid {p})"));
                        bus.publish(Event::Notice {
                            level: NoticeLevel::Info,
                            message: format!("waiting for {who} to finish in this project…"),
                        });
                    })
                })
                .await
                .expect("lock task does not panic")
                .map_err(setup)?
            }
        };
        if !*swept {
            self.cache.sweep_tmp();
            *swept = true;
        }
        // Another kiln may have written the state file while the lock was free.
        *self.state.lock().expect("state lock is never poisoned") = None;
        let mut held = shared.held.lock().expect("lock state is never poisoned");
        *held = (1, Some(lock));
        Ok(LockHold { session: Some(self.clone()) })
    }

    fn state_path(&self) -> PathBuf {
        self.layout.state().join("targets.json")
    }

    /// The last build of each target, as the state file has it now.
    pub fn load_state(&self) -> Arc<State> {
        let mut kept = self.state.lock().expect("state lock is never poisoned");
        if self.lock.is_none() {
            // A dry run holds no lock: another kiln may write at any time.
            return Arc::new(State::load(&self.state_path()));
        }
        kept.get_or_insert_with(|| Arc::new(State::load(&self.state_path()))).clone()
    }

    /// Merges a run's records into the state file, and writes the stat cache. Returns what
    /// could not be saved, as warnings (the next run then re-checks what it cannot trust).
    pub fn persist(&self, records: &std::collections::BTreeMap<String, TargetRecord>) -> Vec<String> {
        let mut problems = Vec::new();
        let kiln = &self.layout.kiln;
        if !records.is_empty() {
            let mut kept = self.state.lock().expect("state lock is never poisoned");
            let mut state = kept.take().unwrap_or_else(|| Arc::new(State::load(&self.state_path())));
            Arc::make_mut(&mut state).targets.extend(records.iter().map(|(k, v)| (k.clone(), v.clone())));
            let saved = state.save(kiln, &self.state_path());
            if let Err(e) = &saved {
                problems.push(format!(
                    "cannot save the build state in {}: {e}; the next run does not know what this one built",
                    shown(kiln, &self.state_path())
                ));
            }
            *kept = saved.is_ok().then_some(state);
        }
        let stat_path = self.layout.state().join("stat.bin");
        if let Err(e) = self.stat.save(kiln, &stat_path) {
            problems.push(format!(
                "cannot save the stat cache in {}: {e}; the next run hashes its files again",
                shown(kiln, &stat_path)
            ));
        }
        problems
    }
}
