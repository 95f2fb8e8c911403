//! kiln's engine: the target graph, keys and the content-addressed cache, command
//! execution, the scheduler and the event stream. It never prints: every outcome is an
//! [`Event`] that views subscribe to.

mod atomic_write;
mod backoff;
mod build;
mod cache;
mod container;
mod debouncer;
mod digest;
mod event;
mod event_gate;
mod exec;
mod explain;
mod file_index;
mod graph;
mod image_context;
mod layout;
mod manifest;
mod path_pattern;
mod probe;
mod process_guard;
mod project_lock;
mod replica;
mod restart_policy;
mod scheduler;
mod stat_cache;
mod state;
mod supervisor;
mod target_inputs;
mod timestamp;
mod up;
mod walker;
mod watch;

pub use build::{BuildError, BuildOptions, PlanAction, PlanEntry, RunSummary, resolve_targets, run_build};
pub use cache::{ActionRecord, Cache, CacheStats, OutputFile, PruneReport};
pub use container::{Engine, EngineKind, leftovers_message, remove_leftovers};
pub use digest::Digest;
pub use event::{Envelope, Event, EventBus, NoticeLevel, Phase, Stream, TargetStatus};
pub use explain::{ExplainError, Explanation, explain};
pub use graph::{Graph, TargetId};
pub use layout::Layout;
pub use manifest::{Change, EntryChange, Manifest};
pub use process_guard::{WATCHDOG_ARG, start_watchdog, watchdog_main};
pub use project_lock::ProjectLock;
pub use state::{State, TargetRecord};
pub use timestamp::rfc3339;
pub use up::{UpControl, UpError, UpExit, UpOptions, run_up};
