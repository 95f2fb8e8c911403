//! Snapshots of what people read: plain build output with its summary, a failure, a dry
//! run, `explain`, and configuration errors. Durations, times and temporary paths are
//! redacted; everything else (keys and digests included) is deterministic.

mod common;
use common::Project;

fn exact(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

fn redacted(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "[timestamp]");
    settings.add_filter(r"\b\d+(\.\d+)?(ms|s)\b", "[duration]");
    settings.add_filter(r"\d+m\d\ds\b", "[duration]");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

const CHAIN: &str = r#"
[env]
CFLAGS = "-O2"

[target.core]
cmd = "sleep 0.3; mkdir -p out && cat src/*.txt > out/core"
inputs = ["src/*.txt"]
outputs = ["out/core"]

[target.api]
deps = ["core"]
cmd = "sleep 0.15; cat out/core > out/api"
outputs = ["out/api"]

[target.web]
deps = ["core"]
cmd = "cat out/core > out/web"
outputs = ["out/web"]
"#;

fn chain() -> Project {
    let p = Project::new(CHAIN);
    p.write("src/a.txt", "a\n");
    p
}

/// Lines sorted where targets finish in parallel, so that the snapshot does not depend on
/// which of two commands ended first; the summary and closing lines keep their place.
fn target_lines_sorted(out: &str) -> String {
    let (targets, rest): (Vec<&str>, Vec<&str>) =
        out.lines().partition(|l| l.starts_with("  ") || l.starts_with(" cached") || l.starts_with(" failed"));
    let mut targets = targets;
    targets.sort_unstable();
    targets.into_iter().chain(rest).map(|l| format!("{l}\n")).collect()
}

#[test]
fn plain_build_output_and_summary() {
    let p = chain();
    let first = p.kiln(&["build", "-j", "1"]);
    redacted("build_first", &target_lines_sorted(&first.stdout));
    p.write("src/a.txt", "a2\n");
    let second = p.kiln(&["build", "-j", "1"]);
    redacted("build_second", &target_lines_sorted(&second.stdout));
    p.write("src/a.txt", "a\n");
    let third = p.kiln(&["build", "-j", "1"]);
    redacted("build_back_to_cached", &target_lines_sorted(&third.stdout));
}

#[test]
fn failure_output() {
    let p = Project::new(
        "[target.lint]\ncmd = \"echo checking; sleep 0.1; echo 'lint.c:12: error: unused variable x' >&2; exit 2\"\n[target.app]\ndeps = [\"lint\"]\ncmd = \"true\"\n",
    );
    redacted("build_failure", &p.kiln(&["build"]).stdout);
}

#[test]
fn dry_run_output() {
    let p = chain();
    assert_eq!(p.build(&[]).code, 0);
    p.write("src/b.txt", "b\n");
    redacted("dry_run", &target_lines_sorted(&p.kiln(&["build", "--dry-run"]).stdout));
}

#[test]
fn explain_output() {
    let p = chain();
    assert_eq!(p.build(&[]).code, 0);
    redacted("explain_up_to_date", &p.kiln(&["explain", "api"]).stdout);
    p.write("src/a.txt", "a2\n");
    p.write("src/b.txt", "b\n");
    p.write("kiln.toml", &CHAIN.replace("-O2", "-O0").replace("cat out/core > out/api", "cp out/core out/api"));
    redacted("explain_changed", &p.kiln(&["explain", "api"]).stdout);
    redacted("explain_dependency", &p.kiln(&["explain", "core"]).stdout);
}

#[test]
fn error_output() {
    let p = Project::new(
        "[settings]\njobs = \"4\"\n\n[target.core]\ncmd = \"true\"\ndpes = []\n\n[target.api]\ncmd = \"true\"\ndeps = [\"cor\"]\ntimeout = \"10 minutes\"\n",
    );
    exact("config_errors", &p.kiln(&["build"]).stderr);
    let p = Project::new("[target.a]\ncmd = \"x\"\ndeps = [\"b\"]\n[target.b]\ncmd = \"x\"\ndeps = [\"a\"]\n");
    exact("config_cycle", &p.kiln(&["build"]).stderr);
}
