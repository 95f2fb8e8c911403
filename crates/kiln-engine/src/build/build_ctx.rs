//! The read-only facts a run shares with its workers, and the messages they report with.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kiln_config::{Config, Target};

use crate::build::build_options::PlanAction;
use crate::cache::digest::Digest;
use crate::cache::manifest::Manifest;
use crate::cache::stat_cache::StatCache;
use crate::cache::state::{State, TargetRecord};
use crate::cache::store::Cache;
use crate::container::engine::Engine;
use crate::event::{CacheLookup, Event, EventBus, TargetStatus};
use crate::fs::file_index::FileIndex;
use crate::fs::layout::Layout;
use crate::fs::path_pattern::PathPattern;
use crate::graph::target_graph::{Graph, TargetId};

/// Read-only facts shared by the workers of a run.
pub(crate) struct Ctx {
    pub(crate) config: Arc<Config>,
    pub(crate) layout: Layout,
    pub(crate) graph: Graph,
    pub(crate) cache: Cache,
    pub(crate) stat: Arc<StatCache>,
    pub(crate) index: FileIndex,
    pub(crate) prev: Arc<State>,
    pub(crate) inputs: Vec<Vec<PathPattern>>,
    pub(crate) outputs: Vec<Vec<PathPattern>>,
    pub(crate) dry_run: bool,
    /// Replay the stored output of targets restored from the cache.
    pub(crate) replay_logs: bool,
    /// Publish `target.span` events.
    pub(crate) spans: bool,
    /// Whether `.kiln/logs` is usable this run (a real directory): commands' output is kept
    /// there, and cached runs' output restored there.
    pub(crate) logs_kept: bool,
    /// Targets to run even if they are up to date.
    pub(crate) force: BTreeSet<String>,
    /// Targets whose being fresh opens the event gate (see [`BuildOptions::stale`]).
    pub(crate) stale: BTreeSet<String>,
    /// The session's bound on commands at once, across concurrent rounds.
    pub(crate) commands: Option<Arc<tokio::sync::Semaphore>>,
    pub(crate) bus: Arc<EventBus>,
    /// When the run started: spans are timed from here.
    pub(crate) started: Instant,
    /// The container engine, looked for when an image target first needs it.
    pub(crate) engine: OnceLock<Result<Engine, String>>,
    /// Per target: whether the cache was asked for its outputs (0 no, 1 a miss, 2 a hit).
    pub(crate) lookups: Vec<AtomicU8>,
}

impl Ctx {
    pub(crate) fn engine(&self) -> Result<&Engine, String> {
        self.engine.get_or_init(|| Engine::find(self.config.settings.engine)).as_ref().map_err(Clone::clone)
    }

    /// Notes what the cache answered when asked for `id`'s outputs.
    pub(crate) fn looked_up(&self, id: TargetId, hit: bool) {
        if let Some(slot) = self.lookups.get(id) {
            slot.store(if hit { 2 } else { 1 }, Ordering::Relaxed);
        }
    }

    /// What the cache answered for `id`, if it was asked.
    pub(crate) fn lookup_of(&self, id: TargetId) -> Option<CacheLookup> {
        match self.lookups.get(id)?.load(Ordering::Relaxed) {
            1 => Some(CacheLookup::Miss),
            2 => Some(CacheLookup::Hit),
            _ => None,
        }
    }

    pub(crate) fn target(&self, id: TargetId) -> &Target {
        &self.config.targets[self.graph.name(id)]
    }

    /// Publishes a `target.span` that began at `start` and ends now, when spans were asked
    /// for (they are many; only a trace needs them).
    pub(crate) fn span(&self, target: &str, span: &str, track: Track, start: Instant) {
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
pub(crate) struct Done {
    pub(crate) record: Option<TargetRecord>,
    pub(crate) status: TargetStatus,
    pub(crate) reason: String,
    pub(crate) key: Option<Digest>,
    pub(crate) log: Option<String>,
}

/// A target that must run: what decides its key, why it runs, and the fingerprint of its
/// inputs' metadata as evaluated.
pub(crate) struct RunRequest {
    pub(crate) manifest: Manifest,
    pub(crate) reason: String,
    pub(crate) inputs_meta: Option<Digest>,
}

pub(crate) enum Evaluation {
    Done(Done),
    Run(RunRequest),
    Plan { action: PlanAction, reason: String, digest: Option<Digest> },
}

/// What an evaluation needs from the loop's state.
pub(crate) struct EvalJob {
    pub(crate) id: TargetId,
    pub(crate) deps: Vec<(String, Option<Digest>)>,
    /// A dep wrote outputs this run: list the inputs anew, they may include them.
    pub(crate) refresh: bool,
}

pub(crate) enum Msg {
    Evaluated(TargetId, Evaluation),
    /// The command exited; its outputs are being stored.
    Exited(TargetId),
    Ran(TargetId, Done),
}

/// Where a span ran: a job slot, or the calling worker thread.
pub(crate) enum Track {
    Job(usize),
    Worker,
}

/// The trace track of the calling blocking thread: `worker N`, numbered in order of first
/// use. Work on one thread is sequential, so its spans never overlap.
pub(crate) fn worker_track() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static ID: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    ID.with(|id| format!("worker {id}"))
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn failed(reason: String, key: Option<Digest>) -> Evaluation {
    Evaluation::Done(Done { record: None, status: TargetStatus::Failed, reason, key, log: None })
}

/// An image ID (sha256 hex) as an output digest: dependents see exactly when it changes.
pub(crate) fn image_digest(id: &str) -> Digest {
    Digest::from_hex(id).unwrap_or_else(|| Digest::of_bytes(id.as_bytes()))
}
