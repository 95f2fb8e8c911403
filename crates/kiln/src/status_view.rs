//! What `kiln status` and `GET /api/status` show, built from the event stream: each target's
//! last build and each service replica's phase.

use std::collections::BTreeMap;

use kiln_engine::{Event, Phase};
use serde::Serialize;

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
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceView {
    pub replicas: BTreeMap<u32, ReplicaView>,
    pub ready: usize,
    pub desired: usize,
    pub restarts: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusView {
    pub targets: BTreeMap<String, TargetView>,
    pub services: BTreeMap<String, ServiceView>,
}

impl StatusView {
    pub fn on_event(&mut self, event: &Event, ts: &str) {
        match event {
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
            Event::ServicePhase { service, replica, phase, reason, restarts, .. } => {
                let s = self.services.entry(service.clone()).or_default();
                s.replicas.insert(*replica, ReplicaView { phase: *phase, reason: reason.clone(), restarts: *restarts });
                s.desired = s.replicas.len();
                s.ready = s.replicas.values().filter(|r| r.phase == Phase::Ready).count();
                s.restarts = s.replicas.values().map(|r| r.restarts).sum();
            }
            _ => {}
        }
    }
}
