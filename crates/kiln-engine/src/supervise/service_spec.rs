//! What a service's replicas run (a process, or a container of an image) and how they are
//! kept: the spec a runner starts from, built from the configuration and the images the
//! latest build produced.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kiln_config::{Config, Network, Probe, RestartPolicy, Service, ServiceKind};
use nix::sys::signal::Signal;

use crate::container::engine::{
    Engine, NameHolder, PROJECT_LABEL, SERVICE_LABEL, container_name, exec_words, name_taken_message, project_id,
};
use crate::container::engine_api::EngineApi;
use crate::container::network::{ProjectNetwork, missing_network, takes_aliases};
use crate::container::sync_batch::{SyncBatch, SyncCopy};
use crate::fs::layout::Layout;
use crate::supervise::backoff::Backoff;

/// What a replica runs and how it is kept.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub runner: Runner,
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub restart: RestartPolicy,
    /// The readiness probe.
    pub probe: Option<Probe>,
    /// The liveness probe.
    pub live: Option<Probe>,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub backoff: Backoff,
    /// Where each replica's output is kept (`.kiln/logs/services/NAME.REPLICA.log`), and how
    /// many bytes of it.
    pub layout: Layout,
    pub log_limit: u64,
}

/// A process, or a container run in the foreground by the engine's CLI.
#[derive(Debug, Clone)]
pub enum Runner {
    /// `sh -c CMD`.
    Process(String),
    Container(ContainerRun),
}

/// A container replica: `ENGINE run --rm --name kiln-<project>-<digest>-<service>-<replica> …`. Its
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
    /// For a service with sync rules: what its new containers are given before they start.
    pub drift: Option<Arc<Drift>>,
    pub network: ContainerNetwork,
}

/// The network a container joins (`network` in kiln.toml).
#[derive(Debug, Clone)]
pub enum ContainerNetwork {
    /// The project's network, created before the first replica that joins it starts and
    /// shared by every container service of one `kiln up`.
    Project(Arc<ProjectNetwork>),
    Host,
    None,
    /// A network the user manages: it must exist.
    Named(String),
}

/// The files synced into a service's containers this session, which its image does not
/// hold: a new container gets their current content before its process starts. Kept up to
/// date by the dispatcher's live updates, read by each new attempt.
#[derive(Debug, Default)]
pub struct Drift {
    pub copies: std::sync::Mutex<Vec<SyncCopy>>,
    /// The engine's API, once connected.
    pub api: std::sync::Mutex<Option<Arc<EngineApi>>>,
    /// Where the tar is written.
    pub tmp: PathBuf,
    version: std::sync::atomic::AtomicU64,
}

impl Drift {
    pub fn new(tmp: PathBuf) -> Drift {
        Drift { tmp, ..Drift::default() }
    }

    /// What a new container is given now, with the API to give it through and the version
    /// read; `None` when nothing was synced.
    pub fn now(&self) -> Option<(SyncBatch, Option<Arc<EngineApi>>, u64)> {
        let copies = self.copies.lock().expect("drift lock is never poisoned");
        if copies.is_empty() {
            return None;
        }
        let version = self.version.load(std::sync::atomic::Ordering::Acquire);
        let api = self.api.lock().expect("drift lock is never poisoned").clone();
        Some((SyncBatch { copies: copies.clone(), deletes: Vec::new() }, api, version))
    }

    /// Replaces the files synced so far (a sync added some).
    pub fn set(&self, copies: Vec<SyncCopy>, api: Option<Arc<EngineApi>>) {
        let mut held = self.copies.lock().expect("drift lock is never poisoned");
        *held = copies;
        *self.api.lock().expect("drift lock is never poisoned") = api;
        self.version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// How many times the files changed: a container given an older version gets the newer
    /// one once it runs.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl ContainerRun {
    /// The engine's client for a replica's container (`run`, `create`, `start`; arguments
    /// follow). Podman's own warnings (`StopSignal SIGTERM failed to stop container …`, when
    /// `run --replace` kills the container it replaces) would otherwise be printed among
    /// the service's output: only its errors are.
    pub fn client(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.engine.program);
        if self.engine.kind == crate::container::engine::EngineKind::Podman {
            command.arg("--log-level=error");
        }
        command
    }

    pub fn name(&self, service: &str, replica: u32) -> String {
        container_name(&self.root, service, replica)
    }

    /// Starts asking the engine who holds a replica's container name; the answer is read
    /// by [`ContainerRun::foreign_holder`]. Asked while `run` starts: `run` itself fails on a
    /// taken name without touching the container that has it.
    pub fn ask_name_holder(&self, service: &str, replica: u32) -> Option<tokio::process::Child> {
        let mut command =
            tokio::process::Command::from(self.engine.command(NameHolder::query(&self.name(service, replica))));
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).kill_on_drop(true);
        command.spawn().ok()
    }

    /// Why the replica cannot start, if its name is held by a container this project did
    /// not start (never replaced or removed: it is someone else's). `None` when the name is
    /// free or ours, or when the engine could not say (the start then reports its own error).
    pub async fn foreign_holder(
        &self,
        asked: Option<tokio::process::Child>,
        service: &str,
        replica: u32,
    ) -> Option<String> {
        let out = asked?.wait_with_output().await.ok()?;
        let answer = out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned());
        let name = self.name(service, replica);
        (NameHolder::of(answer.as_deref(), &self.project) == NameHolder::Foreign)
            .then(|| name_taken_message(&self.engine, &name, service))
    }

    /// Where the engine writes a replica's container ID (`--cidfile`): `.kiln/run/cid/NAME`,
    /// made ready for a new container (the directory there, not through a planted link; no
    /// file left from the last one, which the engine would refuse). `None` when it cannot be.
    pub fn prepare_cid_file(&self, spec: &ServiceSpec, replica: u32) -> Option<PathBuf> {
        let dir = spec.layout.kiln.join("run").join("cid");
        crate::fs::no_follow::ensure_dir(&spec.layout.kiln, &dir).ok()?;
        let file = dir.join(self.name(&spec.name, replica));
        match std::fs::remove_file(&file) {
            Ok(()) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(file),
            Err(_) => None,
        }
    }

    /// The `ENGINE run` invocation of one replica; `cid_file`: where the engine writes its
    /// container's ID.
    pub fn run_args(&self, spec: &ServiceSpec, replica: u32, cid_file: Option<&std::path::Path>) -> Vec<String> {
        let fill = |t: &str| fill_replica(t, replica);
        let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), self.name(&spec.name, replica)];
        if let Some(file) = cid_file {
            args.extend(["--cidfile".into(), file.display().to_string()]);
        }
        args.extend(["--label".into(), format!("{PROJECT_LABEL}={}", self.project)]);
        args.extend(["--label".into(), format!("{SERVICE_LABEL}={}", spec.name)]);
        args.extend(["--restart=no".into(), "--stop-signal".into(), spec.stop_signal.as_str().to_string()]);
        let secs = spec.stop_timeout.as_secs_f64().ceil().to_string();
        args.extend(["--stop-timeout".into(), secs]);
        args.extend(["-e".into(), format!("KILN_REPLICA={replica}")]);
        for (k, v) in &spec.env {
            args.extend(["-e".into(), format!("{k}={v}")]);
        }
        let (network, aliased) = match &self.network {
            ContainerNetwork::Project(n) => (n.name.as_str(), true),
            ContainerNetwork::Host => ("host", false),
            ContainerNetwork::None => ("none", false),
            ContainerNetwork::Named(name) => (name.as_str(), takes_aliases(self.engine.kind, name)),
        };
        args.extend(["--network".into(), network.to_string()]);
        if aliased {
            // The service's name answers with every replica; `SERVICE-REPLICA` with this one.
            args.extend(["--network-alias".into(), spec.name.clone()]);
            args.extend(["--network-alias".into(), format!("{}-{replica}", spec.name)]);
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

impl ContainerRun {
    /// Gets a replica's start ready: its network (see [`ContainerRun::prepare_network`]),
    /// and, for a fresh start (`fresh`: no container of the replica is handed over, which
    /// holds its ports until the new one replaces it), its explicit host ports free. The
    /// error is why the replica cannot start.
    pub async fn prepare(
        &self,
        service: &str,
        replica: u32,
        fresh: bool,
        bus: &crate::event::EventBus,
    ) -> Result<(), String> {
        self.prepare_network(service, bus).await?;
        // On the host's network (or none) the engine publishes nothing.
        let published = !matches!(self.network, ContainerNetwork::Host | ContainerNetwork::None);
        if fresh && published {
            let ports: Vec<String> = self.ports.iter().map(|p| fill_replica(p, replica)).collect();
            crate::container::host_port::check_free(&ports, service).await?;
        }
        Ok(())
    }

    /// Makes the network a replica joins ready: the project's is created the first time, a
    /// named one must exist. The error is why the replica cannot start.
    pub async fn prepare_network(&self, service: &str, bus: &crate::event::EventBus) -> Result<(), String> {
        match &self.network {
            ContainerNetwork::Project(n) => n.ensure(bus).await,
            ContainerNetwork::Named(name) => {
                let (engine, name, service) = (self.engine.clone(), name.clone(), service.to_string());
                let asked = tokio::task::spawn_blocking(move || missing_network(&engine, &name, &service));
                match tokio::time::timeout(crate::container::network::NETWORK_CALL, asked).await {
                    Ok(Ok(Some(why))) => Err(why),
                    // The engine could not say: the start reports its own error.
                    _ => Ok(()),
                }
            }
            ContainerNetwork::Host | ContainerNetwork::None => Ok(()),
        }
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
pub fn fill_replica(text: &str, replica: u32) -> String {
    let n = replica.to_string();
    text.replace("${KILN_REPLICA}", &n).replace("$KILN_REPLICA", &n)
}

impl ServiceSpec {
    /// What a service runs: a process, or a container of the image its image target last
    /// built (`images`: image target → image) or of an image reference. A container on the
    /// project network gets a handle of its own here; `kiln up` gives every service the one
    /// it shares. The error says why
    /// it cannot run (no container engine, say).
    pub fn of(config: &Config, service: &Service, images: &BTreeMap<String, String>) -> Result<ServiceSpec, String> {
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
                let network = match &service.network {
                    Network::Project => {
                        ContainerNetwork::Project(Arc::new(ProjectNetwork::new(engine.clone(), &config.root)))
                    }
                    Network::Host => ContainerNetwork::Host,
                    Network::None => ContainerNetwork::None,
                    Network::Named(name) => ContainerNetwork::Named(name.clone()),
                };
                Runner::Container(ContainerRun {
                    network,
                    engine,
                    image,
                    local,
                    project: project_id(&config.root),
                    root: config.root.clone(),
                    ports: service.ports.clone(),
                    volumes: service.volumes.clone(),
                    command: service.command.clone(),
                    drift: None,
                })
            }
        };
        let stop_signal = service.stop_signal.parse::<Signal>().unwrap_or(Signal::SIGTERM);
        Ok(ServiceSpec {
            name: service.name.clone(),
            runner,
            dir: service.dir.as_ref().map_or_else(|| config.root.clone(), |d| config.root.join(d)),
            env,
            restart: service.restart,
            probe: service.ready.clone(),
            live: service.live.clone(),
            stop_signal,
            stop_timeout: service.stop_timeout,
            backoff: Backoff::default(),
            layout: Layout::new(&config.root),
            log_limit: config.settings.log_limit,
        })
    }
}
