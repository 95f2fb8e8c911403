//! kiln-bench: generate synthetic workspaces and measure kiln against ninja on them.
//!
//! `kiln-bench generate DIR [--targets N] [--files F]` writes a workspace.
//! `kiln-bench watch --kiln PATH [--watchexec PATH] [--trials N] [--tree-files N] [--idle S]`
//! measures `kiln up` against watchexec (see `watch_bench`).
//! `--baseline PATH` (build and watch) measures an earlier kiln binary in the same run.
//! `kiln-bench container --kiln PATH [--example DIR] [--trials N] [--check]` measures save →
//! replaced container answering, kiln up against the same steps by hand (see
//! `container_bench`).
//! `kiln-bench sync-transfer [--trials N] [--files F]` measures one live-update transfer into
//! a running container: the engine API against `podman cp` and `podman exec … tar -x`, and a
//! batch of F files (default 200) by the API (see `sync_bench`).
//! `kiln-bench live-update --kiln PATH [--trials N] [--check] [--by-hand-only]` measures save →
//! the file served by a running container, kiln up's sync against `podman cp` and
//! `podman exec … tar` (see `live_update_bench`).
//! `kiln-bench build --kiln PATH [--targets N] [--files F] [--runs R]` generates one in a
//! temporary directory and reports medians of R runs of: cold build, no-op build, one-file
//! content edit, touch-only edit — for kiln and ninja, in the same run. With `--check` it
//! fails unless kiln ran exactly the commands each scenario calls for.

mod container_bench;
mod live_update_bench;
mod sync_bench;
mod watch_bench;
mod workspace;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use workspace::{Spec, generate, layer_of, target_name};

struct Args {
    command: String,
    dir: Option<PathBuf>,
    kiln: PathBuf,
    targets: usize,
    files: usize,
    runs: usize,
    /// Fail unless kiln ran exactly the expected commands in each scenario.
    check: bool,
    watchexec: PathBuf,
    /// Trials of the watch (default 30) or container (default 10) benchmark.
    trials: Option<usize>,
    example: PathBuf,
    idle_secs: u64,
    tree_files: usize,
    /// An earlier kiln binary measured in the same run (before/after a change).
    baseline: Option<PathBuf>,
    /// Whether `--files` was given (sync-transfer's batch has its own default).
    files_given: bool,
    /// live-update: measure only the by-hand methods.
    by_hand_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("usage: kiln-bench generate DIR | build --kiln PATH")?;
    let mut args = Args {
        command,
        dir: None,
        kiln: PathBuf::from("kiln"),
        targets: 1000,
        files: 20,
        runs: 5,
        check: false,
        watchexec: PathBuf::from("watchexec"),
        trials: None,
        example: PathBuf::from("examples/plugins-containers"),
        idle_secs: 60,
        tree_files: 100_000,
        baseline: None,
        files_given: false,
        by_hand_only: false,
    };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--targets" => args.targets = value()?.parse().map_err(|e| format!("--targets: {e}"))?,
            "--files" => {
                args.files = value()?.parse().map_err(|e| format!("--files: {e}"))?;
                args.files_given = true;
            }
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--kiln" => args.kiln = PathBuf::from(value()?),
            "--check" => args.check = true,
            "--by-hand-only" => args.by_hand_only = true,
            "--watchexec" => args.watchexec = PathBuf::from(value()?),
            "--trials" => args.trials = Some(value()?.parse().map_err(|e| format!("--trials: {e}"))?),
            "--example" => args.example = PathBuf::from(value()?),
            "--tree-files" => args.tree_files = value()?.parse().map_err(|e| format!("--tree-files: {e}"))?,
            "--baseline" => args.baseline = Some(PathBuf::from(value()?)),
            "--idle" => args.idle_secs = value()?.parse().map_err(|e| format!("--idle: {e}"))?,
            other if !other.starts_with('-') => args.dir = Some(PathBuf::from(other)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let spec = Spec { targets: args.targets, files: args.files };
    match args.command.as_str() {
        "generate" => {
            let dir = args.dir.unwrap_or_else(|| PathBuf::from("bench-workspace"));
            generate(&dir, &spec).unwrap_or_else(|e| fail(&format!("cannot generate {}: {e}", dir.display())));
            println!("generated {} targets × {} files in {}", spec.targets, spec.files, dir.display());
        }
        "build" => build_bench(&args, &spec),
        "watch" => watch_bench::run(&watch_bench::WatchArgs {
            kiln: std::fs::canonicalize(&args.kiln).unwrap_or_else(|e| fail(&format!("kiln binary: {e}"))),
            watchexec: args.watchexec.clone(),
            trials: args.trials.unwrap_or(30),
            files: args.tree_files,
            idle_secs: args.idle_secs,
            baseline: args.baseline.as_ref().map(|b| canonical(b)),
        }),
        "container" => container_bench::run_bench(&container_bench::ContainerArgs {
            kiln: std::fs::canonicalize(&args.kiln).unwrap_or_else(|e| fail(&format!("kiln binary: {e}"))),
            example: std::fs::canonicalize(&args.example).unwrap_or_else(|e| fail(&format!("example: {e}"))),
            trials: args.trials.unwrap_or(10),
            check: args.check,
        }),
        "sync-transfer" => sync_bench::run(&sync_bench::SyncArgs {
            trials: args.trials.unwrap_or(20),
            batch_files: if args.files_given { args.files } else { 200 },
        }),
        "live-update" => {
            let live = live_update_bench::LiveUpdateArgs {
                kiln: std::fs::canonicalize(&args.kiln).unwrap_or_else(|e| fail(&format!("kiln binary: {e}"))),
                trials: args.trials.unwrap_or(if args.check { 2 } else { 20 }),
                check: args.check,
                by_hand_only: args.by_hand_only,
            };
            // Errors come back here once everything the benchmark started is removed.
            if let Err(e) = live_update_bench::run_bench(&live) {
                fail(&e);
            }
        }
        other => fail(&format!("unknown command {other}")),
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())))
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// Runs a command in `dir`, returning its wall time and stdout.
fn timed(dir: &Path, program: &Path, args: &[&str]) -> (Duration, String) {
    let start = Instant::now();
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("CI", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", program.display())));
    let elapsed = start.elapsed();
    if !out.status.success() {
        fail(&format!("{} {args:?} failed in {}", program.display(), dir.display()));
    }
    (elapsed, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Commands kiln ran, from its closing line `N built, …`.
fn kiln_ran(stdout: &str) -> usize {
    stdout.lines().rev().find_map(|l| l.split_once(" built, ").and_then(|(n, _)| n.trim().parse().ok())).unwrap_or(0)
}

/// Commands ninja ran, from its `[k/n]` progress lines.
fn ninja_ran(stdout: &str) -> usize {
    stdout.lines().filter(|l| l.starts_with('[')).count()
}

struct Row {
    scenario: &'static str,
    kiln: Duration,
    kiln_ran: usize,
    /// The baseline binary's median, when one was given.
    baseline: Option<Duration>,
    ninja: Duration,
    ninja_ran: usize,
}

fn build_bench(args: &Args, spec: &Spec) {
    let ninja = PathBuf::from("ninja");
    let kiln = std::fs::canonicalize(&args.kiln)
        .unwrap_or_else(|e| fail(&format!("kiln binary {}: {e}", args.kiln.display())));
    let base = std::env::temp_dir().join(format!("kiln-bench-{}", std::process::id()));
    let kdir = base.join("kiln");
    let ndir = base.join("ninja");
    let bdir = base.join("baseline");
    let baseline = args.baseline.as_ref().map(|b| canonical(b));
    for d in [&kdir, &ndir, &bdir] {
        generate(d, spec).unwrap_or_else(|e| fail(&format!("cannot generate: {e}")));
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get()).to_string();
    // Each scenario prepares both trees the same way, then times kiln and ninja back to back,
    // so that both see the same machine load.
    let scenario = |name: &'static str, prepare: &mut dyn FnMut(usize, &Path)| {
        let (mut kt, mut nt, mut bt, mut kr, mut nr) = (Vec::new(), Vec::new(), Vec::new(), 0, 0);
        for run in 0..args.runs {
            prepare(run, &kdir);
            prepare(run, &ndir);
            let (t, out) = timed(&kdir, &kiln, &["build", "-j", &jobs]);
            kt.push(t);
            kr = kiln_ran(&out);
            if let Some(b) = &baseline {
                prepare(run, &bdir);
                bt.push(timed(&bdir, b, &["build", "-j", &jobs]).0);
            }
            let (t, out) = timed(&ndir, &ninja, &["-j", &jobs]);
            nt.push(t);
            nr = ninja_ran(&out);
        }
        let baseline = (!bt.is_empty()).then(|| median(bt));
        Row { scenario: name, kiln: median(kt), kiln_ran: kr, baseline, ninja: median(nt), ninja_ran: nr }
    };
    let n = spec.targets;
    let edited = (0..n).find(|&i| layer_of(i, n) == workspace::LAYERS / 2).unwrap_or(0);
    let file = format!("src/{}/f00.txt", target_name(edited));
    let rows = [
        // Outputs, kiln's cache and state, ninja's log all removed.
        scenario("cold build", &mut |_, dir| {
            for gone in [".kiln", "out", ".ninja_log"] {
                let p = dir.join(gone);
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
            let _ = std::fs::create_dir_all(dir.join("out"));
        }),
        scenario("no-op build", &mut |_, _| {}),
        // One input file of a middle-layer target: a new line each run.
        scenario("one-file content edit", &mut |run, dir| {
            let path = dir.join(&file);
            let mut text = std::fs::read_to_string(&path).unwrap_or_default();
            text.push_str(&format!("edit {run}\n"));
            std::fs::write(&path, text).unwrap_or_else(|e| fail(&format!("edit: {e}")));
        }),
        // The same file, a new modification time and the same content.
        scenario("touch-only edit", &mut |_, dir| {
            std::thread::sleep(Duration::from_millis(10));
            let f = std::fs::File::options()
                .append(true)
                .open(dir.join(&file))
                .unwrap_or_else(|e| fail(&format!("touch: {e}")));
            f.set_modified(std::time::SystemTime::now()).unwrap_or_else(|e| fail(&format!("touch: {e}")));
        }),
    ];

    let affected = dependents_count(spec, edited);
    println!(
        "{} targets × {} files, -j {jobs}, median of {} runs; edited target {} has {} dependents (transitively)\n",
        spec.targets,
        spec.files,
        args.runs,
        target_name(edited),
        affected
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if baseline.is_some() {
        println!(
            "| scenario | kiln | commands run | baseline kiln | ninja | commands run | kiln / ninja | baseline / ninja |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    } else {
        println!("| scenario | kiln | commands run | ninja | commands run | kiln / ninja |");
        println!("|---|---:|---:|---:|---:|---:|");
    }
    for r in &rows {
        let ratio = |d: Duration| d.as_secs_f64() / r.ninja.as_secs_f64();
        match r.baseline {
            Some(b) => println!(
                "| {} | {:.1} ms | {} | {:.1} ms | {:.1} ms | {} | {:.2}× | {:.2}× |",
                r.scenario,
                ms(r.kiln),
                r.kiln_ran,
                ms(b),
                ms(r.ninja),
                r.ninja_ran,
                ratio(r.kiln),
                ratio(b)
            ),
            None => println!(
                "| {} | {:.1} ms | {} | {:.1} ms | {} | {:.2}× |",
                r.scenario,
                ms(r.kiln),
                r.kiln_ran,
                ms(r.ninja),
                r.ninja_ran,
                ratio(r.kiln)
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    if args.check {
        let expected = [spec.targets, 0, 1 + affected, 0];
        let mut ok = true;
        for (row, want) in rows.iter().zip(expected) {
            if row.kiln_ran != want {
                eprintln!("check failed: {} ran {} commands, expected {want}", row.scenario, row.kiln_ran);
                ok = false;
            }
        }
        if !ok {
            std::process::exit(1);
        }
        println!(
            "\ncheck passed: kiln ran every target cold, nothing on a no-op or a touch, and exactly the edited target and its {affected} dependents on an edit"
        );
    }
}

/// How many targets depend on `target`, directly or not.
fn dependents_count(spec: &Spec, target: usize) -> usize {
    let deps = workspace::deps(spec);
    let mut affected = vec![false; deps.len()];
    affected[target] = true;
    for i in 0..deps.len() {
        if deps[i].iter().any(|d| affected[*d]) {
            affected[i] = true;
        }
    }
    affected.iter().filter(|a| **a).count() - 1
}
