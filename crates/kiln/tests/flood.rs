//! kiln under a flood of output: a service that prints as fast as it can, whoever reads
//! kiln's own output (a terminal, /dev/null, a pipe nobody reads, an HTTP event stream that
//! is never read), and a target that prints hundreds of megabytes. kiln's memory stays
//! bounded, the logs on disk keep their tail, and Ctrl-C still ends it promptly.
//!
//! Each test waits until kiln has read a given amount of the flood (`rchar` in
//! /proc/PID/io), then reads kiln's peak resident memory (`VmHWM`): a kiln that buffered
//! what it could not show would be far past the bound by then.

mod common;
use common::{Project, alive, kiln_bin, wait_until};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Peak memory allowed (the issue's bound).
const PEAK_KB: u64 = 64 * 1024;
/// How much of the flood kiln must have read before its peak is taken.
const FLOODED: u64 = 100 << 20;

const FLOOD: &str = r#"
[settings]
log_limit = "4MiB"
[service.flood]
cmd = "yes 'a flood of output, as fast as the pipe takes it ......................................'"
stop_timeout = "2s"
"#;

fn api(p: &Project) -> serde_json::Value {
    assert!(wait_until(Duration::from_secs(30), || p.exists(".kiln/api.json")), "kiln up never wrote .kiln/api.json");
    serde_json::from_str(&p.read(".kiln/api.json")).expect("api.json is JSON")
}

fn proc_field(pid: u32, file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits until kiln has read `FLOODED` bytes, then returns its peak memory in KiB.
fn peak_after_flood(pid: u32) -> u64 {
    assert!(
        wait_until(Duration::from_secs(180), || proc_field(pid, "io", "rchar") >= FLOODED || !alive(pid as i32)),
        "kiln read only {} bytes of the flood",
        proc_field(pid, "io", "rchar")
    );
    assert!(alive(pid as i32), "kiln died under the flood");
    proc_field(pid, "status", "VmHWM")
}

/// Waits for the flood, then asserts kiln's peak memory stayed under the bound.
fn assert_bounded(pid: u32, what: &str) -> u64 {
    let peak = peak_after_flood(pid);
    assert!(peak < PEAK_KB, "kiln's peak memory was {peak} KiB {what}");
    peak
}

/// Ctrl-C, and the time kiln took to end (it must not hang on a blocked output).
fn interrupt(child: &mut Child) -> Duration {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let asked = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    assert!(
        wait_until(Duration::from_secs(60), || child.try_wait().ok().flatten().is_some()),
        "kiln did not end after Ctrl-C under the flood"
    );
    asked.elapsed()
}

fn check_logs(p: &Project) {
    let log = p.path(".kiln/logs/services/flood.0.log");
    let kept = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let previous = std::fs::metadata(p.path(".kiln/logs/services/flood.0.log.1")).map_or(0, |m| m.len());
    assert!(kept > 0, "no service log at {}", log.display());
    assert!(kept + previous <= 2 * (4 << 20) + 4096, "the service log holds {} bytes", kept + previous);
    let out = p.kiln(&["logs", "flood"]);
    assert!(
        out.stdout.starts_with("[kiln: "),
        "kiln logs does not say earlier output was cut:\n{}",
        &out.stdout[..200]
    );
    assert!(out.stdout.len() <= (4 << 20) + 4096, "kiln logs printed {} bytes", out.stdout.len());
}

fn flood_with(stdout: Stdio, stderr: Stdio) {
    let p = Project::new(FLOOD);
    let mut child = p.command(&["up"]).stdout(stdout).stderr(stderr).spawn().expect("kiln up starts");
    let pid = api(&p)["pid"].as_u64().expect("pid") as u32;
    let peak = assert_bounded(pid, "under the flood");
    let took = interrupt(&mut child);
    eprintln!("peak {peak} KiB; ended {took:?} after Ctrl-C");
    check_logs(&p);
}

#[test]
fn a_flood_into_a_pipe_nobody_reads_keeps_kiln_bounded_and_interruptible() {
    // Both pipes stay open and are never read: kiln's writes block once they are full.
    flood_with(Stdio::piped(), Stdio::piped());
}

#[test]
fn a_flood_into_dev_null_keeps_kiln_bounded() {
    flood_with(Stdio::null(), Stdio::null());
}

#[test]
fn a_flood_onto_a_terminal_keeps_kiln_bounded() {
    // `script` gives kiln a pseudo-terminal, so it draws its live view there.
    let p = Project::new(FLOOD);
    let mut child = Command::new("script")
        .args(["-qfec", &format!("exec {} up", kiln_bin()), "/dev/null"])
        .current_dir(p.root())
        .env("TERM", "xterm")
        .env_remove("CI")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) runs kiln on a terminal");
    let pid = api(&p)["pid"].as_u64().expect("pid") as u32;
    assert_bounded(pid, "under the flood");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    assert!(wait_until(Duration::from_secs(60), || !alive(pid as i32)), "kiln did not end after Ctrl-C");
    let _ = child.wait();
    check_logs(&p);
}

#[test]
fn an_event_stream_client_that_never_reads_keeps_kiln_bounded() {
    let p = Project::new(FLOOD);
    let mut child = p.command(&["up"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("kiln up starts");
    let info = api(&p);
    let pid = info["pid"].as_u64().expect("pid") as u32;
    let mut client = std::net::TcpStream::connect(info["address"].as_str().expect("address")).expect("connect");
    let token = info["token"].as_str().expect("token");
    write!(client, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n")
        .expect("request");
    // … and never read a byte of the answer.
    assert_bounded(pid, "with a client that never reads");
    interrupt(&mut child);
    drop(client);
}

#[test]
fn output_of_any_bytes_and_length_keeps_the_service_running_and_its_probe_matching() {
    // Invalid UTF-8, NUL, a 10 MB line and no final newline, then the line the `log`
    // probe waits for: the service keeps running (it does not die of a closed pipe) and is
    // ready.
    let p = Project::new(
        r#"
[service.odd]
cmd = "printf 'bad \\377\\376 bytes\\n'; printf 'nul \\000 byte\\n'; head -c 10000000 /dev/zero | tr '\\0' x; printf '\\nlistening on 8080\\n'; printf 'no newline'; exec >&-; exec sleep 600"
ready = { log = "listening on \\d+" }
"#,
    );
    let mut up = common::Up::start(&p, &[]);
    up.wait_for("odd ready", |e| e["type"] == "service.phase" && e["service"] == "odd" && e["phase"] == "ready");
    let lines: Vec<String> = up
        .seen
        .iter()
        .filter(|e| e["type"] == "service.output")
        .map(|e| e["line"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(lines.iter().any(|l| l == "bad \u{fffd}\u{fffd} bytes"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "nul \0 byte"), "{lines:?}");
    let long = lines.iter().find(|l| l.starts_with("xxxx")).expect("the long line is an event");
    assert!(long.len() < 64 * 1024 && long.ends_with("the log has the whole line]"), "{}", long.len());
    // The log keeps the bytes as written (every read is on disk before its lines are events).
    up.wait_seen("the last line without a newline", |e| e["type"] == "service.output" && e["line"] == "no newline");

    let log = p.command(&["logs", "odd"]).output().expect("kiln logs").stdout;
    let needle = b"bad \xff\xfe bytes\nnul \0 byte\n";
    assert!(log.windows(needle.len()).any(|w| w == needle), "the log lost the invalid bytes");
    let longest_run = log.split(|b| *b != b'x').map(<[u8]>::len).max().unwrap_or(0);
    assert_eq!(longest_run, 10_000_000, "the log lost some of the long line");
    let status = p.kiln(&["status", "--json"]);
    assert!(status.stdout.contains("\"ready\""), "{}", status.stdout);
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
}

#[test]
fn a_target_printing_300_mb_stays_bounded_in_memory_and_in_the_cache() {
    let p = Project::new(
        r#"
[settings]
log_limit = "1MiB"
[target.loud]
cmd = "yes 'line of a loud build ................................................................' | head -c 300000000; echo done > out.txt; touch printed; while [ ! -e go ]; do sleep 0.05; done"
outputs = ["out.txt"]
"#,
    );
    let mut child = p.command(&["build"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("kiln build");
    let pid = child.id();
    assert!(wait_until(Duration::from_secs(300), || p.exists("printed")), "the loud target never finished printing");
    // All 300 MB went through kiln (but the pipe's last few KiB) before `printed` exists.
    let peak = proc_field(pid, "status", "VmHWM");
    p.write("go", "");
    let status = child.wait().expect("kiln build ends");
    assert!(status.success(), "{status:?}");
    assert!(peak > 0 && peak < PEAK_KB, "kiln's peak memory was {peak} KiB while a target printed 300 MB");
    let log = std::fs::metadata(p.path(".kiln/logs/loud.log")).expect("log").len();
    assert!(log <= (1 << 20) + 200, "the log holds {log} bytes");
    let cache = dir_size(&p.path(".kiln/cache"));
    assert!(cache < 4 << 20, "the cache holds {cache} bytes");
    assert!(p.read(".kiln/logs/loud.log").starts_with("[kiln: "), "the log does not say it was cut");
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => dir_size(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    })
}

#[test]
fn a_terminal_that_falls_behind_is_told_how_much_it_missed() {
    use std::io::BufRead;
    let p = Project::new(FLOOD);
    let mut child = p.command(&["up"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("kiln up starts");
    let pid = api(&p)["pid"].as_u64().expect("pid") as u32;
    // Nothing is read until kiln has read far more of the flood than its queue holds …
    peak_after_flood(pid);
    // … then its output says so, and the state changes are all there.
    let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut phases = 0;
    let mut skipped = None;
    for line in out.split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line).into_owned();
        phases += usize::from(line.starts_with("flood[0] starting"));
        if line.contains("events not shown here") {
            skipped = Some(line);
            break;
        }
    }
    let skipped = skipped.expect("the view said it skipped lines");
    assert!(skipped.starts_with("kiln: … "), "{skipped}");
    assert_eq!(phases, 1, "the starting phase was shown");
    interrupt(&mut child);
}
