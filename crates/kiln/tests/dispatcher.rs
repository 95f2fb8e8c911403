//! `kiln up`'s dispatcher against real files and processes: per-target rounds, status that
//! follows the content, live scale, the watch scope filter, and workers that must not hang
//! the loop.

mod common;
use common::{Project, Up, alive};
use serde_json::Value;
use std::time::{Duration, Instant};

fn finished(e: &Value, target: &str, status: &str) -> bool {
    e["type"] == "target.finished" && e["target"] == target && e["status"] == status
}

fn phase(e: &Value, service: &str, replica: u64, phase: &str) -> bool {
    e["type"] == "service.phase" && e["service"] == service && e["replica"] == replica && e["phase"] == phase
}

fn status(p: &Project) -> Value {
    let run = p.kiln(&["--json", "status"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("status is JSON")
}

/// Regression: a timeout past what the clock can hold panicked inside the worker running the
/// command, and the run waited for its report forever.
#[test]
fn a_timeout_that_overflows_the_clock_neither_panics_nor_hangs() {
    let p = Project::new(
        "[settings]\ndebounce = \"50ms\"\n[target.t]\ncmd = \"echo ran > out.txt\"\ninputs = [\"src/*\"]\noutputs = [\"out.txt\"]\ntimeout = \"5000000000000000h\"\n",
    );
    p.write("src/a", "a\n");
    let run = p.build(&[]);
    assert_eq!((run.code, run.status_of("t")), (0, "built".to_string()), "{}", run.stderr);
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first round", |e| e["type"] == "run.finished");
    p.write("src/a", "b\n");
    up.wait_for("the rebuild", |e| finished(e, "t", "built"));
    assert_eq!(p.read("out.txt"), "ran\n");
}

#[test]
fn an_edit_does_not_wait_behind_an_unrelated_long_build() {
    let p = Project::new(
        r#"
[settings]
debounce = "50ms"
[target.slow]
cmd = "sleep 5; cat b/x > slow.out"
inputs = ["b/*"]
outputs = ["slow.out"]
[target.quick]
cmd = "cat a/x > quick.out"
inputs = ["a/*"]
outputs = ["quick.out"]
"#,
    );
    p.write("a/x", "a0\n");
    p.write("b/x", "b0\n");
    let mut up = Up::start(&p, &[]);
    up.wait_for("slow built", |e| finished(e, "slow", "built"));
    up.wait_seen("quick built", |e| finished(e, "quick", "built"));
    p.write("b/x", "b1\n");
    up.wait_for("slow started again", |e| e["type"] == "target.started" && e["target"] == "slow");
    p.write("a/x", "a1\n");
    let quick = up.wait_for("quick rebuilt, or slow done first", |e| {
        finished(e, "quick", "built") || (e["type"] == "target.finished" && e["target"] == "slow")
    });
    assert_eq!(quick["target"], "quick", "quick ran while slow was still building:\n{}", up.dump());
    assert_eq!(p.read("quick.out"), "a1\n");
    up.wait_for("slow finished", |e| finished(e, "slow", "built"));
    assert_eq!(p.read("slow.out"), "b1\n");
}

#[test]
fn a_failed_target_whose_content_returns_is_fresh_again_in_status_and_wait() {
    let p = Project::new(
        r#"
[settings]
debounce = "50ms"
[target.check]
cmd = "grep -q good src/a.txt && cp src/a.txt out.txt"
inputs = ["src/*.txt"]
outputs = ["out.txt"]
[target.after]
cmd = "cat out.txt > after.txt"
deps = ["check"]
outputs = ["after.txt"]
"#,
    );
    p.write("src/a.txt", "good\n");
    let mut up = Up::start(&p, &[]);
    up.wait_for("built", |e| finished(e, "after", "built"));
    p.write("src/a.txt", "bad\n");
    up.wait_for("failed", |e| finished(e, "check", "failed"));
    up.wait_seen("its dependent skipped", |e| finished(e, "after", "skipped"));
    assert_eq!(status(&p)["targets"]["check"]["status"], "failed");
    assert_eq!(p.kiln(&["wait", "check", "--timeout", "200ms"]).code, 1, "a failed target is not done");

    // Back to the content of the last success: nothing needs to run, and status says so.
    p.write("src/a.txt", "good\n");
    let back = up.wait_for("check fresh again", |e| finished(e, "check", "fresh"));
    assert_eq!(back["reason"], "up to date");
    up.wait_for("after fresh again", |e| finished(e, "after", "fresh"));
    let v = status(&p);
    assert_eq!(
        (&v["targets"]["check"]["status"], &v["targets"]["after"]["status"]),
        (&"fresh".into(), &"fresh".into())
    );
    assert_eq!(p.kiln(&["wait", "check", "after", "--timeout", "5s"]).code, 0);
    // And `kiln build --dry-run`, which needs no lock and so answers beside `kiln up`, agrees.
    let plan = p.kiln(&["build", "--dry-run"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("0 of 2 targets would run or restore"), "{}", plan.stdout);
}

const SCALED: &str = r#"
[settings]
debounce = "50ms"
[service.web]
cmd = "echo $$ > pid.$KILN_REPLICA; echo listening; exec sleep 1000"
replicas = 3
ready = { log = "listening" }
stop_timeout = "2s"
"#;

#[test]
fn scaling_down_stops_only_the_highest_replica_and_scaling_up_starts_one() {
    let p = Project::new(SCALED);
    let mut up = Up::start(&p, &[]);
    for r in 0..3 {
        up.wait_seen("every replica ready", |e| phase(e, "web", r, "ready"));
    }
    let pid = |r: u32| p.read(&format!("pid.{r}")).trim().parse::<i32>().expect("pid");
    let (p0, p1, p2) = (pid(0), pid(1), pid(2));
    let before = up.seen.len();

    p.write("kiln.toml", &SCALED.replace("replicas = 3", "replicas = 2"));
    let reloaded = up.wait_for("the reload", |e| e["type"] == "config.reloaded");
    assert_eq!(reloaded["services_changed"], serde_json::json!(["web"]));
    let stopped = up.wait_for("replica 2 stopped", |e| phase(e, "web", 2, "stopped"));
    assert_eq!(stopped["replicas"], 2);
    assert!(!alive(p2), "replica 2's process is gone");
    assert!(alive(p0) && alive(p1), "the other two keep serving");
    let touched: Vec<&Value> =
        up.seen[before..].iter().filter(|e| e["type"] == "service.phase" && e["replica"] != 2).collect();
    assert!(touched.is_empty(), "replicas 0 and 1 were not restarted: {touched:?}");
    let v = status(&p);
    assert_eq!((v["services"]["web"]["ready"].as_u64(), v["services"]["web"]["desired"].as_u64()), (Some(2), Some(2)));
    assert_eq!(p.kiln(&["wait", "web", "--timeout", "5s"]).code, 0);
    let human = p.kiln(&["status"]);
    assert!(human.stdout.contains("ready    2/2 replicas"), "{}", human.stdout);

    p.write("kiln.toml", SCALED);
    let ready = up.wait_for("a new replica 2", |e| phase(e, "web", 2, "ready"));
    assert_eq!(ready["replicas"], 3);
    assert_ne!(pid(2), p2, "a new process");
    assert!(alive(p0) && alive(p1));
    let v = status(&p);
    assert_eq!((v["services"]["web"]["ready"].as_u64(), v["services"]["web"]["desired"].as_u64()), (Some(3), Some(3)));
    assert_eq!(p.kiln(&["wait", "web", "--timeout", "5s"]).code, 0);
}

#[test]
fn a_file_no_pattern_matches_neither_opens_nor_holds_the_debounce_window() {
    let p = Project::new(
        r#"
[settings]
debounce = "50ms"
[target.t]
cmd = "cat src/a.txt > out.txt"
inputs = ["src/*.txt"]
outputs = ["out.txt"]
"#,
    );
    p.write("src/a.txt", "v0\n");
    p.write("app.log", "");
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", |e| e["type"] == "run.finished");
    // A log in the project root appended every 20 ms, as a chatty tool would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), p.path("app.log"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::options().append(true).open(log).expect("open log");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = writeln!(f, "a line");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut latencies = Vec::new();
    for i in 1..=3 {
        let saved = Instant::now();
        p.write("src/a.txt", &format!("v{i}\n"));
        let changed = up.wait_for("the edit's batch", |e| e["type"] == "watch.changed");
        latencies.push(saved.elapsed());
        assert_eq!(changed["paths"], serde_json::json!(["src/a.txt"]), "the log is no change of anyone's");
        up.wait_for("its round", |e| e["type"] == "run.finished");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    // Held open by the log, each batch would wait for the 1 s cap instead of the 50 ms window.
    let slowest = latencies.iter().max().expect("three");
    assert!(*slowest < Duration::from_millis(700), "batches waited for the log: {latencies:?}");
    assert_eq!(p.read("out.txt"), "v3\n");
}

/// Regression: rounds were kept by graph index, which a reload renumbers, so a target could
/// build twice at once and an unrelated new target waited.
#[test]
fn a_reload_during_a_round_keeps_one_build_per_target() {
    let config = r#"
[settings]
debounce = "50ms"
[target.c]
cmd = "echo start >> c.log; sleep 3; echo end >> c.log"
inputs = ["c/*"]
"#;
    let p = Project::new(config);
    p.write("c/x", "0\n");
    p.write("b/y", "b\n");
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first round", |e| e["type"] == "run.finished");
    p.write("c/x", "1\n");
    up.wait_for("c builds", |e| e["type"] == "target.started" && e["target"] == "c");
    // A new target `b` sorts before `c`: every graph index moves.
    p.write(
        "kiln.toml",
        &format!("{config}[target.b]\ncmd = \"cat b/y > b.out\"\ninputs = [\"b/*\"]\noutputs = [\"b.out\"]\n"),
    );
    up.wait_for("the reload", |e| e["type"] == "config.reloaded");
    p.write("c/x", "2\n");
    let first = up.wait_for("b, before c's build ends", |e| {
        finished(e, "b", "built") || (e["type"] == "target.finished" && e["target"] == "c")
    });
    assert_eq!(first["target"], "b", "b did not wait for c:\n{}", up.dump());
    up.wait_for("c's build", |e| finished(e, "c", "built"));
    up.wait_for("c's one follow-up", |e| finished(e, "c", "built"));
    let log = p.read("c.log");
    assert_eq!(log, "start\nend\n".repeat(3), "no two builds of c at once");
}

const STUBBORN: &str = r#"
[settings]
debounce = "50ms"
[service.web]
cmd = "trap '' TERM; echo $$ > pid.$KILN_REPLICA; echo listening; while true; do sleep 0.1; done"
replicas = 3
ready = { log = "listening" }
stop_timeout = "3s"
"#;

fn all_ready(up: &mut Up, n: u64) {
    for r in 0..n {
        up.wait_seen("every replica ready", |e| phase(e, "web", r, "ready"));
    }
}

/// Regression: scaling back up while the scaled-down replica was still stopping left it
/// stopped for good.
#[test]
fn scaling_up_again_while_a_replica_is_still_stopping_brings_it_back() {
    let p = Project::new(STUBBORN);
    let mut up = Up::start(&p, &[]);
    all_ready(&mut up, 3);
    p.write("kiln.toml", &STUBBORN.replace("replicas = 3", "replicas = 2"));
    up.wait_for("replica 2 stopping", |e| phase(e, "web", 2, "stopping"));
    p.write("kiln.toml", STUBBORN);
    up.wait_for("replica 2 stopped", |e| phase(e, "web", 2, "stopped"));
    let back = up.wait_for("a new replica 2", |e| phase(e, "web", 2, "ready"));
    assert_eq!(back["replicas"], 3);
    assert_eq!(p.kiln(&["wait", "web", "--timeout", "10s"]).code, 0);
    let v = status(&p);
    assert_eq!((v["services"]["web"]["ready"].as_u64(), v["services"]["web"]["desired"].as_u64()), (Some(3), Some(3)));
}

/// Regression: a restart for a new build turned a scale-down's stop into a restart.
#[test]
fn a_restart_during_a_scale_down_does_not_bring_the_replica_back() {
    let p = Project::new(STUBBORN);
    let mut up = Up::start(&p, &[]);
    all_ready(&mut up, 3);
    p.write("kiln.toml", &STUBBORN.replace("replicas = 3", "replicas = 2"));
    up.wait_for("replica 2 stopping", |e| phase(e, "web", 2, "stopping"));
    assert_eq!(p.kiln(&["trigger", "web"]).code, 0);
    up.wait_for("replica 2 stopped", |e| phase(e, "web", 2, "stopped"));
    // The roll restarts 0 and 1 one at a time; replica 2 is not part of it.
    up.wait_for("replica 0 restarted", |e| phase(e, "web", 0, "starting"));
    up.wait_for("replica 1 ready again, after it", |e| phase(e, "web", 1, "ready"));
    let after: Vec<&Value> = up
        .seen
        .iter()
        .skip_while(|e| !phase(e, "web", 2, "stopped"))
        .filter(|e| phase(e, "web", 2, "starting"))
        .collect();
    assert!(after.is_empty(), "replica 2 came back: {after:?}");
    assert_eq!(p.kiln(&["wait", "web", "--timeout", "10s"]).code, 0);
    let v = status(&p);
    assert_eq!((v["services"]["web"]["ready"].as_u64(), v["services"]["web"]["desired"].as_u64()), (Some(2), Some(2)));
}

/// Regression: a target added back by a reload, already up to date, was never reported, so
/// `kiln status` did not list it and `kiln wait` failed.
#[test]
fn a_target_added_by_a_reload_and_up_to_date_is_reported_fresh() {
    let both = "[settings]\ndebounce = \"50ms\"\n[target.a]\ncmd = \"cat a/x > a.out\"\ninputs = [\"a/*\"]\noutputs = [\"a.out\"]\n[target.b]\ncmd = \"cat b/x > b.out\"\ninputs = [\"b/*\"]\noutputs = [\"b.out\"]\n";
    let p = Project::new(both);
    p.write("a/x", "a\n");
    p.write("b/x", "b\n");
    assert_eq!(p.build(&[]).code, 0);
    let only_a = both.split("[target.b]").next().expect("a part").to_string();
    p.write("kiln.toml", &only_a);
    let mut up = Up::start(&p, &[]);
    up.wait_for("a fresh", |e| finished(e, "a", "fresh"));
    p.write("kiln.toml", both);
    up.wait_for("b fresh", |e| finished(e, "b", "fresh"));
    assert_eq!(status(&p)["targets"]["b"]["status"], "fresh");
    assert_eq!(p.kiln(&["wait", "b", "--timeout", "5s"]).code, 0);
}

/// `kiln down` stops a build in progress (its commands killed, as on Ctrl-C) instead of
/// waiting for it, and the control commands still reach `kiln up` while kiln.toml has errors.
#[test]
fn kiln_down_stops_a_running_build_even_with_a_broken_kiln_toml() {
    let config = "[settings]\ndebounce = \"50ms\"\n[target.slow]\ncmd = \"sleep 300 & echo $! > child.pid; wait\"\ninputs = [\"src/*\"]\n";
    let p = Project::new(config);
    p.write("src/a", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_for("the build running", |e| e["type"] == "target.started" && e["target"] == "slow");
    assert!(common::wait_until(Duration::from_secs(10), || p.exists("child.pid")), "the command started");
    let child: i32 = p.read("child.pid").trim().parse().expect("pid");
    p.write("kiln.toml", "[target.slow\n");
    up.wait_for("the broken kiln.toml reported", |e| e["type"] == "config.invalid");

    let status = p.kiln(&["--json", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stderr.contains("asking the running `kiln up` anyway"), "{}", status.stderr);
    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    let skipped = up.wait_for("the build cut short", |e| e["type"] == "target.finished" && e["target"] == "slow");
    assert_eq!(
        (skipped["status"].as_str(), skipped["reason"].as_str()),
        (Some("skipped"), Some("interrupted while running"))
    );
    let exit = up.child.wait().expect("kiln up exits");
    assert_eq!(exit.code(), Some(0), "stopped on request");
    assert!(!alive(child), "the command's process group is gone");
}
