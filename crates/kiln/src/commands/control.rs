//! Commands that talk to a running `kiln up`: status, wait, trigger, down, and logs -f.

use std::time::{Duration, Instant};

use kiln_config::Config;
use kiln_engine::ProjectLock;
use kiln_engine::{Engine, Layout, TriggerKind};

use crate::api_client::{ClientError, info, request};
use crate::exit;
use crate::out::{errln, outln};
use crate::status_view::{short_image, update_breakdown};

pub(crate) fn fail(e: &ClientError) -> u8 {
    errln!("error: {}", e.message());
    exit::FAILED
}

pub(crate) fn status_json(config: &Config) -> Result<serde_json::Value, ClientError> {
    let info = info(&Layout::new(&config.root).kiln)?;
    match request(&info, "GET", "/api/status")? {
        (200, body) => {
            serde_json::from_str(&body).map_err(|e| ClientError::Io(format!("its status is not JSON ({e}): {body}")))
        }
        (code, body) => Err(ClientError::Io(format!("`kiln up` answered {code}: {}", body.trim()))),
    }
}

/// The hint for a name that is neither a target nor a service: `; did you mean `x`?` and
/// a line with the names there are.
fn unknown_hint<'a>(
    name: &str,
    targets: impl Iterator<Item = &'a str> + Clone,
    services: impl Iterator<Item = &'a str> + Clone,
) -> String {
    let mean = kiln_config::did_you_mean(name, targets.clone().chain(services.clone()))
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    let list = |names: &mut dyn Iterator<Item = &'a str>| {
        // A project of thousands of targets does not print them all.
        const SHOWN: usize = 20;
        let all: Vec<&str> = names.collect();
        match all.len() {
            0 => "none".to_string(),
            n if n <= SHOWN => all.join(", "),
            n => format!("{} and {} more (`kiln graph` lists them)", all[..SHOWN].join(", "), n - SHOWN),
        }
    };
    format!("{mean}\n  = targets: {}; services: {}", list(&mut targets.clone()), list(&mut services.clone()))
}

/// Whether `name` is a target or service of kiln.toml; if not, says so (with the names
/// there are) and gives the exit code. Not checked when kiln.toml has errors (`check`
/// false): then only the running `kiln up` knows.
pub fn known(config: &Config, name: &str, check: bool) -> Result<(), u8> {
    if !check || config.targets.contains_key(name) || config.services.contains_key(name) {
        return Ok(());
    }
    let hint =
        unknown_hint(name, config.targets.keys().map(String::as_str), config.services.keys().map(String::as_str));
    errln!("error: unknown target or service `{name}`{hint}");
    Err(exit::USAGE)
}

/// The running session's status for a table; with `--json` (or a failure) it is printed
/// (or said) here and the exit code comes back instead.
pub fn status_to_render(config: &Config, json: bool) -> Result<serde_json::Value, u8> {
    let v = status_json(config).map_err(|e| fail(&e))?;
    if json {
        outln!("{v}");
        return Err(exit::SUCCESS);
    }
    Ok(v)
}

pub fn status(config: &Config, json: bool) -> u8 {
    let v = match status_to_render(config, json) {
        Ok(v) => v,
        Err(code) => return code,
    };
    for line in status_lines(&v) {
        outln!("{line}");
    }
    exit::SUCCESS
}

/// `kiln status` as text: a line per target (status, reason), then a line per service
/// (phase, replicas, image, restarts, the last update's save-to-ready breakdown), in
/// columns as wide as their longest cell (at least 16 for names and 8 for phases, so short
/// names line up as they always did).
fn status_lines(v: &serde_json::Value) -> Vec<String> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let targets: Vec<[String; 3]> = v["targets"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, t)| [name.clone(), text(&t["status"]), text(&t["reason"])])
        .collect();
    let services: Vec<[String; 6]> = v["services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            let count = |key: &str| s[key].as_u64().unwrap_or(0);
            let restarts = count("restarts");
            [
                name.clone(),
                s["phase"].as_str().unwrap_or("pending").to_string(),
                format!("{}/{} replicas", count("ready"), count("desired")),
                s["image"].as_str().map(|i| format!("image {}", short_image(i))).unwrap_or_default(),
                format!("{restarts} {}", plural(restarts, "restart")),
                s.get("last_update")
                    .and_then(|u| serde_json::from_value::<kiln_engine::Latency>(u["latency_ms"].clone()).ok())
                    .map(|l| format!("last update {}", update_breakdown(&l)))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let width = |cells: &mut dyn Iterator<Item = &String>, least: usize| {
        cells.map(|c| c.chars().count()).fold(least, usize::max)
    };
    let name_w = width(&mut targets.iter().map(|t| &t[0]).chain(services.iter().map(|s| &s[0])), 16);
    let phase_w = width(&mut targets.iter().map(|t| &t[1]).chain(services.iter().map(|s| &s[1])), 8);
    let replicas_w = width(&mut services.iter().map(|s| &s[2]), 0);
    let image_w = width(&mut services.iter().map(|s| &s[3]), 0);
    let restarts_w = width(&mut services.iter().map(|s| &s[4]), 0);
    let mut lines = Vec::with_capacity(targets.len() + services.len());
    for [name, status, reason] in &targets {
        lines.push(format!("{name:<name_w$} {status:<phase_w$} {reason}").trim_end().to_string());
    }
    for [name, phase, replicas, image, restarts, update] in &services {
        // No image column when no service runs a container.
        let image = if image_w == 0 { String::new() } else { format!("  {image:<image_w$}") };
        let line = format!(
            "{name:<name_w$} {phase:<phase_w$} {replicas:<replicas_w$}{image}  {restarts:<restarts_w$}  {update}"
        );
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// `word`, or `words` for any count but one.
fn plural(n: u64, word: &str) -> String {
    if n == 1 { word.to_string() } else { format!("{word}s") }
}

fn send(config: &Config, path: &str) -> Result<(u16, String), ClientError> {
    info(&Layout::new(&config.root).kiln).and_then(|i| request(&i, "POST", path))
}

fn report(result: Result<(u16, String), ClientError>, done: &str) -> u8 {
    match result {
        Ok((202, _)) => {
            outln!("{done}");
            exit::SUCCESS
        }
        Ok((code, body)) => {
            errln!("error: `kiln up` answered {code}: {body}");
            exit::FAILED
        }
        Err(e) => fail(&e),
    }
}

/// `check`: whether the name can be checked against the configuration (not when kiln.toml
/// has errors: then the running `kiln up` decides).
pub fn trigger(config: &Config, name: &str, kind: Option<TriggerKind>, check: bool) -> u8 {
    let in_config = match kind {
        None => Ok(()),
        Some(TriggerKind::Target) => known_as(config, name, check, "target", config.targets.contains_key(name)),
        Some(TriggerKind::Service) => known_as(config, name, check, "service", config.services.contains_key(name)),
    };
    if let Err(code) = in_config.and_then(|()| known(config, name, check)) {
        return code;
    }
    let query = match kind {
        None => "",
        Some(TriggerKind::Target) => "?kind=target",
        Some(TriggerKind::Service) => "?kind=service",
    };
    let result = send(config, &format!("/api/trigger/{}{query}", percent_encode(name)));
    // In kiln.toml, but not something the session can trigger (not selected, or not started).
    if let Ok((404, body)) = &result
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && v["targets"].is_array()
    {
        let names = |key: &str| {
            v[key].as_array().into_iter().flatten().filter_map(|n| n.as_str()).map(str::to_string).collect::<Vec<_>>()
        };
        let (targets, services) = (names("targets"), names("services"));
        let hint = unknown_hint(name, targets.iter().map(String::as_str), services.iter().map(String::as_str));
        let what = match kind {
            None => "target or running service",
            Some(TriggerKind::Target) => "selected target",
            Some(TriggerKind::Service) => "running service",
        };
        errln!("error: the running `kiln up` has no {what} named `{name}`{hint}");
        return exit::USAGE;
    }
    // Which of the two it was, when the name is both.
    let both = config.targets.contains_key(name) && config.services.contains_key(name);
    let done = match &result {
        Ok((202, body)) => serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["triggered"].as_str().map(str::to_string)),
        _ => None,
    };
    let message = match done.as_deref() {
        Some("service") if both && kind.is_none() => format!(
            "restarted service {name} (a target is named {name} too: `kiln trigger --target {name}` rebuilds it)"
        ),
        Some("target") if both && kind.is_none() => format!(
            "triggered target {name} (service {name} is not running; `kiln trigger --service {name}` restarts it when it is)"
        ),
        Some("service") => format!("restarted service {name}"),
        Some("target") => format!("triggered target {name} (it builds now, with its dependents)"),
        _ => format!("triggered {name}"),
    };
    report(result, &message)
}

/// Whether `name` is a `what` (target or service) of kiln.toml, for `--target`/`--service`.
fn known_as(config: &Config, name: &str, check: bool, what: &str, is: bool) -> Result<(), u8> {
    if !check || is {
        return Ok(());
    }
    let names: Vec<&str> = if what == "target" {
        config.targets.keys().map(String::as_str).collect()
    } else {
        config.services.keys().map(String::as_str).collect()
    };
    let mean = kiln_config::did_you_mean(name, names.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    errln!(
        "error: kiln.toml has no {what} named `{name}`{mean}\n  = {what}s: {}",
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    );
    Err(exit::USAGE)
}

/// A name as one segment of a path: anything but unreserved characters percent-encoded.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Stops the running `kiln up`. With none running, removes the containers a killed one left
/// behind (found by this project's label), saying so.
pub fn down(config: &Config, timeout: Option<Duration>) -> u8 {
    // What runs, to say what was stopped.
    let status = status_json(config).ok();
    let network = status.as_ref().and_then(|v| v["network"].as_str()).map(str::to_string);
    let running: Vec<String> = status
        .and_then(|v| v["services"].as_object().cloned())
        .map(|services| {
            services
                .iter()
                .map(|(name, s)| match s["desired"].as_u64() {
                    Some(n) if n > 1 => format!("{name} ({n} replicas)"),
                    _ => name.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let pid = ProjectLock::holder(&Layout::new(&config.root).up_lock());
    match send(config, "/api/stop") {
        Err(ClientError::NotRunning) if config.runs_containers() => remove_leftovers(config),
        Ok((202, _)) => {
            // Stopped once it lets go of `.kiln/up.lock`: its services are stopped (their
            // stop_timeout, then SIGKILL), its containers removed, its processes gone.
            let limit = timeout.unwrap_or(Duration::from_secs(120));
            let end = Instant::now() + limit;
            let lock = Layout::new(&config.root).up_lock();
            loop {
                if let Ok(Some(_free)) = ProjectLock::try_acquire(&lock) {
                    break;
                }
                if Instant::now() >= end {
                    errln!(
                        "error: `kiln up`{} is still stopping after {}; it goes on (its services' stop_timeout, then SIGKILL)",
                        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                        kiln_config::format_duration(limit)
                    );
                    return exit::FAILED;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let what = if running.is_empty() { String::new() } else { format!(": {}", running.join(", ")) };
            outln!("stopped `kiln up`{}{what}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default());
            // It removed its network before it let go of the lock; one still there is said.
            if let Some(network) = network {
                match Engine::find(config.settings.engine) {
                    Ok(engine) if kiln_engine::network_exists(&engine, &network) => {
                        errln!(
                            "warning: the network {network} is still there (`kiln up` could not remove it); remove it with \
                             `{} network rm {network}`",
                            engine.name()
                        );
                    }
                    _ => outln!("removed the network {network}"),
                }
            }
            exit::SUCCESS
        }
        result => report(result, "stopping `kiln up`"),
    }
}

fn remove_leftovers(config: &Config) -> u8 {
    let engine = match Engine::find(config.settings.engine) {
        Ok(e) => e,
        Err(why) => {
            errln!("error: {}; cannot look for containers left running", ClientError::NotRunning.message());
            errln!("  = {why}");
            return exit::FAILED;
        }
    };
    match kiln_engine::remove_leftovers(&engine, &config.root) {
        Ok(left) if left.is_empty() => {
            errln!("no `kiln up` is running in this project, and none left containers behind");
            exit::SUCCESS
        }
        Ok(left) => {
            if !left.containers.is_empty() || !left.networks.is_empty() {
                outln!("{}", kiln_engine::leftovers_message(&left));
            }
            if let Some(why) = &left.network_error {
                errln!("warning: {why}");
            }
            exit::SUCCESS
        }
        Err(why) => {
            errln!("error: cannot remove containers left running: {why}");
            exit::FAILED
        }
    }
}

/// Waits until every name is built (targets) or ready (services).
pub fn wait(config: &Config, names: &[String], timeout: Option<Duration>, check: bool) -> u8 {
    if let Some(code) = names.iter().find_map(|n| known(config, n, check).err()) {
        return code;
    }
    let end = timeout.map(|t| Instant::now() + t);
    loop {
        match status_json(config) {
            Ok(v) => {
                let done = names.iter().all(|n| {
                    let t = &v["targets"][n]["status"];
                    let s = &v["services"][n];
                    matches!(t.as_str(), Some("built" | "cached" | "fresh"))
                        || (s["desired"].as_u64().unwrap_or(0) > 0 && s["ready"] == s["desired"])
                });
                if done {
                    return exit::SUCCESS;
                }
                // A replica that failed or completed is not started again unless something
                // changes (a build, `kiln trigger`): waiting out the timeout would not help.
                if let Some(why) = names.iter().find_map(|n| over_for_good(n, &v["services"][n])) {
                    errln!("error: {why}");
                    return exit::FAILED;
                }
            }
            Err(e) => return fail(&e),
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            errln!("error: timed out waiting for {}", names.join(", "));
            return exit::FAILED;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Why `kiln wait` cannot see `service` ready: one of its replicas failed or completed
/// (the first one's reason); `None` while it may still become ready.
fn over_for_good(service: &str, status: &serde_json::Value) -> Option<String> {
    let replicas = status["replicas"].as_object()?;
    let mut over = replicas.iter().filter(|(_, r)| matches!(r["phase"].as_str(), Some("failed" | "completed")));
    let (replica, r) = over.next()?;
    Some(format!(
        "{service}[{replica}] {}: {}; it is not restarted until a new build or `kiln trigger {service}` (`kiln logs \
         {service}` shows its output)",
        r["phase"].as_str().unwrap_or("failed"),
        r["reason"].as_str().unwrap_or("")
    ))
}

/// `kiln logs NAME -f`: live output lines of a target or service.
#[cfg(test)]
mod hint_tests {
    use super::*;

    #[test]
    fn thousands_of_names_are_not_all_listed() {
        let names: Vec<String> = (0..3000).map(|i| format!("t{i}")).collect();
        let hint = unknown_hint("t00", names.iter().map(String::as_str), ["web"].into_iter());
        assert!(hint.contains("and 2980 more (`kiln graph` lists them); services: web"), "{hint}");
        assert!(hint.len() < 400, "{}", hint.len());
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    /// Regression: a phase longer than 8 (`completed`) or a name longer than 16 pushed the
    /// rest of its line out of the columns; `1 restarts` was not English.
    #[test]
    fn columns_are_as_wide_as_their_longest_cell() {
        let v = serde_json::json!({
            "targets": {
                "core": { "status": "built", "reason": "" },
                "a-very-long-target-name": { "status": "cached", "reason": "inputs unchanged" },
            },
            "services": {
                "api": { "phase": "ready", "ready": 2, "desired": 2, "restarts": 0 },
                "once": { "phase": "completed", "ready": 0, "desired": 1, "restarts": 1 },
                "redis": { "phase": "ready", "ready": 10, "desired": 10, "restarts": 12,
                           "image": "localhost/kiln-demo-redis:kiln-7a49aa00bb11" },
            },
        });
        assert_eq!(
            status_lines(&v),
            [
                "a-very-long-target-name cached    inputs unchanged",
                "core                    built",
                "api                     ready     2/2 replicas                                      0 restarts",
                "once                    completed 0/1 replicas                                      1 restart",
                "redis                   ready     10/10 replicas  image kiln-demo-redis:kiln-7a49…  12 restarts",
            ]
        );
    }

    #[test]
    fn short_names_keep_the_usual_columns_and_no_image_column_without_containers() {
        let v = serde_json::json!({
            "services": {
                "api": { "phase": "ready", "ready": 2, "desired": 2, "restarts": 0 },
                "worker": { "phase": "backoff", "ready": 0, "desired": 1, "restarts": 1 },
            },
        });
        assert_eq!(
            status_lines(&v),
            ["api              ready    2/2 replicas  0 restarts", "worker           backoff  0/1 replicas  1 restart",]
        );
    }

    #[test]
    fn a_service_shows_its_last_update_phase_by_phase() {
        let latency = serde_json::json!({
            "detect": 0, "debounce": 50, "build": 820, "deploy": 430, "ready": 120, "total": 1420,
        });
        let v = serde_json::json!({
            "services": {
                "web": { "phase": "ready", "ready": 2, "desired": 2, "restarts": 1,
                         "image": "localhost/web:kiln-3f2a9c00",
                         "last_update": { "how": "rebuilt", "latency_ms": latency } },
                "worker": { "phase": "ready", "ready": 1, "desired": 1, "restarts": 12 },
            },
        });
        assert_eq!(
            status_lines(&v),
            [
                "web              ready    2/2 replicas  image web:kiln-3f2a…  1 restart    \
                 last update 1.42 s (debounce 0.05, build 0.82, deploy 0.43, ready 0.12)",
                "worker           ready    1/1 replicas                        12 restarts",
            ]
        );
    }
}
