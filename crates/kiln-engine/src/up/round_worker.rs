//! One round of `kiln up` as a worker: the content gate and the build of its targets (the
//! same engine as `kiln build`), reported back to the dispatcher as one message. A round
//! whose worker panics reports that, with the panic's message, instead of never reporting.

use std::collections::BTreeSet;
use std::sync::Arc;

use kiln_config::Config;
use tokio::sync::{mpsc, watch};

use crate::build::build_options::{BuildOptions, RunSummary};
use crate::build::build_session::BuildSession;
use crate::build::run_build::run_round;
use crate::build::worker_panic::catch_async;
use crate::event::{Event, EventBus, NoticeLevel};
use crate::fs::rel_path;

/// What the dispatcher hears when a round ends.
pub struct RoundReport {
    pub id: u64,
    /// The targets the round was asked for.
    pub targets: Vec<String>,
    /// `Err` when the round could not run or its worker panicked, with why.
    pub result: Result<RunSummary, String>,
}

/// Everything a round needs, handed over by the dispatcher.
pub struct RoundJob {
    pub id: u64,
    pub session: Arc<BuildSession>,
    pub config: Arc<Config>,
    pub build: BuildOptions,
    /// The changed paths that caused it, when it is gated on content.
    pub paths: Option<BTreeSet<String>>,
}

/// Starts a round on its own task.
pub fn spawn_round(
    job: RoundJob,
    bus: Arc<EventBus>,
    cancel: watch::Receiver<bool>,
    done: mpsc::UnboundedSender<RoundReport>,
) {
    let RoundJob { id, session, config, build, paths } = job;
    let targets = build.targets.clone();
    let build = match &paths {
        // Gated on content: if every target is still fresh, the run publishes nothing.
        Some(paths) => BuildOptions {
            gate: Some(Event::WatchChanged { paths: rel_path::display_all(paths), targets: targets.clone() }),
            ..build
        },
        None => build,
    };
    tokio::spawn(async move {
        let worker_bus = bus.clone();
        let result = catch_async(async move { run_round(&session, config, build, worker_bus, cancel).await })
            .await
            .and_then(|r| r.map_err(|e| e.to_string()));
        match &result {
            Ok(summary) if summary.quiet => {
                bus.publish(Event::WatchUnchanged { paths: rel_path::display_all(&paths.unwrap_or_default()) });
            }
            Ok(_) => {}
            Err(why) => bus.publish(Event::Notice {
                level: NoticeLevel::Warning,
                message: format!("the build of {} failed to run: {why}", targets.join(", ")),
            }),
        }
        let _ = done.send(RoundReport { id, targets, result });
    });
}
