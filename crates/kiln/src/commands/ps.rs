//! `kiln ps` (also `kiln status --services`): one line per service replica of the running
//! `kiln up`, from its status API: service, replica, phase, restarts, uptime of the current
//! attempt, its process (pid) or container (short ID), ports, and the last probe result.
//! Plain aligned columns, whatever the terminal's width; `--json` prints the status as the
//! API gives it.

use kiln_config::Config;
use serde_json::Value;

use crate::commands::control::status_to_render;
use crate::exit;
use crate::out::outln;

const HEADER: [&str; 8] = ["SERVICE", "REPLICA", "PHASE", "RESTARTS", "UPTIME", "PID/CONTAINER", "PORTS", "LAST PROBE"];

pub fn run(config: &Config, json: bool) -> u8 {
    let v = match status_to_render(config, json) {
        Ok(v) => v,
        Err(code) => return code,
    };
    outln!("{}", render(&v).trim_end());
    exit::SUCCESS
}

/// The table for a status answer; a line saying so when there are no services.
fn render(status: &Value) -> String {
    let mut rows: Vec<[String; 8]> = vec![HEADER.map(str::to_string)];
    for (name, service) in status["services"].as_object().into_iter().flatten() {
        // JSON object keys sort as text ("10" before "2"): replicas go by number.
        let mut replicas: Vec<(&String, &Value)> = service["replicas"].as_object().into_iter().flatten().collect();
        replicas.sort_by_key(|(replica, _)| (replica.parse::<u64>().unwrap_or(u64::MAX), replica.to_string()));
        for (replica, r) in replicas {
            rows.push(row(name, replica, r));
        }
    }
    if rows.len() == 1 {
        return "the running `kiln up` has no services\n".to_string();
    }
    let widths: Vec<usize> =
        (0..HEADER.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn row(service: &str, replica: &str, r: &Value) -> [String; 8] {
    let dash = || "-".to_string();
    let id = match (r["container"].as_str(), r["pid"].as_u64()) {
        (Some(c), _) => c.to_string(),
        (None, Some(pid)) => pid.to_string(),
        (None, None) => dash(),
    };
    let ports: Vec<&str> = r["ports"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    [
        service.to_string(),
        replica.to_string(),
        r["phase"].as_str().unwrap_or("pending").to_string(),
        r["restarts"].as_u64().unwrap_or(0).to_string(),
        r["uptime_ms"].as_u64().map_or_else(dash, age),
        id,
        if ports.is_empty() { dash() } else { ports.join(",") },
        last_probe(r).unwrap_or_else(dash),
    ]
}

/// The latest failing probe result if any probe's last result failed, else the latest one:
/// `live ok 2s ago`, `ready failed 1s ago: no answer within 2.00s`.
fn last_probe(r: &Value) -> Option<String> {
    let probes: Vec<(&String, &Value)> = r["probes"].as_object()?.iter().collect();
    let latest = |failing: bool| {
        probes
            .iter()
            .filter(|(_, p)| !failing || p["ok"] == Value::Bool(false))
            .min_by_key(|(_, p)| p["ago_ms"].as_u64().unwrap_or(u64::MAX))
    };
    let (kind, p) = latest(true).or_else(|| latest(false))?;
    let when = p["ago_ms"].as_u64().map(|ms| format!(" {} ago", age(ms))).unwrap_or_default();
    Some(match (p["ok"].as_bool(), p["error"].as_str()) {
        (Some(true), _) => format!("{kind} ok{when}"),
        (_, Some(why)) => format!("{kind} failed{when}: {why}"),
        _ => format!("{kind} failed{when}"),
    })
}

/// A duration as a column shows it: `0.4s`, `45s`, `3m12s`, `2h05m`, `3d04h`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("0.{}s", ms / 100),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_aligned_line_per_replica() {
        let status = serde_json::json!({
            "targets": {},
            "services": {
                "api": { "replicas": {
                    "0": { "phase": "ready", "restarts": 0, "pid": 4242, "uptime_ms": 192_000,
                           "ports": ["127.0.0.1:19000"],
                           "probes": { "ready": { "ok": true, "ago_ms": 8_000 }, "live": { "ok": true, "ago_ms": 1_200 } } },
                    "1": { "phase": "backoff", "restarts": 2,
                           "probes": { "live": { "ok": false, "error": "no answer within 200ms", "ago_ms": 400 },
                                       "ready": { "ok": true, "ago_ms": 300 } } }
                } },
                "web": { "replicas": {
                    "0": { "phase": "starting", "restarts": 0, "pid": 77, "container": "0123456789ab",
                           "uptime_ms": 7_300_000, "ports": ["8080:80", "8443:443"] }
                } }
            }
        });
        assert_eq!(
            render(&status),
            "SERVICE  REPLICA  PHASE     RESTARTS  UPTIME  PID/CONTAINER  PORTS             LAST PROBE\n\
             api      0        ready     0         3m12s   4242           127.0.0.1:19000   live ok 1s ago\n\
             api      1        backoff   2         -       -              -                 live failed 0.4s ago: no answer within 200ms\n\
             web      0        starting  0         2h01m   0123456789ab   8080:80,8443:443  -\n"
        );
    }

    #[test]
    fn no_services_is_said() {
        assert_eq!(
            render(&serde_json::json!({ "targets": {}, "services": {} })),
            "the running `kiln up` has no services\n"
        );
    }

    #[test]
    fn ages_read_at_a_glance() {
        let shown: Vec<String> = [400, 45_000, 3_723_000, 90_061_000].map(age).to_vec();
        assert_eq!(shown, ["0.4s", "45s", "1h02m", "1d01h"]);
    }
}
