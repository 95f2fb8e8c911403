//! kiln's engine: the target graph, keys and the content-addressed cache, command
//! execution, the scheduler, services and the event stream. It never prints: every outcome
//! is an [`Event`] that views subscribe to.
//!
//! Modules, in dependency order (each uses only those before it): `event`, `fs`, `cache`,
//! `graph`, `exec`, `container`, `build`, `watch`, `supervise`, `up`. See
//! docs/ARCHITECTURE.md.

mod build;
mod cache;
pub mod container;
mod event;
mod exec;
mod fs;
mod graph;
mod supervise;
mod up;
mod watch;

pub use build::build_options::{BuildError, BuildOptions, PlanAction, PlanEntry, RunSummary, resolve_targets};
pub use build::explain::{ExplainError, Explanation, explain};
pub use build::run_build::run_build;
pub use cache::action_record::{ActionRecord, OutputFile};
pub use cache::digest::Digest;
pub use cache::manifest::{Change, EntryChange, Manifest};
pub use cache::prune::{CacheStats, PruneReport};
pub use cache::restore::remove_output;
pub use cache::state::{State, TargetRecord};
pub use cache::store::Cache;
pub use container::engine::{Engine, EngineKind, container_name, project_ref};
pub use container::leftovers::{Leftovers, leftovers_message, remove_leftovers};
pub use container::network::{network_exists, network_name};
pub use event::timestamp::{parse_http_date, parse_rfc3339, rfc3339};
pub use event::{
    CacheLookup, Envelope, Event, EventBus, Latency, NoticeLevel, Phase, Received, ReplayLimits, RestartCause, Stream,
    Subscription, TargetStatus,
};
pub use exec::listen_ports::listening_ports;
pub use exec::log_records::{Decoder as LogDecoder, LogLine, Origin as LogOrigin, record_time};
pub use exec::tail_log::{
    cut_marker as log_cut_marker, previous_part as log_previous_part, read_tail as read_log_tail,
};
pub use exec::watchdog::{WATCHDOG_ARG, start_watchdog, watchdog_main};
pub use fs::layout::Layout;
pub use fs::no_follow::check_dir as check_kiln_dir;
pub use fs::project_lock::ProjectLock;
/// Root-relative paths as kiln holds them (any bytes, escaped into a `String`).
pub use fs::rel_path;
pub use graph::{Graph, TargetId};
pub use up::dispatcher::run_up;
pub use up::up_graph::{GraphService, GraphTarget, UpGraph};
pub use up::up_options::{TriggerKind, Triggered, UpControl, UpError, UpExit, UpOptions};
