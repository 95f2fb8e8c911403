//! What the runs of one kiln process share: the `.kiln` layout, the project lock (held for
//! the whole session, so that one `kiln up` can run several rounds at once while a second
//! kiln waits), the cache and the stat cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::build::build_options::BuildError;
use crate::cache::stat_cache::StatCache;
use crate::cache::store::Cache;
use crate::event::{Event, EventBus, NoticeLevel};
use crate::fs::layout::Layout;
use crate::fs::project_lock::ProjectLock;

pub struct BuildSession {
    pub layout: Layout,
    pub cache: Cache,
    pub stat: Arc<StatCache>,
    _lock: Option<ProjectLock>,
}

impl BuildSession {
    /// Prepares `.kiln`, takes the project lock (saying so while another kiln holds it) and
    /// removes temporary files a killed run left in the cache. Without `lock` (a dry run,
    /// which writes nothing), neither the lock nor the sweep.
    pub async fn open(root: &Path, bus: &Arc<EventBus>, lock: bool) -> Result<BuildSession, BuildError> {
        let layout = Layout::new(root);
        let setup = |path: PathBuf| move |source| BuildError::Setup { path, source };
        layout.ensure().map_err(setup(layout.kiln.clone()))?;
        let lock_path = layout.lock();
        let lock_bus = bus.clone();
        // The stat cache loads while the lock is taken: neither needs the other.
        let stat_path = layout.state().join("stat.bin");
        let stat = tokio::task::spawn_blocking(move || StatCache::load(&stat_path));
        let cache = Cache::new(root.to_path_buf(), layout.cache());
        if !lock {
            let stat = Arc::new(stat.await.expect("stat cache load does not panic"));
            return Ok(BuildSession { layout, cache, stat, _lock: None });
        }
        // Free in the common case; only a busy lock is waited for on a blocking thread.
        let lock = match ProjectLock::try_acquire(&lock_path).map_err(setup(layout.lock()))? {
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
        cache.sweep_tmp();
        let stat = Arc::new(stat.await.expect("stat cache load does not panic"));
        Ok(BuildSession { layout, cache, stat, _lock: Some(lock) })
    }

    /// Writes the stat cache if it changed.
    pub fn save_stat(&self) {
        let _ = self.stat.save(&self.layout.state().join("stat.bin"));
    }
}
