//! What `kiln status`, `kiln ps` and `GET /api/status` show, built from the event stream:
//! each target's last build and each service replica's phase, and of a running replica its
//! process or container (`service.started`) and its probes' last results (`service.probed`),
//! and the project network. [`StatusView::at`] adds what depends on when it is asked:
//! uptimes, how long ago a probe ran.
//!
//! It also keeps the last [`UPDATES_KEPT`] updates (`update.completed`: a save that reached
//! running code, with its phases' durations), and for each service the last one that named
//! it, and `seq`: the sequence number of the last event folded in, so that a client of the
//! event stream can tell which events the status already holds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kiln_engine::{Envelope, Event, Latency, Phase};
use serde::Serialize;

/// Updates kept for `updates`, the oldest dropped first.
pub const UPDATES_KEPT: usize = 50;

/// One save that reached running code.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateView {
    pub seq: u64,
    pub ts: String,
    pub cause: Vec<String>,
    pub targets: Vec<String>,
    pub services: Vec<String>,
    pub how: String,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetView {
    pub status: String,
    pub reason: String,
    pub duration_ms: u64,
    pub finished_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    pub phase: Phase,
    pub reason: String,
    pub restarts: u32,
    /// While it runs: its process (a container's engine client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// While it runs, for a container service: the container's short ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// While it runs: when its current attempt started, and how long ago that is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// For a container service: its published ports; for a process service: the TCP
    /// addresses its process group listens on (read when asked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// The last result of each of its probes in this attempt, by kind (`ready`, `live`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<&'static str, ProbeView>,
}

impl ReplicaView {
    fn new(phase: Phase) -> ReplicaView {
        ReplicaView {
            phase,
            reason: String::new(),
            restarts: 0,
            pid: None,
            container: None,
            started_at: None,
            uptime_ms: None,
            ports: Vec::new(),
            probes: BTreeMap::new(),
        }
    }
}

/// One probe's last result.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeView {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it ran, and how long ago that is.
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ago_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceView {
    /// One phase for the service: `ready` when every replica is, else the first replica's
    /// phase that is not.
    pub phase: &'static str,
    pub replicas: BTreeMap<u32, ReplicaView>,
    pub ready: usize,
    pub desired: usize,
    pub restarts: u32,
    /// For a container service: the image its replicas run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The last update that reached this service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateView>,
}

impl ServiceView {
    fn all_stopped(&self) -> bool {
        self.replicas.values().all(|r| r.phase == Phase::Stopped)
    }

    fn summarize(&mut self) {
        self.ready = self.replicas.values().filter(|r| r.phase == Phase::Ready).count();
        self.restarts = self.replicas.values().map(|r| r.restarts).sum();
        let mut phases = self.replicas.values().map(|r| r.phase);
        self.phase = match phases.clone().find(|p| *p != Phase::Ready) {
            Some(p) => p.as_str(),
            None => phases.next().map_or("pending", Phase::as_str),
        };
    }
}

/// An image as a status line shows it: `localhost/demo-api:kiln-3f2a9c…` → `demo-api:kiln-3f2a…`.
pub fn short_image(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    match base.split_once(":kiln-") {
        Some((name, hex)) if hex.len() > 4 => format!("{name}:kiln-{}…", &hex[..4]),
        _ => base.to_string(),
    }
}

/// How long a save took to reach running code, phase by phase, in seconds:
/// `1.42 s (debounce 0.05, build 0.82, deploy 0.43, ready 0.12)`. Build, deploy and ready are
/// always there; the wait for the file event (`detect`) and the quiet window (`debounce`)
/// when they took 5 ms or more.
pub fn update_breakdown(l: &Latency) -> String {
    let s = |ms: u64| format!("{:.2}", ms as f64 / 1000.0);
    let mut parts = Vec::with_capacity(5);
    for (name, ms) in [("detect", l.detect), ("debounce", l.debounce)] {
        // Shown when it rounds to a hundredth at least.
        if ms >= 5 {
            parts.push(format!("{name} {}", s(ms)));
        }
    }
    for (name, ms) in [("build", l.build), ("deploy", l.deploy), ("ready", l.ready)] {
        parts.push(format!("{name} {}", s(ms)));
    }
    format!("{} s ({})", s(l.total), parts.join(", "))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusView {
    pub targets: BTreeMap<String, TargetView>,
    pub services: BTreeMap<String, ServiceView>,
    /// The project network, once created (and until removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The last updates, oldest first.
    pub updates: VecDeque<UpdateView>,
    /// The sequence number of the last event folded in.
    pub seq: u64,
    /// Services a reload removed that still have replicas to stop: shown until they have.
    #[serde(skip)]
    leaving: BTreeSet<String>,
}

impl StatusView {
    /// Folds in one event of the stream.
    pub fn on_envelope(&mut self, envelope: &Envelope) {
        self.seq = envelope.seq;
        if let Event::UpdateCompleted { cause, targets, services, how, latency_ms, .. } = &envelope.event {
            let update = UpdateView {
                seq: envelope.seq,
                ts: envelope.ts.clone(),
                cause: cause.clone(),
                targets: targets.clone(),
                services: services.clone(),
                how: how.clone(),
                latency_ms: *latency_ms,
            };
            for name in services {
                self.services.entry(name.clone()).or_default().last_update = Some(update.clone());
            }
            if self.updates.len() == UPDATES_KEPT {
                self.updates.pop_front();
            }
            self.updates.push_back(update);
        }
        self.on_event(&envelope.event, &envelope.ts);
    }

    pub fn on_event(&mut self, event: &Event, ts: &str) {
        match event {
            Event::TargetStarted { target, .. } => {
                let t = self.targets.entry(target.clone()).or_default();
                t.status = "running".to_string();
                t.reason = format!("started at {ts}");
            }
            Event::TargetFinished { target, status, reason, duration_ms, .. } => {
                self.targets.insert(
                    target.clone(),
                    TargetView {
                        status: status.as_str().to_string(),
                        reason: reason.clone(),
                        duration_ms: *duration_ms,
                        finished_at: ts.to_string(),
                    },
                );
            }
            Event::ServicePhase { service, replica, phase, reason, restarts, image, replicas, .. } => {
                let s = self.services.entry(service.clone()).or_default();
                if image.is_some() {
                    s.image.clone_from(image);
                }
                s.desired = *replicas as usize;
                let r = s.replicas.entry(*replica).or_insert_with(|| ReplicaView::new(*phase));
                (r.phase, r.restarts) = (*phase, *restarts);
                r.reason.clone_from(reason);
                if !matches!(phase, Phase::Starting | Phase::Ready | Phase::Unhealthy | Phase::Stopping) {
                    // Nothing of it runs.
                    (r.pid, r.container, r.started_at) = (None, None, None);
                    r.ports.clear();
                    r.probes.clear();
                } else if *phase == Phase::Starting {
                    // A new attempt (a replaced container may still answer meanwhile): the
                    // last one's probe results say nothing of it.
                    r.probes.clear();
                }
                // A replica beyond the desired count is shown until it has stopped.
                s.replicas.retain(|r, v| (*r as usize) < s.desired || v.phase != Phase::Stopped);
                s.summarize();
                if self.leaving.contains(service) && s.all_stopped() {
                    self.services.remove(service);
                    self.leaving.remove(service);
                }
            }
            Event::ServiceStarted { service, replica, pid, container, started_at, ports, .. } => {
                let s = self.services.entry(service.clone()).or_default();
                let r = s.replicas.entry(*replica).or_insert_with(|| ReplicaView::new(Phase::Starting));
                (r.pid, r.container, r.started_at) = (Some(*pid), container.clone(), Some(started_at.clone()));
                // Not its probes: a container's start is announced once its ID is known,
                // after the first probes of the attempt may have run.
                r.ports.clone_from(ports);
            }
            Event::ServiceProbed { service, replica, probe, ok, error, .. } => {
                let Some(r) = self.services.get_mut(service).and_then(|s| s.replicas.get_mut(replica)) else { return };
                r.probes.insert(probe, ProbeView { ok: *ok, error: error.clone(), at: ts.to_string(), ago_ms: None });
            }
            Event::ConfigReloaded { added, removed, services_added, services_removed, .. } => {
                // What the configuration no longer has leaves the view: a target at once, a
                // service once every replica is stopped (each gets a `stopped`; shown
                // stopping until then).
                for target in removed {
                    self.targets.remove(target);
                }
                for service in services_removed {
                    if self.services.get(service).is_some_and(|s| !s.all_stopped()) {
                        self.leaving.insert(service.clone());
                    } else {
                        self.services.remove(service);
                    }
                }
                for name in added.iter().chain(services_added) {
                    self.leaving.remove(name);
                }
            }
            Event::NetworkCreated { network, .. } => self.network = Some(network.clone()),
            Event::NetworkRemoved { .. } => self.network = None,
            _ => {}
        }
    }

    /// The view as asked at `now`: with each running replica's uptime, how long ago each
    /// probe ran, and the ports each process service's process group listens on (read from
    /// `/proc`, so called off the async threads).
    pub fn at(&self, now: std::time::SystemTime) -> StatusView {
        let since = |ts: &str| {
            kiln_engine::parse_rfc3339(ts)
                .map(|t| u64::try_from(now.duration_since(t).unwrap_or_default().as_millis()).unwrap_or(u64::MAX))
        };
        let mut view = self.clone();
        for r in view.services.values_mut().flat_map(|s| s.replicas.values_mut()) {
            r.uptime_ms = r.started_at.as_deref().and_then(since);
            if let (Some(pid), None, true) = (r.pid, &r.container, r.ports.is_empty()) {
                r.ports = kiln_engine::listening_ports(pid);
            }
            for p in r.probes.values_mut() {
                p.ago_ms = since(&p.at);
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(phase: Phase) -> Event {
        Event::ServicePhase {
            service: "web".into(),
            replica: 0,
            phase,
            reason: String::new(),
            restarts: 0,
            next_try_ms: None,
            image: None,
            replicas: 1,
            cause: None,
        }
    }

    fn probed(ok: bool) -> Event {
        Event::ServiceProbed { service: "web".into(), replica: 0, probe: "ready", ok, error: None, duration_ms: 1 }
    }

    fn started(attempt: u64) -> Event {
        Event::ServiceStarted {
            service: "web".into(),
            replica: 0,
            attempt,
            pid: 42,
            container: Some("0123456789ab".into()),
            started_at: "2026-12-01T00:00:00.000Z".into(),
            ports: vec!["19770:8080".into()],
        }
    }

    fn probes(view: &StatusView) -> usize {
        view.services["web"].replicas[&0].probes.len()
    }

    #[test]
    fn probe_results_go_with_the_attempt_they_were_of() {
        let mut view = StatusView::default();
        let ts = "2026-12-01T00:00:01.000Z";
        view.on_event(&phase(Phase::Starting), ts);
        // A container's start is announced after its first probe: that result stays.
        view.on_event(&probed(true), ts);
        view.on_event(&started(1), ts);
        assert_eq!(probes(&view), 1, "a late service.started keeps its attempt's results");
        view.on_event(&phase(Phase::Ready), ts);
        // Nothing runs: no pid, container, ports or probe results of the attempt that ended.
        view.on_event(&phase(Phase::Backoff), ts);
        let r = &view.services["web"].replicas[&0];
        assert_eq!((r.pid, r.container.as_deref(), r.ports.len(), r.probes.len()), (None, None, 0, 0));
        view.on_event(&probed(false), ts);
        // The next attempt starts without the last one's results.
        view.on_event(&phase(Phase::Starting), ts);
        assert_eq!(probes(&view), 0);
    }

    #[test]
    fn updates_are_kept_bounded_and_each_service_has_its_last() {
        let mut view = StatusView::default();
        let update = |seq: u64, services: &[&str], total: u64| Envelope {
            event: Event::UpdateCompleted {
                cause: vec!["app/main.py".into()],
                targets: vec!["web-image".into()],
                services: services.iter().map(|s| s.to_string()).collect(),
                how: "rebuilt".into(),
                files: None,
                latency_ms: Latency { total, build: total / 2, ..Latency::default() },
            },
            ts: format!("2026-12-01T00:00:{:02}.000Z", seq % 60),
            seq,
        };
        view.on_envelope(&update(1, &["web", "worker"], 1000));
        for seq in 2..=(UPDATES_KEPT as u64 + 10) {
            view.on_envelope(&update(seq, &["web"], seq));
        }
        assert_eq!(view.updates.len(), UPDATES_KEPT);
        assert_eq!(view.updates.front().map(|u| u.seq), Some(11), "the oldest went first");
        assert_eq!(view.seq, UPDATES_KEPT as u64 + 10);
        assert_eq!(view.services["web"].last_update.as_ref().map(|u| u.seq), Some(UPDATES_KEPT as u64 + 10));
        assert_eq!(view.services["worker"].last_update.as_ref().map(|u| u.latency_ms.total), Some(1000));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["updates"][0]["latency_ms"]["build"], 5);
        assert_eq!(json["services"]["worker"]["last_update"]["how"], "rebuilt");
    }

    #[test]
    fn a_breakdown_reads_in_seconds() {
        let l = Latency { detect: 0, debounce: 50, build: 820, deploy: 430, ready: 120, total: 1420 };
        assert_eq!(update_breakdown(&l), "1.42 s (debounce 0.05, build 0.82, deploy 0.43, ready 0.12)");
        let l = Latency { detect: 12, debounce: 4, build: 0, deploy: 4, ready: 0, total: 20 };
        assert_eq!(update_breakdown(&l), "0.02 s (detect 0.01, build 0.00, deploy 0.00, ready 0.00)");
    }

    #[test]
    fn what_a_reload_removes_leaves_the_view_a_service_once_stopped() {
        let mut view = StatusView::default();
        let ts = "2026-12-01T00:00:01.000Z";
        view.on_event(
            &Event::TargetFinished {
                target: "docs".into(),
                status: kiln_engine::TargetStatus::Built,
                duration_ms: 1,
                key: None,
                reason: String::new(),
                log: None,
                saved_ms: None,
                cache: None,
            },
            ts,
        );
        view.on_event(&phase(Phase::Ready), ts);
        let reload = Event::ConfigReloaded {
            added: vec![],
            removed: vec!["docs".into()],
            changed: vec![],
            services_added: vec![],
            services_removed: vec!["web".into()],
            services_changed: vec![],
            files: vec!["kiln.toml".into()],
        };
        view.on_event(&reload, ts);
        assert!(!view.targets.contains_key("docs"));
        assert!(view.services.contains_key("web"), "shown while it stops");
        view.on_event(&phase(Phase::Stopping), ts);
        assert!(view.services.contains_key("web"));
        view.on_event(&phase(Phase::Stopped), ts);
        assert!(!view.services.contains_key("web"), "gone once stopped");
    }
}
