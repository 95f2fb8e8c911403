//! One replica of a service (a process or a container), kept in its desired state.
//!
//! A small controller per replica: start the process (`sh -c CMD` in its own process group,
//! dying with kiln, `KILN_REPLICA` set), probe it until ready, watch it; when it exits, the
//! restart policy decides (`restart_policy::on_exit`): back off and start again (1 s doubling
//! to 5 min, reset after 10 min ready), or end as `completed` / `failed`. A failing probe
//! turns a ready replica `unhealthy` after `failures` checks in a row, and `ready` again
//! when it passes. Commands from the supervisor: restart (a rolling reload) and stop
//! (`stop_signal` to the group, `stop_timeout`, then SIGKILL). Every phase change is a
//! `service.phase` event, and every output line a `service.output` event.
//!
//! A container replica is the same controller around the engine's client: `ENGINE run
//! --rm --name … IMAGE` in the foreground, so its output is the container's and its exit
//! the container's exit. It is stopped through the engine (`rm -f -t` / `stop -t`), since a
//! signal to the client would only detach it; a `cmd` probe runs in it with `ENGINE exec`;
//! and with podman a restart is one `run --replace`, its probes held until the replaced
//! container's client has exited (until then the old container answers on the ports).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kiln_config::{Probe, ProbeCheck, RestartPolicy};
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::container::engine::{
    Engine, EngineKind, PROJECT_LABEL, SERVICE_LABEL, container_name, exec_words, shell_join,
};
use crate::event::{Event, EventBus, Phase, Stream};
use crate::exec::command::{shell_command, signal_group};
use crate::supervise::backoff::{Backoff, jitter_unit};
use crate::supervise::replica_state::{Action, Input, ReplicaState, Step};

/// How often a replica checks that its process still exists.
const SWEEP: Duration = Duration::from_secs(5);

/// What a replica runs and how it is kept.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub runner: Runner,
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub restart: RestartPolicy,
    pub probe: Option<Probe>,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub backoff: Backoff,
}

/// A process, or a container run in the foreground by the engine's CLI.
#[derive(Debug, Clone)]
pub enum Runner {
    /// `sh -c CMD`.
    Process(String),
    Container(ContainerRun),
}

/// A container replica: `ENGINE run --rm --name kiln-<project>-<service>-<replica> …`. Its
/// output is the client's, its exit the client's exit; it is stopped with `ENGINE stop`,
/// since a signal to the client would only detach it.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    pub engine: Engine,
    pub image: String,
    /// Built by an image target: the engine has it, and must not try to pull it.
    pub local: bool,
    /// The `kiln.project` label.
    pub project: String,
    pub root: PathBuf,
    /// `HOST:CONTAINER` (or with an address); `${KILN_REPLICA}` is filled in.
    pub ports: Vec<String>,
    /// `./data:/data`: a host path relative to the root, or a named volume.
    pub volumes: Vec<String>,
    pub command: Option<String>,
}

impl ContainerRun {
    fn name(&self, service: &str, replica: u32) -> String {
        container_name(&self.root, service, replica)
    }

    /// The `ENGINE run` invocation of one replica.
    fn run_args(&self, spec: &ServiceSpec, replica: u32) -> Vec<String> {
        let fill = |t: &str| fill_replica(t, replica);
        let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), self.name(&spec.name, replica)];
        args.extend(["--label".into(), format!("{PROJECT_LABEL}={}", self.project)]);
        args.extend(["--label".into(), format!("{SERVICE_LABEL}={}", spec.name)]);
        args.extend(["--restart=no".into(), "--stop-signal".into(), spec.stop_signal.as_str().to_string()]);
        let secs = spec.stop_timeout.as_secs_f64().ceil().to_string();
        args.extend(["--stop-timeout".into(), secs]);
        args.extend(["-e".into(), format!("KILN_REPLICA={replica}")]);
        for (k, v) in &spec.env {
            args.extend(["-e".into(), format!("{k}={v}")]);
        }
        for p in &self.ports {
            args.extend(["-p".into(), fill(p)]);
        }
        for v in &self.volumes {
            let v = fill(v);
            let host_path = v.starts_with('.') || v.starts_with('/');
            let v = match v.split_once(':') {
                Some((host, rest)) if host_path => format!("{}:{rest}", self.root.join(host).display()),
                _ => v,
            };
            args.extend(["-v".into(), v]);
        }
        if self.local {
            args.push("--pull=never".into());
        }
        args.push(self.image.clone());
        if let Some(cmd) = &self.command {
            args.extend(exec_words(&fill(cmd)));
        }
        args
    }
}

impl ServiceSpec {
    /// The image a container service runs.
    pub fn image(&self) -> Option<&str> {
        match &self.runner {
            Runner::Container(c) => Some(&c.image),
            Runner::Process(_) => None,
        }
    }
}

/// `text` with `${KILN_REPLICA}` (or `$KILN_REPLICA`) replaced by the replica's number: how
/// probes, ports, volumes and container commands name their replica.
fn fill_replica(text: &str, replica: u32) -> String {
    let n = replica.to_string();
    text.replace("${KILN_REPLICA}", &n).replace("$KILN_REPLICA", &n)
}

/// Orders from the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop the running process and start a new one (a new build to serve).
    Restart,
    Stop,
}

struct Ctx {
    spec: Arc<ServiceSpec>,
    /// The latest spec: a container service gets a new image with each build.
    latest: watch::Receiver<Arc<ServiceSpec>>,
    replica: u32,
    /// The service's desired replica count, shown with every phase.
    desired: Arc<AtomicU32>,
    bus: Arc<EventBus>,
    phase: watch::Sender<Phase>,
    /// What the replica does next: the pure decisions.
    state: ReplicaState,
    /// A podman container being replaced: its client, reaped once the new container (run
    /// with `--replace`, which stops and removes it) has started.
    handover: Option<(tokio::process::Child, u32)>,
}

impl Ctx {
    /// Feeds an input to the state machine, publishes the phase change it makes, and
    /// returns the action.
    fn step(&mut self, input: Input) -> Action {
        let step = self.state.step(input, Instant::now(), jitter_unit());
        self.publish(step)
    }

    fn publish(&mut self, step: Step) -> Action {
        if let Some(change) = step.change {
            self.phase.send_replace(change.phase);
            self.bus.publish(Event::ServicePhase {
                service: self.spec.name.clone(),
                replica: self.replica,
                phase: change.phase,
                reason: change.reason,
                restarts: self.state.restarts,
                next_try_ms: change.next_try.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                image: self.spec.image().map(str::to_string),
                replicas: self.desired.load(Ordering::Relaxed),
            });
        }
        step.action
    }
}

/// The input a control from the supervisor is.
fn input_of(control: Option<Control>) -> Input {
    match control {
        Some(Control::Restart) => Input::NewBuild,
        Some(Control::Stop) | None => Input::Stop,
    }
}

/// Runs the replica until told to stop; returns when its process is gone. The decisions are
/// [`ReplicaState::step`]'s; this is the runner that carries them out.
pub async fn run_replica(
    latest: watch::Receiver<Arc<ServiceSpec>>,
    replica: u32,
    desired: Arc<AtomicU32>,
    mut control: mpsc::UnboundedReceiver<Control>,
    bus: Arc<EventBus>,
    phase: watch::Sender<Phase>,
) {
    let spec = latest.borrow().clone();
    let failures = spec.probe.as_ref().map_or(3, |p| p.failures);
    let state = ReplicaState::new(spec.restart, spec.backoff, failures);
    let mut ctx = Ctx { spec, latest, replica, desired, bus, phase, state, handover: None };
    let first = ctx.state.begin("deps are built");
    let mut action = ctx.publish(first);
    loop {
        action = match action {
            Action::Start => {
                ctx.spec = ctx.latest.borrow().clone();
                run_once(&mut ctx, &mut control).await
            }
            Action::Wait(delay) => tokio::select! {
                () = tokio::time::sleep(delay) => ctx.step(Input::BackoffOver),
                c = control.recv() => ctx.step(input_of(c)),
            },
            Action::Idle => {
                let c = control.recv().await;
                ctx.step(input_of(c))
            }
            Action::End => return,
            // Only a running process is killed or continued: `run_once` handles both.
            Action::Kill | Action::Continue => return,
        };
    }
}

/// Starts the process and supervises it until it exits or a control arrives.
async fn run_once(ctx: &mut Ctx, control: &mut mpsc::UnboundedReceiver<Control>) -> Action {
    let spec = ctx.spec.clone();
    let mut command = match &spec.runner {
        Runner::Process(cmd) => {
            let mut command = shell_command(cmd, &spec.dir, &spec.env);
            command.env("KILN_REPLICA", ctx.replica.to_string());
            command
        }
        Runner::Container(c) => {
            let mut command = tokio::process::Command::new(&c.engine.program);
            let mut args = c.run_args(&spec, ctx.replica);
            if ctx.handover.is_some() {
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
    let spawned = command.spawn();
    let mut replaced = ctx.handover.take();
    if spawned.is_err()
        && let Some((mut old, old_pid)) = replaced.take()
    {
        stop(ctx, &mut old, old_pid).await;
    }
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let why = format!("cannot start {what}: {e}");
            ctx.bus.publish(Event::ServiceOutput {
                service: spec.name.clone(),
                replica: ctx.replica,
                stream: Stream::Stderr,
                line: format!("kiln: {why}"),
            });
            return ctx.step(Input::StartFailed(why));
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
    let _group = matches!(spec.runner, Runner::Process(_)).then(|| crate::exec::watchdog::GroupGuard::new(pid));

    // Output lines become events; a `log` probe watches them for its pattern.
    let (log_ready_tx, mut log_ready) = mpsc::unbounded_channel::<()>();
    let pattern = match spec.probe.as_ref().map(|p| &p.check) {
        Some(ProbeCheck::Log(re)) => regex::Regex::new(re).ok().or_else(|| regex::Regex::new(&regex::escape(re)).ok()),
        _ => None,
    };
    for (reader, stream) in [
        (child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), Stream::Stdout),
        (child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), Stream::Stderr),
    ] {
        let Some(reader) = reader else { continue };
        let bus = ctx.bus.clone();
        let (service, replica) = (spec.name.clone(), ctx.replica);
        let pattern = pattern.clone();
        let tx = log_ready_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if pattern.as_ref().is_some_and(|p| p.is_match(&line)) {
                    let _ = tx.send(());
                }
                bus.publish(Event::ServiceOutput { service: service.clone(), replica, stream, line });
            }
        });
    }
    drop(log_ready_tx);

    // A probe may name the replica (`http://127.0.0.1:808${KILN_REPLICA}/health`).
    // A container's `cmd` probe runs inside it.
    let probe = spec.probe.clone().map(|mut p| {
        let fill = |t: &str| fill_replica(t, ctx.replica);
        p.check = match p.check {
            ProbeCheck::Http(u) => ProbeCheck::Http(fill(&u)),
            ProbeCheck::Tcp(a) => ProbeCheck::Tcp(fill(&a)),
            ProbeCheck::Cmd(c) => ProbeCheck::Cmd(match &spec.runner {
                Runner::Process(_) => fill(&c),
                Runner::Container(run) => {
                    let mut words = vec![
                        run.engine.program.display().to_string(),
                        "exec".into(),
                        run.name(&spec.name, ctx.replica),
                    ];
                    words.extend(exec_words(&fill(&c)));
                    shell_join(&words)
                }
            }),
            ProbeCheck::Log(l) => ProbeCheck::Log(l),
        };
        p
    });
    let mut ready = probe.is_none();
    ctx.step(Input::Started { probed: !ready });
    let mut next_probe = Instant::now();
    // The periodic sweep: a process that vanished without its exit reaching us (it cannot
    // be waited for any more) is treated as exited.
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let probing = probe.as_ref().filter(|p| !matches!(p.check, ProbeCheck::Log(_)));
        tokio::select! {
            status = child.wait() => {
                signal_group(pid, Signal::SIGKILL);
                let code = status.ok().and_then(|s| s.code());
                return ctx.step(Input::Exited(code));
            }
            c = control.recv() => {
                let restart = c == Some(Control::Restart);
                if ctx.step(input_of(c)) != Action::Kill {
                    continue;
                }
                if restart && matches!(&spec.runner, Runner::Container(r) if r.engine.kind == EngineKind::Podman) {
                    // One engine call instead of two: the next `podman run --replace` stops
                    // (stop signal, stop timeout) and removes this container.
                    ctx.handover = Some((child, pid));
                    return ctx.step(Input::Exited(None));
                }
                stop(ctx, &mut child, pid).await;
                return ctx.step(Input::Exited(None));
            }
            _ = sweep.tick() => {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    signal_group(pid, Signal::SIGKILL);
                    return ctx.step(Input::Exited(None));
                }
            }
            Some(()) = log_ready.recv(), if !ready => {
                ready = true;
                ctx.step(Input::LogMatched);
            }
            () = &mut old_exit, if !old_gone => {
                old_gone = true;
                next_probe = Instant::now();
            }
            () = tokio::time::sleep_until(next_probe), if probing.is_some() && old_gone => {
                let p = probing.expect("guarded by the branch condition");
                // A period past what the clock can represent probes once.
                next_probe = Instant::now().checked_add(p.period).unwrap_or_else(far_future);
                let connect = p.period.max(Duration::from_millis(100)).min(p.timeout);
                match crate::supervise::probe::check(&p.check, p.timeout, connect, &spec.dir, &spec.env).await {
                    Ok(()) => {
                        ready = true;
                        ctx.step(Input::ProbePassed);
                    }
                    Err(why) => {
                        ctx.step(Input::ProbeFailed(why));
                    }
                }
            }
        }
    }
}

/// A time no timer reaches.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// `stop_signal` to the process group, `stop_timeout`, then SIGKILL. A container is stopped
/// (and removed) through the engine, which does the same inside it.
async fn stop(ctx: &Ctx, child: &mut tokio::process::Child, pid: u32) {
    let timeout = ctx.spec.stop_timeout;
    if let Runner::Container(run) = &ctx.spec.runner {
        let name = run.name(&ctx.spec.name, ctx.replica);
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
        signal_group(pid, ctx.spec.stop_signal);
    }
    if tokio::time::timeout(timeout, child.wait()).await.is_err() {
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    signal_group(pid, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &str, restart: RestartPolicy) -> ServiceSpec {
        ServiceSpec {
            name: "svc".into(),
            runner: Runner::Process(cmd.into()),
            dir: std::env::temp_dir(),
            env: BTreeMap::new(),
            restart,
            probe: None,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(1),
            // The paused clock races ahead while a process runs (to the next timer, again
            // and again), so "ready for 10 minutes" would come true at once: keep the
            // schedule from resetting here; `Backoff::after_ready` has its own test.
            backoff: Backoff { jitter: 0.0, reset_after: Duration::from_secs(365 * 86_400), ..Backoff::default() },
        }
    }

    /// The first `count` phases, with the clock paused: backoff sleeps pass at
    /// once and the schedule is exact.
    async fn phases(spec: ServiceSpec, count: usize) -> Vec<(Phase, u32, Option<u64>)> {
        let bus = Arc::new(EventBus::new());
        let mut rx = bus.subscribe();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (phase_tx, _phase_rx) = watch::channel(Phase::Pending);
        let (_spec_tx, spec_rx) = watch::channel(Arc::new(spec));
        let desired = Arc::new(AtomicU32::new(1));
        let task = tokio::spawn(run_replica(spec_rx, 0, desired, control_rx, bus, phase_tx));
        let mut seen = Vec::new();
        while seen.len() < count {
            let Some(e) = rx.recv().await else { break };
            if let Event::ServicePhase { phase, restarts, next_try_ms, .. } = e.event {
                seen.push((phase, restarts, next_try_ms));
            }
        }
        let _ = control_tx.send(Control::Stop);
        let _ = task.await;
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_loop_backs_off_on_schedule() {
        let seen = phases(spec("exit 1", RestartPolicy::OnFailure), 12).await;
        let backoffs: Vec<(u32, Option<u64>)> =
            seen.iter().filter(|(p, _, _)| *p == Phase::Backoff).map(|(_, r, n)| (*r, *n)).collect();
        assert_eq!(backoffs, vec![(1, Some(1000)), (2, Some(2000)), (3, Some(4000)), (4, Some(8000))]);
    }

    #[tokio::test(start_paused = true)]
    async fn restart_never_ends_completed_or_failed() {
        let ok = phases(spec("exit 0", RestartPolicy::Never), 3).await;
        assert_eq!(
            ok.iter().map(|(p, _, _)| *p).collect::<Vec<_>>(),
            vec![Phase::Starting, Phase::Ready, Phase::Completed]
        );
        let bad = phases(spec("exit 2", RestartPolicy::Never), 3).await;
        assert_eq!(bad.last().map(|(p, _, _)| *p), Some(Phase::Failed));
        let always = phases(spec("exit 0", RestartPolicy::Always), 3).await;
        assert_eq!(always.last().map(|(p, r, _)| (*p, *r)), Some((Phase::Backoff, 1)));
    }
}
