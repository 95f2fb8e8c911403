//! The event contract: every type of event kiln publishes, with its fields. Field names are
//! public (`--json`, the HTTP API): add, never rename.

use serde::Serialize;

/// How a target finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetStatus {
    /// The command ran and succeeded.
    Built,
    /// Outputs were restored from the cache.
    Cached,
    /// Already up to date: nothing was done.
    Fresh,
    Failed,
    /// A dependency failed or the run was cancelled.
    Skipped,
}

impl TargetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Built => "built",
            TargetStatus::Cached => "cached",
            TargetStatus::Fresh => "fresh",
            TargetStatus::Failed => "failed",
            TargetStatus::Skipped => "skipped",
        }
    }
}

/// The phase of a service replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Waiting for its deps to be built or its `after` services to be ready.
    Pending,
    Starting,
    Ready,
    /// Was ready; its probe now fails.
    Unhealthy,
    /// Crashed; waiting to restart.
    Backoff,
    Stopping,
    Stopped,
    /// Exited 0 and is not restarted.
    Completed,
    /// Exited with an error and is not restarted.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Unhealthy => "unhealthy",
            Phase::Backoff => "backoff",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Completed => "completed",
            Phase::Failed => "failed",
        }
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Something that happened. Field names are a public contract: add, never rename.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "run.started")]
    RunStarted { mode: String, targets: usize },
    #[serde(rename = "target.queued")]
    TargetQueued {
        target: String,
        /// Its dependencies within this run.
        deps: Vec<String>,
        /// How long its command took when it last ran, if known.
        #[serde(skip_serializing_if = "Option::is_none")]
        estimate_ms: Option<u64>,
    },
    #[serde(rename = "target.started")]
    TargetStarted {
        target: String,
        attempt: u32,
        /// The job slot (0..jobs) it runs in.
        slot: usize,
    },
    #[serde(rename = "target.output")]
    TargetOutput {
        target: String,
        stream: Stream,
        line: String,
        /// A line of a cached run's log, replayed on a cache hit.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        replayed: bool,
    },
    #[serde(rename = "target.finished")]
    TargetFinished {
        target: String,
        status: TargetStatus,
        duration_ms: u64,
        key: Option<String>,
        reason: String,
        /// Path of the full log, when the command ran and wrote output.
        #[serde(skip_serializing_if = "Option::is_none")]
        log: Option<String>,
        /// For a cached target: how long its command took when it ran, the time saved.
        #[serde(skip_serializing_if = "Option::is_none")]
        saved_ms: Option<u64>,
        /// Whether the cache was asked for this target's outputs, and what it answered;
        /// absent when it was not asked (up to date, `cache = false`, triggered, failed before).
        #[serde(skip_serializing_if = "Option::is_none")]
        cache: Option<CacheLookup>,
    },
    /// A timed piece of a target's work, for traces: `hash` (listing and hashing inputs),
    /// `lookup` (the cache), `restore`, `run` (one attempt of the command), `store`.
    #[serde(rename = "target.span")]
    TargetSpan {
        target: String,
        span: String,
        /// Where the work ran: `job N` (a job slot) or `worker N` (a hashing/storing thread).
        track: String,
        /// Microseconds since the run started.
        start_us: u64,
        duration_us: u64,
    },
    #[serde(rename = "run.finished")]
    RunFinished {
        ok: bool,
        built: usize,
        cached: usize,
        fresh: usize,
        failed: usize,
        skipped: usize,
        duration_ms: u64,
        /// Whether the run was cut short by a signal.
        interrupted: bool,
    },
    /// Watch mode is watching: `dirs` directories for the inputs of `targets` targets.
    #[serde(rename = "watch.started")]
    WatchStarted { dirs: usize, targets: usize },
    /// Files changed (after debouncing) and these targets are affected.
    #[serde(rename = "watch.changed")]
    WatchChanged { paths: Vec<String>, targets: Vec<String> },
    /// Files were touched or rewritten but no affected target's key changed.
    #[serde(rename = "watch.unchanged")]
    WatchUnchanged { paths: Vec<String> },
    #[serde(rename = "config.reloaded")]
    ConfigReloaded {
        /// Targets.
        added: Vec<String>,
        removed: Vec<String>,
        changed: Vec<String>,
        /// Services (restarted when changed).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        services_added: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        services_removed: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        services_changed: Vec<String>,
        /// The files whose change made it (kiln.toml, an env file), relative to the root.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        files: Vec<String>,
    },
    /// The edited configuration has errors; the previous one keeps running.
    #[serde(rename = "config.invalid")]
    ConfigInvalid { message: String },
    /// A service replica changed phase.
    #[serde(rename = "service.phase")]
    ServicePhase {
        service: String,
        replica: u32,
        phase: Phase,
        reason: String,
        /// Restarts after crashes so far.
        restarts: u32,
        /// In `backoff`: milliseconds until the next try.
        #[serde(skip_serializing_if = "Option::is_none")]
        next_try_ms: Option<u64>,
        /// For a container service: the image it runs.
        #[serde(skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        /// How many replicas the service should have now (its configured `replicas`).
        replicas: u32,
        /// On a `starting` that restarts the replica: what caused it.
        #[serde(skip_serializing_if = "Option::is_none")]
        cause: Option<RestartCause>,
    },
    /// A replica's process or container started (one per attempt): what `kiln ps` shows of
    /// it. For a container service it is published once the engine has written the
    /// container's ID (`--cidfile .kiln/run/cid/NAME`; at most 10 s after the start,
    /// `container` is absent if it never did).
    #[serde(rename = "service.started")]
    ServiceStarted {
        service: String,
        replica: u32,
        /// The attempt's number, unique in this `kiln up`.
        attempt: u64,
        /// The process (its group's leader); for a container, the engine client's.
        pid: u32,
        /// For a container service: the container's ID (12 hex digits).
        #[serde(skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        /// When the attempt started (RFC 3339), the start of its uptime.
        started_at: String,
        /// For a container service: its published ports (`HOST:CONTAINER`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        ports: Vec<String>,
    },
    /// One run of a replica's readiness (`probe` = `ready`) or liveness (`live`) probe.
    #[serde(rename = "service.probed")]
    ServiceProbed {
        service: String,
        replica: u32,
        /// `ready` or `live`.
        probe: &'static str,
        ok: bool,
        /// Why it failed (`no answer within 2.00s`).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        duration_ms: u64,
    },
    /// Changed files were copied into one running replica (a live update), or the copy or
    /// its `exec` failed (`error`).
    #[serde(rename = "service.synced")]
    ServiceSynced {
        service: String,
        replica: u32,
        /// Files (and symbolic links, and directories) copied.
        files: u64,
        /// Paths removed in the container.
        deleted: u64,
        /// Bytes of file content copied.
        bytes: u64,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A change under a service's image that no live update can carry: the image is rebuilt
    /// and the containers replaced, because of `path` (`reason`: no sync rule matched it, or
    /// a `rebuild` rule did).
    #[serde(rename = "update.fallback")]
    UpdateFallback { service: String, target: String, path: String, reason: String },
    /// A save reached running code: the files (`cause`), what was built and which services
    /// run it now, and how long each phase took.
    #[serde(rename = "update.completed")]
    UpdateCompleted {
        cause: Vec<String>,
        targets: Vec<String>,
        services: Vec<String>,
        /// `synced`, `restarted` or `rebuilt`: how the change reached the services.
        how: String,
        /// For `synced`: the files (and links and directories) copied plus the paths
        /// removed, in each replica.
        #[serde(skip_serializing_if = "Option::is_none")]
        files: Option<u64>,
        latency_ms: Latency,
    },
    /// The project network was created, before the first replica that joins it started.
    #[serde(rename = "network.created")]
    NetworkCreated { network: String, duration_ms: u64 },
    /// The project network was removed: `kiln up` ended and every container on it is gone.
    #[serde(rename = "network.removed")]
    NetworkRemoved { network: String },
    #[serde(rename = "service.output")]
    ServiceOutput { service: String, replica: u32, stream: Stream, line: String },
    /// A notice for humans that is not tied to a target (waiting for a lock, a discarded
    /// corrupt cache entry).
    #[serde(rename = "run.notice")]
    Notice { level: NoticeLevel, message: String },
    /// This subscriber fell behind and missed `dropped` events here (output lines first);
    /// it should re-read status. Only ever sent to the subscriber concerned.
    #[serde(rename = "stream.lagged")]
    StreamLagged { dropped: u64 },
}

/// Where the time from a save to running code went, in milliseconds: the file event after
/// the save (`detect`), the quiet window (`debounce`), the build (`build`), copying files or
/// replacing containers (`deploy`), readiness again (`ready`); `total` is save to ready.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Latency {
    pub detect: u64,
    pub debounce: u64,
    pub build: u64,
    pub deploy: u64,
    pub ready: u64,
    pub total: u64,
}

/// What the cache answered a target's lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheLookup {
    Hit,
    Miss,
}

/// What restarted a replica (`cause` of a `service.phase` to `starting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartCause {
    /// It exited or could not start, and its restart policy restarts it.
    Crash,
    /// Its liveness probe failed and kiln killed it.
    Liveness,
    /// A new build of what it runs.
    Build,
    /// `kiln trigger` or the dashboard's restart button.
    Trigger,
    /// Its configuration (or env file) changed.
    Config,
    /// A file it watches (`watch`) changed.
    Watch,
    /// Files were synced into it by a `sync+restart` rule.
    Sync,
}

impl RestartCause {
    pub const ALL: [RestartCause; 7] = [
        RestartCause::Crash,
        RestartCause::Liveness,
        RestartCause::Build,
        RestartCause::Trigger,
        RestartCause::Config,
        RestartCause::Watch,
        RestartCause::Sync,
    ];

    /// The words of the phase reasons: `restarted for a new build`.
    pub fn text(self) -> &'static str {
        match self {
            RestartCause::Crash => "a crash",
            RestartCause::Liveness => "a failed liveness probe",
            RestartCause::Build => "a new build",
            RestartCause::Trigger => "`kiln trigger`",
            RestartCause::Config => "a change of its configuration",
            RestartCause::Watch => "a watched file changed",
            RestartCause::Sync => "synced files (sync+restart)",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartCause::Crash => "crash",
            RestartCause::Liveness => "liveness",
            RestartCause::Build => "build",
            RestartCause::Trigger => "trigger",
            RestartCause::Config => "config",
            RestartCause::Watch => "watch",
            RestartCause::Sync => "sync",
        }
    }
}

/// How loud a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeLevel {
    Info,
    Warning,
}

/// An event with its sequence number and time.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    #[serde(flatten)]
    pub event: Event,
    pub ts: String,
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_type_first_and_contract_fields() {
        let env = Envelope {
            event: Event::TargetStarted { target: "core".into(), attempt: 1, slot: 0 },
            ts: "2026-01-01T00:00:00.000Z".into(),
            seq: 3,
        };
        let json = serde_json::to_string(&env).expect("serializable");
        assert_eq!(
            json,
            r#"{"type":"target.started","target":"core","attempt":1,"slot":0,"ts":"2026-01-01T00:00:00.000Z","seq":3}"#
        );
    }
}
