//! What `kiln status` and `GET /api/status` show, built from the event stream: each target's
//! last build, each service replica's phase, and the project network.

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
}

impl ServiceView {
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusView {
    pub targets: BTreeMap<String, TargetView>,
    pub services: BTreeMap<String, ServiceView>,
    /// The project network, once created (and until removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
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
            Event::ServicePhase { service, replica, phase, reason, restarts, image, replicas, .. } => {
                let s = self.services.entry(service.clone()).or_default();
                if image.is_some() {
                    s.image.clone_from(image);
                }
                s.desired = *replicas as usize;
                s.replicas.insert(*replica, ReplicaView { phase: *phase, reason: reason.clone(), restarts: *restarts });
                // A replica beyond the desired count is shown until it has stopped.
                s.replicas.retain(|r, v| (*r as usize) < s.desired || v.phase != Phase::Stopped);
                s.summarize();
            }
            Event::NetworkCreated { network, .. } => self.network = Some(network.clone()),
            Event::NetworkRemoved { .. } => self.network = None,
            _ => {}
        }
    }
}
