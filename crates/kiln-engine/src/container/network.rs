//! The project network: one engine network per project, where container services reach each
//! other by name.
//!
//! Its name is `kiln-<directory>-<digest>`, the prefix of the project's container names (see
//! [`container_name`](crate::container::engine::container_name)), so two checkouts with the
//! same directory name get two networks. It carries the `kiln.project` label, which is how
//! the leftover sweep finds it after a crash and why kiln never removes a network it did not
//! create for this project (one a service names with `network = NAME`, another project's).
//!
//! [`ProjectNetwork::ensure`] creates it before the first replica that joins it starts (the
//! replicas starting at the same time wait for that one creation, and "already exists" with
//! this project's label counts as made), and again before a later start if it has gone
//! (someone removed it while `kiln up` ran). DNS is on: podman's
//! netavark networks other than the default one have `dns_enabled`, Docker's user-defined
//! networks have its embedded DNS. [`ProjectNetwork::remove`] removes it when `kiln up`
//! ends, after every container is gone. Every engine call here is bounded by [`NETWORK_CALL`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::container::engine::{Engine, EngineKind, PROJECT_LABEL, project_id, project_ref};
use crate::event::{Event, EventBus};

/// The longest one engine call about a network may take.
pub const NETWORK_CALL: Duration = Duration::from_secs(30);

/// `kiln-<project>-<digest>`: the project's network.
pub fn network_name(root: &Path) -> String {
    format!("kiln-{}", project_ref(root))
}

/// The project network of one `kiln up`, shared by every replica that joins it.
#[derive(Debug)]
pub struct ProjectNetwork {
    pub engine: Engine,
    pub name: String,
    /// The `kiln.project` label.
    pub project: String,
    /// Held while it is being made: replicas starting together wait for one creation.
    made: tokio::sync::Mutex<bool>,
    /// Whether this session made it (or found it made), so that its end removes it.
    created: AtomicBool,
}

impl ProjectNetwork {
    pub fn new(engine: Engine, root: &Path) -> ProjectNetwork {
        ProjectNetwork {
            engine,
            name: network_name(root),
            project: project_id(root),
            made: tokio::sync::Mutex::new(false),
            created: AtomicBool::new(false),
        }
    }

    /// Makes sure the network exists, creating it the first time (and saying so with
    /// `network.created` and how long it took). The error says what failed and what to do.
    pub async fn ensure(&self, bus: &EventBus) -> Result<(), String> {
        let mut made = self.made.lock().await;
        if *made {
            // Someone may have removed it meanwhile (`podman network rm -f`, which takes its
            // containers with it): then it is made again, or every replica would fail its
            // start on a missing network from then on. An engine that does not answer is
            // taken at its word of last time: the start reports its own error.
            let (engine, name) = (self.engine.clone(), self.name.clone());
            if bounded(move || Ok(network_exists(&engine, &name))).await.unwrap_or(true) {
                return Ok(());
            }
            *made = false;
        }
        let started = Instant::now();
        let (engine, name, project) = (self.engine.clone(), self.name.clone(), self.project.clone());
        bounded(move || create(&engine, &name, &project)).await?;
        *made = true;
        self.created.store(true, Ordering::Release);
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        bus.publish(Event::NetworkCreated { network: self.name.clone(), duration_ms });
        Ok(())
    }

    /// Whether this session created it.
    pub fn created(&self) -> bool {
        self.created.load(Ordering::Acquire)
    }

    /// Removes it (when this session created it), once no container is on it; the error
    /// says what to run by hand. `Ok(false)`: there was nothing to remove.
    pub async fn remove(&self) -> Result<bool, String> {
        if !self.created() {
            return Ok(false);
        }
        let (engine, name) = (self.engine.clone(), self.name.clone());
        let removed = bounded(move || remove_networks(&engine, std::slice::from_ref(&name))).await;
        self.created.store(false, Ordering::Release);
        *self.made.lock().await = false;
        removed.map(|()| true).map_err(|why| {
            format!(
                "cannot remove the network {}: {why}; remove it by hand with `{} network rm {}` once its containers are gone \
                 (`kiln down` removes both)",
                self.name,
                self.engine.name(),
                self.name
            )
        })
    }
}

/// Runs a blocking engine call for at most [`NETWORK_CALL`]; one that takes longer is left
/// to finish on its thread (it dies with kiln).
async fn bounded<T: Send + 'static>(call: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    match tokio::time::timeout(NETWORK_CALL, tokio::task::spawn_blocking(call)).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(format!("the engine call failed: {panic}")),
        Err(_) => Err(format!("the engine did not answer within {} s", NETWORK_CALL.as_secs())),
    }
}

/// Creates the project's network; one that exists already with this project's label is
/// fine (a creation racing this one, or a crash's leftover), one without it is refused.
pub fn create(engine: &Engine, name: &str, project: &str) -> Result<(), String> {
    let label = format!("{PROJECT_LABEL}={project}");
    let Err(failed) = engine.query(&["network", "create", "--label", &label, name]) else { return Ok(()) };
    match network_label(engine, name) {
        Some(found) if found == project => Ok(()),
        Some(_) => Err(format!(
            "a network named {name} exists and was not created by kiln for this project; remove it with `{} network rm \
             {name}` (kiln names its project network after the project's directory and root)",
            engine.name()
        )),
        None => Err(format!("cannot create the project network {name}: {failed}")),
    }
}

/// The `kiln.project` label of a network, if it exists (empty when it has none).
pub fn network_label(engine: &Engine, name: &str) -> Option<String> {
    let format = format!("{{{{index .Labels \"{PROJECT_LABEL}\"}}}}");
    let out = engine.query(&["network", "inspect", "--format", &format, name]).ok()?;
    // A network without the label: podman prints an empty line, docker `<no value>`.
    let label = out.trim();
    Some(if label == "<no value>" { String::new() } else { label.to_string() })
}

/// Whether a network of this name exists.
pub fn network_exists(engine: &Engine, name: &str) -> bool {
    network_label(engine, name).is_some()
}

/// Why a replica cannot join the network `name` it names (`network = NAME`), if it does not
/// exist; `None` when it does.
pub fn missing_network(engine: &Engine, name: &str, service: &str) -> Option<String> {
    (!network_exists(engine, name)).then(|| missing_network_message(engine, name, service))
}

/// What a replica of `service` says when the network it names does not exist.
pub fn missing_network_message(engine: &Engine, name: &str, service: &str) -> String {
    format!(
        "the network {name} (`network` of service `{service}`) does not exist; kiln joins it but never creates it: \
         create it with `{} network create {name}`, or use `network = \"project\"` for a network kiln manages",
        engine.name()
    )
}

/// Names of the networks labelled as this project's.
pub fn project_networks(engine: &Engine, project: &str) -> Result<Vec<String>, String> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let out = engine.query(&["network", "ls", "--filter", &filter, "--format", "{{.Name}}"])?;
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

/// Removes networks by name. Never forced: a network some container still uses stays (and
/// the error says so), a container is never removed through its network. Right after its
/// containers were removed the engine may still count one on it for a moment: a failure is
/// tried again, for at most [`REMOVE_RETRIES`] × 200 ms; one already gone counts as removed.
pub fn remove_networks(engine: &Engine, names: &[String]) -> Result<(), String> {
    for name in names {
        let mut tries = 0;
        loop {
            match engine.query(&["network", "rm", name]) {
                Ok(_) => break,
                Err(_) if !network_exists(engine, name) => break,
                Err(why) if tries >= REMOVE_RETRIES => return Err(why),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
    Ok(())
}

/// How many more times a network removal is tried.
pub const REMOVE_RETRIES: u32 = 10;

/// Whether `--network-alias` may be given on a network `name` of the engine: Docker refuses
/// aliases on its default `bridge` network.
pub fn takes_aliases(kind: EngineKind, name: &str) -> bool {
    !(kind == EngineKind::Docker && name == "bridge")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_is_named_like_the_projects_containers_and_differs_between_checkouts() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [&a, &b] {
            std::fs::create_dir(d.path().join("app")).unwrap();
        }
        let (a, b) = (a.path().join("app"), b.path().join("app"));
        let (na, nb) = (network_name(&a), network_name(&b));
        assert_ne!(na, nb);
        assert!(na.starts_with("kiln-app-") && na.len() == "kiln-app-".len() + 8, "{na}");
        let container = crate::container::engine::container_name(&a, "web", 0);
        assert_eq!(container, format!("{na}-web-0"), "the containers' prefix");
        let engine = Engine { kind: EngineKind::Podman, program: "/usr/bin/podman".into() };
        assert_eq!(
            missing_network_message(&engine, "shared", "web"),
            "the network shared (`network` of service `web`) does not exist; kiln joins it but never creates it: create \
             it with `podman network create shared`, or use `network = \"project\"` for a network kiln manages"
        );
        assert!(!takes_aliases(EngineKind::Docker, "bridge"));
        assert!(takes_aliases(EngineKind::Podman, "podman") && takes_aliases(EngineKind::Docker, "shared"));
    }
}
