//! Liveness probes, probe commands' process groups and `kiln ps`, with real processes and
//! real HTTP: a SIGSTOPped server is restarted by its liveness probe and is ready again in a
//! bounded time; a `cmd` probe that times out leaves nothing running; `kiln ps` shows every
//! replica's columns from a real `kiln up`.

mod common;
use common::{Project, Up, alive, wait_until};
use serde_json::Value;
use std::time::{Duration, Instant};

fn phase(e: &Value, service: &str, replica: u64, phase: &str) -> bool {
    e["type"] == "service.phase" && e["service"] == service && e["replica"] == replica && e["phase"] == phase
}

fn ps_json(p: &Project) -> Value {
    let run = p.kiln(&["ps", "--json"]);
    assert_eq!(run.code, 0, "kiln ps --json: {}\n{}", run.stdout, run.stderr);
    serde_json::from_str(run.stdout.trim()).expect("kiln ps --json prints JSON")
}

#[test]
fn a_sigstopped_server_is_restarted_by_its_liveness_probe_and_ready_again_in_time() {
    let p = Project::new(
        r#"
[service.web]
cmd = "exec python3 -m http.server 19471 --bind 127.0.0.1"
ready = { http = "http://127.0.0.1:19471/", period = "50ms" }
live = { http = "http://127.0.0.1:19471/", period = "100ms", interval = "300ms", timeout = "200ms", failures = 3 }
stop_timeout = "2s"
"#,
    );
    let mut up = Up::start(&p, &[]);
    let starting = up.wait_seen("starting", |e| phase(e, "web", 0, "starting"));
    let ready = up.wait_seen("ready", |e| phase(e, "web", 0, "ready"));
    let start_time = ms_between(&starting, &ready);
    // Its failures count once it has passed.
    up.wait_seen("a passing liveness probe", |e| {
        e["type"] == "service.probed" && e["probe"] == "live" && e["ok"] == true
    });
    let pid = ps_json(&p)["services"]["web"]["replicas"]["0"]["pid"].as_i64().expect("a pid in the status");
    let pid = i32::try_from(pid).expect("a pid");

    let stopped_at = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let stopping = up.wait_for("the liveness restart", |e| phase(e, "web", 0, "stopping"));
    let reason = stopping["reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("liveness probe failed: no answer within 200ms"), "{stopping}");
    // The first liveness restart is at once (no backoff), counted as a restart.
    let restarted = up.wait_for("its restart", |e| phase(e, "web", 0, "starting"));
    assert_eq!(restarted["restarts"], 1, "counted as a restart: {restarted}");
    assert!(
        restarted["reason"].as_str().unwrap_or("").starts_with("restart 1 after its liveness probe failed: "),
        "{restarted}"
    );
    up.wait_for("ready again", |e| phase(e, "web", 0, "ready"));
    let back_in = stopped_at.elapsed();
    assert_eq!(up.count(|e| phase(e, "web", 0, "backoff")), 0, "no backoff the first time:\n{}", up.dump());

    // interval × failures to notice, and its start time; the margin covers the stop (SIGCONT
    // then SIGTERM: at once for this server) and a loaded machine.
    let bound = Duration::from_millis(300 * 3 + start_time) + Duration::from_secs(2);
    eprintln!("back and ready {back_in:?} after SIGSTOP (bound {bound:?}, start time {start_time} ms)");
    assert!(back_in < bound, "back and ready after {back_in:?}; bound {bound:?}\n{}", up.dump());
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)), "the stopped server {pid} was not ended");
    // Its log says why it was stopped, where the attempt ended.
    let log = p.kiln(&["logs", "web"]).stdout;
    assert!(log.contains("[kiln: stopping: liveness probe failed: no answer within 200ms]\n"), "{log}");
    let replica = &ps_json(&p)["services"]["web"]["replicas"]["0"];
    assert_eq!(replica["restarts"], 1, "{replica}");
    assert_ne!(replica["pid"].as_i64(), Some(i64::from(pid)), "a new process: {replica}");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_cmd_probe_that_times_out_has_its_whole_process_group_killed() {
    let p = Project::new(
        r#"
[service.svc]
cmd = "exec sleep 1000"
ready = { cmd = "sleep 100 & echo $! > probe-child.pid; sleep 100", period = "100ms", timeout = "300ms" }
"#,
    );
    let mut up = Up::start(&p, &[]);
    let timed_out = up.wait_for("the probe's timeout", |e| {
        phase(e, "svc", 0, "starting") && e["reason"].as_str().is_some_and(|r| r.contains("did not finish within"))
    });
    assert!(timed_out["reason"].as_str().unwrap_or("").ends_with("its processes were killed"), "{timed_out}");
    let child: i32 = p.read("probe-child.pid").trim().parse().expect("the probe's child wrote its pid");
    assert!(wait_until(Duration::from_secs(2), || !alive(child)), "the probe's child {child} still runs");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn kiln_ps_shows_every_replica_with_its_columns() {
    let p = Project::new(
        r#"
[service.api]
cmd = "echo $$ > pid.$KILN_REPLICA; exec python3 -m http.server 1948$KILN_REPLICA --bind 127.0.0.1"
replicas = 2
ready = { http = "http://127.0.0.1:1948${KILN_REPLICA}/", period = "50ms" }
live = { tcp = "127.0.0.1:1948${KILN_REPLICA}", period = "50ms", interval = "200ms" }
"#,
    );
    let none = p.kiln(&["ps"]);
    assert_eq!(none.code, 1, "no kiln up: {}\n{}", none.stdout, none.stderr);
    assert!(
        none.stderr.contains("no `kiln up` is running in this project (start one with `kiln up`)"),
        "{}",
        none.stderr
    );

    let mut up = Up::start(&p, &[]);
    for r in 0..2 {
        up.wait_seen("ready", |e| phase(e, "api", r, "ready"));
        up.wait_seen("a live probe", |e| {
            e["type"] == "service.probed" && e["replica"] == r && e["probe"] == "live" && e["ok"] == true
        });
    }
    let run = p.kiln(&["ps"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one line per replica:\n{}", run.stdout);
    let header = lines[0];
    assert_eq!(
        header.split("  ").filter(|c| !c.is_empty()).map(str::trim).collect::<Vec<_>>(),
        ["SERVICE", "REPLICA", "PHASE", "RESTARTS", "UPTIME", "PID/CONTAINER", "PORTS", "LAST PROBE"]
    );
    let at = |name: &str| header.find(name).expect("a column");
    for (r, line) in lines[1..].iter().enumerate() {
        let cell = |name: &str| {
            let rest = &line[at(name)..];
            rest.split("  ").next().unwrap_or("").to_string()
        };
        let pid = p.read(&format!("pid.{r}")).trim().to_string();
        assert_eq!(cell("SERVICE"), "api", "{line}");
        assert_eq!(cell("REPLICA"), r.to_string(), "{line}");
        assert_eq!(cell("PHASE"), "ready", "{line}");
        assert_eq!(cell("RESTARTS"), "0", "{line}");
        let uptime = cell("UPTIME");
        assert!(uptime.ends_with('s') && uptime[..uptime.len() - 1].parse::<f64>().is_ok(), "{line}");
        assert_eq!(cell("PID/CONTAINER"), pid, "the replica's process: {line}");
        assert_eq!(cell("PORTS"), format!("127.0.0.1:1948{r}"), "the address it listens on: {line}");
        let probe = &line[at("LAST PROBE")..];
        assert!(
            (probe.starts_with("live ok ") || probe.starts_with("ready ok ")) && probe.ends_with("s ago"),
            "{line}"
        );
    }
    let alias = p.kiln(&["status", "--services"]);
    assert_eq!(alias.stdout.lines().next(), Some(header), "the alias prints the same table");
    let json = ps_json(&p);
    let replica = &json["services"]["api"]["replicas"]["1"];
    assert!(replica["started_at"].is_string() && replica["uptime_ms"].is_u64(), "{replica}");
    assert_eq!(replica["probes"]["live"]["ok"], true, "{replica}");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

/// Milliseconds between two events' `ts`.
fn ms_between(a: &Value, b: &Value) -> u64 {
    let t = |e: &Value| kiln_ts(e["ts"].as_str().expect("ts"));
    t(b).saturating_sub(t(a))
}

/// `2026-11-22T10:04:05.123Z` → milliseconds into the day (tests run well within one).
fn kiln_ts(ts: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<u64>().expect("a timestamp");
    ((n(11..13) * 60 + n(14..16)) * 60 + n(17..19)) * 1000 + n(20..23)
}

/// Regression: the HTTP probe closed its socket with the answer unread, which sends a reset;
/// python's http.server logged a `ConnectionResetError` traceback for every probe.
#[test]
fn http_probes_close_cleanly_so_the_server_logs_no_reset() {
    let p = Project::new(
        r#"
[service.web]
cmd = "exec python3 -u -m http.server 19472 --bind 127.0.0.1"
ready = { http = "http://127.0.0.1:19472/", period = "50ms" }
live = { http = "http://127.0.0.1:19472/", interval = "50ms" }
"#,
    );
    // A directory listing: an answer larger than the status line, as most pages are.
    for i in 0..50 {
        p.write(&format!("file-with-a-long-name-{i:03}.txt"), "x");
    }
    let mut up = Up::start(&p, &[]);
    up.wait_seen("ready", |e| phase(e, "web", 0, "ready"));
    for n in 1..=20 {
        up.wait_for(&format!("passing liveness probe {n}"), |e| {
            e["type"] == "service.probed" && e["probe"] == "live" && e["ok"] == true
        });
    }
    // The server logs one access line per probe; wait for them before reading its log.
    let logs = || p.kiln(&["logs", "web"]).stdout;
    assert!(
        wait_until(Duration::from_secs(10), || logs().matches("\"GET / HTTP/1.1\" 200").count() >= 20),
        "the server's access lines: {}",
        logs()
    );
    let log = logs();
    assert!(!log.contains("Traceback") && !log.contains("ConnectionReset"), "the server saw resets:\n{log}");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

/// Regression: `kiln ps` sorted replicas as text (0, 1, 10, 11, 2, …).
#[test]
fn kiln_ps_lists_replicas_in_numeric_order() {
    let p = Project::new("[service.many]\ncmd = \"exec sleep 1000\"\nreplicas = 12\n");
    let mut up = Up::start(&p, &[]);
    for r in 0..12 {
        up.wait_seen(&format!("many[{r}] ready"), |e| phase(e, "many", r, "ready"));
    }
    let run = p.kiln(&["ps"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let replicas: Vec<&str> =
        run.stdout.lines().skip(1).map(|l| l.split_whitespace().nth(1).expect("a replica column")).collect();
    let expected: Vec<String> = (0..12).map(|r| r.to_string()).collect();
    assert_eq!(replicas, expected, "{}", run.stdout);
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}
