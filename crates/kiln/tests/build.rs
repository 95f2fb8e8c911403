//! `kiln build` on real temporary projects: selection, scheduling, failure handling,
//! execution, and the output contract.

mod common;
use common::{Project, alive, wait_until};
use std::time::{Duration, Instant};

const CHAIN: &str = r#"
[target.core]
cmd = "mkdir -p out && cat core/*.txt > out/core"
inputs = ["core/*.txt"]
outputs = ["out/core"]

[target.api]
deps = ["core"]
cmd = "cat out/core api/main.txt > out/api"
inputs = ["api/**"]
outputs = ["out/api"]

[target.web]
deps = ["core"]
cmd = "cat out/core web/main.txt > out/web"
inputs = ["web/**"]
outputs = ["out/web"]
"#;

fn chain() -> Project {
    let p = Project::new(CHAIN);
    p.write("core/a.txt", "core-a\n");
    p.write("api/main.txt", "api\n");
    p.write("web/main.txt", "web\n");
    p
}

#[test]
fn builds_everything_in_dependency_order() {
    let p = chain();
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.with_status("built"), vec!["api", "core", "web"]);
    assert_eq!(p.read("out/api"), "core-a\napi\n");
    let order: Vec<String> = run.finished().into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(order[0], "core", "core finishes before its dependents");
}

#[test]
fn a_named_target_builds_only_what_it_needs() {
    let p = chain();
    let run = p.build(&["api"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.with_status("built"), vec!["api", "core"]);
    assert!(!p.exists("out/web"));
    let started = run.events().iter().find(|e| e["type"] == "run.started").cloned().expect("run.started");
    assert_eq!(started["targets"], 2);
}

#[test]
fn human_output_has_one_line_per_target_a_summary_and_a_closing_count() {
    let p = chain();
    let run = p.kiln(&["build"]);
    assert_eq!(run.code, 0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{}", run.stdout);
    assert!(lines[0].starts_with("  built core ") && lines[0].ends_with(" — no previous build"), "{}", lines[0]);
    assert!(lines[3].starts_with("critical path ") && lines[3].contains(": core "), "{}", lines[3]);
    assert!(lines[4].starts_with("slowest: "), "{}", lines[4]);
    assert_eq!(lines[5], "cache: 0 of 3 targets needed no command (0%): 0 restored, 0 fresh; restoring saved 0ms");
    let last = lines[6];
    assert!(last.starts_with("3 built, 0 cached, 0 fresh, 0 failed, 0 skipped in "), "{last}");
    assert!(last.ends_with('s'));
    assert!(!run.stdout.contains('\x1b'), "no control codes in plain output");
}

#[test]
fn json_mode_puts_events_on_stdout_and_human_lines_on_stderr() {
    let p = chain();
    let run = p.build(&[]);
    let events = run.events();
    assert_eq!(events.first().map(|e| e["type"].clone()), Some("run.started".into()));
    assert_eq!(events.last().map(|e| e["type"].clone()), Some("run.finished".into()));
    let mut last_seq = 0;
    for e in &events {
        let seq = e["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "seq increases");
        last_seq = seq;
        let ts = e["ts"].as_str().expect("ts");
        assert_eq!(ts.len(), 24, "RFC 3339 with milliseconds: {ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.');
    }
    let finished = events.iter().find(|e| e["type"] == "target.finished").expect("finished");
    for field in ["target", "status", "duration_ms", "key", "reason"] {
        assert!(finished.get(field).is_some(), "target.finished has {field}");
    }
    let end = events.last().expect("last");
    for field in ["ok", "built", "cached", "fresh", "failed", "skipped", "duration_ms"] {
        assert!(end.get(field).is_some(), "run.finished has {field}");
    }
    assert!(events.iter().any(|e| e["type"] == "target.queued" && e["target"] == "web"));
    assert!(events.iter().any(|e| e["type"] == "target.started" && e["attempt"] == 1));
    assert!(run.stderr.contains("3 built, 0 cached"), "{}", run.stderr);
}

#[test]
fn output_is_streamed_as_events_and_kept_in_the_log() {
    let p = Project::new("[target.t]\ncmd = \"echo to-out; echo to-err >&2\"\n");
    let run = p.build(&[]);
    let lines: Vec<(String, String)> = run
        .events()
        .iter()
        .filter(|e| e["type"] == "target.output")
        .map(|e| (e["stream"].as_str().unwrap_or("").to_string(), e["line"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(lines.contains(&("stdout".into(), "to-out".into())), "{lines:?}");
    assert!(lines.contains(&("stderr".into(), "to-err".into())), "{lines:?}");
    let log = p.read(".kiln/logs/t.log");
    assert!(log.contains("to-out\n") && log.contains("to-err\n"), "{log}");
}

#[test]
fn env_and_dir_reach_the_command() {
    let p = Project::new(
        "[env]\nGREETING = \"hello\"\n[target.t]\ndir = \"sub\"\nenv = { WHO = \"kiln\" }\ncmd = \"echo $GREETING $WHO $(basename $PWD) > out.txt\"\noutputs = [\"sub/out.txt\"]\n",
    );
    p.write("sub/.keep", "");
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(p.read("sub/out.txt"), "hello kiln sub\n");
}

#[test]
fn failure_stops_new_work_lets_running_finish_and_exits_1() {
    let p = Project::new(
        r#"
[target.bad]
cmd = "sleep 0.3; exit 3"
[target.slow]
cmd = "sleep 1; touch slow.done"
outputs = ["slow.done"]
[target.after_bad]
deps = ["bad"]
cmd = "touch after.done"
[target.later]
deps = ["slow"]
cmd = "touch later.done"
"#,
    );
    let run = p.build(&["-j", "2"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.status_of("bad"), "failed");
    assert_eq!(run.status_of("slow"), "built", "running targets finish");
    assert_eq!(run.status_of("after_bad"), "skipped");
    assert_eq!(run.status_of("later"), "skipped", "nothing new starts after a failure");
    assert!(!p.exists("later.done"));
    let reason = run.finished().into_iter().find(|(t, _, _)| t == "bad").map(|(_, _, r)| r).expect("bad");
    assert_eq!(reason, "exit code 3");
}

#[test]
fn keep_going_builds_everything_independent_of_a_failure() {
    let p = Project::new(
        r#"
[target.bad]
cmd = "exit 1"
[target.dependent]
deps = ["bad"]
cmd = "true"
[target.indirect]
deps = ["dependent"]
cmd = "true"
[target.other]
cmd = "sleep 0.2"
[target.other2]
deps = ["other"]
cmd = "true"
"#,
    );
    let run = p.build(&["--keep-going"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.with_status("built"), vec!["other", "other2"]);
    assert_eq!(run.with_status("skipped"), vec!["dependent", "indirect"]);
    let reason = run.finished().into_iter().find(|(t, _, _)| t == "dependent").map(|(_, _, r)| r).expect("dependent");
    assert_eq!(reason, "dependency bad did not succeed");
}

#[test]
fn jobs_bounds_parallelism() {
    let config = r#"
[target.a]
cmd = "date +%s%N > a.start; sleep 0.5; date +%s%N > a.end"
[target.b]
cmd = "date +%s%N > b.start; sleep 0.5; date +%s%N > b.end"
"#;
    let ns = |p: &Project, f: &str| p.read(f).trim().parse::<u128>().expect("nanoseconds");
    let p = Project::new(config);
    assert_eq!(p.build(&["-j", "2"]).code, 0);
    let overlap = ns(&p, "a.start") < ns(&p, "b.end") && ns(&p, "b.start") < ns(&p, "a.end");
    assert!(overlap, "-j 2 runs both at once");
    let p = Project::new(config);
    assert_eq!(p.build(&["-j", "1"]).code, 0);
    let serial = ns(&p, "a.end") <= ns(&p, "b.start") || ns(&p, "b.end") <= ns(&p, "a.start");
    assert!(serial, "-j 1 runs one at a time");
}

#[test]
fn longest_remaining_path_starts_first() {
    // With one job, the head of the long chain must start before the lone target.
    let p = Project::new(
        r#"
[target.a_lone]
cmd = "echo a_lone >> order"
[target.z1]
cmd = "echo z1 >> order"
[target.z2]
deps = ["z1"]
cmd = "echo z2 >> order"
[target.z3]
deps = ["z2"]
cmd = "echo z3 >> order"
"#,
    );
    assert_eq!(p.build(&["-j", "1"]).code, 0);
    assert_eq!(p.read("order").lines().next(), Some("z1"));
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let p =
        Project::new("[target.t]\ntimeout = \"500ms\"\ncmd = \"sleep 300 & echo $! > grandchild.pid; sleep 300\"\n");
    let started = Instant::now();
    let run = p.build(&[]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run.code, 1);
    let reason = run.finished()[0].2.clone();
    assert!(reason.starts_with("timed out after "), "{reason}");
    let pid: i32 = p.read("grandchild.pid").trim().parse().expect("pid");
    assert!(wait_until(Duration::from_secs(2), || !alive(pid)), "grandchild {pid} survived the timeout");
}

#[test]
fn retries_rerun_with_the_attempt_number() {
    let p = Project::new(
        "[target.flaky]\nretries = 2\ncache = false\ncmd = \"echo x >> tries; test $(wc -l < tries) -ge 2\"\n",
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let attempts: Vec<u64> =
        run.events().iter().filter(|e| e["type"] == "target.started").filter_map(|e| e["attempt"].as_u64()).collect();
    assert_eq!(attempts, vec![1, 2]);
    assert!(run.finished()[0].2.contains("succeeded on attempt 2"));

    let p = Project::new("[target.broken]\nretries = 1\ncmd = \"exit 4\"\n");
    let run = p.build(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(run.finished()[0].2, "exit code 4 after 2 attempts");
}

#[test]
fn a_command_that_is_not_found_says_so() {
    let p = Project::new("[target.t]\ncmd = \"definitely-not-a-command --flag\"\n");
    let run = p.kiln(&["build"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("failed t ")
            && run
                .stdout
                .contains("command not found: `definitely-not-a-command` (exit 127); is it installed and on PATH?"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("full log: .kiln/logs/t.log"), "{}", run.stdout);
}

#[test]
fn missing_declared_output_fails_the_target() {
    let p = Project::new("[target.t]\ncmd = \"true\"\noutputs = [\"out/never\"]\n");
    let run = p.build(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(run.finished()[0].2, "the command succeeded but did not write declared output `out/never`");
}

#[test]
fn interrupt_kills_running_commands_and_exits_130() {
    let p = Project::new(
        "[target.t]\ncmd = \"sleep 300 & echo $! > child.pid; sleep 300\"\n[target.u]\ndeps = [\"t\"]\ncmd = \"true\"\n",
    );
    for signal in [nix::sys::signal::Signal::SIGINT, nix::sys::signal::Signal::SIGTERM] {
        let _ = std::fs::remove_file(p.path("child.pid"));
        let mut child = p.command(&["build"]).stdout(std::process::Stdio::piped()).spawn().expect("spawn");
        assert!(
            wait_until(Duration::from_secs(10), || std::fs::read_to_string(p.path("child.pid"))
                .is_ok_and(|s| s.trim().parse::<i32>().is_ok())),
            "command started"
        );
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        nix::sys::signal::kill(pid, signal).expect("signal kiln");
        let started = Instant::now();
        let status = child.wait().expect("kiln exits");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(status.code(), Some(130), "{signal}");
        let grandchild: i32 = p.read("child.pid").trim().parse().expect("pid");
        assert!(wait_until(Duration::from_secs(2), || !alive(grandchild)), "{signal}: process group killed");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out).expect("read");
        assert!(out.contains("skipped t") && out.contains("interrupted"), "{out}");
    }
}

#[test]
fn dry_run_says_what_would_run_and_runs_nothing() {
    let p = chain();
    let run = p.kiln(&["build", "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("    run core — no previous build"), "{}", run.stdout);
    assert!(run.stdout.contains("    run api — dependency core would be rebuilt"), "{}", run.stdout);
    assert!(!p.exists("out"), "nothing ran");
    assert_eq!(p.build(&[]).code, 0);
    p.write("api/main.txt", "api v2\n");
    let run = p.kiln(&["build", "-n"]);
    assert!(run.stdout.contains("    run api — api/main.txt changed"), "{}", run.stdout);
    assert!(run.stdout.contains("  fresh core — up to date"), "{}", run.stdout);
    assert!(run.stdout.contains("dry run: 1 of 3 targets would run or restore; nothing was run"), "{}", run.stdout);
    assert_eq!(p.read("out/api"), "core-a\napi\n", "still the old output");
}

#[test]
fn config_is_found_upwards_and_with_c_and_file() {
    let p = chain();
    let sub = p.path("api");
    let out = p.command(&["--json", "build", "core"]).current_dir(&sub).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(p.exists("out/core"), "built in the project root found upwards");

    let elsewhere = tempfile::tempdir().expect("tempdir");
    let root = p.root().to_str().expect("utf-8").to_string();
    let out = std::process::Command::new(common::kiln_bin())
        .args(["-C", &root, "build", "web"])
        .current_dir(elsewhere.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(p.exists("out/web"));

    std::fs::rename(p.path("kiln.toml"), p.path("other.toml")).expect("rename");
    let out = std::process::Command::new(common::kiln_bin())
        .args(["--file", &format!("{root}/other.toml"), "build"])
        .current_dir(elsewhere.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn profile_is_merged_over_the_file() {
    let p = Project::new(
        "[env]\nMODE = \"release\"\n[target.t]\ncmd = \"echo $MODE > mode\"\noutputs = [\"mode\"]\n[profile.debug]\nenv.MODE = \"debug\"\n",
    );
    assert_eq!(p.build(&[]).code, 0);
    assert_eq!(p.read("mode"), "release\n");
    assert_eq!(p.build(&["--profile", "debug"]).code, 0);
    assert_eq!(p.read("mode"), "debug\n");
}

#[test]
fn graph_formats() {
    let p = chain();
    let dot = p.kiln(&["graph", "--format", "dot"]);
    assert_eq!(dot.code, 0);
    assert!(dot.stdout.starts_with("digraph kiln {") && dot.stdout.contains("\"core\" -> \"api\";"), "{}", dot.stdout);
    let mermaid = p.kiln(&["graph", "--format", "mermaid"]);
    assert!(
        mermaid.stdout.starts_with("graph LR\n") && mermaid.stdout.contains("  core --> web\n"),
        "{}",
        mermaid.stdout
    );
    let json = p.kiln(&["graph", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["targets"][0]["name"], "api");
    assert_eq!(v["targets"][0]["deps"][0], "core");
}
