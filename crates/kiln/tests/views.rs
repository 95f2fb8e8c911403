//! Views of a run: the trace file, `explain`, `logs`, verbose replay, recorded durations,
//! and live progress in a real terminal (tmux).

mod common;
use common::{Project, wait_until};
use std::collections::BTreeMap;
use std::time::Duration;

const CONFIG: &str = r#"
[env]
CFLAGS = "-O2"

[target.core]
cmd = "mkdir -p out && cat src/*.txt > out/core && echo core says hello"
inputs = ["src/*.txt"]
outputs = ["out/core"]

[target.api]
deps = ["core"]
cmd = "cat out/core > out/api"
outputs = ["out/api"]

[target.docs]
cmd = "sleep 0.2; echo docs > docs.txt"
outputs = ["docs.txt"]
"#;

fn project() -> Project {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    p.write("src/b.txt", "b\n");
    p
}

#[test]
fn trace_has_a_track_per_slot_and_spans_that_nest_without_overlap() {
    let p = project();
    let run = p.kiln(&["build", "--trace", "trace.json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&p.read("trace.json")).expect("trace is JSON");
    let events = doc["traceEvents"].as_array().expect("traceEvents");
    let names: BTreeMap<u64, String> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| (e["tid"].as_u64().expect("tid"), e["args"]["name"].as_str().expect("name").to_string()))
        .collect();
    assert!(names.values().any(|n| n == "job 0"), "{names:?}");
    assert!(names.values().any(|n| n.starts_with("worker ")), "{names:?}");

    let mut by_track: BTreeMap<u64, Vec<(u64, u64, String)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let ts = e["ts"].as_u64().expect("ts");
        let dur = e["dur"].as_u64().expect("dur");
        by_track.entry(e["tid"].as_u64().expect("tid")).or_default().push((
            ts,
            ts + dur,
            e["name"].as_str().unwrap_or("").to_string(),
        ));
    }
    let kinds: Vec<String> =
        by_track.values().flatten().map(|(_, _, n)| n.split(' ').next().unwrap_or("").to_string()).collect();
    for kind in ["run", "store", "hash", "lookup", "evaluate"] {
        assert!(kinds.iter().any(|k| k == kind), "a {kind} span: {kinds:?}");
    }
    for (tid, spans) in &mut by_track {
        spans.sort_by_key(|(start, end, _)| (*start, std::cmp::Reverse(*end)));
        // Each span either lies inside the enclosing open span or starts after it ends.
        let mut open: Vec<(u64, u64, String)> = Vec::new();
        for span in spans.iter() {
            while open.last().is_some_and(|top| top.1 <= span.0) {
                open.pop();
            }
            if let Some(top) = open.last() {
                assert!(span.1 <= top.1, "on track {}: {:?} overlaps {:?} without nesting", names[tid], span, top);
            }
            open.push(span.clone());
        }
    }
    let counters: Vec<i64> =
        events.iter().filter(|e| e["ph"] == "C").map(|e| e["args"]["running"].as_i64().expect("running")).collect();
    assert!(counters.contains(&1) && counters.last() == Some(&0), "{counters:?}");
}

#[test]
fn explain_itemises_every_difference_from_the_last_build() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    let up = p.kiln(&["explain", "api"]);
    assert_eq!(up.code, 0);
    assert!(up.stdout.starts_with("api is up to date\nlast built "), "{}", up.stdout);
    assert!(up.stdout.contains("  because: no previous build"), "{}", up.stdout);

    p.write("src/a.txt", "a2\n");
    p.write("src/c.txt", "c\n");
    std::fs::remove_file(p.path("src/b.txt")).expect("rm");
    p.write("kiln.toml", &CONFIG.replace("-O2", "-O0").replace("says hello", "says hi"));
    let core = p.kiln(&["explain", "core"]);
    let hash = |s: &str| blake3::hash(s.as_bytes()).to_hex()[..12].to_string();
    let text = core.stdout;
    assert!(
        text.starts_with("core would run: command changed, src/a.txt changed, src/b.txt removed, and 2 more\n"),
        "{text}"
    );
    assert!(text.contains(&format!("    changed  src/a.txt  {} → {}\n", hash("a\n"), hash("a2\n"))), "{text}");
    assert!(text.contains(&format!("    removed  src/b.txt  {} → (none)\n", hash("b\n"))), "{text}");
    assert!(text.contains(&format!("    added    src/c.txt  (none) → {}\n", hash("c\n"))), "{text}");
    assert!(text.contains("  env:\n    CFLAGS  \"-O2\" → \"-O0\"\n"), "{text}");
    assert!(text.contains("    was  mkdir -p out && cat src/*.txt > out/core && echo core says hello\n"), "{text}");
    assert!(text.contains("    now  mkdir -p out && cat src/*.txt > out/core && echo core says hi\n"), "{text}");

    let api = p.kiln(&["explain", "api"]).stdout;
    assert!(api.starts_with("api would run: env CFLAGS changed; dependency core is out of date\n"), "{api}");
    assert!(api.contains("  out of date first: core"), "{api}");

    // The build's one-line reason is the same.
    let run = p.build(&[]);
    let reasons: BTreeMap<String, String> = run.finished().into_iter().map(|(t, _, r)| (t, r)).collect();
    assert_eq!(reasons["core"], "command changed, src/a.txt changed, src/b.txt removed, and 2 more");
    assert_eq!(reasons["api"], "dependency core changed, env CFLAGS changed");
    let after = p.kiln(&["explain", "core"]).stdout;
    assert!(after.contains("  because: command changed, src/a.txt changed"), "the last reason is kept: {after}");
}

#[test]
fn explain_as_json_and_for_unknown_or_never_built_targets() {
    let p = project();
    let never = p.kiln(&["explain", "core"]);
    assert_eq!(never.code, 0);
    assert!(never.stdout.starts_with("core would run: no previous build\n"), "{}", never.stdout);
    assert!(never.stdout.ends_with("never built\n"), "{}", never.stdout);
    let json = p.kiln(&["--json", "explain", "core"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["target"], "core");
    assert_eq!(v["current"]["inputs"][0][0], "src/a.txt");
    let unknown = p.kiln(&["explain", "cor"]);
    assert_eq!(unknown.code, 2);
    assert_eq!(unknown.stderr, "error: unknown target `cor` (did you mean `core`?)\n");
}

#[test]
fn logs_show_the_last_run_or_the_cached_output() {
    let p = project();
    assert_eq!(
        p.kiln(&["logs", "core"]).stderr.trim(),
        "kiln: no output recorded for `core`: it has not run yet, or its last run printed nothing"
    );
    assert_eq!(p.build(&[]).code, 0);
    assert_eq!(p.kiln(&["logs", "core"]).stdout, "core says hello\n");
    std::fs::remove_dir_all(p.path(".kiln/logs")).expect("rm logs");
    std::fs::remove_file(p.path("out/core")).expect("rm output");
    let run = p.build(&[]);
    assert_eq!(run.status_of("core"), "cached");
    assert_eq!(p.kiln(&["logs", "core"]).stdout, "core says hello\n", "the log stored with the cache entry");
    assert_eq!(p.kiln(&["logs", "nope"]).code, 2);
}

#[test]
fn verbose_replays_the_output_of_cached_targets() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    std::fs::remove_file(p.path("out/core")).expect("rm");
    let run = p.build(&["--verbose"]);
    let replayed: Vec<serde_json::Value> =
        run.events().into_iter().filter(|e| e["type"] == "target.output" && e["replayed"] == true).collect();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["line"], "core says hello");
    std::fs::remove_file(p.path("out/core")).expect("rm");
    let human = p.kiln(&["build", "-v"]);
    assert!(human.stdout.contains("core │ core says hello\n"), "{}", human.stdout);
    std::fs::remove_file(p.path("out/core")).expect("rm");
    let quiet = p.kiln(&["build"]);
    assert!(!quiet.stdout.contains("core says hello"), "{}", quiet.stdout);
}

#[test]
fn recorded_durations_come_back_as_estimates_and_in_the_summary() {
    let p = project();
    let first = p.build(&[]);
    let queued =
        first.events().into_iter().find(|e| e["type"] == "target.queued" && e["target"] == "docs").expect("queued");
    assert!(queued.get("estimate_ms").is_none(), "nothing recorded yet");
    let state: serde_json::Value = serde_json::from_str(&p.read(".kiln/state/targets.json")).expect("state");
    let recorded = state["targets"]["docs"]["duration_ms"].as_u64().expect("duration recorded");
    assert!(recorded >= 200, "{recorded}");
    std::fs::remove_file(p.path("docs.txt")).expect("rm");
    let second = p.build(&[]);
    let queued =
        second.events().into_iter().find(|e| e["type"] == "target.queued" && e["target"] == "docs").expect("queued");
    assert_eq!(queued["estimate_ms"].as_u64(), Some(recorded));
    let finished = second
        .events()
        .into_iter()
        .find(|e| e["type"] == "target.finished" && e["target"] == "docs")
        .expect("finished");
    assert_eq!(finished["saved_ms"].as_u64(), Some(recorded));
    std::fs::remove_file(p.path("docs.txt")).expect("rm");
    let human = p.kiln(&["build"]);
    assert!(
        human.stdout.contains("cache: 3 of 3 targets needed no command (100%): 1 restored, 2 fresh; restoring saved "),
        "{}",
        human.stdout
    );
}

/// Runs `kiln build` in a tmux pane, recording every byte the terminal receives.
struct Pane {
    session: String,
    raw: std::path::PathBuf,
}

impl Pane {
    fn start(p: &Project, env: &str) -> Pane {
        assert!(
            std::process::Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success()),
            "tmux is needed for this test: apt-get install tmux (scripts/install-deps.sh does)"
        );
        let session = format!("kiln-test-{}", std::process::id() ^ rand_suffix());
        let raw = p.path("pane.raw");
        let cmd = format!("cd {} && {env} {} build; echo EXIT=$?; sleep 60", p.root().display(), common::kiln_bin());
        let status = std::process::Command::new("tmux")
            .args(["new-session", "-d", "-x", "100", "-y", "30", "-s", &session, "sh", "-c", &cmd])
            .status()
            .expect("tmux runs");
        assert!(status.success());
        let _ = std::process::Command::new("tmux")
            .args(["pipe-pane", "-o", "-t", &session, &format!("cat >> {}", raw.display())])
            .status();
        Pane { session, raw }
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("capture");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.raw).unwrap_or_default()).into_owned()
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux").args(["kill-session", "-t", &self.session]).status();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

const SLOW: &str = r#"
[target.slow]
cmd = "for i in 1 2 3 4 5 6 7 8; do echo step $i; sleep 0.25; done"
[target.quick]
cmd = "echo quick"
[target.after]
deps = ["slow", "quick"]
cmd = "true"
"#;

#[test]
fn live_progress_in_a_terminal_shows_running_targets_and_a_bar_then_clears_them() {
    let p = Project::new(SLOW);
    let pane = Pane::start(&p, "env -u CI");
    let mut seen = String::new();
    let drew = wait_until(Duration::from_secs(10), || {
        seen = pane.screen();
        seen.contains(" slow ") && seen.contains(" 1/3 ") && seen.contains(" │ step ")
    });
    assert!(drew, "live region while running:\n{seen}");
    assert!(seen.contains("  built quick "), "finished targets scroll above the region:\n{seen}");
    let done = wait_until(Duration::from_secs(15), || {
        seen = pane.screen();
        seen.contains("EXIT=0")
    });
    assert!(done, "{seen}");
    assert!(seen.contains("3 built, 0 cached, 0 fresh, 0 failed, 0 skipped in "), "{seen}");
    assert!(!seen.contains(" │ step "), "the live region is gone at the end:\n{seen}");
    assert!(pane.raw().contains("\x1b[2K"), "redrawn with control codes");
}

#[test]
fn ci_gets_plain_lines_even_on_a_terminal() {
    let p = Project::new(SLOW);
    let pane = Pane::start(&p, "CI=true");
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(15), || {
            seen = pane.screen();
            seen.contains("EXIT=0")
        }),
        "{seen}"
    );
    let raw = pane.raw();
    assert!(raw.contains("built slow"), "{raw:?}");
    assert!(!raw.contains("\x1b[2K") && !raw.contains('█'), "no control codes or bars in CI: {raw:?}");
}
