//! The services of `kiln up`: their replicas, ordering, rolling reloads and shutdown.
//!
//! The supervisor starts a service's replicas once its `after` services have every replica
//! ready (until then they are `pending`), restarts them one at a time when a target in its
//! `deps` produced new outputs (the next replica restarts only when the previous new one is
//! ready, so the service keeps serving), and stops everything gracefully on shutdown. Each
//! replica keeps itself in its desired state (see `replica`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_config::{Config, Service, ServiceKind};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::event::{Event, EventBus, NoticeLevel, Phase};
use crate::replica::{Control, ServiceSpec, run_replica};

struct ReplicaHandle {
    control: mpsc::UnboundedSender<Control>,
    phase: watch::Receiver<Phase>,
    task: JoinHandle<()>,
}

struct Handle {
    replicas: Vec<ReplicaHandle>,
}

/// How long a rolling reload waits for a new replica to become ready before moving on.
const ROLL_WAIT: Duration = Duration::from_secs(120);

pub struct Supervisor {
    bus: Arc<EventBus>,
    services: BTreeMap<String, Handle>,
}

impl Supervisor {
    pub fn new(bus: Arc<EventBus>) -> Supervisor {
        Supervisor { bus, services: BTreeMap::new() }
    }

    pub fn is_started(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }

    /// What a process service runs; `None` (after a notice) for what cannot run yet.
    pub fn spec(config: &Config, service: &Service, bus: &EventBus) -> Option<ServiceSpec> {
        let ServiceKind::Cmd(cmd) = &service.kind else {
            bus.publish(Event::Notice {
                level: NoticeLevel::Warning,
                message: format!(
                    "service `{}` runs a container image; container services are not supported yet",
                    service.name
                ),
            });
            return None;
        };
        let mut env = config.env.clone();
        env.extend(service.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let stop_signal = service.stop_signal.parse::<Signal>().unwrap_or(Signal::SIGTERM);
        Some(ServiceSpec {
            name: service.name.clone(),
            cmd: cmd.clone(),
            dir: config.root.clone(),
            env,
            restart: service.restart,
            probe: service.ready.clone(),
            stop_signal,
            stop_timeout: service.stop_timeout,
            backoff: Backoff::default(),
        })
    }

    /// Starts `replicas` copies of a service once the `after` services are ready.
    pub fn start(&mut self, spec: ServiceSpec, replicas: u32, after: &[String]) {
        let spec = Arc::new(spec);
        let waits: Vec<watch::Receiver<Phase>> = after
            .iter()
            .filter_map(|a| self.services.get(a))
            .flat_map(|h| h.replicas.iter().map(|r| r.phase.clone()))
            .collect();
        let mut handles = Vec::new();
        for replica in 0..replicas {
            let (control_tx, control_rx) = mpsc::unbounded_channel();
            let (phase_tx, phase_rx) = watch::channel(Phase::Pending);
            let bus = self.bus.clone();
            let spec = spec.clone();
            let mut waits = waits.clone();
            let after = after.to_vec();
            let task = tokio::spawn(async move {
                if !waits.is_empty() {
                    bus.publish(Event::ServicePhase {
                        service: spec.name.clone(),
                        replica,
                        phase: Phase::Pending,
                        reason: format!("waiting for {} to be ready", after.join(", ")),
                        restarts: 0,
                        next_try_ms: None,
                    });
                    for w in &mut waits {
                        if w.wait_for(|p| *p == Phase::Ready).await.is_err() {
                            return;
                        }
                    }
                }
                run_replica(spec, replica, control_rx, bus, phase_tx).await;
            });
            handles.push(ReplicaHandle { control: control_tx, phase: phase_rx, task });
        }
        self.services.insert(spec.name.clone(), Handle { replicas: handles });
    }

    /// Restarts a service's replicas one at a time, each after the previous new one is
    /// ready (or has given up), so that it keeps serving throughout.
    pub fn roll(&self, name: &str) {
        let Some(handle) = self.services.get(name) else { return };
        let replicas: Vec<(mpsc::UnboundedSender<Control>, watch::Receiver<Phase>)> =
            handle.replicas.iter().map(|r| (r.control.clone(), r.phase.clone())).collect();
        tokio::spawn(async move {
            for (control, mut phase) in replicas {
                if control.send(Control::Restart).is_err() {
                    continue;
                }
                // First it leaves `ready` (stopping), then comes back or gives up.
                let _ = tokio::time::timeout(ROLL_WAIT, phase.wait_for(|p| *p == Phase::Starting)).await;
                let settled = |p: &Phase| matches!(p, Phase::Ready | Phase::Failed | Phase::Completed | Phase::Backoff);
                let _ = tokio::time::timeout(ROLL_WAIT, phase.wait_for(settled)).await;
            }
        });
    }

    /// Stops one service (removed from the configuration).
    pub async fn stop(&mut self, name: &str) {
        if let Some(handle) = self.services.remove(name) {
            stop_handle(handle).await;
        }
    }

    /// Stops every service gracefully and waits for their processes to be gone.
    pub async fn stop_all(&mut self) {
        let all: Vec<Handle> = std::mem::take(&mut self.services).into_values().collect();
        // Every replica is told first, so that their stop timeouts run side by side.
        for h in &all {
            signal_stop(h);
        }
        for h in all {
            for r in h.replicas {
                let _ = r.task.await;
            }
        }
    }
}

/// Tells every replica to stop; one still waiting for its `after` services just ends.
fn signal_stop(handle: &Handle) {
    for r in &handle.replicas {
        if *r.phase.borrow() == Phase::Pending {
            r.task.abort();
        } else {
            let _ = r.control.send(Control::Stop);
        }
    }
}

async fn stop_handle(handle: Handle) {
    signal_stop(&handle);
    for r in handle.replicas {
        let _ = r.task.await;
    }
}
