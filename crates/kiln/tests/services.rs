//! Process services in `kiln up`, with real processes: replicas and readiness, rolling
//! reload, crash restarts with backoff, restart policies, a failed build that keeps the old
//! version serving, graceful stop, and `kill -9` of kiln.

mod common;
use common::{Project, Up, alive, wait_until};
use serde_json::Value;
use std::time::Duration;

const WEB: &str = r#"
[settings]
debounce = "50ms"

[target.server]
cmd = "grep -q BROKEN src/server.sh && exit 1; mkdir -p out && cp src/server.sh out/server.sh && chmod +x out/server.sh"
inputs = ["src/*.sh"]
outputs = ["out/server.sh"]

[service.web]
cmd = "./out/server.sh"
deps = ["server"]
replicas = 2
ready = { log = "listening" }
stop_timeout = "2s"
"#;

fn server(version: &str) -> String {
    format!("#!/bin/sh\necho $$ >> pids\necho \"replica $KILN_REPLICA listening {version}\"\nexec sleep 1000\n")
}

fn web() -> Project {
    let p = Project::new(WEB);
    p.write("src/server.sh", &server("v1"));
    p
}

fn phase(e: &Value, service: &str, replica: u64, phase: &str) -> bool {
    e["type"] == "service.phase" && e["service"] == service && e["replica"] == replica && e["phase"] == phase
}

fn pids(p: &Project) -> Vec<i32> {
    std::fs::read_to_string(p.path("pids")).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[test]
fn replicas_start_ready_roll_one_at_a_time_and_stop_gracefully() {
    let p = web();
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    let lines: Vec<String> = up
        .seen
        .iter()
        .filter(|e| e["type"] == "service.output")
        .map(|e| e["line"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        lines.contains(&"replica 0 listening v1".to_string()) && lines.contains(&"replica 1 listening v1".to_string()),
        "{lines:?}"
    );

    p.write("src/server.sh", &server("v2"));
    up.wait_for("web[1] back with v2", |e| e["type"] == "service.output" && e["line"] == "replica 1 listening v2");
    up.wait_for("web[1] ready again", |e| phase(e, "web", 1, "ready"));
    let seq = |pred: &dyn Fn(&Value) -> bool| up.seen.iter().position(pred).expect("event seen");
    let stop0 = seq(&|e| phase(e, "web", 0, "stopping"));
    let ready0 = up
        .seen
        .iter()
        .enumerate()
        .skip(stop0)
        .find(|(_, e)| phase(e, "web", 0, "ready"))
        .map(|(i, _)| i)
        .expect("web[0] ready again");
    let stop1 = seq(&|e| phase(e, "web", 1, "stopping"));
    assert!(stop0 < ready0 && ready0 < stop1, "replica 1 stops only after the new replica 0 is ready:\n{}", up.dump());

    let all = pids(&p);
    assert_eq!(all.len(), 4, "two replicas, started twice: {all:?}");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
    assert!(wait_until(Duration::from_secs(5), || all.iter().all(|pid| !alive(*pid))), "every service process is gone");
}

#[test]
fn a_failed_build_restarts_nothing() {
    let p = web();
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    p.write("src/server.sh", &format!("{}# BROKEN\n", server("v2")));
    up.wait_for("the failed build", |e| e["type"] == "run.finished" && e["failed"] == 1);
    up.settled(&p, "src/server.sh");
    assert_eq!(up.count(|e| e["type"] == "service.phase" && e["phase"] == "stopping"), 0, "{}", up.dump());
    assert!(pids(&p).iter().all(|pid| alive(*pid)), "the old version keeps serving");
}

#[test]
fn a_crash_loop_backs_off_and_restart_never_ends_the_service() {
    let p = Project::new(
        r#"
[service.crashy]
cmd = "echo boom; exit 3"
restart = "on-failure"

[service.once]
cmd = "echo done"
restart = "never"

[service.broken]
cmd = "exit 4"
restart = "never"
"#,
    );
    let mut up = Up::start(&p, &[]);
    let first = up.wait_for("the first backoff", |e| phase(e, "crashy", 0, "backoff"));
    let second = up.wait_for("the second backoff", |e| phase(e, "crashy", 0, "backoff") && e["restarts"] == 2);
    let ms = |e: &Value| e["next_try_ms"].as_u64().expect("next_try_ms");
    assert!((1000..=1100).contains(&ms(&first)), "{first}");
    assert!((2000..=2200).contains(&ms(&second)), "{second}");
    assert_eq!(first["restarts"], 1);
    assert!(first["reason"].as_str().unwrap_or("").starts_with("exited with code 3; restart 1 in "), "{first}");
    up.wait_seen("once completed", |e| phase(e, "once", 0, "completed"));
    let failed = up.wait_seen("broken failed", |e| phase(e, "broken", 0, "failed"));
    assert!(failed["reason"].as_str().unwrap_or("").contains("exited with code 4"), "{failed}");
}

#[test]
fn http_readiness_and_after_ordering() {
    let p = Project::new(
        r#"
[service.api]
cmd = "sleep 0.5; python3 -m http.server --bind 127.0.0.1 $PORT"
env = { PORT = "18737" }
ready = { http = "http://127.0.0.1:18737/", period = "100ms" }

[service.worker]
cmd = "echo worker up; exec sleep 1000"
after = ["api"]
"#,
    );
    let mut up = Up::start(&p, &[]);
    let pending = up.wait_for("worker pending", |e| phase(e, "worker", 0, "pending"));
    assert_eq!(pending["reason"], "waiting for api to be ready");
    up.wait_seen("api ready", |e| phase(e, "api", 0, "ready"));
    up.wait_seen("worker starting", |e| phase(e, "worker", 0, "starting"));
    let api_ready = up.seen.iter().position(|e| phase(e, "api", 0, "ready")).expect("seen");
    let worker_start = up.seen.iter().position(|e| phase(e, "worker", 0, "starting")).expect("seen");
    assert!(api_ready < worker_start, "{}", up.dump());
}

#[test]
fn kill_9_of_kiln_leaves_no_service_process() {
    let p = web();
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    let all = pids(&p);
    assert_eq!(all.len(), 2);
    up.child.kill().expect("kill -9");
    let _ = up.child.wait();
    assert!(
        wait_until(Duration::from_secs(5), || all.iter().all(|pid| !alive(*pid))),
        "services died with kiln: {all:?}"
    );
}

#[test]
fn a_failing_probe_makes_a_ready_replica_unhealthy_and_back() {
    let p = Project::new(
        r#"
[service.svc]
cmd = "exec sleep 1000"
ready = { cmd = "test -f healthy", period = "100ms", interval = "100ms", failures = 2 }
"#,
    );
    p.write("healthy", "");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("ready", |e| phase(e, "svc", 0, "ready"));
    std::fs::remove_file(p.path("healthy")).expect("rm");
    let unhealthy = up.wait_for("unhealthy", |e| phase(e, "svc", 0, "unhealthy"));
    assert!(
        unhealthy["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("readiness probe failed 2 times: `test -f healthy` exited with 1"),
        "{unhealthy}"
    );
    p.write("healthy", "");
    up.wait_for("ready again", |e| phase(e, "svc", 0, "ready"));
}

/// Regression: behind a wrapper shell (`sh ./worker.sh`, which forks), the wrapper died of the
/// stop signal and the rest of the group was killed at once, before the worker's own handler
/// could run.
#[test]
fn a_worker_behind_a_wrapper_shell_gets_its_stop_timeout_to_handle_the_stop_signal() {
    let p = Project::new(
        r#"
[service.worker]
cmd = "sh ./worker.sh"
stop_timeout = "20s"
ready = { log = "worker up" }
"#,
    );
    p.write(
        "worker.sh",
        "trap 'sleep 0.3; echo handled > stopped.txt; exit 0' TERM\necho worker up\nwhile :; do sleep 0.05; done\n",
    );
    let mut up = Up::start(&p, &[]);
    up.wait_for("worker ready", |e| phase(e, "worker", 0, "ready"));
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
    assert_eq!(p.read("stopped.txt").trim(), "handled", "the worker's TERM handler did not run to its end");
}

#[test]
fn a_probe_runs_at_its_period_until_it_passes_then_at_its_interval() {
    let p = Project::new(
        r#"
[target.slow]
cmd = "sleep 0.5"

[service.svc]
cmd = "exec sleep 1000"
ready = { cmd = "echo probe >> probes.txt; test -f healthy", period = "50ms", interval = "1h" }
"#,
    );
    let mut up = Up::start(&p, &[]);
    // Failing at first: probed every 50 ms.
    assert!(wait_until(Duration::from_secs(10), || p.exists("probes.txt") && p.read("probes.txt").lines().count() >= 3));
    p.write("healthy", "");
    up.wait_for("ready", |e| phase(e, "svc", 0, "ready"));
    let after_ready = p.read("probes.txt").lines().count();
    // Half a second of a build proves time passed: at 50 ms that would be about ten probes.
    let triggered = p.kiln(&["trigger", "slow"]);
    assert_eq!(triggered.code, 0, "{}", triggered.stderr);
    up.wait_for("the build", |e| e["type"] == "target.finished" && e["target"] == "slow");
    assert_eq!(p.read("probes.txt").lines().count(), after_ready, "no probe within the hour's interval");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn kiln_down_waits_until_everything_stopped_and_says_what_it_stopped() {
    let p = Project::new(
        r#"
[service.web]
cmd = "echo $$ > web.$KILN_REPLICA.pid; exec sleep 1000"
replicas = 2

[service.worker]
cmd = "trap 'sleep 0.3; exit 0' TERM; echo $$ > worker.pid; while :; do sleep 0.05; done"
"#,
    );
    let mut up = Up::start(&p, &[]);
    for (service, replica) in [("web", 0), ("web", 1), ("worker", 0)] {
        up.wait_seen("ready", |e| phase(e, service, replica, "ready"));
    }
    // Written by `echo $$ > FILE`: there, and whole.
    assert!(wait_until(Duration::from_secs(5), || ["web.0.pid", "web.1.pid", "worker.pid"]
        .iter()
        .all(|f| p.exists(f) && p.read(f).ends_with('\n'))));
    let pids: Vec<i32> =
        ["web.0.pid", "web.1.pid", "worker.pid"].iter().map(|f| p.read(f).trim().parse().unwrap()).collect();
    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(down.stdout.starts_with("stopped `kiln up` (pid "), "{}", down.stdout);
    assert!(down.stdout.contains("web (2 replicas)") && down.stdout.contains("worker"), "{}", down.stdout);
    // When `kiln down` returns, every process of the session is gone (the worker took 0.3 s
    // to handle its stop signal).
    assert!(pids.iter().all(|pid| !alive(*pid)), "{pids:?} still alive after kiln down returned");
    let status = up.child.wait().expect("kiln up exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn services_stop_dependents_first() {
    // `app` uses `db` (after = ["db"]): on the way down, app is stopped before db is told to.
    let p = Project::new(
        r#"
[service.db]
cmd = "echo db up; exec sleep 1000"
ready = { log = "db up" }

[service.app]
cmd = "echo app up; trap 'echo app leaving; exit 0' TERM; while true; do sleep 0.1; done"
after = ["db"]
ready = { log = "app up" }
replicas = 2
"#,
    );
    let mut up = Up::start(&p, &[]);
    up.wait_seen("app[1] ready", |e| phase(e, "app", 1, "ready"));
    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    up.wait_seen("db stopped", |e| phase(e, "db", 0, "stopped"));
    let at = |pred: &dyn Fn(&Value) -> bool| up.seen.iter().position(pred).expect("seen");
    let db_told = at(&|e| phase(e, "db", 0, "stopping"));
    for r in 0..2 {
        let app_gone = at(&|e| phase(e, "app", r, "stopped"));
        assert!(app_gone < db_told, "app[{r}] stops before db is told to:\n{}", up.dump());
    }
    // Their reasons say what stopped them (once read `stopped — stopped`).
    assert_eq!(up.seen[db_told]["reason"], "kiln up is stopping: sent SIGTERM");
    assert_eq!(up.wait_seen("db stopped", |e| phase(e, "db", 0, "stopped"))["reason"], "kiln up is stopping");
}

/// Regression: a dependent said `waiting for db to be ready` forever after db failed for
/// good, and `kiln wait db` waited out its timeout.
#[test]
fn a_dependent_of_a_service_that_failed_for_good_says_so_and_kiln_wait_fails_at_once() {
    let p = Project::new(
        r#"
[service.db]
cmd = "sleep 0.2; exit 3"
restart = "never"
ready = { cmd = "false", period = "50ms" }

[service.app]
cmd = "exec sleep 1000"
after = ["db"]
"#,
    );
    let mut up = Up::start(&p, &[]);
    up.wait_seen("db failed", |e| phase(e, "db", 0, "failed"));
    let pending = up.wait_seen("app's new reason", |e| {
        phase(e, "app", 0, "pending") && e["reason"].as_str().is_some_and(|r| r.contains("which failed"))
    });
    assert_eq!(pending["reason"], "waiting for db, which failed: exited with code 3; restart = \"never\"");

    let started = std::time::Instant::now();
    let wait = p.kiln(&["wait", "db", "--timeout", "30s"]);
    assert_eq!(wait.code, 1, "{}\n{}", wait.stdout, wait.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "at once, not after the timeout: {:?}", started.elapsed());
    assert_eq!(
        wait.stderr.trim(),
        "error: db[0] failed: exited with code 3; restart = \"never\"; it is not restarted until a new build or \
         `kiln trigger db` (`kiln logs db` shows its output)"
    );
    // Nothing of either runs: the stop does not wait for a report that cannot come.
    let stopping = std::time::Instant::now();
    let (code, _) = up.stop();
    assert_eq!(code, 130);
    assert!(stopping.elapsed() < Duration::from_secs(5), "stopped in {:?}", stopping.elapsed());
}

#[test]
fn while_the_first_build_runs_services_are_pending_and_the_target_running() {
    let p = Project::new(
        r#"
[target.slow]
cmd = "while [ ! -e go ]; do sleep 0.02; done; mkdir -p out && echo ok > out/bin"
outputs = ["out/bin"]

[service.web]
cmd = "echo up; exec sleep 1000"
deps = ["slow"]
replicas = 2
"#,
    );
    let mut up = Up::start(&p, &[]);
    up.wait_seen("the build running", |e| e["type"] == "target.started" && e["target"] == "slow");
    up.wait_seen("web[1] pending", |e| phase(e, "web", 1, "pending"));
    let ps = p.kiln(&["ps"]);
    assert_eq!(ps.code, 0, "{}", ps.stderr);
    let lines: Vec<&str> = ps.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{}", ps.stdout);
    assert!(lines.iter().all(|l| l.contains("pending")), "{}", ps.stdout);
    let status: Value = serde_json::from_str(&p.kiln(&["--json", "status"]).stdout).expect("JSON");
    assert_eq!(status["targets"]["slow"]["status"], "running", "{status}");
    assert_eq!(status["services"]["web"]["replicas"]["0"]["reason"], "waiting for its deps: slow", "{status}");
    p.write("go", "");
    up.wait_for("web[1] ready", |e| phase(e, "web", 1, "ready"));
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}
