//! A long-running process or container as declared in `[service.NAME]`.

use std::collections::BTreeMap;
use std::time::Duration;

/// One service and the policy that keeps it in its desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub kind: ServiceKind,
    /// Targets built before start; their rebuild restarts the service.
    pub deps: Vec<String>,
    /// Services that must be ready before this one starts.
    pub after: Vec<String>,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    /// For container services: the command run in the container instead of the image's.
    pub command: Option<String>,
    /// `env_file`'s variables, then `env` over them.
    pub env: BTreeMap<String, String>,
    /// The dotenv file its environment was read from, relative to the project root.
    pub env_file: Option<String>,
    /// For a process service: its working directory, relative to the project root.
    pub dir: Option<String>,
    pub replicas: u32,
    pub restart: RestartPolicy,
    pub ready: Option<Probe>,
    /// The liveness probe: `failures` failures in a row (after its first pass) restart the
    /// replica. Never a `log` check.
    pub live: Option<Probe>,
    pub stop_signal: String,
    pub stop_timeout: Duration,
    /// Live update: changed files copied into the running containers (container services).
    pub sync: Vec<SyncRule>,
    /// Globs (relative to the project) whose content changes restart the replicas.
    pub watch: Vec<String>,
    /// Container services: the network their containers join.
    pub network: Network,
}

/// `network = "project" | "host" | "none" | NAME`: where a container service's replicas are
/// on the network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// The project's own network (created and removed by kiln), with DNS: each service is
    /// reachable by its name, each replica by `SERVICE-REPLICA`.
    #[default]
    Project,
    /// The host's network stack: no isolation, no port mappings.
    Host,
    /// No network but loopback.
    None,
    /// A network the user manages: kiln joins it, never creates or removes it.
    Named(String),
}

impl Network {
    /// The words kiln.toml spells the built-in choices with.
    pub const KEYWORDS: [&'static str; 3] = ["project", "host", "none"];

    /// What kiln.toml says.
    pub fn name(&self) -> &str {
        match self {
            Network::Project => "project",
            Network::Host => "host",
            Network::None => "none",
            Network::Named(name) => name,
        }
    }

    /// Reads a value of `network`; the error says what is wrong with a name. Names follow
    /// the engines' rule for network names: a letter or digit, then letters, digits, `_`,
    /// `.` and `-`.
    pub fn parse(text: &str) -> Result<Network, String> {
        match text {
            "project" => return Ok(Network::Project),
            "host" => return Ok(Network::Host),
            "none" => return Ok(Network::None),
            _ => {}
        }
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) || text.len() > 200 {
            return Err(format!("`{text}` is not a network name"));
        }
        Ok(Network::Named(text.to_string()))
    }
}

/// One `sync` rule: what a change under `path` does to the running containers.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRule {
    /// A file or directory, relative to the project.
    pub path: String,
    /// Where `path` is in the container (absolute); `None` for `rebuild`.
    pub target: Option<String>,
    /// Globs relative to `path`: a matching file is not synced.
    pub ignore: Vec<String>,
    /// Globs relative to `path`: when given, only a matching file is synced.
    pub include: Vec<String>,
    pub action: SyncAction,
}

/// What a sync rule does with a change it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAction {
    /// Copy it into every running replica.
    Sync,
    /// Copy it, then restart the replicas (rolling, with readiness).
    SyncRestart,
    /// Copy it, then run this command inside every replica.
    SyncExec(String),
    /// Rebuild the image and replace the containers.
    Rebuild,
}

impl SyncAction {
    pub const NAMES: [&'static str; 4] = ["sync", "sync+restart", "sync+exec", "rebuild"];

    /// The name written in kiln.toml.
    pub fn name(&self) -> &'static str {
        match self {
            SyncAction::Sync => "sync",
            SyncAction::SyncRestart => "sync+restart",
            SyncAction::SyncExec(_) => "sync+exec",
            SyncAction::Rebuild => "rebuild",
        }
    }
}

/// What runs: a command, or a container from an image target or an image reference.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceKind {
    Cmd(String),
    /// Either the name of an image target or an existing image reference.
    Image(String),
}

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub const NAMES: [&'static str; 3] = ["always", "on-failure", "never"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "always" => Some(RestartPolicy::Always),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "never" => Some(RestartPolicy::Never),
            _ => None,
        }
    }
}

/// A readiness or liveness probe and its timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub check: ProbeCheck,
    /// How often it runs until it first passes.
    pub period: Duration,
    /// How often it runs after it first passed (default 10 s).
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures after which a ready service becomes unhealthy (readiness), or
    /// is restarted (liveness).
    pub failures: u32,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeCheck {
    /// An HTTP GET answered with 2xx or 3xx.
    Http(String),
    /// A TCP connect to `host:port`.
    Tcp(String),
    /// A command that exits 0.
    Cmd(String),
    /// A line of output matching this regular expression.
    Log(String),
}

const SERVICE_KEYS: &[&str] = &[
    "image",
    "cmd",
    "deps",
    "after",
    "ports",
    "volumes",
    "command",
    "env",
    "replicas",
    "restart",
    "ready",
    "live",
    "stop_signal",
    "stop_timeout",
    "sync",
    "watch",
    "env_file",
    "dir",
    "network",
];
const SYNC_KEYS: &[&str] = &["path", "target", "ignore", "include", "action", "exec"];
const PROBE_KEYS: &[&str] = &["http", "tcp", "cmd", "log", "period", "interval", "timeout", "failures"];
const SIGNALS: &[&str] = &["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2"];

/// A service as read, with the spans of its `after` names for the cycle check.
pub(crate) struct ReadService {
    pub service: Service,
    pub after: Vec<crate::reader::Located>,
}

impl Service {
    /// Reads `[service.NAME]`; `None` when it has errors (already recorded in `r`).
    pub(crate) fn read(
        r: &mut crate::reader::Reader,
        name: &crate::reader::Located,
        node: &crate::reader::Node<'_>,
        names: &crate::validate::Names,
    ) -> Option<ReadService> {
        let section = format!("[service.{}]", name.text);
        let table = r.table(node, &section)?;
        r.check_keys(table, SERVICE_KEYS, &section);
        let field = |key: &str| table.get(key);
        let what = |key: &str| format!("`{key}` of service `{}`", name.text);

        let kind = match (field("cmd"), field("image")) {
            (Some(_), Some(image)) => {
                r.error(
                    image.span(),
                    format!("service `{}` has both `cmd` and `image`", name.text),
                    "second action here",
                    Some(
                        "a service runs either a command or a container: keep one (a container's own command is \
                         overridden with `command = \"…\"` beside `image`)"
                            .into(),
                    ),
                );
                None
            }
            (None, None) => {
                // `command` alone: a process service written with the container's key.
                let (span, label, help) = match field("command") {
                    Some(command) => (
                        command.span(),
                        "`command` without `image`",
                        "`command` overrides the command of a container service (one with `image = \"TARGET\"`); \
                         a process service runs `cmd = \"...\"`",
                    ),
                    None => (
                        name.span.clone(),
                        "nothing to run",
                        "add `cmd = \"...\"` for a process, or `image = \"TARGET\"` for a container",
                    ),
                };
                r.error(
                    span,
                    format!("service `{}` has neither `cmd` nor `image`", name.text),
                    label,
                    Some(help.into()),
                );
                None
            }
            (Some(cmd), None) => r.string(cmd, &what("cmd")).map(ServiceKind::Cmd),
            (None, Some(image)) => {
                let image = r.located(image, &what("image"))?;
                names.check_image_ref(r, &image);
                Some(ServiceKind::Image(image.text))
            }
        };
        let list = |r: &mut crate::reader::Reader, key: &str| match field(key) {
            Some(n) => r.string_list(n, &what(key)),
            None => Some(Vec::new()),
        };
        let mut deps = list(r, "deps");
        // A container of an image target depends on it: built first, rolled when it changes.
        if let (Some(ServiceKind::Image(image)), Some(deps)) = (&kind, deps.as_mut())
            && names.is_image_target(image)
            && !deps.iter().any(|d| d.text == *image)
        {
            let span = field("image").map(|n| n.span()).unwrap_or_default();
            deps.push(crate::reader::Located { text: image.clone(), span });
        }
        for dep in deps.iter().flatten() {
            names.check_target_ref(r, dep, "dependency");
        }
        let after = list(r, "after");
        for svc in after.iter().flatten() {
            names.check_service_ref(r, svc);
        }
        let replicas = field("replicas").map_or(Some(1), |n| r.integer(n, &what("replicas"), 1, 64));
        // Placeholders are checked for every replica; with a bad count, for the first.
        let copies = replicas.and_then(|n| u32::try_from(n).ok()).unwrap_or(1);
        let ports = list(r, "ports").and_then(|ports| {
            let mut ok = true;
            for port in &ports {
                if let Err(problem) = crate::address::check_port_mapping(&port.text, copies, &what("ports")) {
                    r.problem(port, problem);
                    ok = false;
                }
            }
            ok.then_some(ports)
        });
        let volumes = list(r, "volumes");
        let command = field("command").map_or(Some(None), |n| r.string(n, &what("command")).map(Some));
        let (env, env_file) = r.env_with_file(field("env"), field("env_file"), what);
        let dir = match field("dir") {
            None => Some(None),
            Some(n) => {
                let dir = r.located(n, &what("dir"))?;
                if let Some(ServiceKind::Image(_)) = &kind {
                    r.error(
                        dir.span.clone(),
                        format!("`dir` of service `{}` is for process services", name.text),
                        "a container service",
                        Some("a container's working directory comes from its image (`WORKDIR`)".into()),
                    );
                    None
                } else if !crate::validate::check_relative(r, &dir, &what("dir")) {
                    None
                } else if !r.root.join(&dir.text).is_dir() {
                    r.error(
                        dir.span.clone(),
                        format!("`dir` of service `{}` is not a directory: `{}`", name.text, dir.text),
                        "no such directory",
                        Some("it is relative to the directory holding kiln.toml".into()),
                    );
                    None
                } else {
                    Some(Some(dir.text))
                }
            }
        };
        let restart = field("restart").map_or(Some(RestartPolicy::OnFailure), |n| {
            let text = r.located(n, &what("restart"))?;
            let policy = RestartPolicy::parse(&text.text);
            if policy.is_none() {
                let hint = crate::did_you_mean(&text.text, RestartPolicy::NAMES)
                    .map_or_else(|| "use always, on-failure or never".to_string(), |s| format!("did you mean `{s}`?"));
                r.error(text.span, format!("unknown restart policy `{}`", text.text), "unknown policy", Some(hint));
            }
            policy
        });
        let ready =
            field("ready").map_or(Some(None), |n| read_probe(r, n, &name.text, copies, ProbeRole::Ready).map(Some));
        let live =
            field("live").map_or(Some(None), |n| read_probe(r, n, &name.text, copies, ProbeRole::Live).map(Some));
        let stop_signal = field("stop_signal").map_or(Some("SIGTERM".to_string()), |n| {
            let text = r.located(n, &what("stop_signal"))?;
            if SIGNALS.contains(&text.text.as_str()) {
                return Some(text.text);
            }
            let hint = crate::did_you_mean(&text.text, SIGNALS.iter().copied())
                .map_or_else(|| format!("use one of {}", SIGNALS.join(", ")), |s| format!("did you mean `{s}`?"));
            r.error(text.span, format!("unknown signal `{}`", text.text), "unknown signal", Some(hint));
            None
        });
        let stop_timeout = field("stop_timeout")
            .map_or(Some(Duration::from_secs(10)), |n| r.positive_duration(n, &what("stop_timeout")));

        let sync = field("sync").map_or(Some(Vec::new()), |n| read_sync(r, n, &name.text, kind.as_ref(), names));
        let watch = field("watch").map_or(Some(Vec::new()), |n| {
            let globs = r.string_list(n, &what("watch"))?;
            let mut ok = true;
            for glob in &globs {
                ok &= crate::validate::check_relative(r, glob, &what("watch"))
                    && crate::validate::check_glob(r, glob, &what("watch"));
            }
            ok.then(|| globs.into_iter().map(|g| g.text).collect())
        });

        let network = read_network(r, field("network"), &name.text, kind.as_ref(), ports.as_deref());
        let container_keys_ok = check_container_keys(r, table, &name.text, kind.as_ref());

        let after = after?;
        container_keys_ok.then_some(())?;
        Some(ReadService {
            service: Service {
                name: name.text.clone(),
                kind: kind?,
                deps: deps?.into_iter().map(|d| d.text).collect(),
                after: after.iter().map(|a| a.text.clone()).collect(),
                ports: ports?.into_iter().map(|p| p.text).collect(),
                volumes: volumes?.into_iter().map(|v| v.text).collect(),
                command: command?,
                env: env?,
                env_file: env_file?,
                dir: dir?,
                replicas: u32::try_from(replicas?).ok()?,
                restart: restart?,
                ready: ready?,
                live: live?,
                stop_signal: stop_signal?,
                stop_timeout: stop_timeout?,
                sync: sync?,
                watch: watch?,
                network: network?,
            },
            after,
        })
    }
}

/// `command`, `ports` and `volumes` apply to containers only: on a process service each is
/// an error at its value, saying what a process does instead. (`sync` and `network` are
/// checked where they are read.) Returns whether there is none.
fn check_container_keys(
    r: &mut crate::reader::Reader,
    table: &toml::de::DeTable<'_>,
    service: &str,
    kind: Option<&ServiceKind>,
) -> bool {
    let Some(ServiceKind::Cmd(_)) = kind else { return true };
    let mut ok = true;
    for (key, help) in [
        ("command", "a process service runs `cmd`: put the command there"),
        ("ports", "a process listens on the host's ports itself; `ports` maps a container's ports to the host"),
        (
            "volumes",
            "a process reads the host's files directly (run it in `dir`); `volumes` mounts them into a container",
        ),
    ] {
        if let Some(node) = table.get(key) {
            r.error(
                node.span(),
                format!("service `{service}` runs a command: `{key}` is for container services"),
                "not a container service",
                Some(help.into()),
            );
            ok = false;
        }
    }
    ok
}

/// `network = "project" | "host" | "none" | NAME`, for container services only; ports are
/// mapped only on a network of the engine's (project or NAME).
fn read_network(
    r: &mut crate::reader::Reader,
    node: Option<&crate::reader::Node<'_>>,
    service: &str,
    kind: Option<&ServiceKind>,
    ports: Option<&[crate::reader::Located]>,
) -> Option<Network> {
    let Some(node) = node else { return Some(Network::Project) };
    let text = r.located(node, &format!("`network` of service `{service}`"))?;
    if let Some(ServiceKind::Cmd(_)) = kind {
        r.error(
            text.span,
            format!("service `{service}` runs a command: `network` is for container services"),
            "not a container service",
            Some("a process shares the host's network: it reaches containers through their `ports`".into()),
        );
        return None;
    }
    let network = match Network::parse(&text.text) {
        Ok(n) => n,
        Err(why) => {
            let hint = crate::did_you_mean(&text.text, Network::KEYWORDS).map_or_else(
                || {
                    "use \"project\" (the default), \"host\", \"none\", or the name of a network you created: letters, \
                     digits, `_`, `.` and `-`, starting with a letter or digit"
                        .to_string()
                },
                |s| format!("did you mean `{s}`?"),
            );
            r.error(text.span, format!("`network` of service `{service}`: {why}"), "not a network name", Some(hint));
            return None;
        }
    };
    if matches!(network, Network::Host | Network::None)
        && let Some(port) = ports.and_then(<[_]>::first)
    {
        let why = if network == Network::Host {
            "the container uses the host's ports directly"
        } else {
            "the container has no network to map them to"
        };
        r.error(
            port.span.clone(),
            format!("service `{service}` has `network = \"{}\"`: `ports` cannot be mapped", network.name()),
            "not mapped",
            Some(format!("{why}: remove `ports`, or use `network = \"project\"`")),
        );
        return None;
    }
    Some(network)
}

/// `sync = [{ path, target, ignore, include, action, exec }, …]`.
fn read_sync(
    r: &mut crate::reader::Reader,
    node: &crate::reader::Node<'_>,
    service: &str,
    kind: Option<&ServiceKind>,
    names: &crate::validate::Names,
) -> Option<Vec<SyncRule>> {
    let what = format!("`sync` of service `{service}`");
    let toml::de::DeValue::Array(items) = node.get_ref() else {
        r.error(
            node.span(),
            format!("{what} must be an array of rules"),
            format!("found {}", crate::reader::type_name(node.get_ref())),
            Some("for example `sync = [{ path = \"app\", target = \"/code\" }]`".into()),
        );
        return None;
    };
    if let Some(ServiceKind::Cmd(_)) = kind {
        r.error(
            node.span(),
            format!("service `{service}` runs a command: `sync` copies files into containers"),
            "not a container service",
            Some("to restart a process service on changes, use `watch = [\"GLOB\", …]`".into()),
        );
        return None;
    }
    let mut rules: Vec<SyncRule> = Vec::new();
    let mut ok = true;
    for item in items.iter() {
        match read_sync_rule(r, item, service, kind, names) {
            Some(rule) if rules.iter().any(|other| other.path == rule.path) => {
                r.error(
                    item.span(),
                    format!("two `sync` rules of service `{service}` have `path = \"{}\"`", rule.path),
                    "second rule for this path",
                    Some("one rule per path: merge them, or narrow one with a deeper `path`".into()),
                );
                ok = false;
            }
            Some(rule) => rules.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(rules)
}

fn read_sync_rule(
    r: &mut crate::reader::Reader,
    node: &crate::reader::Node<'_>,
    service: &str,
    kind: Option<&ServiceKind>,
    names: &crate::validate::Names,
) -> Option<SyncRule> {
    let section = format!("a `sync` rule of service `{service}`");
    let table = r.table(node, &section)?;
    r.check_keys(table, SYNC_KEYS, &section);
    let what = |key: &str| format!("`sync.{key}` of service `{service}`");
    let path = match table.get("path") {
        Some(n) => {
            let path = r.located(n, &what("path"))?;
            if !crate::validate::check_relative(r, &path, &what("path")) {
                return None;
            }
            let trimmed = path.text.trim_end_matches('/');
            let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
            if trimmed.is_empty() || trimmed == "." {
                r.error(
                    path.span.clone(),
                    format!("{} names the whole project", what("path")),
                    "the project root",
                    Some("name the directory or file to sync, e.g. `path = \"app\"`".into()),
                );
                return None;
            }
            if trimmed.contains(['*', '?', '[', '{']) {
                r.error(
                    path.span.clone(),
                    format!("{} is a file or directory, not a glob", what("path")),
                    "a glob",
                    Some("name the directory and narrow it with `include = [\"GLOB\"]`".into()),
                );
                return None;
            }
            Some(trimmed.to_string())
        }
        None => {
            r.error(
                node.span(),
                format!("{section} has no `path`"),
                "no path",
                Some("add `path = \"DIR\"`: the file or directory, relative to the project".into()),
            );
            None
        }
    };
    let action = match table.get("action") {
        None => Some(SyncAction::Sync),
        Some(n) => {
            let text = r.located(n, &what("action"))?;
            match text.text.as_str() {
                "sync" => Some(SyncAction::Sync),
                "sync+restart" => Some(SyncAction::SyncRestart),
                "sync+exec" => match table.get("exec") {
                    Some(cmd) => r.string(cmd, &what("exec")).map(SyncAction::SyncExec),
                    None => {
                        r.error(
                            text.span,
                            format!("{section} runs `sync+exec` without `exec`"),
                            "no command to run",
                            Some("add `exec = \"CMD\"`: run inside each replica after the copy".into()),
                        );
                        None
                    }
                },
                "rebuild" => Some(SyncAction::Rebuild),
                other => {
                    let hint = crate::did_you_mean(other, SyncAction::NAMES).map_or_else(
                        || "use sync, sync+restart, sync+exec or rebuild".to_string(),
                        |s| format!("did you mean `{s}`?"),
                    );
                    r.error(text.span, format!("unknown sync action `{other}`"), "unknown action", Some(hint));
                    None
                }
            }
        }
    };
    if let (Some(exec), Some(action)) = (table.get("exec"), action.as_ref())
        && !matches!(action, SyncAction::SyncExec(_))
    {
        r.error(
            exec.span(),
            format!("`exec` in {section} is only run by `action = \"sync+exec\"`"),
            "never run",
            Some("set `action = \"sync+exec\"`, or remove `exec`".into()),
        );
        return None;
    }
    let rebuild = matches!(action, Some(SyncAction::Rebuild));
    if rebuild
        && let Some(ServiceKind::Image(image)) = kind
        && !names.is_image_target(image)
    {
        r.error(
            table.get("action").map(|n| n.span()).unwrap_or_else(|| node.span()),
            format!("{section} rebuilds, but `{image}` is an image reference, not an image target"),
            "nothing to rebuild",
            Some("`rebuild` applies to services whose `image` is an image target of this kiln.toml".into()),
        );
        return None;
    }
    let target = match (table.get("target"), rebuild) {
        (Some(n), false) => {
            let target = r.located(n, &what("target"))?;
            let parts: Vec<&str> = target.text.split('/').collect();
            let odd = parts.iter().skip(1).any(|p| p.is_empty() || *p == "." || *p == "..") && target.text != "/";
            if !target.text.starts_with('/') || odd || target.text.contains(['\n', '\0']) {
                r.error(
                    target.span,
                    format!("{} must be an absolute path in the container", what("target")),
                    "not an absolute path",
                    Some("for example `target = \"/code\"`: no `.`, `..`, `//` or trailing `/`".into()),
                );
                return None;
            }
            Some(Some(target.text))
        }
        (Some(n), true) => {
            r.error(
                n.span(),
                format!("a `rebuild` rule copies nothing: `target` in {section} is never used"),
                "never used",
                Some("remove `target`, or use `action = \"sync\"`".into()),
            );
            None
        }
        (None, false) => {
            r.error(
                node.span(),
                format!("{section} has no `target`"),
                "where in the container?",
                Some("add `target = \"/PATH\"`: where `path` is in the container".into()),
            );
            None
        }
        (None, true) => Some(None),
    };
    let globs = |r: &mut crate::reader::Reader, key: &str| match table.get(key) {
        None => Some(Vec::new()),
        Some(n) => {
            let items = r.string_list(n, &what(key))?;
            let mut ok = true;
            for item in &items {
                ok &= crate::validate::check_glob(r, item, &what(key));
            }
            ok.then(|| items.into_iter().map(|l| l.text).collect())
        }
    };
    let ignore = globs(r, "ignore");
    let include = globs(r, "include");
    Some(SyncRule { path: path?, target: target?, ignore: ignore?, include: include?, action: action? })
}

/// Which of a service's probes is read: `ready` or `live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeRole {
    Ready,
    Live,
}

/// `ready = { … }` or `live = { … }`. `replicas`: how many copies the service runs, each
/// filling in its number for `${KILN_REPLICA}`.
fn read_probe(
    r: &mut crate::reader::Reader,
    node: &crate::reader::Node<'_>,
    service: &str,
    replicas: u32,
    role: ProbeRole,
) -> Option<Probe> {
    let key = if role == ProbeRole::Ready { "ready" } else { "live" };
    let section = format!("`{key}` of service `{service}`");
    let table = r.table(node, &section)?;
    let keys_known = r.check_keys(table, PROBE_KEYS, &section);
    let what = |k: &str| format!("`{key}.{k}` of service `{service}`");
    if role == ProbeRole::Live
        && let Some(log) = table.get("log")
    {
        r.error(
            log.span(),
            format!("{section} cannot be a `log` check"),
            "a log line is printed once",
            Some("liveness is checked again and again: use `http`, `tcp` or `cmd` (`log` suits `ready`)".into()),
        );
        return None;
    }
    let kinds: Vec<&str> = ["http", "tcp", "cmd", "log"].into_iter().filter(|k| table.contains_key(*k)).collect();
    let check = match kinds.as_slice() {
        [kind] => {
            let value = r.located(&table[*kind], &what(kind))?;
            let checked = match *kind {
                "http" => crate::address::check_http_url(&value.text, replicas, &what(kind)),
                "tcp" => crate::address::check_host_port(&value.text, replicas, &what(kind)),
                _ => Ok(()),
            };
            let ok = match checked {
                Ok(()) => *kind != "log" || crate::validate::check_regex(r, &value, &what(kind)),
                Err(problem) => {
                    r.problem(&value, problem);
                    false
                }
            };
            let text = value.text;
            let check = match *kind {
                "http" => ProbeCheck::Http(text),
                "tcp" => ProbeCheck::Tcp(text),
                "cmd" => ProbeCheck::Cmd(text),
                _ => ProbeCheck::Log(text),
            };
            ok.then_some(check)
        }
        // With no check but an unknown key, that key is most likely the check misspelt
        // (`htp`): its error says so, and a second one about the missing check would only
        // repeat it.
        [] if !keys_known => None,
        _ => {
            r.error(
                node.span(),
                if role == ProbeRole::Ready {
                    format!("{section} needs exactly one of `http`, `tcp`, `cmd` or `log`")
                } else {
                    format!("{section} needs exactly one of `http`, `tcp` or `cmd`")
                },
                if kinds.is_empty() { "no check given" } else { "more than one check" },
                Some(format!("for example `{key} = {{ http = \"http://127.0.0.1:8080/health\" }}`")),
            );
            None
        }
    };
    let period = table.get("period").map_or(Some(Duration::from_secs(1)), |n| r.positive_duration(n, &what("period")));
    let interval =
        table.get("interval").map_or(Some(Duration::from_secs(10)), |n| r.positive_duration(n, &what("interval")));
    let timeout =
        table.get("timeout").map_or(Some(Duration::from_secs(2)), |n| r.positive_duration(n, &what("timeout")));
    let failures = table.get("failures").map_or(Some(3), |n| r.integer(n, &what("failures"), 1, 1000));
    Some(Probe {
        check: check?,
        period: period?,
        interval: interval?,
        timeout: timeout?,
        failures: u32::try_from(failures?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{LoadError, parse_str};

    const IMAGE: &str =
        "[target.web-image]\ninputs = [\"app/**\"]\nimage = { name = \"localhost/web\", context = \".\" }\n";

    fn errors(service: &str) -> String {
        let text = format!("{IMAGE}\n[service.web]\n{service}\n");
        match parse_str(&text, Path::new("kiln.toml"), Path::new("/nonexistent"), None) {
            Ok(_) => panic!("expected errors for:\n{service}"),
            Err(LoadError::Invalid(d)) => d.render(false),
            Err(e) => panic!("{e}"),
        }
    }

    fn read(service: &str) -> Service {
        let text = format!("{IMAGE}\n[service.web]\n{service}\n");
        match parse_str(&text, Path::new("kiln.toml"), Path::new("/nonexistent"), None) {
            Ok(mut c) => c.services.remove("web").expect("the service"),
            Err(LoadError::Invalid(d)) => panic!("{}", d.render(false)),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn reads_sync_rules_and_watch_globs() {
        let web = read(
            r#"image = "web-image"
sync = [
  { path = "app/", target = "/code", ignore = ["**/__pycache__/**"], include = ["**/*.py"], action = "sync+restart" },
  { path = "./static", target = "/www" },
  { path = "conf", target = "/etc/app", action = "sync+exec", exec = "kill -HUP 1" },
  { path = "app/requirements.txt", action = "rebuild" },
]
watch = ["config/**"]"#,
        );
        let actions: Vec<&SyncAction> = web.sync.iter().map(|r| &r.action).collect();
        assert_eq!(
            actions,
            [
                &SyncAction::SyncRestart,
                &SyncAction::Sync,
                &SyncAction::SyncExec("kill -HUP 1".into()),
                &SyncAction::Rebuild
            ]
        );
        assert_eq!(web.sync[0].path, "app", "a trailing slash is dropped");
        assert_eq!(web.sync[1].path, "static", "a leading ./ is dropped");
        assert_eq!(web.sync[0].target.as_deref(), Some("/code"));
        assert_eq!(web.sync[0].ignore, ["**/__pycache__/**"]);
        assert_eq!(web.sync[0].include, ["**/*.py"]);
        assert_eq!(web.sync[3].target, None);
        assert_eq!(web.watch, ["config/**"]);
    }

    #[test]
    fn sync_on_a_process_service_points_to_watch() {
        let e = errors("cmd = \"./serve\"\nsync = [{ path = \"app\", target = \"/code\" }]");
        assert!(e.contains("service `web` runs a command: `sync` copies files into containers"), "{e}");
        assert!(e.contains("use `watch = [\"GLOB\", …]`"), "{e}");
    }

    #[test]
    fn every_mistake_in_a_rule_is_named() {
        let e = errors(
            r#"image = "web-image"
sync = [
  { path = "app", target = "code" },
  { path = "app" },
  { path = "app", target = "/code", action = "sync+exec" },
  { path = "app", target = "/code", action = "synk" },
  { path = "app/*.py", target = "/code" },
  { path = "../up", target = "/code" },
  { path = "deps.txt", target = "/deps", action = "rebuild" },
  { path = "app", target = "/code", exec = "true" },
  { path = "lib", target = "//code" },
  { path = "lib2", target = "/code/" },
  { path = "static", target = "/www" },
  { path = "static/", target = "/www2" },
  { target = "/code" },
]
watch = ["/etc/**"]"#,
        );
        for needle in [
            "`sync.target` of service `web` must be an absolute path in the container",
            "a `sync` rule of service `web` has no `target`",
            "runs `sync+exec` without `exec`",
            "unknown sync action `synk`",
            "did you mean `sync`?",
            "`sync.path` of service `web` is a file or directory, not a glob",
            "path in `sync.path` of service `web` leaves the project root",
            "a `rebuild` rule copies nothing",
            "is only run by `action = \"sync+exec\"`",
            "a `sync` rule of service `web` has no `path`",
            "two `sync` rules of service `web` have `path = \"static\"`",
            "path in `watch` of service `web` leaves the project root",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
        }
    }

    #[test]
    fn rebuild_needs_an_image_target() {
        let e = errors("image = \"localhost/other:1\"\nsync = [{ path = \"deps.txt\", action = \"rebuild\" }]");
        assert!(e.contains("`localhost/other:1` is an image reference, not an image target"), "{e}");
    }

    #[test]
    fn reads_a_liveness_probe_with_its_defaults() {
        let web = read("cmd = \"./serve\"\nlive = { http = \"http://127.0.0.1:8080/health\", interval = \"300ms\" }");
        let live = web.live.expect("a liveness probe");
        assert_eq!(live.check, ProbeCheck::Http("http://127.0.0.1:8080/health".into()));
        assert_eq!(
            (live.period, live.interval, live.timeout, live.failures),
            (Duration::from_secs(1), Duration::from_millis(300), Duration::from_secs(2), 3)
        );
        assert_eq!(web.ready, None);
    }

    #[test]
    fn a_log_liveness_probe_is_an_error_with_a_hint() {
        let e = errors("cmd = \"./serve\"\nlive = { log = \"listening\" }");
        assert!(e.contains("`live` of service `web` cannot be a `log` check"), "{e}");
        assert!(e.contains("use `http`, `tcp` or `cmd`"), "{e}");
        let e = errors("cmd = \"./serve\"\nlive = { interval = \"1s\" }");
        assert!(e.contains("`live` of service `web` needs exactly one of `http`, `tcp` or `cmd`"), "{e}");
        let e = errors("cmd = \"./serve\"\nlive = { tcp = \"127.0.0.1:1\", failures = 0 }");
        assert!(e.contains("`live.failures` of service `web`"), "{e}");
    }

    #[test]
    fn network_defaults_to_the_project_and_takes_host_none_or_a_name() {
        assert_eq!(read("image = \"web-image\"").network, Network::Project);
        assert_eq!(read("cmd = \"./serve\"").network, Network::Project, "unused by processes");
        assert_eq!(read("image = \"web-image\"\nnetwork = \"host\"").network, Network::Host);
        assert_eq!(read("image = \"web-image\"\nnetwork = \"none\"").network, Network::None);
        assert_eq!(
            read("image = \"web-image\"\nnetwork = \"shared_net.1-a\"\nports = [\"8080:80\"]").network,
            Network::Named("shared_net.1-a".into())
        );
    }

    #[test]
    fn network_on_a_process_a_bad_name_and_ports_without_a_network_are_errors() {
        let e = errors("cmd = \"./serve\"\nnetwork = \"host\"");
        assert!(e.contains("service `web` runs a command: `network` is for container services"), "{e}");
        assert!(e.contains("a process shares the host's network"), "{e}");
        assert!(e.contains("kiln.toml:7:11"), "the span of the value: {e}");
        let e = errors("image = \"web-image\"\nnetwork = \"my net\"");
        assert!(e.contains("`network` of service `web`: `my net` is not a network name"), "{e}");
        assert!(e.contains("letters, digits, `_`, `.` and `-`, starting with a letter or digit"), "{e}");
        let e = errors("image = \"web-image\"\nnetwork = \"-x\"");
        assert!(e.contains("`-x` is not a network name"), "{e}");
        let e = errors("image = \"web-image\"\nnetwork = \"host\"\nports = [\"8080:80\"]");
        assert!(e.contains("service `web` has `network = \"host\"`: `ports` cannot be mapped"), "{e}");
        assert!(e.contains("the container uses the host's ports directly"), "{e}");
        let e = errors("image = \"web-image\"\nnetwork = \"none\"\nports = [\"8080:80\"]");
        assert!(e.contains("the container has no network to map them to"), "{e}");
    }

    #[test]
    fn a_process_service_may_watch() {
        let web = read("cmd = \"./serve\"\nwatch = [\"config/*.toml\", \"templates/**\"]");
        assert_eq!(web.watch, ["config/*.toml", "templates/**"]);
        assert!(web.sync.is_empty());
    }
}

#[cfg(test)]
mod env_file_tests {
    use std::path::Path;

    use crate::{LoadError, parse_str};

    fn load(root: &Path, text: &str) -> Result<crate::Config, String> {
        match parse_str(text, Path::new("kiln.toml"), root, None) {
            Ok(c) => Ok(c),
            Err(LoadError::Invalid(d)) => Err(d.render(false)),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn env_wins_over_env_file_for_targets_and_services() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".env"), "# settings\nA=from-file\nB=\"two words\" # c\n").unwrap();
        std::fs::create_dir(dir.path().join("srv")).unwrap();
        let c = load(
            dir.path(),
            "[target.t]\ncmd = \"true\"\nenv_file = \".env\"\nenv = { A = \"from-env\" }\n\
             [service.s]\ncmd = \"./run\"\ndir = \"srv\"\nenv_file = \".env\"\n",
        )
        .expect("valid");
        let t = &c.targets["t"];
        assert_eq!((t.env["A"].as_str(), t.env["B"].as_str()), ("from-env", "two words"));
        assert_eq!(t.env_file.as_deref(), Some(".env"));
        let s = &c.services["s"];
        assert_eq!(s.env["A"], "from-file");
        assert_eq!(s.dir.as_deref(), Some("srv"));
        assert_eq!(c.env_files().into_iter().collect::<Vec<_>>(), [".env"]);
    }

    #[test]
    fn a_missing_or_broken_env_file_and_a_bad_dir_are_errors_with_spans() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("bad.env"), "A=1\nnot a line\n").unwrap();
        let e = load(
            dir.path(),
            "[target.t]\ncmd = \"true\"\nenv_file = \"missing.env\"\n\
             [service.s]\ncmd = \"./run\"\nenv_file = \"bad.env\"\ndir = \"nowhere\"\n\
             [service.c]\nimage = \"localhost/x:1\"\ndir = \"srv\"\n",
        )
        .expect_err("invalid");
        for needle in [
            "`env_file` of target `t` `missing.env` does not exist",
            "kiln.toml:3:12",
            "`env_file` of service `s` `bad.env`, line 2: expected `KEY=VALUE`",
            "`dir` of service `s` is not a directory: `nowhere`",
            "`dir` of service `c` is for process services",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
        }
    }
}
