//! Every service of `kiln up` and every replica's state, in one place, owned by the
//! dispatcher.
//!
//! The decisions are pure and live beside it: [`ReplicaState::step`] (what a replica does
//! on a start, a probe result, an exit, a new build, a stop) and [`Rollout`] (rolling
//! restarts, one replica at a time). The service set also keeps the `after` gate: a
//! service's replicas stay `pending` until every replica of each service in its `after`
//! (those the dispatcher passes: the selected ones) has started and is ready. It
//! feeds them what the attempts report ([`Report`]), publishes each phase change as
//! `service.phase`, and carries out the actions: start an attempt, tell it to stop, note a
//! backoff deadline (the dispatcher calls [`ServiceSet::on_deadline`] when it passes).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::event::{Event, EventBus, Phase, RestartCause};
use crate::supervise::backoff::jitter_unit;
use crate::supervise::replica_log::ReplicaLog;
use crate::supervise::replica_runner::{Handover, Order, Report, start_attempt, stop_handover};
use crate::supervise::replica_state::{Action, Input, ReplicaState, Step};
use crate::supervise::rollout::Rollout;
use crate::supervise::service_spec::ServiceSpec;

/// One replica: its state, and the attempt running for it. Its phase says the rest:
/// `pending` until begun, `stopped` once over.
struct Slot {
    state: ReplicaState,
    /// The number of the current attempt; reports of others are stale.
    attempt: u64,
    /// Orders for the running attempt, while one runs.
    orders: Option<mpsc::UnboundedSender<Order>>,
    /// A podman container handed over for the next attempt's `run --replace`.
    handover: Option<Handover>,
    /// In `backoff`: when to try again.
    retry_at: Option<Instant>,
    /// Stopping for good, but wanted again (scaled down, then up before it ended): it starts
    /// afresh once its process is gone.
    revive: bool,
    /// Set while a podman container handed over for a restart is being stopped instead (a
    /// stop overtook the restart): this attempt number reports when it is gone.
    cleanup: Option<u64>,
    /// Why it starts when begun: `deps are built`, or `scaled up`.
    begin_reason: &'static str,
    /// Its current attempt's process or container runs (it reported `Started`).
    started: bool,
    /// The reason of its last phase, for what its dependents wait for.
    reason: String,
}

impl Slot {
    fn waiting(&self) -> bool {
        self.state.phase == Phase::Pending
    }

    /// Over: nothing runs and nothing will.
    fn ended(&self) -> bool {
        self.state.phase == Phase::Stopped && self.cleanup.is_none() && self.orders.is_none()
    }
}

struct Entry {
    /// What the replicas run; `None` for a service that cannot run.
    spec: Option<Arc<ServiceSpec>>,
    desired: u32,
    after: Vec<String>,
    replicas: BTreeMap<u32, Slot>,
    rollout: Option<Rollout>,
    /// Why the rollout restarts replicas, for their phase reasons.
    roll_why: RestartCause,
    /// Being stopped for good (removed from the configuration, or shutdown).
    removing: bool,
    /// The reason its waiting replicas were last given (`waiting for db to be ready`).
    waiting_for: String,
}

/// Why every service stops when `kiln up` ends: the reason of their last phases.
const STOPPING: &str = "kiln up is stopping";

pub struct ServiceSet {
    bus: Arc<EventBus>,
    reports: mpsc::UnboundedSender<Report>,
    services: BTreeMap<String, Entry>,
    /// Services whose rolling restart ended since [`ServiceSet::take_settled`] was last
    /// called, with when the last of their new replicas started.
    settled: Vec<(String, Option<Instant>)>,
}

impl ServiceSet {
    /// The set, and the channel its attempts report on (for the dispatcher to feed back).
    pub fn new(bus: Arc<EventBus>) -> (ServiceSet, mpsc::UnboundedReceiver<Report>) {
        let (reports, rx) = mpsc::unbounded_channel();
        (ServiceSet { bus, reports, services: BTreeMap::new(), settled: Vec::new() }, rx)
    }

    pub fn is_started(&self, name: &str) -> bool {
        self.services.get(name).is_some_and(|e| !e.removing)
    }

    /// Whether a service is still known: running, or being stopped and not yet gone.
    pub fn is_live(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }

    /// How many services are known.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether any service is still known (see [`ServiceSet::is_live`]).
    pub fn any_live(&self) -> bool {
        !self.services.is_empty()
    }

    /// The longest `stop_timeout` of any service: how long a stop may take.
    pub fn longest_stop(&self) -> std::time::Duration {
        self.services.values().filter_map(|e| e.spec.as_ref()).map(|s| s.stop_timeout).max().unwrap_or_default()
    }

    /// The replicas of a service whose process or container runs now (it started; starting,
    /// ready or unhealthy): those a live update copies into, each with its attempt number
    /// (a new number is a new container). One still being created is not among them: it is
    /// given the synced files itself (see `replica_runner::create_with_drift`).
    pub fn running_replicas(&self, name: &str) -> Vec<(u32, u64)> {
        let Some(e) = self.services.get(name).filter(|e| !e.removing) else { return Vec::new() };
        e.replicas
            .iter()
            .filter(|(r, s)| {
                **r < e.desired
                    && s.orders.is_some()
                    && s.started
                    && matches!(s.state.phase, Phase::Starting | Phase::Ready | Phase::Unhealthy)
            })
            .map(|(r, s)| (*r, s.attempt))
            .collect()
    }

    /// Says why about a replica without changing its phase (a live update that failed).
    pub fn note(&mut self, name: &str, replica: u32, reason: String) {
        let Some(phase) = self.services.get(name).and_then(|e| e.replicas.get(&replica)).map(|s| s.state.phase) else {
            return;
        };
        self.publish(name, replica, phase, reason, None, None);
    }

    /// The services whose rolling restart ended since the last call, each with when the last
    /// of its new replicas started.
    pub fn take_settled(&mut self) -> Vec<(String, Option<Instant>)> {
        std::mem::take(&mut self.settled)
    }

    /// Records a service that cannot run, with why, as `failed`.
    pub fn refuse(&mut self, name: &str, replicas: u32, reason: &str) {
        for replica in 0..replicas {
            self.bus.publish(Event::ServicePhase {
                service: name.to_string(),
                replica,
                phase: Phase::Failed,
                reason: reason.to_string(),
                restarts: 0,
                next_try_ms: None,
                image: None,
                replicas,
                cause: None,
            });
        }
        let entry = Entry {
            spec: None,
            desired: replicas,
            after: Vec::new(),
            replicas: BTreeMap::new(),
            rollout: None,
            roll_why: RestartCause::Build,
            removing: false,
            waiting_for: String::new(),
        };
        self.services.insert(name.to_string(), entry);
    }

    /// Starts `replicas` copies of a service once the `after` services are ready.
    pub fn start(&mut self, spec: ServiceSpec, replicas: u32, after: &[String]) {
        let name = spec.name.clone();
        let policy = Policy::of(&spec);
        let slots = (0..replicas).map(|r| (r, new_slot(policy))).collect();
        let entry = Entry {
            spec: Some(Arc::new(spec)),
            desired: replicas,
            after: after.to_vec(),
            replicas: slots,
            rollout: None,
            roll_why: RestartCause::Build,
            removing: false,
            waiting_for: String::new(),
        };
        self.services.insert(name.clone(), entry);
        self.start_waiting();
    }

    /// Gives a running service a new spec (a new image) for its next start.
    pub fn update(&mut self, name: &str, spec: ServiceSpec) {
        if let Some(e) = self.services.get_mut(name).filter(|e| e.spec.is_some()) {
            e.spec = Some(Arc::new(spec));
        }
    }

    /// Restarts a service's replicas one at a time, each after the previous new one is
    /// ready (or has given up), so that it keeps serving throughout.
    /// `why` is the cause its phases name (`restarted for a new build`) and carry.
    pub fn roll(&mut self, name: &str, why: RestartCause) {
        let Some(e) = self.services.get_mut(name).filter(|e| !e.removing) else { return };
        let desired = e.desired;
        let live: Vec<u32> =
            e.replicas.iter().filter(|(r, s)| **r < desired && !s.waiting() && !s.ended()).map(|(r, _)| *r).collect();
        e.roll_why = why;
        e.rollout = Some(Rollout::new(live));
        self.advance_rollout(name);
    }

    /// Changes a running service's replica count: the replicas beyond the new count stop
    /// (the highest first) while the others keep serving, or new ones start beside them.
    pub fn scale(&mut self, name: &str, to: u32) {
        let Some(e) = self.services.get_mut(name).filter(|e| !e.removing) else { return };
        e.desired = to;
        let extra: Vec<u32> = e.replicas.keys().copied().filter(|r| *r >= to).rev().collect();
        if let Some(rollout) = e.rollout.as_mut() {
            extra.iter().for_each(|r| rollout.forget(*r));
        }
        if let Some(spec) = &e.spec {
            let policy = Policy::of(spec);
            for r in 0..to {
                let scaled_up = || Slot { begin_reason: "scaled up", ..new_slot(policy) };
                match e.replicas.get_mut(&r) {
                    None => {
                        e.replicas.insert(r, scaled_up());
                    }
                    // Over already: a new one in its place.
                    Some(slot) if slot.ended() => *slot = scaled_up(),
                    // Still stopping after a scale-down: back once it is gone.
                    Some(slot) if slot.state.phase == Phase::Stopping => slot.revive = true,
                    Some(_) => {}
                }
            }
        }
        for r in extra {
            if let Some(slot) = self.services.get_mut(name).and_then(|e| e.replicas.get_mut(&r)) {
                slot.revive = false;
                slot.state.because("scaled down");
            }
            self.feed(name, r, Input::Stop);
        }
        self.drop_ended(name);
        self.start_waiting();
    }

    /// Stops every replica of a service; it is gone once [`ServiceSet::is_live`] says so.
    /// `why` (`kiln up is stopping`) is the reason its phases give.
    pub fn stop(&mut self, name: &str, why: &'static str) {
        let Some(e) = self.services.get_mut(name) else { return };
        e.removing = true;
        e.rollout = None;
        for slot in e.replicas.values_mut() {
            slot.state.because(why);
        }
        let replicas: Vec<u32> = e.replicas.keys().copied().collect();
        for r in replicas {
            self.feed(name, r, Input::Stop);
        }
        self.drop_ended(name);
    }

    /// Stops every service (`kiln up` ends).
    pub fn stop_all(&mut self) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            self.stop(&name, STOPPING);
        }
    }

    /// Stops, of the services not stopping yet, those no live service waits for in its
    /// `after` (dependents first, the way they were started backwards: a worker stops
    /// before the redis it uses). Called again as services go, it stops the next ones; a
    /// cycle, which kiln.toml cannot have, would stop them all at once. Returns whether any
    /// service is left to stop later.
    pub fn stop_in_order(&mut self) -> bool {
        let waiting: Vec<String> = self.services.iter().filter(|(_, e)| !e.removing).map(|(n, _)| n.clone()).collect();
        let needed = |name: &str| self.services.values().any(|e| e.after.iter().any(|a| a == name));
        let mut now: Vec<String> = waiting.iter().filter(|n| !needed(n)).cloned().collect();
        if now.is_empty() && !waiting.is_empty() && self.services.values().all(|e| !e.removing) {
            now.clone_from(&waiting);
        }
        for name in &now {
            self.stop(name, STOPPING);
        }
        self.services.values().any(|e| !e.removing)
    }

    /// What an attempt saw.
    pub fn on_report(&mut self, report: Report) {
        let Report { service, replica, attempt, observed, handover } = report;
        let Some(slot) = self.services.get_mut(&service).and_then(|e| e.replicas.get_mut(&replica)) else { return };
        if slot.cleanup == Some(attempt) {
            // The handed-over container is gone.
            slot.cleanup = None;
            self.drop_ended(&service);
            return;
        }
        if slot.attempt != attempt {
            return;
        }
        if matches!(observed, Input::Exited(_) | Input::StartFailed(_) | Input::Refused(_)) {
            slot.orders = None;
            slot.handover = handover;
            slot.started = false;
        }
        if matches!(observed, Input::Started { .. }) {
            slot.started = true;
        }
        let input = observed;
        self.feed(&service, replica, input);
        self.drop_ended(&service);
        self.start_waiting();
    }

    /// The earliest time something is due: a backoff ending, a rollout giving up.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .values()
            .flat_map(|e| {
                e.replicas.values().filter_map(|s| s.retry_at).chain(e.rollout.as_ref().and_then(Rollout::deadline))
            })
            .min()
    }

    /// Acts on what is due at `now`.
    pub fn on_deadline(&mut self, now: Instant) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let due: Vec<u32> = self.services[&name]
                .replicas
                .iter()
                .filter(|(_, s)| s.retry_at.is_some_and(|t| t <= now))
                .map(|(r, _)| *r)
                .collect();
            for r in due {
                if let Some(slot) = self.services.get_mut(&name).and_then(|e| e.replicas.get_mut(&r)) {
                    slot.retry_at = None;
                }
                self.feed(&name, r, Input::BackoffOver);
            }
            if let Some(rollout) = self.services.get_mut(&name).and_then(|e| e.rollout.as_mut()) {
                rollout.on_deadline(now);
            }
            self.advance_rollout(&name);
        }
    }

    /// Whether every replica of every service in `name`'s `after` is ready.
    fn after_ready(&self, name: &str) -> bool {
        self.services[name].after.iter().all(|a| {
            self.services
                .get(a)
                .is_some_and(|e| !e.replicas.is_empty() && e.replicas.values().all(|s| s.state.phase == Phase::Ready))
        })
    }

    /// Why a service's replicas still wait for its `after` services: `waiting for db to be
    /// ready`, or, when one of them will not be ready unless something changes (it failed
    /// or completed), `waiting for db, which failed: exited with code 3; restart = "never"`.
    fn waiting_reason(&self, name: &str) -> String {
        let after = &self.services[name].after;
        for a in after {
            let Some(e) = self.services.get(a) else { continue };
            if e.spec.is_none() {
                return format!("waiting for {a}, which cannot run");
            }
            let over = e.replicas.values().find(|s| matches!(s.state.phase, Phase::Failed | Phase::Completed));
            if let Some(slot) = over {
                return format!("waiting for {a}, which {}: {}", slot.state.phase.as_str(), slot.reason);
            }
        }
        format!("waiting for {} to be ready", after.join(", "))
    }

    /// Starts the replicas whose `after` services have become ready; tells those still
    /// waiting what for, when that changed.
    fn start_waiting(&mut self) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let e = &self.services[&name];
            if e.removing || e.spec.is_none() || !e.replicas.values().any(Slot::waiting) {
                continue;
            }
            if !self.after_ready(&name) {
                let reason = self.waiting_reason(&name);
                if reason != e.waiting_for {
                    let waiting: Vec<u32> = e.replicas.iter().filter(|(_, s)| s.waiting()).map(|(r, _)| *r).collect();
                    for r in waiting {
                        self.publish(&name, r, Phase::Pending, reason.clone(), None, None);
                    }
                    self.services.get_mut(&name).expect("listed above").waiting_for = reason;
                }
                continue;
            }
            let waiting: Vec<u32> = e.replicas.iter().filter(|(_, s)| s.waiting()).map(|(r, _)| *r).collect();
            for r in waiting {
                let slot = self.services.get_mut(&name).and_then(|e| e.replicas.get_mut(&r)).expect("listed above");
                let step = slot.state.begin(slot.begin_reason);
                self.apply(&name, r, step, Order::Stop);
            }
        }
    }

    /// Starts the next replica of a rolling restart whose turn it is.
    fn advance_rollout(&mut self, name: &str) {
        let Some(e) = self.services.get_mut(name) else { return };
        let Some(rollout) = e.rollout.as_mut() else { return };
        if let Some(r) = rollout.next(Instant::now()) {
            let why = e.roll_why;
            if let Some(slot) = e.replicas.get_mut(&r) {
                slot.state.restart_for(why);
            }
            self.feed(name, r, Input::NewBuild);
        } else if rollout.is_done() {
            let started = rollout.last_started();
            e.rollout = None;
            self.settled.push((name.to_string(), started));
        }
    }

    /// Feeds one input to one replica's state machine and carries out the result.
    fn feed(&mut self, name: &str, replica: u32, input: Input) {
        let order = if input == Input::NewBuild { Order::Restart } else { Order::Stop };
        let Some(slot) = self.services.get_mut(name).and_then(|e| e.replicas.get_mut(&replica)) else { return };
        let step = slot.state.step(input, Instant::now(), jitter_unit());
        self.apply(name, replica, step, order);
    }

    fn apply(&mut self, name: &str, replica: u32, step: Step, order: Order) {
        let Step { change, action } = step;
        if let Some(c) = change {
            if let Some(slot) = self.services.get_mut(name).and_then(|e| e.replicas.get_mut(&replica)) {
                slot.reason.clone_from(&c.reason);
            }
            self.publish(name, replica, c.phase, c.reason, c.next_try, c.cause);
            if let Some(rollout) = self.services.get_mut(name).and_then(|e| e.rollout.as_mut()) {
                rollout.observe(replica, c.phase, Instant::now());
            }
        }
        let Some(e) = self.services.get_mut(name) else { return };
        let spec = e.spec.clone();
        let Some(slot) = e.replicas.get_mut(&replica) else { return };
        match action {
            Action::Start => {
                let Some(spec) = spec else { return };
                // Unique in the set, not per slot: a slot made anew (a restart of the
                // service, a scale-up) never repeats an earlier attempt's number.
                slot.attempt = next_attempt();
                slot.retry_at = None;
                let handover = slot.handover.take();
                slot.started = false;
                slot.orders =
                    Some(start_attempt(spec, replica, slot.attempt, handover, self.bus.clone(), self.reports.clone()));
            }
            // Without orders the attempt already ended and its report is on the way.
            Action::Kill => {
                if let Some(orders) = &slot.orders {
                    // The replica's log says why it is stopped (a liveness failure, a new
                    // build), before the attempt's own line saying it stopped.
                    if let Some(spec) = &spec
                        && !slot.reason.is_empty()
                    {
                        let path = spec.layout.service_log(name, replica);
                        ReplicaLog::open(path, spec.log_limit, &spec.layout.kiln)
                            .note(&format!("stopping: {}", slot.reason));
                    }
                    let _ = orders.send(order);
                }
            }
            Action::Wait(delay) => slot.retry_at = Some(Instant::now() + delay),
            Action::End => {
                slot.retry_at = None;
                if let (Some(handover), Some(spec)) = (slot.handover.take(), spec.clone()) {
                    // A stop overtook a podman restart: the container handed over for
                    // `run --replace` is stopped and removed instead.
                    slot.attempt = next_attempt();
                    slot.cleanup = Some(slot.attempt);
                    stop_handover(spec, replica, slot.attempt, handover, self.reports.clone());
                } else if slot.revive
                    && let Some(spec) = &spec
                {
                    // Wanted again: a new replica in its place, begun with the others.
                    *slot = Slot { begin_reason: "scaled up", ..new_slot(Policy::of(spec)) };
                }
            }
            Action::Idle | Action::Continue => {}
        }
        self.advance_rollout(name);
    }

    /// Forgets replicas that ended beyond the desired count, and services being removed
    /// whose replicas all ended.
    fn drop_ended(&mut self, name: &str) {
        let Some(e) = self.services.get_mut(name) else { return };
        let desired = e.desired;
        e.replicas.retain(|r, s| !(s.ended() && (*r >= desired || e.removing)));
        if e.removing && e.replicas.is_empty() {
            self.services.remove(name);
        }
    }

    fn publish(
        &self,
        name: &str,
        replica: u32,
        phase: Phase,
        reason: String,
        next_try: Option<std::time::Duration>,
        cause: Option<RestartCause>,
    ) {
        let Some(e) = self.services.get(name) else { return };
        self.bus.publish(Event::ServicePhase {
            service: name.to_string(),
            replica,
            phase,
            reason,
            restarts: e.replicas.get(&replica).map_or(0, |s| s.state.restarts),
            next_try_ms: next_try.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            image: e.spec.as_ref().and_then(|s| s.image().map(str::to_string)),
            replicas: e.desired,
            cause,
        });
    }
}

/// The next attempt number, unique in the process.
fn next_attempt() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What a new replica's state machine is made from.
#[derive(Clone, Copy)]
struct Policy {
    restart: kiln_config::RestartPolicy,
    backoff: crate::supervise::backoff::Backoff,
    failures: u32,
    live_failures: u32,
    stop_signal: &'static str,
}

impl Policy {
    fn of(spec: &ServiceSpec) -> Policy {
        Policy {
            restart: spec.restart,
            backoff: spec.backoff,
            failures: spec.probe.as_ref().map_or(3, |p| p.failures),
            live_failures: spec.live.as_ref().map_or(3, |p| p.failures),
            stop_signal: spec.stop_signal.as_str(),
        }
    }
}

fn new_slot(p: Policy) -> Slot {
    Slot {
        state: ReplicaState::new(p.restart, p.backoff, p.failures, p.stop_signal).with_liveness(p.live_failures),
        attempt: 0,
        orders: None,
        handover: None,
        retry_at: None,
        revive: false,
        cleanup: None,
        begin_reason: "deps are built",
        started: false,
        reason: String::new(),
    }
}
