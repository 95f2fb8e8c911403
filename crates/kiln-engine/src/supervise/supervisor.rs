//! The services of `kiln up`: their replicas, ordering, rolling reloads and shutdown.
//!
//! The supervisor starts a service's replicas once its `after` services have every replica
//! ready (until then they are `pending`), restarts them one at a time when a target in its
//! `deps` produced new outputs (the next replica restarts only when the previous new one is
//! ready, so the service keeps serving), and stops everything gracefully on shutdown. Each
//! replica keeps itself in its desired state (see `replica`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kiln_config::{Config, Service, ServiceKind};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::container::engine::{Engine, project_id};
use crate::event::{Event, EventBus, Phase};
use crate::supervise::backoff::Backoff;
use crate::supervise::replica::{ContainerRun, Control, Runner, ServiceSpec, run_replica};

struct ReplicaHandle {
    control: mpsc::UnboundedSender<Control>,
    phase: watch::Receiver<Phase>,
    task: JoinHandle<()>,
}

struct Handle {
    replicas: Vec<ReplicaHandle>,
    /// What the replicas run next time they start; `None` for a service that cannot run.
    spec: Option<watch::Sender<Arc<ServiceSpec>>>,
    /// The desired replica count, shown with every phase.
    desired: Arc<AtomicU32>,
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

    /// What a service runs: a process, or a container of the image its image target last
    /// built (`images`: image target → image) or of an image reference. The error says why
    /// it cannot run (no container engine, say).
    pub fn spec(config: &Config, service: &Service, images: &BTreeMap<String, String>) -> Result<ServiceSpec, String> {
        let mut env = config.env.clone();
        env.extend(service.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let runner = match &service.kind {
            ServiceKind::Cmd(cmd) => Runner::Process(cmd.clone()),
            ServiceKind::Image(image) => {
                let engine = Engine::find(config.settings.engine)?;
                let local = config.targets.get(image).is_some_and(|t| t.is_image());
                let image = if local {
                    images.get(image).cloned().ok_or_else(|| format!("image target `{image}` has not been built"))?
                } else {
                    image.clone()
                };
                Runner::Container(ContainerRun {
                    engine,
                    image,
                    local,
                    project: project_id(&config.root),
                    root: config.root.clone(),
                    ports: service.ports.clone(),
                    volumes: service.volumes.clone(),
                    command: service.command.clone(),
                })
            }
        };
        let stop_signal = service.stop_signal.parse::<Signal>().unwrap_or(Signal::SIGTERM);
        Ok(ServiceSpec {
            name: service.name.clone(),
            runner,
            dir: config.root.clone(),
            env,
            restart: service.restart,
            probe: service.ready.clone(),
            stop_signal,
            stop_timeout: service.stop_timeout,
            backoff: Backoff::default(),
        })
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
            });
        }
        let desired = Arc::new(AtomicU32::new(replicas));
        self.services.insert(name.to_string(), Handle { replicas: Vec::new(), spec: None, desired });
    }

    /// Gives a running service a new spec (a new image) for its next start.
    pub fn update(&mut self, name: &str, spec: ServiceSpec) {
        if let Some(tx) = self.services.get(name).and_then(|h| h.spec.as_ref()) {
            tx.send_replace(Arc::new(spec));
        }
    }

    /// Starts `replicas` copies of a service once the `after` services are ready.
    pub fn start(&mut self, spec: ServiceSpec, replicas: u32, after: &[String]) {
        let name = spec.name.clone();
        let (spec_tx, _) = watch::channel(Arc::new(spec));
        let waits: Vec<watch::Receiver<Phase>> = after
            .iter()
            .filter_map(|a| self.services.get(a))
            .flat_map(|h| h.replicas.iter().map(|r| r.phase.clone()))
            .collect();
        let desired = Arc::new(AtomicU32::new(replicas));
        let mut handle = Handle { replicas: Vec::new(), spec: Some(spec_tx), desired };
        for replica in 0..replicas {
            let r = spawn_replica(&self.bus, &handle, replica, waits.clone(), after.to_vec());
            handle.replicas.push(r);
        }
        self.services.insert(name, handle);
    }

    /// Changes a running service's replica count: the replicas beyond the new count stop
    /// (the highest first) while the others keep serving, or new ones start beside them.
    pub async fn scale(&mut self, name: &str, to: u32) {
        let Some(handle) = self.services.get_mut(name) else { return };
        handle.desired.store(to, Ordering::Relaxed);
        let to = to as usize;
        let gone: Vec<ReplicaHandle> =
            if handle.replicas.len() > to { handle.replicas.split_off(to) } else { Vec::new() };
        if handle.spec.is_some() {
            while handle.replicas.len() < to {
                let replica = u32::try_from(handle.replicas.len()).expect("replica counts fit u32");
                let r = spawn_replica(&self.bus, handle, replica, Vec::new(), Vec::new());
                handle.replicas.push(r);
            }
        }
        let gone = Handle { replicas: gone, spec: None, desired: handle.desired.clone() };
        stop_handle(gone).await;
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

/// One replica's task: it waits for the `after` services' replicas to be ready (`pending`
/// until then), then runs.
fn spawn_replica(
    bus: &Arc<EventBus>,
    handle: &Handle,
    replica: u32,
    mut waits: Vec<watch::Receiver<Phase>>,
    after: Vec<String>,
) -> ReplicaHandle {
    let spec = handle.spec.as_ref().expect("only a service that can run gets replicas").subscribe();
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (phase_tx, phase_rx) = watch::channel(Phase::Pending);
    let bus = bus.clone();
    let desired = handle.desired.clone();
    let task = tokio::spawn(async move {
        if !waits.is_empty() {
            let (service, image) = {
                let s = spec.borrow();
                (s.name.clone(), s.image().map(str::to_string))
            };
            bus.publish(Event::ServicePhase {
                service,
                replica,
                phase: Phase::Pending,
                reason: format!("waiting for {} to be ready", after.join(", ")),
                restarts: 0,
                next_try_ms: None,
                image,
                replicas: desired.load(Ordering::Relaxed),
            });
            for w in &mut waits {
                if w.wait_for(|p| *p == Phase::Ready).await.is_err() {
                    return;
                }
            }
        }
        run_replica(spec, replica, desired, control_rx, bus, phase_tx).await;
    });
    ReplicaHandle { control: control_tx, phase: phase_rx, task }
}
