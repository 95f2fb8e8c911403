//! One attempt of one replica: the doing half of a replica (the deciding half is
//! [`crate::supervise::replica_state`], run by the service set).
//!
//! An attempt starts the process (`sh -c CMD` in its own process group, dying with kiln,
//! `KILN_REPLICA` set) or the container (`ENGINE run --rm --name … IMAGE` in the
//! foreground, so its output is the container's and its exit the container's exit), turns
//! its output into `service.output` events, runs the readiness probe every `period` (every
//! `interval` once it has passed), and
//! reports what it sees — started, probe passed or failed, a line matching the `log` probe,
//! exited — as messages. It is told to stop (`stop_signal` to the group, `stop_timeout`,
//! then SIGKILL; a container through the engine, since a signal to its client would only
//! detach it) or, for podman, to hand its container over to the next attempt, which starts
//! with `run --replace` (its probes held until the replaced container's client has exited:
//! until then the old container answers on the ports).

use std::time::Duration;

use kiln_config::ProbeCheck;
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::build::worker_panic::catch_async;
use crate::container::engine::{EngineKind, exec_words, shell_join};
use crate::container::engine_api::{EngineApi, Owner};
use crate::container::sync_batch::{SyncBatch, apply, apply_copies};
use crate::event::{Event, EventBus, Stream};
use crate::exec::command::{group_alive, shell_command, signal_group};
use crate::exec::output_lines::ChunkReader;
use crate::supervise::replica_log::ReplicaLog;
use crate::supervise::replica_state::Input;
use crate::supervise::service_spec::{ContainerRun, Drift, Runner, ServiceSpec, fill_replica};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The longest the engine is asked who holds a container name.
const NAME_CHECK: Duration = Duration::from_secs(30);

/// How often an attempt checks that its process still exists.
const SWEEP: Duration = Duration::from_secs(5);

/// A podman container's client, handed from one attempt to the next (`run --replace`).
pub type Handover = (tokio::process::Child, u32);

/// A report from an attempt.
#[derive(Debug)]
pub struct Report {
    pub service: String,
    pub replica: u32,
    /// Which attempt of the replica: reports of an earlier one are stale.
    pub attempt: u64,
    /// What it saw, as the replica's state machine takes it: `Started`, `StartFailed`,
    /// `ProbePassed`, `ProbeFailed`, `LogMatched`, and last `Exited` (`None`: by a signal, or
    /// stopped by kiln).
    pub observed: Input,
    /// With the last report of a podman attempt told to restart: its container's client,
    /// for the next attempt's `run --replace`.
    pub handover: Option<Handover>,
}

/// Orders for a running attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Stop the process gracefully.
    Stop,
    /// Stop for a restart: podman hands its container to the next attempt instead.
    Restart,
}

/// Starts an attempt on its own task; orders go to the returned sender. An attempt whose
/// task panics reports `Exited` all the same (after killing its process group), with the
/// panic's message as an output line, so nothing waits for it forever.
pub fn start_attempt(
    spec: Arc<ServiceSpec>,
    replica: u32,
    attempt: u64,
    handover: Option<Handover>,
    bus: Arc<EventBus>,
    reports: mpsc::UnboundedSender<Report>,
) -> mpsc::UnboundedSender<Order> {
    let (order_tx, order_rx) = mpsc::unbounded_channel();
    let pid = Arc::new(AtomicU32::new(0));
    let (task_spec, task_bus, task_reports, task_pid) = (spec.clone(), bus.clone(), reports.clone(), pid.clone());
    tokio::spawn(async move {
        let work = async move {
            let spec = task_spec;
            let send = |observed, handover| {
                let report = Report { service: spec.name.clone(), replica, attempt, observed, handover };
                let _ = task_reports.send(report);
            };
            run_attempt(&spec, replica, attempt, handover, &task_bus, order_rx, &task_pid, send).await;
        };
        if let Err(why) = catch_async(work).await {
            signal_group(pid.load(Ordering::Relaxed), Signal::SIGKILL);
            bus.publish(Event::ServiceOutput {
                service: spec.name.clone(),
                replica,
                stream: Stream::Stderr,
                line: format!("kiln: {why}"),
            });
            let report =
                Report { service: spec.name.clone(), replica, attempt, observed: Input::Exited(None), handover: None };
            let _ = reports.send(report);
        }
    });
    order_tx
}

/// Stops and removes a podman container that was handed over for a `run --replace` that will
/// not come (a stop overtook the restart); reports `Exited` as `attempt` when it is gone.
pub fn stop_handover(
    spec: Arc<ServiceSpec>,
    replica: u32,
    attempt: u64,
    handover: Handover,
    reports: mpsc::UnboundedSender<Report>,
) {
    tokio::spawn(async move {
        let (mut child, pid) = handover;
        stop(&spec, replica, &mut child, pid).await;
        let report =
            Report { service: spec.name.clone(), replica, attempt, observed: Input::Exited(None), handover: None };
        let _ = reports.send(report);
    });
}

/// Runs the process until it exits or is stopped, reporting through `report`; the last
/// report is always `Exited` (or `StartFailed`, or `Refused`).
#[expect(clippy::too_many_arguments, reason = "one attempt's whole context, passed once")]
async fn run_attempt(
    spec: &ServiceSpec,
    replica: u32,
    attempt: u64,
    handover: Option<Handover>,
    bus: &Arc<EventBus>,
    mut orders: mpsc::UnboundedReceiver<Order>,
    pid_cell: &AtomicU32,
    report: impl Fn(Input, Option<Handover>),
) {
    // The log on disk keeps every attempt's bytes, across restarts, up to `log_limit`, with
    // a line where each starts and ends. Its directories under `.kiln` are never reached
    // through a planted symbolic link.
    let log = ReplicaLog::open(spec.layout.service_log(&spec.name, replica), spec.log_limit, &spec.layout.kiln);
    // Set when kiln stops it (an order came), to tell that from a signal from elsewhere.
    let stopped = std::sync::atomic::AtomicBool::new(false);
    let report = |observed: Input, handover: Option<Handover>| {
        match &observed {
            Input::Exited(Some(code)) => log.note(&format!("exited with status {code}")),
            Input::Exited(None) if handover.is_some() => log.note("stopped by kiln (its container is replaced)"),
            Input::Exited(None) if stopped.load(Ordering::Relaxed) => log.note("stopped by kiln"),
            Input::Exited(None) => log.note("ended: killed by a signal"),
            Input::StartFailed(why) => log.note(&format!("could not start: {why}")),
            Input::Refused(why) => log.note(&format!("not started: {why}")),
            _ => {}
        }
        report(observed, handover);
    };
    // A container's engine writes its ID here: `kiln ps` shows it, and no engine call is
    // needed to learn it.
    let cid_file = match &spec.runner {
        Runner::Container(c) => c.prepare_cid_file(spec, replica),
        Runner::Process(_) => None,
    };
    let mut command = match &spec.runner {
        Runner::Process(cmd) => {
            let mut command = shell_command(cmd, &spec.dir, &spec.env);
            command.env("KILN_REPLICA", replica.to_string());
            command
        }
        Runner::Container(c) => {
            let mut command = c.client();
            let mut args = c.run_args(spec, replica, cid_file.as_deref());
            if handover.is_some() {
                args.insert(1, "--replace".into());
            }
            command
                .args(args)
                .current_dir(&spec.dir)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            // A group of its own, but it does not die with kiln: a client killed while
            // creating its container leaves the engine with a half-made one (podman's
            // conmon keeps the ports). After a SIGKILL of kiln the client lives on until
            // its container is removed as a leftover, or its next output line finds the
            // pipe closed.
            command.process_group(0);
            command
        }
    };
    let what = match &spec.runner {
        Runner::Process(cmd) => format!("`{cmd}`"),
        Runner::Container(c) => format!("{} run {}", c.engine.name(), c.image),
    };
    // Its network first: the project's is created before the first replica joins it; then
    // its host ports, which another process may hold. An order to stop is heard meanwhile (the engine call has a bound of its own).
    let prepared = match &spec.runner {
        Runner::Container(run) => tokio::select! {
            prepared = run.prepare(&spec.name, replica, handover.is_none(), bus) => prepared,
            _ = orders.recv() => {
                if let Some((mut old, old_pid)) = handover {
                    stop(spec, replica, &mut old, old_pid).await;
                }
                report(Input::Exited(None), None);
                return;
            }
        },
        Runner::Process(_) => Ok(()),
    };
    if let Err(why) = prepared {
        if let Some((mut old, old_pid)) = handover {
            stop(spec, replica, &mut old, old_pid).await;
        }
        // Said once, by the phase's reason (and the log's note): not as an output line too.
        report(Input::StartFailed(why), None);
        return;
    }
    // A service with synced files: its new container is created, given them, then started.
    let mut after_start: Option<AfterStart> = None;
    let mut checked_name = false;
    if let Runner::Container(run) = &spec.runner
        && let Some(drift) = &run.drift
    {
        // Whatever is synced from here on reaches it once it runs.
        after_start = Some(AfterStart { deletes: Vec::new(), drift: drift.clone(), version: drift.version() });
    }
    if let Runner::Container(run) = &spec.runner
        && let Some(drift) = &run.drift
        && let Some((batch, Some(api), version)) = drift.now()
    {
        match create_with_drift(run, spec, replica, handover.is_some(), &api, batch, &drift.tmp, cid_file.as_deref())
            .await
        {
            Ok((start, deletes)) => {
                command = start;
                checked_name = true;
                after_start = Some(AfterStart { deletes, drift: drift.clone(), version });
            }
            Err(failed) => {
                if let Some((mut old, old_pid)) = handover {
                    stop(spec, replica, &mut old, old_pid).await;
                }
                if let Input::StartFailed(why) | Input::Refused(why) = &failed {
                    bus.publish(Event::ServiceOutput {
                        service: spec.name.clone(),
                        replica,
                        stream: Stream::Stderr,
                        line: format!("kiln: {why}"),
                    });
                }
                report(failed, None);
                return;
            }
        }
    }
    // Whether a container kiln did not start for this project holds the name (a handed-over
    // one is ours): asked while the client starts, answered before anything counts.
    let name_holder = match (&spec.runner, &handover) {
        (Runner::Container(run), None) if !checked_name => Some(run.ask_name_holder(&spec.name, replica)),
        _ => None,
    };
    // `podman run --replace` prints the name of the container it replaced before the new
    // one's output: that line is podman's, not the service's.
    let engine_echo = match &spec.runner {
        Runner::Container(run) if handover.is_some() && !checked_name => {
            Some(format!("{}\n", run.name(&spec.name, replica)))
        }
        _ => None,
    };
    let spawned = command.spawn();
    let mut replaced = handover;
    if spawned.is_err()
        && let Some((mut old, old_pid)) = replaced.take()
    {
        stop(spec, replica, &mut old, old_pid).await;
    }
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let why = format!("cannot start {what}: {e}");
            bus.publish(Event::ServiceOutput {
                service: spec.name.clone(),
                replica,
                stream: Stream::Stderr,
                line: format!("kiln: {why}"),
            });
            report(Input::StartFailed(why), None);
            return;
        }
    };
    // The replaced container answers on the same ports until the new one's start removes
    // it, and its client then exits: no probe counts before that.
    let mut old_gone = replaced.is_none();
    let grace = spec.stop_timeout + Duration::from_secs(5);
    let old_exit = async move {
        if let Some((mut old, old_pid)) = replaced {
            let _ = tokio::time::timeout(grace, old.wait()).await;
            signal_group(old_pid, Signal::SIGKILL);
        }
    };
    tokio::pin!(old_exit);
    let pid = child.id().unwrap_or(0);
    pid_cell.store(pid, Ordering::Relaxed);
    let _group = matches!(spec.runner, Runner::Process(_)).then(|| crate::exec::watchdog::GroupGuard::new(pid));
    if let (Runner::Container(run), Some(asked)) = (&spec.runner, name_holder) {
        // An order to stop is heard while the engine is asked (it may hang), and the
        // question has a bound of its own.
        let holder = tokio::select! {
            why = tokio::time::timeout(NAME_CHECK, run.foreign_holder(asked, &spec.name, replica)) => why.ok().flatten(),
            _ = orders.recv() => {
                stopped.store(true, Ordering::Relaxed);
                stop(spec, replica, &mut child, pid).await;
                report(Input::Exited(None), None);
                return;
            }
        };
        if let Some(why) = holder {
            // The client fails on the taken name by itself; it is never stopped through the
            // engine, which would remove the other container. Still running after that long, it
            // got the name (the other container went away meanwhile): it is ours to supervise.
            let failed = tokio::select! {
                ended = tokio::time::timeout(Duration::from_secs(10), child.wait()) => ended.is_ok(),
                _ = orders.recv() => {
                    stopped.store(true, Ordering::Relaxed);
                    // Only the client goes: the container of that name is not ours.
                    signal_group(pid, Signal::SIGKILL);
                    let _ = child.wait().await;
                    report(Input::Exited(None), None);
                    return;
                }
            };
            if failed {
                bus.publish(Event::ServiceOutput {
                    service: spec.name.clone(),
                    replica,
                    stream: Stream::Stderr,
                    line: format!("kiln: {why}"),
                });
                report(Input::Refused(why), None);
                return;
            }
        }
    }

    // Output lines become events; a `log` probe watches them for its pattern.
    let (log_ready_tx, mut log_ready) = mpsc::unbounded_channel::<()>();
    let pattern = match spec.probe.as_ref().map(|p| &p.check) {
        Some(ProbeCheck::Log(re)) => regex::Regex::new(re).ok().or_else(|| regex::Regex::new(&regex::escape(re)).ok()),
        _ => None,
    };
    // Output is bytes: a line of invalid UTF-8, NUL or many megabytes is a line like any
    // other (its text lossily converted for events and the probe), and reading never stops
    // before the end, so the process never dies of a closed pipe.
    log.note(&format!("started {what}"));
    for (reader, stream) in [
        (child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), Stream::Stdout),
        (child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), Stream::Stderr),
    ] {
        let Some(reader) = reader else { continue };
        let bus = bus.clone();
        let service = spec.name.clone();
        let pattern = pattern.clone();
        let tx = log_ready_tx.clone();
        let log = log.clone();
        let mut echo = engine_echo.clone().filter(|_| stream == Stream::Stdout);
        tokio::spawn(async move {
            let mut chunks = ChunkReader::new(reader, stream);
            let mut matched = false;
            while let Some(mut chunk) = chunks.next().await {
                if let Some(name) = echo.take()
                    && chunk.raw.starts_with(name.as_bytes())
                {
                    chunk.raw.drain(..name.len());
                    chunk.lines.remove(0);
                }
                log.output(stream, &chunk.raw);
                for line in chunk.lines {
                    // Told once: the attempt needs no more than the first match.
                    if !matched && pattern.as_ref().is_some_and(|p| p.is_match(&line)) {
                        matched = true;
                        let _ = tx.send(());
                    }
                    bus.publish(Event::ServiceOutput { service: service.clone(), replica, stream, line });
                }
            }
            // A log that could not be written is said once. The log stays in its two parts
            // (read as one by `kiln logs`): a next attempt continues it.
            if let Some(why) = log.failure_once() {
                let line = format!("kiln: {why}; output is still shown but not kept");
                bus.publish(Event::ServiceOutput { service: service.clone(), replica, stream: Stream::Stderr, line });
            }
        });
    }
    drop(log_ready_tx);

    // A probe may name the replica (`http://127.0.0.1:808${KILN_REPLICA}/health`).
    // A container's `cmd` probe runs inside it.
    let fill_probe = |mut p: kiln_config::Probe| {
        let fill = |t: &str| fill_replica(t, replica);
        p.check = match p.check {
            ProbeCheck::Http(u) => ProbeCheck::Http(fill(&u)),
            ProbeCheck::Tcp(a) => ProbeCheck::Tcp(fill(&a)),
            ProbeCheck::Cmd(c) => ProbeCheck::Cmd(match &spec.runner {
                Runner::Process(_) => fill(&c),
                Runner::Container(run) => {
                    let mut words =
                        vec![run.engine.program.display().to_string(), "exec".into(), run.name(&spec.name, replica)];
                    words.extend(exec_words(&fill(&c)));
                    shell_join(&words)
                }
            }),
            ProbeCheck::Log(l) => ProbeCheck::Log(l),
        };
        p
    };
    let probe = spec.probe.clone().map(fill_probe);
    if let (Some(after), Runner::Container(run)) = (after_start, &spec.runner) {
        tokio::spawn(after.run(run.name(&spec.name, replica), spec.name.clone(), replica, bus.clone()));
    }
    let mut ready = probe.is_none();
    report(Input::Started { probed: !ready }, None);
    let _over = announce_start(spec, replica, attempt, pid, cid_file, bus);
    // Readiness and liveness run side by side, each on its own schedule, each check a
    // future polled by the loop below (an order to stop is heard while a check runs).
    let mut readiness = probe.filter(|p| !matches!(p.check, ProbeCheck::Log(_))).map(|p| Prober::new(p, "ready"));
    let mut liveness = spec.live.clone().map(fill_probe).map(|p| Prober::new(p, "live"));
    // The periodic sweep: a process that vanished without its exit reaching us (it cannot
    // be waited for any more) is treated as exited.
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ready_due = readiness.as_ref().and_then(Prober::due).filter(|_| old_gone);
        let live_due = liveness.as_ref().and_then(Prober::due).filter(|_| old_gone);
        tokio::select! {
            status = child.wait() => {
                signal_group(pid, Signal::SIGKILL);
                let code = status.ok().and_then(|s| s.code());
                report(Input::Exited(code), None);
                return;
            }
            order = orders.recv() => {
                stopped.store(true, Ordering::Relaxed);
                let Some(order) = order else {
                    // The service set is gone: nobody listens. Stop.
                    stop(spec, replica, &mut child, pid).await;
                    return;
                };
                if order == Order::Restart && matches!(&spec.runner, Runner::Container(r) if r.engine.kind == EngineKind::Podman) {
                    // One engine call instead of two: the next `podman run --replace` stops
                    // (stop signal, stop timeout) and removes this container.
                    report(Input::Exited(None), Some((child, pid)));
                    return;
                }
                stop(spec, replica, &mut child, pid).await;
                report(Input::Exited(None), None);
                return;
            }
            _ = sweep.tick() => {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    signal_group(pid, Signal::SIGKILL);
                    report(Input::Exited(None), None);
                    return;
                }
            }
            Some(()) = log_ready.recv(), if !ready => {
                ready = true;
                report(Input::LogMatched, None);
            }
            () = &mut old_exit, if !old_gone => {
                old_gone = true;
            }
            () = tokio::time::sleep_until(ready_due.unwrap_or_else(far_future)), if ready_due.is_some() => {
                readiness.as_mut().expect("due, so there").launch(spec);
            }
            () = tokio::time::sleep_until(live_due.unwrap_or_else(far_future)), if live_due.is_some() => {
                liveness.as_mut().expect("due, so there").launch(spec);
            }
            result = async { readiness.as_mut().expect("guarded").wait().await }, if readiness.as_ref().is_some_and(Prober::running) => {
                let p = readiness.as_mut().expect("guarded");
                p.publish(&result, &spec.name, replica, bus);
                match result {
                    Ok(()) => report(Input::ProbePassed, None),
                    Err(why) => report(Input::ProbeFailed(why), None),
                }
            }
            result = async { liveness.as_mut().expect("guarded").wait().await }, if liveness.as_ref().is_some_and(Prober::running) => {
                let p = liveness.as_mut().expect("guarded");
                p.publish(&result, &spec.name, replica, bus);
                match result {
                    Ok(()) => report(Input::LivePassed, None),
                    Err(why) => report(Input::LiveFailed(why), None),
                }
            }
        }
    }
}

/// A check in flight.
type Check = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// One of an attempt's probes (`ready` or `live`) and its schedule: a check every `period`
/// until one passes, every `interval` after (a ready app's log is not filled with probes),
/// counted from the start of the previous check, so that `interval` × `failures` bounds how
/// long a hung process goes unnoticed (a check that takes longer is followed at once). One
/// check at a time; dropping it (the attempt ends) ends the check, and a `cmd` check's
/// process group with it.
struct Prober {
    probe: kiln_config::Probe,
    role: &'static str,
    next: Instant,
    passed_once: bool,
    check: Option<(Instant, Check)>,
    /// How long the last check took.
    last_took: Duration,
}

impl Prober {
    fn new(probe: kiln_config::Probe, role: &'static str) -> Prober {
        Prober { probe, role, next: Instant::now(), passed_once: false, check: None, last_took: Duration::ZERO }
    }

    /// When the next check starts, unless one runs.
    fn due(&self) -> Option<Instant> {
        self.check.is_none().then_some(self.next)
    }

    fn running(&self) -> bool {
        self.check.is_some()
    }

    fn launch(&mut self, spec: &ServiceSpec) {
        let p = &self.probe;
        let connect = p.period.max(Duration::from_millis(100)).min(p.timeout);
        let (check, timeout, dir, env) = (p.check.clone(), p.timeout, spec.dir.clone(), spec.env.clone());
        let run = async move { crate::supervise::probe::check(&check, timeout, connect, &dir, &env).await };
        self.check = Some((Instant::now(), Box::pin(run)));
    }

    /// The running check's result; schedules the next. Only called while one runs.
    async fn wait(&mut self) -> Result<(), String> {
        let (began, check) = self.check.as_mut().expect("only called while a check runs");
        let began = *began;
        let result = check.await;
        self.check = None;
        self.passed_once |= result.is_ok();
        let every = if self.passed_once { self.probe.interval } else { self.probe.period };
        // A time past what the clock can represent probes once.
        self.next = began.checked_add(every).unwrap_or_else(far_future);
        self.last_took = began.elapsed();
        result
    }

    fn publish(&self, result: &Result<(), String>, service: &str, replica: u32, bus: &EventBus) {
        bus.publish(Event::ServiceProbed {
            service: service.to_string(),
            replica,
            probe: self.role,
            ok: result.is_ok(),
            error: result.as_ref().err().cloned(),
            duration_ms: u64::try_from(self.last_took.as_millis()).unwrap_or(u64::MAX),
        });
    }
}

/// Publishes `service.started` for an attempt: at once for a process; for a container once
/// the engine has written its ID to `cid_file` (looked at every 50 ms, at most 10 s, never
/// after the attempt ended; it asks the engine nothing, which would race the client's attach).
/// The attempt ends when the returned guard is dropped.
fn announce_start(
    spec: &ServiceSpec,
    replica: u32,
    attempt: u64,
    pid: u32,
    cid_file: Option<std::path::PathBuf>,
    bus: &Arc<EventBus>,
) -> AttemptOver {
    let over = AttemptOver(Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let started_at = crate::event::timestamp::rfc3339(std::time::SystemTime::now());
    let (service, bus_out, gone) = (spec.name.clone(), bus.clone(), over.0.clone());
    let publish = move |container: Option<String>, ports: Vec<String>| {
        bus_out.publish(Event::ServiceStarted { service, replica, attempt, pid, container, started_at, ports });
    };
    match &spec.runner {
        Runner::Process(_) => publish(None, Vec::new()),
        Runner::Container(run) => {
            let ports = run.ports.iter().map(|p| fill_replica(p, replica)).collect();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut id = None;
                while let Some(file) = cid_file.as_ref().filter(|_| id.is_none() && Instant::now() < deadline) {
                    if gone.load(Ordering::Relaxed) {
                        return;
                    }
                    let text = crate::fs::no_follow::read_regular(file).unwrap_or_default();
                    let text = String::from_utf8_lossy(&text);
                    match text.trim() {
                        t if t.len() >= 12 => id = Some(t.chars().take(12).collect()),
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                if !gone.load(Ordering::Relaxed) {
                    publish(id, ports);
                }
            });
        }
    }
    over
}

/// Dropped when an attempt's loop ends: what it started late (the container ID's query)
/// publishes nothing after that.
struct AttemptOver(Arc<std::sync::atomic::AtomicBool>);

impl Drop for AttemptOver {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a container of a service with sync rules still needs once it runs: the paths
/// synced away removed (a created container cannot run `rm`), and what was synced while it
/// was being created or before kiln counted it as running (the drift's version moved on).
struct AfterStart {
    deletes: Vec<String>,
    drift: Arc<Drift>,
    /// The drift's version it was given.
    version: u64,
}

/// How long after its start a new container watches for files synced meanwhile: longer than
/// the dispatcher takes to count it among the running replicas (then syncs include it).
const AFTER_START_WATCH: Duration = Duration::from_secs(2);

impl AfterStart {
    /// Does it, retrying while the container is not running yet (at most 5 s); what cannot
    /// be done is said in the replica's output.
    async fn run(mut self, name: String, service: String, replica: u32, bus: Arc<EventBus>) {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let version = self.drift.version();
            let newer = (version != self.version).then(|| self.drift.now()).flatten();
            let mut batch = SyncBatch { copies: Vec::new(), deletes: self.deletes.clone() };
            let api = self.drift.api.lock().expect("drift lock is never poisoned").clone();
            if let Some((drift, _, _)) = newer {
                batch.copies = drift.copies;
            }
            if !batch.is_empty() {
                let Some(api) = api else { return };
                let owner =
                    if batch.copies.is_empty() { Ok(Owner::default()) } else { api.container_owner(&name).await };
                let done = match owner {
                    Ok(owner) => apply(&api, &name, &batch, owner, &self.drift.tmp).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match done {
                    Ok(_) => {
                        self.deletes.clear();
                        self.version = version;
                    }
                    // An image without `rm` or `sh` will not have them in a moment either.
                    Err(why) if why.contains("exited with 126") || why.contains("exited with 127") => {
                        last = why;
                        break;
                    }
                    Err(why) => last = why,
                }
            }
            let done = self.deletes.is_empty() && self.version == version;
            if (done && started.elapsed() >= AFTER_START_WATCH)
                || started.elapsed() >= 2 * AFTER_START_WATCH + AFTER_START_WATCH / 2
            {
                if done {
                    return;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bus.publish(Event::ServiceOutput {
            service,
            replica,
            stream: Stream::Stderr,
            line: format!("kiln: the new container does not have every synced change: {last}"),
        });
    }
}

/// Creates a replica's container (`ENGINE create`, with `--replace` for a podman handover),
/// copies the synced files that exist into it, and returns the client that starts it
/// attached (`ENGINE start --attach`) with the container paths of those synced away, to be
/// removed once it runs. A name held by a container this project did not start is refused.
#[expect(clippy::too_many_arguments, reason = "a new container's whole context, passed once")]
async fn create_with_drift(
    run: &ContainerRun,
    spec: &ServiceSpec,
    replica: u32,
    replace: bool,
    api: &EngineApi,
    batch: SyncBatch,
    tmp: &std::path::Path,
    cid_file: Option<&std::path::Path>,
) -> Result<(tokio::process::Command, Vec<String>), Input> {
    let name = run.name(&spec.name, replica);
    if !replace
        && let Ok(Some(why)) = tokio::time::timeout(
            NAME_CHECK,
            run.foreign_holder(run.ask_name_holder(&spec.name, replica), &spec.name, replica),
        )
        .await
    {
        return Err(Input::Refused(why));
    }
    let mut args = run.run_args(spec, replica, cid_file);
    args[0] = "create".into();
    if replace {
        args.insert(1, "--replace".into());
    }
    let mut create = run.client();
    create
        .args(&args)
        .current_dir(&spec.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let created = tokio::time::timeout(CREATE_TIMEOUT, create.output()).await;
    match created {
        Ok(Ok(out)) if out.status.success() => {}
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(Input::StartFailed(format!(
                "cannot create its container: {}",
                err.lines().last().unwrap_or("the engine said nothing")
            )));
        }
        Ok(Err(e)) => return Err(Input::StartFailed(format!("cannot run {}: {e}", run.engine.name()))),
        Err(_) => {
            return Err(Input::StartFailed(format!(
                "`{} create` took over {} s",
                run.engine.name(),
                CREATE_TIMEOUT.as_secs()
            )));
        }
    }
    // Paths gone from the tree are removed once it runs (a created container runs nothing).
    let given = async {
        let owner = api.container_owner(&name).await.map_err(|e| e.to_string())?;
        apply_copies(api, &name, &batch, owner, tmp).await.map_err(|e| e.to_string())
    };
    let gone = match given.await {
        Ok((_, gone)) => gone,
        Err(why) => {
            let engine = run.engine.clone();
            let gone_name = name.clone();
            let _ = tokio::task::spawn_blocking(move || engine.query(&["rm", "-f", "-t", "0", &gone_name])).await;
            return Err(Input::StartFailed(format!("cannot give the new container the synced files: {why}")));
        }
    };
    let mut start = run.client();
    start
        .args(["start", "--attach", &name])
        .current_dir(&spec.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    start.process_group(0);
    Ok((start, gone))
}

/// The longest `ENGINE create` may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// A time no timer reaches.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// `stop_signal` to the process group, `stop_timeout`, then SIGKILL. A container is stopped
/// (and removed) through the engine, which does the same inside it.
async fn stop(spec: &ServiceSpec, replica: u32, child: &mut tokio::process::Child, pid: u32) {
    let timeout = spec.stop_timeout;
    if let Runner::Container(run) = &spec.runner {
        let name = run.name(&spec.name, replica);
        let secs = timeout.as_secs_f64().ceil().to_string();
        let engine = run.engine.clone();
        let stopped = tokio::task::spawn_blocking(move || match engine.kind {
            // One call: stop (its stop signal, then SIGKILL after the timeout) and remove.
            EngineKind::Podman => engine.query(&["rm", "-f", "-t", &secs, &name]),
            // `docker rm -f` kills at once: stop first; `--rm` then removes it.
            EngineKind::Docker => engine.query(&["stop", "-t", &secs, &name]),
        })
        .await;
        if matches!(stopped, Ok(Ok(_))) {
            // The container is gone (podman) or stopped (docker, whose `--rm` removes it):
            // its client has nothing left to do but notice; the next one need not wait.
            if run.engine.kind == EngineKind::Podman {
                signal_group(pid, Signal::SIGKILL);
            }
            if tokio::time::timeout(timeout + Duration::from_secs(5), child.wait()).await.is_ok() {
                signal_group(pid, Signal::SIGKILL);
                return;
            }
        }
    } else {
        signal_group(pid, spec.stop_signal);
        // A stopped process (SIGSTOP, a debugger, Ctrl-Z) handles no signal until it runs
        // again: continued, it gets the stop signal, then the timeout as usual.
        signal_group(pid, Signal::SIGCONT);
    }
    let deadline = Instant::now() + timeout;
    if tokio::time::timeout(timeout, child.wait()).await.is_err() {
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // `sh -c ./worker.sh` may be gone while the worker it started still handles the stop
    // signal: the rest of the group gets what is left of `stop_timeout` before SIGKILL.
    while group_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal_group(pid, Signal::SIGKILL);
}
