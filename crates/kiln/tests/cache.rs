//! Keys and the content-addressed cache, seen from the command line: fresh, cached, early
//! cutoff, touch-only edits, corruption, concurrent runs, `kill -9`, stats, prune, clean.

mod common;
use common::{Project, wait_until};
use std::time::Duration;

const CONFIG: &str = r#"
[target.core]
cmd = "mkdir -p out && cat core/*.txt | tr -d '#' > out/core && echo ran >> core.runs"
inputs = ["core/*.txt"]
outputs = ["out/core"]

[target.plugin]
deps = ["core"]
cmd = "cat out/core plugin/main.txt > out/plugin && echo ran >> plugin.runs"
inputs = ["plugin/*.txt"]
outputs = ["out/plugin"]
"#;

fn project() -> Project {
    let p = Project::new(CONFIG);
    p.write("core/a.txt", "alpha\n");
    p.write("plugin/main.txt", "plugin\n");
    p
}

fn runs(p: &Project, target: &str) -> usize {
    std::fs::read_to_string(p.path(&format!("{target}.runs"))).map_or(0, |s| s.lines().count())
}

#[test]
fn second_build_is_fresh_and_runs_nothing() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    let run = p.build(&[]);
    assert_eq!(run.with_status("fresh"), vec!["core", "plugin"]);
    assert_eq!((runs(&p, "core"), runs(&p, "plugin")), (1, 1));
    assert_eq!(run.finished()[0].2, "up to date");
}

#[test]
fn touching_files_without_changing_content_runs_nothing() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    std::thread::sleep(Duration::from_millis(20));
    for f in ["core/a.txt", "plugin/main.txt"] {
        let file = std::fs::File::options().append(true).open(p.path(f)).expect("open");
        file.set_modified(std::time::SystemTime::now()).expect("touch");
    }
    p.write("core/a.txt", "alpha\n");
    let run = p.build(&[]);
    assert_eq!(run.with_status("fresh"), vec!["core", "plugin"]);
    assert_eq!(runs(&p, "core"), 1);
}

#[test]
fn an_edit_rebuilds_the_target_and_its_dependents_with_the_reason() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    p.write("core/a.txt", "beta\n");
    let run = p.build(&[]);
    assert_eq!(run.with_status("built"), vec!["core", "plugin"]);
    let reasons: Vec<String> = run.finished().into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(reasons, vec!["core/a.txt changed", "dependency core changed"]);
    p.write("core/b.txt", "more\n");
    let run = p.build(&["core"]);
    assert_eq!(run.finished()[0].2, "core/b.txt added");
}

#[test]
fn identical_dependency_output_stops_the_rebuild_early() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    // `#` is stripped by core's command, so its output stays byte-identical.
    p.write("core/a.txt", "al#pha\n");
    let run = p.build(&[]);
    assert_eq!(run.status_of("core"), "built");
    assert_eq!(run.status_of("plugin"), "fresh", "early cutoff");
    assert_eq!(runs(&p, "plugin"), 1);
}

#[test]
fn missing_or_altered_outputs_are_restored_from_the_cache() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    std::fs::remove_file(p.path("out/core")).expect("rm");
    p.write("out/plugin", "tampered\n");
    let run = p.build(&[]);
    assert_eq!(run.with_status("cached"), vec!["core", "plugin"]);
    assert_eq!(p.read("out/plugin"), "alpha\nplugin\n");
    assert_eq!((runs(&p, "core"), runs(&p, "plugin")), (1, 1), "no command ran");
    let reasons: Vec<String> = run.finished().into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(reasons[0], "output out/core is missing; restored 1 file from cache");
}

#[test]
fn going_back_to_earlier_content_restores_instead_of_rebuilding() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    p.write("plugin/main.txt", "v2\n");
    assert_eq!(p.build(&[]).status_of("plugin"), "built");
    p.write("plugin/main.txt", "plugin\n");
    let run = p.build(&[]);
    assert_eq!(run.status_of("plugin"), "cached");
    assert_eq!(p.read("out/plugin"), "alpha\nplugin\n");
    assert_eq!(runs(&p, "plugin"), 2);
}

#[test]
fn failed_targets_are_never_cached() {
    let p = Project::new("[target.t]\ncmd = \"echo ran >> runs; test -f ok\"\n");
    assert_eq!(p.build(&[]).code, 1);
    assert_eq!(p.build(&[]).code, 1, "a failure is retried, not replayed from the cache");
    assert_eq!(p.read("runs").lines().count(), 2);
    p.write("ok", "");
    assert_eq!(p.build(&[]).code, 0);
}

#[test]
fn a_corrupt_blob_is_reported_discarded_and_rebuilt() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    let digest = blake3::hash(b"alpha\n").to_hex().to_string();
    let blob = p.path(&format!(".kiln/cache/blobs/{}/{digest}", &digest[..2]));
    assert!(blob.exists(), "blob stored under its digest");
    std::fs::write(&blob, "garbage").expect("corrupt");
    std::fs::remove_file(p.path("out/core")).expect("rm");
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.status_of("core"), "built");
    assert!(run.stderr.contains("warning: core: cache entry for `out/core` is corrupt"), "{}", run.stderr);
    assert_eq!(p.read("out/core"), "alpha\n");
    assert_eq!(std::fs::read_to_string(&blob).expect("blob"), "alpha\n", "the blob was rewritten from the rebuild");
}

#[test]
fn cache_false_never_restores() {
    let p = Project::new("[target.t]\ncache = false\ncmd = \"echo x >> runs; echo out > o\"\noutputs = [\"o\"]\n");
    assert_eq!(p.build(&[]).code, 0);
    assert_eq!(p.build(&[]).status_of("t"), "fresh");
    std::fs::remove_file(p.path("o")).expect("rm");
    let run = p.build(&[]);
    assert_eq!(run.status_of("t"), "built");
    assert_eq!(p.read("runs").lines().count(), 2);
}

#[test]
fn outputs_in_directories_and_globs_are_cached() {
    let p = Project::new(
        "[target.t]\ncmd = \"mkdir -p dist/sub && echo a > dist/a.js && echo b > dist/sub/b.js && echo c > gen.c && chmod +x gen.c\"\noutputs = [\"dist\", \"*.c\"]\n",
    );
    assert_eq!(p.build(&[]).code, 0);
    std::fs::remove_dir_all(p.path("dist")).expect("rm");
    std::fs::remove_file(p.path("gen.c")).expect("rm");
    let run = p.build(&[]);
    assert_eq!(run.status_of("t"), "cached");
    assert_eq!(p.read("dist/sub/b.js"), "b\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path("gen.c")).expect("meta").permissions().mode();
    assert!(mode & 0o111 != 0, "executable bit restored");
}

#[test]
fn two_builds_at_once_wait_for_each_other() {
    let p = Project::new("[target.t]\ncmd = \"echo start >> log; sleep 1; echo end >> log\"\ncache = false\n");
    let first = p.command(&["build"]).spawn().expect("spawn");
    assert!(wait_until(Duration::from_secs(5), || p.exists("log")));
    let second = p.kiln(&["build"]);
    let mut first = first;
    assert!(first.wait().expect("first").success());
    assert_eq!(second.code, 0);
    assert!(second.stdout.contains("kiln: waiting for another kiln (pid "), "{}", second.stdout);
    assert_eq!(p.read("log"), "start\nend\n", "the second build found the first one's result fresh");
}

#[test]
fn kill_9_during_a_build_leaves_a_usable_cache() {
    let p = Project::new(
        r#"
[target.quick]
cmd = "mkdir -p out && echo q > out/quick"
outputs = ["out/quick"]
[target.slow]
deps = ["quick"]
cmd = "echo partial > out/slow.tmp; sleep 30; mv out/slow.tmp out/slow"
outputs = ["out/slow"]
"#,
    );
    let mut child = p.command(&["build"]).spawn().expect("spawn");
    assert!(wait_until(Duration::from_secs(10), || p.exists("out/slow.tmp")));
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    p.write("kiln.toml", &p.read("kiln.toml").replace("sleep 30; ", ""));
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(matches!(run.status_of("quick").as_str(), "cached" | "fresh"), "quick was stored before the kill");
    assert_eq!(run.status_of("slow"), "built");
    assert!(
        !p.exists(".kiln/cache/tmp") || std::fs::read_dir(p.path(".kiln/cache/tmp")).expect("dir").next().is_none()
    );
}

#[test]
fn stats_prune_and_clean() {
    let p = project();
    assert_eq!(p.build(&[]).code, 0);
    p.write("plugin/main.txt", &"x".repeat(5000));
    assert_eq!(p.build(&[]).code, 0);
    let stats = p.kiln(&["--json", "cache", "stats"]);
    let v: serde_json::Value = serde_json::from_str(&stats.stdout).expect("json");
    assert_eq!(v["entries"], 3);
    let human = p.kiln(&["cache", "stats"]);
    assert!(human.stdout.starts_with("3 entries, "), "{}", human.stdout);

    let pruned = p.kiln(&["cache", "prune", "--max-size", "1K"]);
    assert_eq!(pruned.code, 0);
    assert!(pruned.stdout.starts_with("removed 1 entry and "), "{}", pruned.stdout);
    let v: serde_json::Value = serde_json::from_str(&p.kiln(&["--json", "cache", "stats"]).stdout).expect("json");
    assert_eq!(v["entries"], 2);
    let bad = p.kiln(&["cache", "prune", "--max-size", "lots"]);
    assert_eq!(bad.code, 2);

    let clean = p.kiln(&["clean"]);
    assert_eq!(clean.code, 0);
    assert!(clean.stdout.starts_with("removed 2 output files"), "{}", clean.stdout);
    assert!(!p.exists("out/core") && !p.exists("out/plugin"));
    let run = p.build(&[]);
    assert_eq!(run.status_of("core"), "cached", "the cache survives a plain clean");
    assert_eq!(run.status_of("plugin"), "built", "its entry was pruned");
    assert_eq!(p.kiln(&["clean", "--all"]).code, 0);
    assert_eq!(p.build(&[]).with_status("built"), vec!["core", "plugin"]);
}

#[test]
fn a_dependent_sees_files_its_dependency_generates_as_inputs() {
    let p = Project::new(
        r#"
[target.gen]
cmd = "mkdir -p gen && cp template.txt gen/made.txt"
inputs = ["template.txt"]
outputs = ["gen/made.txt"]

[target.use]
deps = ["gen"]
cmd = "cat gen/*.txt > used.txt"
inputs = ["gen/*.txt"]
outputs = ["used.txt"]
"#,
    );
    p.write("template.txt", "one\n");
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(p.read("used.txt"), "one\n");
    p.write("template.txt", "two\n");
    let run = p.build(&[]);
    assert_eq!(run.with_status("built"), vec!["gen", "use"]);
    let reason = run.finished().into_iter().find(|(t, _, _)| t == "use").map(|(_, _, r)| r).expect("use");
    assert_eq!(reason, "dependency gen changed, gen/made.txt changed");
    assert_eq!(p.read("used.txt"), "two\n");
}
