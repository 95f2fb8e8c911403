//! What one replica does next, as a pure state machine: `State` + [`ReplicaState::step`].
//!
//! In: what its runner observed (the process started, a probe passed or failed, the output
//! matched the log probe, the process exited) and what it was told (a new build to serve,
//! stop), with the time. Out: the phase to publish (with its reason) and the action for the
//! runner: start the process, stop it, wait out a backoff, or wait for a new build. No I/O
//! and no clock of its own, so every rule is tested with made-up times:
//!
//! - started → `starting`, or `ready` at once without a readiness probe;
//! - a passing probe (or a matching line) → `ready`; `failures` failing probes in a row turn
//!   a ready replica `unhealthy`, and a pass makes it `ready` again;
//! - the liveness probe counts only once it has passed in this attempt (a slow starter is
//!   never killed for not answering yet; readiness says why it is not ready); after that,
//!   its `failures` failures in a row stop the replica (`stopping`, `liveness probe failed:
//!   WHY`) and its exit is a crash like any other: the restart policy, the backoff, a
//!   restart counted;
//! - an exit is decided by the restart policy: `backoff` (1 s doubling to 5 min, the count
//!   reset after 10 min ready), or `completed` / `failed`, which only a new build ends;
//! - a start refused for a reason retrying cannot fix (its container name is held by a
//!   container kiln did not start) → `failed` with that reason, no backoff loop;
//! - a new build restarts it (running, backing off, completed or failed; a replica not yet
//!   started starts when it is begun, and one being stopped for good stays stopped); stop
//!   ends it `stopped`.

use std::time::Duration;

use kiln_config::RestartPolicy;
use tokio::time::Instant;

use crate::event::{Phase, RestartCause};
use crate::supervise::backoff::Backoff;
use crate::supervise::restart_policy::{ExitDecision, on_exit};

/// What the runner observed, or what the replica was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Its process started; `probed` says whether a readiness check (probe or log) applies.
    Started {
        probed: bool,
    },
    /// It could not be started.
    StartFailed(String),
    /// It was not started, and trying again cannot help until something outside kiln
    /// changes (its container name is held by a container this project did not start).
    Refused(String),
    ProbePassed,
    ProbeFailed(String),
    /// The liveness probe passed.
    LivePassed,
    /// The liveness probe failed, and why.
    LiveFailed(String),
    /// An output line matched the `log` probe.
    LogMatched,
    /// Its process exited (`None`: killed by a signal).
    Exited(Option<i32>),
    /// The backoff delay is over.
    BackoffOver,
    /// A new build to serve: restart.
    NewBuild,
    Stop,
}

/// What the runner does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the process (with the newest spec).
    Start,
    /// Stop the running process; its exit comes back as `Exited`.
    Kill,
    /// Wait this long, then send `BackoffOver` (a new build or stop may come first).
    Wait(Duration),
    /// Nothing until a new build or stop.
    Idle,
    /// The replica is over.
    End,
    /// Keep doing what it does.
    Continue,
}

/// A phase change to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseChange {
    pub phase: Phase,
    pub reason: String,
    /// In `backoff`: the delay before the next try.
    pub next_try: Option<Duration>,
    /// On a restart (to `starting`): what caused it.
    pub cause: Option<RestartCause>,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub change: Option<PhaseChange>,
    pub action: Action,
}

/// Why the running process is being stopped: what follows its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Restart,
    End,
    /// Its liveness probe failed: the exit is a crash (restart policy, backoff).
    Recover,
}

#[derive(Debug, Clone)]
pub struct ReplicaState {
    pub phase: Phase,
    /// Restarts after crashes so far (shown in `service.phase`).
    pub restarts: u32,
    policy: RestartPolicy,
    backoff: Backoff,
    /// Failing probes in a row before a ready replica is `unhealthy`.
    failures_allowed: u32,
    failures: u32,
    started_at: Option<Instant>,
    /// Set while the process is being stopped.
    stopping: Option<Then>,
    /// The signal a stop sends (`SIGTERM`), for the reasons.
    stop_signal: &'static str,
    /// How the last crash went (`exited with code 1`), for the reason of the restart.
    last_exit: String,
    /// Why the next stop happens (`scaled down`, `kiln up is stopping`), or the words of
    /// [`ReplicaState::cause`].
    why: &'static str,
    /// What the next restart for a new spec is for (a build, a trigger, a config change).
    cause: RestartCause,
    /// While starting: the last probe failure said, so that each new text is said once.
    last_probe: Option<String>,
    /// Failing liveness probes in a row before the replica is restarted.
    live_allowed: u32,
    live_failures: u32,
    /// The liveness probe passed in this attempt: from then on its failures count.
    live_passed: bool,
    /// The last crash was a liveness restart (for the wording of the reasons).
    killed_for_liveness: bool,
}

impl ReplicaState {
    pub fn new(
        policy: RestartPolicy,
        backoff: Backoff,
        failures_allowed: u32,
        stop_signal: &'static str,
    ) -> ReplicaState {
        ReplicaState {
            phase: Phase::Pending,
            restarts: 0,
            policy,
            backoff,
            failures_allowed: failures_allowed.max(1),
            failures: 0,
            started_at: None,
            stopping: None,
            stop_signal,
            last_exit: String::new(),
            why: "",
            cause: RestartCause::Build,
            last_probe: None,
            live_allowed: 3,
            live_failures: 0,
            live_passed: false,
            killed_for_liveness: false,
        }
    }

    /// Sets how many liveness failures in a row restart it (at least 1).
    pub fn with_liveness(mut self, failures: u32) -> ReplicaState {
        self.live_allowed = failures.max(1);
        self
    }

    fn to(&mut self, phase: Phase, reason: impl Into<String>, next_try: Option<Duration>, action: Action) -> Step {
        self.phase = phase;
        if matches!(action, Action::Start) {
            self.last_probe = None;
        }
        Step { change: Some(PhaseChange { phase, reason: reason.into(), next_try, cause: None }), action }
    }

    /// A restart (to `starting`) for `cause`.
    fn restart(&mut self, reason: String, cause: RestartCause) -> Step {
        let mut step = self.to(Phase::Starting, reason, None, Action::Start);
        if let Some(c) = step.change.as_mut() {
            c.cause = Some(cause);
        }
        step
    }

    fn stay(action: Action) -> Step {
        Step { change: None, action }
    }

    fn running(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Ready | Phase::Unhealthy)
    }

    /// Says why the next `NewBuild` or `Stop` comes (`a new build`, `triggered`, `scaled
    /// down`), for its phase reasons.
    pub fn because(&mut self, why: &'static str) {
        self.why = why;
    }

    /// Says what the next `NewBuild` restarts it for.
    pub fn restart_for(&mut self, cause: RestartCause) {
        self.cause = cause;
        self.why = cause.text();
    }

    /// The first start, once deps and `after` services allow it.
    pub fn begin(&mut self, reason: &str) -> Step {
        self.to(Phase::Starting, reason, None, Action::Start)
    }

    /// Decides what `input`, arriving at `now`, changes. `jitter` in 0..1 spreads backoffs.
    pub fn step(&mut self, input: Input, now: Instant, jitter: f64) -> Step {
        match input {
            // A start that arrives while it is being stopped changes nothing: it is not ready.
            Input::Started { .. } if self.stopping.is_some() => Self::stay(Action::Continue),
            Input::Started { probed } => {
                self.started_at = Some(now);
                self.failures = 0;
                self.live_failures = 0;
                self.live_passed = false;
                if probed {
                    Self::stay(Action::Continue)
                } else {
                    self.to(Phase::Ready, "running (no readiness probe)", None, Action::Continue)
                }
            }
            Input::StartFailed(why) => match self.stopping.take() {
                Some(Then::End) => self.to(Phase::Stopped, self.stopped_reason(), None, Action::End),
                // Nothing ran, so nothing was ready: no reset of the backoff.
                Some(Then::Restart | Then::Recover) | None => {
                    self.started_at = None;
                    let step = self.exited(Some(127), &why, now, jitter);
                    // The backoff's (or failure's) reason said why; the restart's says what.
                    self.last_exit = "could not start".to_string();
                    step
                }
            },
            Input::Refused(why) => match self.stopping.take() {
                Some(Then::End) => self.to(Phase::Stopped, self.stopped_reason(), None, Action::End),
                Some(Then::Restart | Then::Recover) | None => {
                    self.started_at = None;
                    self.last_exit = why.clone();
                    self.to(Phase::Failed, why, None, Action::Idle)
                }
            },
            Input::ProbePassed | Input::LogMatched if self.running() && self.stopping.is_none() => {
                self.failures = 0;
                if self.phase == Phase::Ready {
                    return Self::stay(Action::Continue);
                }
                let why = if input == Input::LogMatched {
                    "its output matched the log probe"
                } else {
                    "readiness probe passed"
                };
                self.to(Phase::Ready, why, None, Action::Continue)
            }
            // Not ready yet: why is the reason (`http://127.0.0.1:8080/health: connection
            // refused`), said when it changes.
            Input::ProbeFailed(why) if self.phase == Phase::Starting && self.stopping.is_none() => {
                if self.last_probe.as_deref() == Some(why.as_str()) {
                    return Self::stay(Action::Continue);
                }
                self.last_probe = Some(why.clone());
                self.to(Phase::Starting, why, None, Action::Continue)
            }
            Input::ProbeFailed(why) if self.running() && self.stopping.is_none() => {
                self.failures += 1;
                if self.phase == Phase::Ready && self.failures >= self.failures_allowed {
                    let reason = format!("readiness probe failed {} times: {why}", self.failures);
                    return self.to(Phase::Unhealthy, reason, None, Action::Continue);
                }
                Self::stay(Action::Continue)
            }
            Input::ProbePassed | Input::LogMatched | Input::ProbeFailed(_) => Self::stay(Action::Continue),
            Input::LivePassed if self.running() && self.stopping.is_none() => {
                self.live_passed = true;
                self.live_failures = 0;
                Self::stay(Action::Continue)
            }
            // Before its first pass a failure does not count: it may still be starting.
            Input::LiveFailed(why) if self.running() && self.stopping.is_none() && self.live_passed => {
                self.live_failures += 1;
                if self.live_failures < self.live_allowed {
                    return Self::stay(Action::Continue);
                }
                self.stopping = Some(Then::Recover);
                self.last_exit = format!("liveness probe failed: {why}");
                let reason = self.last_exit.clone();
                self.to(Phase::Stopping, reason, None, Action::Kill)
            }
            Input::LivePassed | Input::LiveFailed(_) => Self::stay(Action::Continue),
            Input::Exited(code) => match self.stopping.take() {
                Some(Then::Restart) => {
                    let reason = format!("restarted for {}", self.restart_cause());
                    self.restart(reason, self.cause)
                }
                Some(Then::End) => self.to(Phase::Stopped, self.stopped_reason(), None, Action::End),
                // Killed by kiln because it stopped answering: a crash, whatever its code.
                // The first such restart (since it was last ready for 10 min) is at once, as
                // Kubernetes does: a hung server is back within interval × failures + its
                // start; a server that keeps hanging backs off from the second.
                Some(Then::Recover) => {
                    let how = std::mem::take(&mut self.last_exit);
                    let ready_for = self.started_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                    let first = self.backoff.after_ready(self.restarts, ready_for) == 0;
                    let step = self.exited(None, &how, now, jitter);
                    self.killed_for_liveness = true;
                    if first && self.phase == Phase::Backoff {
                        self.restarts = 1;
                        let reason = format!("restart 1 after its {how}");
                        return self.restart(reason, RestartCause::Liveness);
                    }
                    step
                }
                None => {
                    let how =
                        code.map_or_else(|| "killed by a signal".to_string(), |c| format!("exited with code {c}"));
                    self.exited(code, &how, now, jitter)
                }
            },
            Input::BackoffOver if self.phase == Phase::Backoff => {
                let whose = if self.killed_for_liveness { "its" } else { "it" };
                let reason = format!("restart {} after {whose} {}", self.restarts, self.last_exit);
                let cause = if self.killed_for_liveness { RestartCause::Liveness } else { RestartCause::Crash };
                self.restart(reason, cause)
            }
            Input::BackoffOver => Self::stay(Action::Continue),
            Input::NewBuild => {
                if self.stopping == Some(Then::End) || matches!(self.phase, Phase::Pending | Phase::Stopped) {
                    // Being stopped for good, not started yet, or over: a build changes none.
                    Self::stay(Action::Continue)
                } else if self.stopping.is_some() {
                    // Being restarted already (for a build, or by its liveness probe, whose
                    // next start takes the newest spec).
                    Self::stay(Action::Continue)
                } else if self.running() {
                    self.stopping = Some(Then::Restart);
                    let reason = format!("restarting for {}", self.restart_cause());
                    self.to(Phase::Stopping, reason, None, Action::Kill)
                } else {
                    let reason = format!("restarted for {}", self.restart_cause());
                    self.restart(reason, self.cause)
                }
            }
            Input::Stop => {
                if self.running() || self.stopping.is_some() {
                    self.stopping = Some(Then::End);
                    let reason = match self.why {
                        "" => format!("sent {}", self.stop_signal),
                        why => format!("{why}: sent {}", self.stop_signal),
                    };
                    self.to(Phase::Stopping, reason, None, Action::Kill)
                } else {
                    self.to(Phase::Stopped, self.stopped_reason(), None, Action::End)
                }
            }
        }
    }

    fn restart_cause(&self) -> &'static str {
        if self.why.is_empty() { "a new build" } else { self.why }
    }

    /// Why it is `stopped`: what stopped it (`kiln up is stopping`, `scaled down`).
    fn stopped_reason(&self) -> String {
        if self.why.is_empty() { "stopped by kiln".to_string() } else { self.why.to_string() }
    }

    /// The process ended on its own: the restart policy decides.
    fn exited(&mut self, code: Option<i32>, how: &str, now: Instant, jitter: f64) -> Step {
        self.last_exit = how.to_string();
        self.killed_for_liveness = false;
        let ready_for = self.started_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        match on_exit(self.policy, code) {
            ExitDecision::Completed => self.to(Phase::Completed, how, None, Action::Idle),
            ExitDecision::Failed => self.to(Phase::Failed, format!("{how}; restart = \"never\""), None, Action::Idle),
            ExitDecision::Restart => {
                self.restarts = self.backoff.after_ready(self.restarts, ready_for);
                let delay = self.backoff.delay(self.restarts, jitter);
                self.restarts += 1;
                let reason = format!("{how}; restart {} in {}", self.restarts, kiln_config::format_duration(delay));
                self.to(Phase::Backoff, reason, Some(delay), Action::Wait(delay))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(policy: RestartPolicy) -> ReplicaState {
        ReplicaState::new(policy, Backoff { jitter: 0.0, ..Backoff::default() }, 3, "SIGTERM")
    }

    fn phase(step: &Step) -> Option<Phase> {
        step.change.as_ref().map(|c| c.phase)
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_loop_backs_off_and_resets_after_ten_minutes_ready() {
        let mut r = state(RestartPolicy::OnFailure);
        let mut now = Instant::now();
        assert_eq!(r.begin("deps are built").action, Action::Start);
        let mut delays = Vec::new();
        for _ in 0..4 {
            r.step(Input::Started { probed: false }, now, 0.0);
            let s = r.step(Input::Exited(Some(1)), now, 0.0);
            assert_eq!(phase(&s), Some(Phase::Backoff));
            let Action::Wait(d) = s.action else { panic!("waits: {s:?}") };
            delays.push(d.as_secs());
            now += d;
            assert_eq!(r.step(Input::BackoffOver, now, 0.0).action, Action::Start);
        }
        assert_eq!(delays, vec![1, 2, 4, 8]);
        assert_eq!(r.restarts, 4);
        r.step(Input::Started { probed: false }, now, 0.0);
        now += Duration::from_secs(600);
        let s = r.step(Input::Exited(Some(1)), now, 0.0);
        assert_eq!(s.action, Action::Wait(Duration::from_secs(1)), "ten minutes up: from 1 s again");
    }

    #[tokio::test(start_paused = true)]
    async fn restart_never_ends_completed_or_failed_until_a_new_build() {
        let now = Instant::now();
        let mut ok = state(RestartPolicy::Never);
        ok.begin("go");
        ok.step(Input::Started { probed: false }, now, 0.0);
        let s = ok.step(Input::Exited(Some(0)), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Completed), Action::Idle));
        let mut bad = state(RestartPolicy::Never);
        bad.begin("go");
        let s = bad.step(Input::Exited(Some(2)), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Failed), Action::Idle));
        let s = bad.step(Input::NewBuild, now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Starting), Action::Start));
    }

    #[tokio::test(start_paused = true)]
    async fn probes_gate_ready_and_failures_in_a_row_make_it_unhealthy() {
        let now = Instant::now();
        let mut r = state(RestartPolicy::Always);
        r.begin("go");
        assert_eq!(r.step(Input::Started { probed: true }, now, 0.0).change, None, "starting until a probe passes");
        let s = r.step(Input::ProbeFailed("refused".into()), now, 0.0);
        assert_eq!(
            s.change.map(|c| (c.phase, c.reason)),
            Some((Phase::Starting, "refused".to_string())),
            "why not ready yet"
        );
        assert_eq!(r.step(Input::ProbeFailed("refused".into()), now, 0.0).change, None, "said once");
        assert_eq!(phase(&r.step(Input::ProbePassed, now, 0.0)), Some(Phase::Ready));
        assert_eq!(phase(&r.step(Input::ProbeFailed("a".into()), now, 0.0)), None);
        assert_eq!(phase(&r.step(Input::ProbeFailed("b".into()), now, 0.0)), None);
        let s = r.step(Input::ProbeFailed("connection refused".into()), now, 0.0);
        assert_eq!(phase(&s), Some(Phase::Unhealthy));
        assert!(s.change.expect("changed").reason.contains("failed 3 times: connection refused"));
        assert_eq!(phase(&r.step(Input::ProbePassed, now, 0.0)), Some(Phase::Ready));
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_failures_count_after_its_first_pass_and_restart_it_with_the_backoff() {
        let mut now = Instant::now();
        let mut r = state(RestartPolicy::OnFailure).with_liveness(3);
        r.begin("go");
        r.step(Input::Started { probed: true }, now, 0.0);
        // A slow starter: its liveness probe fails before it ever passed; nothing counts.
        for _ in 0..10 {
            assert_eq!(
                r.step(Input::LiveFailed("refused".into()), now, 0.0),
                Step { change: None, action: Action::Continue }
            );
        }
        r.step(Input::ProbePassed, now, 0.0);
        r.step(Input::LivePassed, now, 0.0);
        now += Duration::from_secs(1);
        // Two failures, a pass: the count starts again.
        r.step(Input::LiveFailed("a".into()), now, 0.0);
        r.step(Input::LiveFailed("b".into()), now, 0.0);
        r.step(Input::LivePassed, now, 0.0);
        r.step(Input::LiveFailed("c".into()), now, 0.0);
        assert_eq!(r.step(Input::LiveFailed("d".into()), now, 0.0).change, None);
        let s = r.step(Input::LiveFailed("no answer within 200ms".into()), now, 0.0);
        assert_eq!(s.action, Action::Kill);
        let c = s.change.expect("stopping");
        assert_eq!((c.phase, c.reason.as_str()), (Phase::Stopping, "liveness probe failed: no answer within 200ms"));
        assert_eq!(r.step(Input::LiveFailed("e".into()), now, 0.0).change, None, "being stopped: said once");
        // Its exit after kiln's stop signal is a crash, counted; the first one restarts at once.
        let s = r.step(Input::Exited(Some(143)), now, 0.0);
        assert_eq!(s.action, Action::Start);
        let c = s.change.expect("starting");
        assert_eq!((c.phase, c.cause), (Phase::Starting, Some(RestartCause::Liveness)));
        assert_eq!(c.reason, "restart 1 after its liveness probe failed: no answer within 200ms");
        assert_eq!(r.restarts, 1);
        // The new attempt starts over: its failures count only after its own first pass.
        r.step(Input::Started { probed: true }, now, 0.0);
        for _ in 0..5 {
            assert_eq!(r.step(Input::LiveFailed("refused".into()), now, 0.0).change, None);
        }
        // Hung again soon after: now it backs off.
        r.step(Input::LivePassed, now, 0.0);
        for _ in 0..3 {
            r.step(Input::LiveFailed("refused".into()), now, 0.0);
        }
        let s = r.step(Input::Exited(Some(143)), now, 0.0);
        assert_eq!(s.action, Action::Wait(Duration::from_secs(2)));
        let c = s.change.expect("backoff");
        assert_eq!(
            (c.phase, c.reason.as_str()),
            (Phase::Backoff, "liveness probe failed: refused; restart 2 in 2.00s")
        );
        now += Duration::from_secs(2);
        let s = r.step(Input::BackoffOver, now, 0.0);
        let c = s.change.expect("starting");
        assert_eq!(c.reason, "restart 2 after its liveness probe failed: refused");
        assert_eq!(c.cause, Some(RestartCause::Liveness));
    }

    #[tokio::test(start_paused = true)]
    async fn a_liveness_restart_honours_restart_never_and_a_stop_meanwhile() {
        let now = Instant::now();
        let mut r = state(RestartPolicy::Never).with_liveness(1);
        r.begin("go");
        r.step(Input::Started { probed: false }, now, 0.0);
        r.step(Input::LivePassed, now, 0.0);
        assert_eq!(r.step(Input::LiveFailed("x".into()), now, 0.0).action, Action::Kill);
        let s = r.step(Input::Exited(None), now, 0.0);
        assert_eq!(phase(&s), Some(Phase::Failed));
        assert_eq!(s.change.expect("failed").reason, "liveness probe failed: x; restart = \"never\"");
        // A stop while the liveness restart's stop runs: it ends stopped.
        let mut r = state(RestartPolicy::Always).with_liveness(1);
        r.begin("go");
        r.step(Input::Started { probed: false }, now, 0.0);
        r.step(Input::LivePassed, now, 0.0);
        r.step(Input::LiveFailed("x".into()), now, 0.0);
        r.step(Input::Stop, now, 0.0);
        let s = r.step(Input::Exited(None), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Stopped), Action::End));
        assert_eq!(r.restarts, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_build_restarts_and_stop_ends_without_a_restart() {
        let now = Instant::now();
        let mut r = state(RestartPolicy::Always);
        r.begin("go");
        r.step(Input::Started { probed: false }, now, 0.0);
        let s = r.step(Input::NewBuild, now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Stopping), Action::Kill));
        let s = r.step(Input::Exited(None), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Starting), Action::Start), "a stop it asked for is no crash");
        assert_eq!(r.restarts, 0);
        r.step(Input::Started { probed: false }, now, 0.0);
        let s = r.step(Input::Stop, now, 0.0);
        assert_eq!(s.action, Action::Kill);
        let s = r.step(Input::Exited(Some(143)), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Stopped), Action::End));
        // Stop while backing off: no process to kill.
        let mut b = state(RestartPolicy::Always);
        b.begin("go");
        b.step(Input::Exited(Some(1)), now, 0.0);
        let s = b.step(Input::Stop, now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Stopped), Action::End));
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_stopped_for_good_is_not_brought_back_by_a_new_build() {
        let now = Instant::now();
        let mut r = state(RestartPolicy::Always);
        r.begin("go");
        r.step(Input::Started { probed: false }, now, 0.0);
        assert_eq!(r.step(Input::Stop, now, 0.0).action, Action::Kill, "a scale-down stops it");
        let s = r.step(Input::NewBuild, now, 0.0);
        assert_eq!((s.change, s.action), (None, Action::Continue), "a roll meanwhile changes nothing");
        let s = r.step(Input::Exited(None), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Stopped), Action::End));
        assert_eq!(r.step(Input::NewBuild, now, 0.0).change, None, "stopped stays stopped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_reported_after_a_stop_does_not_make_it_ready() {
        let now = Instant::now();
        let mut r = state(RestartPolicy::Always);
        r.begin("go");
        assert_eq!(r.step(Input::Stop, now, 0.0).action, Action::Kill);
        let s = r.step(Input::Started { probed: false }, now, 0.0);
        assert_eq!(s.change, None, "not ready: it is being stopped");
        let s = r.step(Input::Exited(None), now, 0.0);
        assert_eq!(phase(&s), Some(Phase::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_start_honours_a_pending_stop_and_does_not_reset_the_backoff() {
        let mut now = Instant::now();
        let mut r = state(RestartPolicy::Always);
        r.begin("go");
        r.step(Input::Started { probed: false }, now, 0.0);
        now += Duration::from_secs(3600);
        assert_eq!(r.step(Input::Exited(Some(1)), now, 0.0).action, Action::Wait(Duration::from_secs(1)));
        r.step(Input::BackoffOver, now, 0.0);
        // The next start fails at once, an hour after the last good start: still backing off.
        let s = r.step(Input::StartFailed("the network x does not exist".into()), now, 0.0);
        assert_eq!(s.action, Action::Wait(Duration::from_secs(2)), "the count is not reset by a start that never ran");
        assert_eq!(s.change.expect("backoff").reason, "the network x does not exist; restart 2 in 2.00s");
        // Said once, by the backoff; the restart reads as a sentence.
        let s = r.step(Input::BackoffOver, now, 0.0);
        assert_eq!(s.change.expect("starting").reason, "restart 2 after it could not start");
        assert_eq!(r.step(Input::Stop, now, 0.0).action, Action::Kill);
        let s = r.step(Input::StartFailed("cannot start".into()), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Stopped), Action::End), "the stop wins");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_start_fails_without_a_backoff_loop_until_a_new_build() {
        let now = Instant::now();
        let mut r = state(RestartPolicy::Always);
        r.begin("go");
        let s = r.step(Input::Refused("container name x is taken".into()), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Failed), Action::Idle));
        assert_eq!(s.change.expect("failed").reason, "container name x is taken");
        assert_eq!(r.restarts, 0, "no restart is counted");
        assert_eq!(r.step(Input::BackoffOver, now, 0.0).change, None, "nothing is scheduled");
        let s = r.step(Input::NewBuild, now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Starting), Action::Start), "a new build tries again");
        assert_eq!(r.step(Input::Stop, now, 0.0).action, Action::Kill);
        let s = r.step(Input::Refused("taken".into()), now, 0.0);
        assert_eq!((phase(&s), s.action), (Some(Phase::Stopped), Action::End), "a pending stop wins");
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_not_yet_begun_waits_for_its_start_whatever_happens() {
        let now = Instant::now();
        let mut r = state(RestartPolicy::Always);
        assert_eq!(r.step(Input::NewBuild, now, 0.0).change, None);
        assert_eq!(r.step(Input::BackoffOver, now, 0.0).change, None);
        assert_eq!(phase(&r.begin("deps are built")), Some(Phase::Starting));
    }

    #[tokio::test(start_paused = true)]
    async fn reasons_name_why_it_restarts_or_stops() {
        let now = Instant::now();
        let mut r = state(RestartPolicy::Always);
        r.begin("go");
        r.step(Input::Started { probed: false }, now, 0.0);
        r.restart_for(RestartCause::Trigger);
        let s = r.step(Input::NewBuild, now, 0.0);
        let c = s.change.expect("stopping");
        assert_eq!((c.reason.as_str(), c.cause), ("restarting for `kiln trigger`", None), "not restarted yet");
        let s = r.step(Input::Exited(None), now, 0.0);
        let c = s.change.expect("starting");
        assert_eq!((c.reason.as_str(), c.cause), ("restarted for `kiln trigger`", Some(RestartCause::Trigger)));
        r.step(Input::Started { probed: false }, now, 0.0);
        // It crashes: the restart after the backoff is for the crash, not the trigger.
        let s = r.step(Input::Exited(Some(1)), now, 0.0);
        assert_eq!(phase(&s), Some(Phase::Backoff));
        let c = r.step(Input::BackoffOver, now + Duration::from_secs(5), 0.0).change.expect("starting");
        assert_eq!((c.reason.as_str(), c.cause), ("restart 1 after it exited with code 1", Some(RestartCause::Crash)));
        assert_eq!(r.begin("go").change.expect("starting").cause, None, "a first start is no restart");
        r.step(Input::Started { probed: false }, now, 0.0);
        r.because("scaled down");
        assert_eq!(r.step(Input::Stop, now, 0.0).change.expect("stopping").reason, "scaled down: sent SIGTERM");
        assert_eq!(r.step(Input::Exited(None), now, 0.0).change.expect("stopped").reason, "scaled down");
    }
}
