//! A reader that goes away (`kiln graph | head -1`) or a closed stderr never makes kiln
//! panic: the short commands exit quietly, `kiln build` and `kiln up` keep doing their work
//! and clean up. A bug that panics shows one line, not Rust's panic text.
//!
//! Two ways to close the reader: for output larger than a pipe holds (64 KiB), read one line
//! and drop the reader, so kiln is still writing when it goes; for short output, close the
//! reading end before kiln starts, so its first write fails (otherwise kiln could finish
//! writing into the pipe's buffer before the reader leaves, and nothing would be tested).

mod common;
use common::{Project, Up, alive, wait_until};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What kiln did with a reader that went away.
struct Ended {
    code: Option<i32>,
    stderr: String,
    first_line: String,
}

/// Runs `command` with stdout into a pipe: reads one line, then drops the reader.
fn read_one_line_then_close(mut command: Command) -> Ended {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kiln starts");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first_line = String::new();
    reader.read_line(&mut first_line).expect("one line");
    drop(reader);
    let out = child.wait_with_output().expect("kiln exits");
    Ended { code: out.status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned(), first_line }
}

/// Runs `command` with stdout into a pipe whose reader is already gone.
fn stdout_closed(mut command: Command) -> Ended {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = command.stdout(writer).stderr(Stdio::piped()).output().expect("kiln runs");
    Ended {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        first_line: String::new(),
    }
}

/// Quietly: exit code 0, and nothing on stderr (no "failed printing to stdout" panic, no
/// backtrace).
fn assert_quiet(what: &str, ended: &Ended) {
    assert!(!ended.stderr.contains("panicked"), "{what}: {}", ended.stderr);
    assert_eq!((ended.code, ended.stderr.as_str()), (Some(0), ""), "{what}");
}

/// A chain of `n` targets: `kiln graph` prints well over what a pipe holds.
fn chain(n: usize) -> String {
    let mut config = String::from("[target.t0]\ncmd = \"true\"\n");
    for i in 1..n {
        config.push_str(&format!("[target.t{i}]\ncmd = \"true\"\ndeps = [\"t{}\"]\n", i - 1));
    }
    config
}

/// Regression: `kiln graph | head -1` on a large graph panicked with "failed printing to
/// stdout: Broken pipe" and a backtrace.
#[test]
fn a_large_graph_into_head_exits_quietly() {
    let p = Project::new(&chain(3000));
    for format in ["dot", "mermaid", "json"] {
        let ended = read_one_line_then_close(p.command(&["graph", "--format", format]));
        assert!(!ended.first_line.is_empty(), "{format}: kiln printed something first");
        assert_quiet(&format!("graph --format {format}"), &ended);
    }
    // And with the reader gone before the first byte.
    assert_quiet("graph", &stdout_closed(p.command(&["graph"])));
}

/// Regression: `kiln explain`, `kiln cache stats` and `kiln clean` used `println!`.
#[test]
fn explain_cache_and_clean_into_a_closed_pipe_exit_quietly() {
    let p = Project::new("[target.a]\ncmd = \"echo a > a.out\"\noutputs = [\"a.out\"]\n");
    assert_eq!(p.kiln(&["build"]).code, 0);
    for args in [&["explain", "a"][..], &["--json", "explain", "a"], &["cache", "stats"], &["--json", "cache", "stats"]]
    {
        assert_quiet(&args.join(" "), &stdout_closed(p.command(args)));
    }
    assert_quiet("clean", &stdout_closed(p.command(&["clean"])));
    assert!(!p.exists("a.out"), "clean did its work before it printed");
}

/// `kiln logs T | head -1` on a log larger than a pipe holds.
#[test]
fn logs_into_head_exit_quietly() {
    let p = Project::new("[target.noisy]\ncmd = \"seq 1 40000\"\n");
    assert_eq!(p.kiln(&["build"]).code, 0);
    let ended = read_one_line_then_close(p.command(&["logs", "noisy"]));
    assert_eq!(ended.first_line, "1\n");
    assert_quiet("logs", &ended);
    assert_quiet("logs", &stdout_closed(p.command(&["logs", "noisy"])));
}

/// `kiln build --json | head -1`: the JSON view stops writing, the build goes on to the end
/// (every target built) and exits with the build's own code.
#[test]
fn build_json_into_head_finishes_the_build() {
    let mut config = String::new();
    for i in 0..150 {
        config.push_str(&format!(
            "[target.t{i}]\ncmd = \"echo {i} > out{i}.txt; seq 1 20\"\noutputs = [\"out{i}.txt\"]\n"
        ));
    }
    let p = Project::new(&config);
    let ended = read_one_line_then_close(p.command(&["--json", "build", "-j", "2"]));
    assert!(ended.first_line.contains("\"run.started\""), "{}", ended.first_line);
    assert!(!ended.stderr.contains("panicked"), "{}", ended.stderr);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert!((0..150).all(|i| p.exists(&format!("out{i}.txt"))), "every target was built");
    // Plain output to a closed stdout: the same.
    p.write("kiln.toml", &config.replace("echo {i}", "echo again"));
    let ended = stdout_closed(p.command(&["build", "--progress", "plain"]));
    assert!(!ended.stderr.contains("panicked"), "{}", ended.stderr);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
}

/// Regression: with stderr closed, an error message (`eprintln!`) panicked, and kiln exited
/// 101 instead of with the code of the error.
#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    let p = Project::new("[target.core]\ncmd = \"true\"\n");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = p.command(&["build", "nosuch"]).stdout(Stdio::null()).stderr(writer).output().expect("kiln runs");
    assert_eq!(out.status.code(), Some(2), "an unknown target is a usage error");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let bad = Project::new("[target.core]\ncmd = 1\n");
    let out = bad.command(&["build"]).stderr(writer).output().expect("kiln runs");
    assert_eq!(out.status.code(), Some(2), "a config error");
}

/// Regression: `kiln status | head -1` panicked; `kiln up` with its stdout gone must keep
/// supervising and stop its service on `kiln down`.
#[test]
fn status_into_a_closed_pipe_and_up_with_stdout_gone() {
    let p = Project::new(
        "[settings]\ndebounce = \"50ms\"\n[target.core]\ncmd = \"echo built\"\n[service.web]\ncmd = \"echo $$ > web.pid; echo listening; exec sleep 1000\"\nready = { log = \"listening\" }\n",
    );
    let up = Up::start(&p, &[]);
    assert!(wait_until(Duration::from_secs(20), || p.kiln(&["status"]).stdout.contains("1/1 replicas")), "web ready");
    assert_quiet("status", &stdout_closed(p.command(&["status"])));
    assert_quiet("status --json", &stdout_closed(p.command(&["--json", "status"])));
    assert_quiet("trigger", &stdout_closed(p.command(&["trigger", "core"])));
    let (code, stderr) = up.stop();
    assert_eq!(code, 130, "{stderr}");

    // `kiln up` whose stdout reader is gone from the start.
    std::fs::remove_file(p.path("web.pid")).expect("the first web wrote its pid");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut child = p.command(&["--json", "up"]).stdout(writer).stderr(Stdio::piped()).spawn().expect("kiln up starts");
    assert!(
        wait_until(Duration::from_secs(20), || {
            p.exists("web.pid") && p.kiln(&["status"]).stdout.contains("1/1 replicas")
        }),
        "kiln up serves with its stdout gone"
    );
    let pid: i32 = p.read("web.pid").trim().parse().expect("a pid");
    assert!(alive(pid));
    assert_eq!(p.kiln(&["down"]).code, 0);
    let out = child.wait().expect("kiln up exits");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.code(), Some(0), "{stderr}");
    assert!(!alive(pid), "the service was stopped");
}

/// A bug that panics shows one line saying so, even with RUST_BACKTRACE set.
#[test]
fn a_panic_is_one_line_asking_for_a_report() {
    let p = Project::new("[target.a]\ncmd = \"true\"\n");
    let out = p.command(&["graph"]).env("KILN_TEST_PANIC", "boom").env("RUST_BACKTRACE", "1").output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("kiln: internal error: boom at crates/kiln/src/main.rs:"), "{stderr}");
    assert!(stderr.ends_with(" (please report)\n") && stderr.lines().count() == 1, "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert_eq!(out.status.code(), Some(101));
}

/// Another write failure (a full disk behind `>`) is said on stderr, with exit code 1.
#[test]
fn a_full_disk_on_stdout_is_reported() {
    let p = Project::new("[target.a]\ncmd = \"true\"\n");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full (Linux) opens");
    let out = p.command(&["graph"]).stdout(full).output().expect("kiln runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "kiln: cannot write to stdout: No space left on device (os error 28)\n");
    assert_eq!(out.status.code(), Some(1));
}
