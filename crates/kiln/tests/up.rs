//! `kiln up` against real file system events: a real binary, real inotify, the JSON event
//! stream read line by line, bounded waits on events (never a fixed sleep as an assertion).

mod common;
use common::{Project, Up, alive, wait_until};
use serde_json::Value;
use std::time::Duration;

const BASIC: &str = r#"
[settings]
debounce = "50ms"

[target.core]
cmd = "mkdir -p out && cat $(find src -name '*.txt' | sort) > out/core"
inputs = ["src/**/*.txt"]
outputs = ["out/core"]

[target.api]
deps = ["core"]
cmd = "cat out/core > out/api"
outputs = ["out/api"]
"#;

fn basic() -> Project {
    let p = Project::new(BASIC);
    p.write("src/a.txt", "a\n");
    p
}

fn finished_run(e: &Value) -> bool {
    e["type"] == "run.finished"
}

#[test]
fn builds_then_rebuilds_edits_and_ignores_touches() {
    let p = basic();
    let mut up = Up::start(&p, &[]);
    let first = up.wait_for("the first build", finished_run);
    assert_eq!(first["built"], 2);
    assert_eq!(p.read("out/api"), "a\n");

    let file = std::fs::File::options().append(true).open(p.path("src/a.txt")).expect("open");
    file.set_modified(std::time::SystemTime::now()).expect("touch");
    let unchanged = up.wait_for("watch.unchanged", |e| e["type"] == "watch.unchanged");
    assert_eq!(unchanged["paths"][0], "src/a.txt");

    p.write("src/a.txt", "a2\n");
    let changed = up.wait_for("watch.changed", |e| e["type"] == "watch.changed");
    assert_eq!(changed["paths"][0], "src/a.txt");
    assert_eq!(changed["targets"], serde_json::json!(["api", "core"]));
    let run = up.wait_for("the rebuild", finished_run);
    assert_eq!(run["built"], 2);
    assert_eq!(p.read("out/api"), "a2\n");
    assert_eq!(up.runs(), 2, "the touch ran nothing:\n{}", up.dump());
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_vim_style_save_is_one_build() {
    let p = basic();
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    // vim: probe file 4913, backup by rename, write the new file, drop the backup.
    p.write("src/4913", "");
    std::fs::remove_file(p.path("src/4913")).expect("rm probe");
    std::fs::rename(p.path("src/a.txt"), p.path("src/a.txt~")).expect("backup");
    p.write("src/.a.txt.swp", "swap");
    p.write("src/a.txt", "saved by vim\n");
    std::fs::remove_file(p.path("src/a.txt~")).expect("rm backup");
    std::fs::remove_file(p.path("src/.a.txt.swp")).expect("rm swap");
    up.wait_for("the rebuild", finished_run);
    up.settled(&p, "src/a.txt");
    assert_eq!(up.runs(), 2, "{}", up.dump());
    assert_eq!(p.read("out/core"), "saved by vim\n");
}

#[test]
fn a_hundred_atomic_saves_end_with_the_last_content() {
    let p = basic();
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    for i in 0..100 {
        p.write("src/.a.txt.tmp", &format!("version {i}\n"));
        std::fs::rename(p.path("src/.a.txt.tmp"), p.path("src/a.txt")).expect("rename over");
    }
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(p.path("out/api"))
            .is_ok_and(|s| s == "version 99\n")),
        "the last save was built:\n{}",
        up.dump()
    );
    up.settled(&p, "src/a.txt");
    assert!(up.runs() <= 4, "saves were coalesced, not built one by one: {} runs", up.runs());
}

#[test]
fn new_nested_directories_and_recreated_trees_are_seen() {
    let p = basic();
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    std::fs::create_dir_all(p.path("src/a/b/c")).expect("mkdir -p");
    p.write("src/a/b/c/f.txt", "deep\n");
    up.wait_for("a build with the nested file", |e| e["type"] == "run.finished" && e["built"] == 2);
    assert_eq!(p.read("out/core"), "a\ndeep\n");

    std::fs::remove_dir_all(p.path("src")).expect("rm -rf src");
    p.write("src/a.txt", "again\n");
    up.wait_for("a build after the tree came back", |_| p.read("out/core") == "again\n");
    up.settled(&p, "src/a.txt");
    p.write("src/a.txt", "later edit\n");
    assert!(wait_until(Duration::from_secs(10), || p.read("out/core") == "later edit\n"), "{}", up.dump());
}

#[test]
fn touching_500_inputs_builds_nothing() {
    let p = basic();
    for i in 0..500 {
        p.write(&format!("src/many/f{i:03}.txt"), "x\n");
    }
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    let now = std::time::SystemTime::now();
    for i in 0..500 {
        let f = std::fs::File::options().append(true).open(p.path(&format!("src/many/f{i:03}.txt"))).expect("open");
        f.set_modified(now).expect("touch");
    }
    up.wait_for("watch.unchanged", |e| e["type"] == "watch.unchanged");
    up.settled(&p, "src/a.txt");
    assert_eq!(up.runs(), 1, "{}", up.dump());
}

#[test]
fn a_directory_of_1000_files_moved_in_and_out_is_one_build_each_way() {
    let p = basic();
    let outside = tempfile::tempdir().expect("tempdir");
    let batch = outside.path().join("batch");
    std::fs::create_dir(&batch).expect("mkdir");
    for i in 0..1000 {
        std::fs::write(batch.join(format!("f{i:04}.txt")), format!("{i}\n")).expect("write");
    }
    // Inside the project but outside `src`, so the move is a rename on one file system.
    let staging = p.path("staging");
    std::fs::rename(&batch, &staging).expect("stage");
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    std::fs::rename(&staging, p.path("src/batch")).expect("move in");
    up.wait_for("the build after moving in", |e| e["type"] == "run.finished" && e["built"] == 2);
    assert_eq!(p.read("out/core").lines().count(), 1001);
    up.settled(&p, "src/a.txt");
    assert_eq!(up.runs(), 2, "{}", up.dump());
    std::fs::rename(p.path("src/batch"), &staging).expect("move out");
    // Back to the first content: restored from the cache rather than built.
    up.wait_for("the build after moving out", |e| e["type"] == "run.finished" && e["cached"] == 2);
    up.settled(&p, "src/a.txt");
    assert_eq!(up.runs(), 3, "{}", up.dump());
    assert_eq!(p.read("out/core"), "a\n");
}

#[test]
fn saves_during_a_long_build_cause_exactly_one_follow_up() {
    let p = Project::new(
        r#"
[settings]
debounce = "50ms"
[target.slow]
cmd = "touch started; sleep 3; cat src/a.txt > out.txt"
inputs = ["src/*.txt"]
outputs = ["out.txt"]
"#,
    );
    p.write("src/a.txt", "v0\n");
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    std::fs::remove_file(p.path("started")).expect("rm marker");
    p.write("src/a.txt", "v1\n");
    assert!(wait_until(Duration::from_secs(10), || p.exists("started")), "the second build started");
    for i in 0..20 {
        p.write("src/a.txt", &format!("during {i}\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    up.wait_for("the build running during the saves", |e| e["type"] == "run.finished" && e["built"] == 1);
    up.wait_for("the follow-up", |e| e["type"] == "run.finished" && e["built"] == 1);
    up.settled(&p, "src/a.txt");
    assert_eq!(up.runs(), 3, "first, the one the saves interrupted, exactly one follow-up:\n{}", up.dump());
    assert_eq!(p.read("out.txt"), "during 19\n", "the follow-up built the newest content");
}

#[test]
fn a_build_writing_inside_the_watched_tree_does_not_loop() {
    let p = Project::new(
        r#"
[settings]
debounce = "50ms"
[target.gen]
cmd = "cat src/in.txt > src/gen.out && cp src/same.txt src/same.tmp && mv src/same.tmp src/same.txt"
inputs = ["src/**"]
outputs = ["src/gen.out"]
"#,
    );
    p.write("src/in.txt", "x\n");
    p.write("src/same.txt", "identical bytes\n");
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    p.write("src/in.txt", "y\n");
    up.wait_for("the rebuild", |e| e["type"] == "run.finished" && e["built"] == 1);
    up.settled(&p, "src/in.txt");
    assert_eq!(up.runs(), 2, "its own writes and an identical rewrite did not trigger builds:\n{}", up.dump());
}

#[test]
fn an_input_that_appears_later_is_built() {
    let p = Project::new(
        "[settings]\ndebounce = \"50ms\"\n[target.t]\ncmd = \"cat later/x.txt > got.txt\"\ninputs = [\"later/x.txt\"]\noutputs = [\"got.txt\"]\n",
    );
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first (failing) build", finished_run);
    std::fs::create_dir(p.path("later")).expect("mkdir");
    p.write("later/x.txt", "here now\n");
    up.wait_for("the build", |e| e["type"] == "run.finished" && e["built"] == 1);
    assert_eq!(p.read("got.txt"), "here now\n");
}

#[test]
fn config_edits_are_reloaded_and_errors_keep_the_old_config() {
    let p = basic();
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    let pid = up.child.id();
    let watches_before = inotify_watches(pid);

    p.write("kiln.toml", &format!("{BASIC}\n[target.broken\n"));
    let invalid = up.wait_for("config.invalid", |e| e["type"] == "config.invalid");
    assert!(invalid["message"].as_str().unwrap_or("").contains("invalid TOML"), "{invalid}");
    p.write("src/a.txt", "still watched\n");
    up.wait_for("a build under the old config", |e| e["type"] == "run.finished" && e["built"] == 2);

    let extra =
        "\n[target.docs]\ncmd = \"cat docs/*.md > docs.out\"\ninputs = [\"docs/*.md\"]\noutputs = [\"docs.out\"]\n";
    p.write("docs/a.md", "doc\n");
    p.write("kiln.toml", &format!("{BASIC}{extra}"));
    let reloaded = up.wait_for("config.reloaded", |e| e["type"] == "config.reloaded");
    assert_eq!(reloaded["added"], serde_json::json!(["docs"]));
    up.wait_for("docs built", |_| p.exists("docs.out"));
    assert!(inotify_watches(pid) > watches_before, "docs/ is watched");
    p.write("docs/a.md", "doc v2\n");
    assert!(wait_until(Duration::from_secs(10), || p.read("docs.out") == "doc v2\n"), "{}", up.dump());

    p.write("kiln.toml", BASIC);
    let reloaded = up
        .wait_for("config.reloaded", |e| e["type"] == "config.reloaded" && e["removed"] == serde_json::json!(["docs"]));
    assert_eq!(reloaded["added"], serde_json::json!([]));
    assert!(
        wait_until(Duration::from_secs(5), || inotify_watches(pid) == watches_before),
        "watch count back to where it was"
    );
}

#[test]
fn restarting_with_nothing_changed_runs_nothing() {
    let p = basic();
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    assert_eq!(up.stop().0, 130);
    let mut up = Up::start(&p, &[]);
    let run = up.wait_for("the build after the restart", finished_run);
    assert_eq!((run["built"].as_u64(), run["fresh"].as_u64()), (Some(0), Some(2)));
}

#[test]
fn no_build_only_reports_what_a_change_affects() {
    let p = basic();
    let mut up = Up::start(&p, &["--no-build"]);
    p.write("src/b.txt", "b\n");
    let changed = up.wait_for("watch.changed", |e| e["type"] == "watch.changed");
    assert_eq!(changed["targets"], serde_json::json!(["api", "core"]));
    // Without builds a touch is reported as a change too; once it is, so was everything before.
    let file = std::fs::File::options().append(true).open(p.path("src/a.txt")).expect("open");
    file.set_modified(std::time::SystemTime::now()).expect("touch");
    up.wait_for("the touch reported", |e| {
        e["type"] == "watch.changed" && e["paths"].as_array().is_some_and(|ps| ps.iter().any(|x| x == "src/a.txt"))
    });
    assert_eq!(up.runs(), 0);
    assert!(!p.exists("out"));
}

#[test]
fn ctrl_c_cancels_the_running_build_and_leaves_nothing() {
    let p = Project::new("[target.t]\ncmd = \"sleep 300 & echo $! > child.pid; sleep 300\"\n");
    let up = Up::start(&p, &[]);
    assert!(wait_until(Duration::from_secs(10), || std::fs::read_to_string(p.path("child.pid"))
        .is_ok_and(|s| s.trim().parse::<i32>().is_ok())));
    let grandchild: i32 = p.read("child.pid").trim().parse().expect("pid");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
    assert!(wait_until(Duration::from_secs(3), || !alive(grandchild)), "the command's group was killed");
}

/// How many inotify watches the process holds (from /proc/PID/fdinfo).
fn inotify_watches(pid: u32) -> usize {
    let mut n = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds").flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy().contains("inotify") {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
                .unwrap_or_default();
            n += info.lines().filter(|l| l.starts_with("inotify wd:")).count();
        }
    }
    n
}

#[test]
fn a_5000_file_git_checkout_is_one_build_per_affected_target() {
    let p = Project::new(
        r#"
[settings]
debounce = "100ms"
[target.one]
cmd = "find src/one -type f | wc -l > one.count"
inputs = ["src/one/**"]
outputs = ["one.count"]
[target.two]
cmd = "find src/two -type f | wc -l > two.count"
inputs = ["src/two/**"]
outputs = ["two.count"]
[target.other]
cmd = "cat other.txt > other.out"
inputs = ["other.txt"]
outputs = ["other.out"]
"#,
    );
    p.write("other.txt", "x\n");
    p.write("src/one/keep.txt", "k\n");
    p.write("src/two/keep.txt", "k\n");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(p.root())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .expect("git is installed");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(p.path(".gitignore"), "*.count\n*.out\n.kiln/\n").expect("gitignore");
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "base"]);
    git(&["checkout", "-q", "-b", "big"]);
    for i in 0..2500 {
        p.write(&format!("src/one/d{}/f{i}.txt", i % 50), "1\n");
        p.write(&format!("src/two/d{}/f{i}.txt", i % 50), "2\n");
    }
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "5000 files"]);
    git(&["checkout", "-q", "main"]);

    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", finished_run);
    git(&["checkout", "-q", "big"]);
    up.wait_for("the build after the checkout", |e| e["type"] == "run.finished" && e["built"] == 2);
    // Rounds are per target: each one's own input shows that its rounds are all done.
    for input in ["src/one/keep.txt", "src/two/keep.txt", "other.txt"] {
        up.settled(&p, input);
    }
    let other = up.count(|e| e["type"] == "target.finished" && e["target"] == "other");
    assert_eq!(other, 1, "`other` is not affected by the checkout");
    assert_eq!(up.runs(), 2, "one build for the checkout:\n{}", up.dump());
    assert_eq!(p.read("one.count").trim(), "2501");
    assert_eq!(p.read("two.count").trim(), "2501");
}

/// Regression: a second `kiln up` in the same project ran beside the first (every service
/// twice) and, when it ended, removed the first one's api.json.
#[test]
fn a_second_kiln_up_in_the_same_project_is_refused_and_leaves_the_first_reachable() {
    let p = Project::new("[target.a]\ncmd = \"true\"\ninputs = [\"a.txt\"]\n");
    p.write("a.txt", "a");
    let first = Up::start(&p, &[]);
    let api = p.read(".kiln/api.json");
    let second = p.kiln(&["up"]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("another `kiln up` (pid {}) is running in this project", first.child.id())),
        "{}",
        second.stderr
    );
    assert_eq!(p.read(".kiln/api.json"), api, "the first session's api.json is left alone");
    assert_eq!(p.kiln(&["status"]).code, 0, "the first session still answers");
    let (code, err) = first.stop();
    assert_eq!(code, 130, "{err}");
}
