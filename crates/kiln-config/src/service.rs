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
    pub env: BTreeMap<String, String>,
    pub replicas: u32,
    pub restart: RestartPolicy,
    pub ready: Option<Probe>,
    pub stop_signal: String,
    pub stop_timeout: Duration,
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

/// A readiness probe and its timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub check: ProbeCheck,
    pub period: Duration,
    pub timeout: Duration,
    /// Consecutive failures after which a ready service becomes unhealthy.
    pub failures: u32,
}

/// What a readiness probe checks.
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
    "stop_signal",
    "stop_timeout",
];
const PROBE_KEYS: &[&str] = &["http", "tcp", "cmd", "log", "period", "timeout", "failures"];
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
                    Some("a service runs either a command or a container: keep one".into()),
                );
                None
            }
            (None, None) => {
                r.error(
                    name.span.clone(),
                    format!("service `{}` has neither `cmd` nor `image`", name.text),
                    "nothing to run",
                    Some("add `cmd = \"...\"` for a process, or `image = \"TARGET\"` for a container".into()),
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
        let env = field("env").map_or(Some(BTreeMap::new()), |n| r.string_map(n, &what("env")));
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
        let ready = field("ready").map_or(Some(None), |n| read_probe(r, n, &name.text, copies).map(Some));
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

        let after = after?;
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
                replicas: u32::try_from(replicas?).ok()?,
                restart: restart?,
                ready: ready?,
                stop_signal: stop_signal?,
                stop_timeout: stop_timeout?,
            },
            after,
        })
    }
}

/// `replicas`: how many copies the service runs, each filling in its number for
/// `${KILN_REPLICA}`.
fn read_probe(
    r: &mut crate::reader::Reader,
    node: &crate::reader::Node<'_>,
    service: &str,
    replicas: u32,
) -> Option<Probe> {
    let section = format!("`ready` of service `{service}`");
    let table = r.table(node, &section)?;
    r.check_keys(table, PROBE_KEYS, &section);
    let what = |key: &str| format!("`ready.{key}` of service `{service}`");
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
        _ => {
            r.error(
                node.span(),
                format!("{section} needs exactly one of `http`, `tcp`, `cmd` or `log`"),
                if kinds.is_empty() { "no check given" } else { "more than one check" },
                Some("for example `ready = { http = \"http://127.0.0.1:8080/health\" }`".into()),
            );
            None
        }
    };
    let period = table.get("period").map_or(Some(Duration::from_secs(1)), |n| r.positive_duration(n, &what("period")));
    let timeout =
        table.get("timeout").map_or(Some(Duration::from_secs(2)), |n| r.positive_duration(n, &what("timeout")));
    let failures = table.get("failures").map_or(Some(3), |n| r.integer(n, &what("failures"), 1, 1000));
    Some(Probe { check: check?, period: period?, timeout: timeout?, failures: u32::try_from(failures?).ok()? })
}
