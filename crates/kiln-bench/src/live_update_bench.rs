//! The live-update benchmark (`kiln-bench live-update`): from saving a file under a sync
//! rule to the container serving it, for `kiln up` and for the same work done by hand with
//! engine commands, in one run. (`sync_bench` times the transfer alone, without kiln up.)
//!
//! Subject: a generated project, an image `FROM scratch` with busybox whose `httpd` serves
//! `/www`, and a sync rule `static` → `/www`. Two containers of that image run side by side:
//! kiln's (`kiln up`, port 18490) and one the bench starts itself (port 18491). Each trial
//! writes a fresh token and polls over HTTP (a plain HTTP/1.0 GET every millisecond) until
//! the container serves it, in three scenarios:
//! - one file: `static/bench.txt`; by hand with `podman cp FILE CONTAINER:/www/bench.txt`,
//!   and with a tar piped into `podman exec -i CONTAINER tar -x -C /`;
//! - a batch of 200 files under `static/batch/`, polled until the last one is served; by
//!   hand with `podman cp` of the directory, and with one tar;
//! - a deletion of `static/bench.txt`, polled until httpd answers 404; by hand with
//!   `podman exec CONTAINER rm -f`.
//!
//! Every clock starts before the file is written: by hand, the save, the engine command and
//! the polling; with kiln, the save and the polling (kiln's debounce window included; the
//! table also shows kiln's time less the window). Methods alternate within each trial, in
//! an order that rotates from trial to trial. kiln's own account of each update
//! (`update.completed`: detect, debounce, build, deploy, ready, total) is read from its JSON
//! events and summarised beside the times measured from outside.
//!
//! Everything the bench starts is removed on every way out: `kiln up` (SIGINT, then SIGKILL
//! and its containers by name), the by-hand container (`podman rm -f`), the temporary
//! projects. A first SIGINT, SIGTERM or SIGHUP stops the trials and cleans up.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use serde_json::Value;

pub struct LiveUpdateArgs {
    pub kiln: PathBuf,
    pub trials: usize,
    /// Fail unless every method delivered the content in every trial.
    pub check: bool,
    /// Measure only the by-hand methods (for a kiln without live update).
    pub by_hand_only: bool,
}

/// `settings.debounce` of the generated kiln.toml.
const DEBOUNCE_MS: u64 = 50;
const KILN_PORT: u16 = 18490;
const HAND_PORT: u16 = 18491;
const HAND_NAME: &str = "kiln-bench-live-update-by-hand";
const IMAGE: &str = "localhost/kiln-bench-live-update";
const BATCH: usize = 200;
/// The scenarios, in the order of the report.
const SCENARIOS: [&str; 3] = ["1 file", "200 files", "deletion"];
/// How long a method may take to deliver before the trial counts as a miss.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `kiln up` may take to build the image and have `web` ready.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long to wait, after the content was served, for kiln's `update.completed`.
const EVENT_TIMEOUT: Duration = Duration::from_secs(3);

/// Set by the signal thread: the trials stop and everything is cleaned up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err("interrupted by a signal; everything it started is removed".into())
    } else {
        Ok(())
    }
}

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGINT, SIGTERM and SIGHUP set [`INTERRUPTED`] instead of ending the process, so that
/// the guards run. A handler rather than a blocked mask: children inherit a mask (kiln would
/// never see the SIGINT that stops it), while exec resets handlers.
fn catch_signals() -> Result<(), String> {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.map_err(|e| format!("cannot handle {signal}: {e}"))?;
    }
    Ok(())
}

/// The temporary projects, removed when dropped (unless `KILN_BENCH_KEEP` is set).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KILN_BENCH_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The container the bench runs for the by-hand methods, removed when dropped.
struct HandContainer;

impl HandContainer {
    fn remove() {
        let _ = Command::new("podman").args(["rm", "-f", "-t", "0", "--ignore", HAND_NAME]).output();
    }
}

impl Drop for HandContainer {
    fn drop(&mut self) {
        HandContainer::remove();
    }
}

/// `kiln up`, stopped when dropped: SIGINT and up to 15 s to stop its services, then
/// SIGKILL; whatever container of its project is left is removed by name.
struct KilnUp {
    child: Child,
    /// `kiln-<project dir>-`: the prefix of the names of its containers.
    containers: String,
}

impl Drop for KilnUp {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT);
        }
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let out = Command::new("podman")
            .args(["ps", "-a", "--filter", &format!("name=^{}", self.containers), "--format", "{{.Names}}"])
            .output();
        let names: Vec<String> =
            out.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()).unwrap_or_default();
        if !names.is_empty() {
            eprintln!("removing containers kiln left: {}", names.join(", "));
            let _ = Command::new("podman").args(["rm", "-f", "-t", "0"]).args(&names).output();
        }
    }
}

/// An answer of httpd: the status code and the body.
struct Answer {
    status: u16,
    body: String,
}

/// `GET PATH` over HTTP/1.0 on 127.0.0.1:PORT; `None` when nothing answered.
fn get(port: u16, path: &str) -> Option<Answer> {
    let mut s =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Some(Answer { status, body })
}

/// Polls `GET PATH` every millisecond until `done` holds; the time since `since`.
fn poll(port: u16, path: &str, since: Instant, done: &dyn Fn(&Answer) -> bool) -> Result<Option<Duration>, String> {
    loop {
        interrupted()?;
        if get(port, path).is_some_and(|a| done(&a)) {
            return Ok(Some(since.elapsed()));
        }
        if since.elapsed() > DELIVERY_TIMEOUT {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn serves(token: &str) -> impl Fn(&Answer) -> bool + '_ {
    move |a: &Answer| a.status == 200 && a.body.contains(token)
}

fn not_found(a: &Answer) -> bool {
    a.status == 404
}

/// Runs an engine command to its end; an error with its stderr when it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e} (run `bash scripts/install-deps.sh`)"))?;
    if !out.status.success() {
        return Err(format!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// `podman exec -i CONTAINER tar -x -C /` with `tar` on its stdin.
fn exec_untar(tar: &[u8]) -> Result<(), String> {
    let mut child = Command::new("podman")
        .args(["exec", "-i", HAND_NAME, "tar", "-x", "-C", "/"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run podman: {e}"))?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(tar));
    let out = child.wait_with_output().map_err(|e| format!("podman exec tar: {e}"))?;
    if !out.status.success() {
        return Err(format!("podman exec {HAND_NAME} tar -x failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    match written {
        Some(Err(e)) => Err(format!("podman exec tar: writing the tar: {e}")),
        _ => Ok(()),
    }
}

/// A ustar archive of regular files (names relative to `/`, below 100 bytes), mode 0644,
/// owned by root, and the directories they need (mode 0755).
fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    fn header(name: &str, mode: u32, size: usize, kind: u8) -> [u8; 512] {
        let mut h = [0u8; 512];
        let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, name.as_bytes());
        put(100, format!("{mode:07o}\0").as_bytes());
        put(108, b"0000000\0");
        put(116, b"0000000\0");
        put(124, format!("{size:011o}\0").as_bytes());
        let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        put(136, format!("{mtime:011o}\0").as_bytes());
        put(148, b"        ");
        put(156, &[kind]);
        put(257, b"ustar\0");
        put(263, b"00");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }
    let mut out = Vec::new();
    let mut dirs: Vec<&str> = Vec::new();
    for (name, data) in files {
        let mut at = 0;
        while let Some(i) = name[at..].find('/') {
            let dir = &name[..at + i + 1];
            if !dirs.contains(&dir) {
                dirs.push(dir);
                out.extend_from_slice(&header(dir, 0o755, 0, b'5'));
            }
            at += i + 1;
        }
        out.extend_from_slice(&header(name, 0o644, data.len(), b'0'));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// What kiln reported about one update: `latency_ms` of `update.completed`, and the
/// `duration_ms` of the `service.synced` events before it.
#[derive(Default)]
struct KilnReport {
    latency: BTreeMap<String, f64>,
    synced_ms: Option<f64>,
}

/// kiln's JSON events, read on a thread: `update.completed` and `service.synced` are passed
/// on; every line is kept in `events.jsonl` beside the project.
struct Events {
    rx: Receiver<Value>,
}

impl Events {
    fn read(stdout: ChildStdout, log: std::fs::File) -> Events {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = std::io::BufWriter::new(log);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                let _ = log.flush();
                let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
                let wanted = matches!(event["type"].as_str(), Some("update.completed" | "service.synced"));
                if wanted && tx.send(event).is_err() {
                    break;
                }
            }
        });
        Events { rx }
    }

    /// Forgets what arrived so far (before a save).
    fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// The next `update.completed` (with the syncs before it), or `None` after `timeout`.
    /// A sync that failed is an error.
    fn completed(&self, timeout: Duration) -> Result<Option<KilnReport>, String> {
        let end = Instant::now() + timeout;
        let mut report = KilnReport::default();
        loop {
            interrupted()?;
            let left = end.saturating_duration_since(Instant::now());
            let event = match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) if left > Duration::ZERO => continue,
                Err(_) => return Ok(None),
            };
            if event["type"] == "service.synced" {
                if let Some(error) = event.get("error").filter(|e| !e.is_null()) {
                    return Err(format!("kiln reported a failed sync: {error}"));
                }
                let ms = event["duration_ms"].as_f64().unwrap_or(0.0);
                report.synced_ms = Some(report.synced_ms.unwrap_or(0.0) + ms);
                continue;
            }
            if let Some(latency) = event["latency_ms"].as_object() {
                report.latency = latency.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect();
            }
            return Ok(Some(report));
        }
    }
}

/// The times of one method in one scenario.
struct Series {
    scenario: &'static str,
    method: &'static str,
    times: Vec<Duration>,
    /// kiln's own reports (kiln's series only).
    reports: Vec<KilnReport>,
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Kiln,
    Cp,
    Tar,
}

/// Writes the project: an image of busybox serving `static/`, and a kiln.toml with a sync
/// rule for it.
fn write_project(dir: &Path) -> Result<(), String> {
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    std::fs::copy("/bin/busybox", dir.join("busybox")).map_err(|e| {
        format!("/bin/busybox (Debian's busybox-static) is needed ({e}): run `bash scripts/install-deps.sh`")
    })?;
    write(
        "Containerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         COPY static /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )?;
    write(".containerignore", "kiln.toml\n.kiln\n")?;
    write("static/index.html", "<h1>live-update benchmark</h1>\n")?;
    write(
        "kiln.toml",
        &format!(
            "[settings]\ndebounce = \"{DEBOUNCE_MS}ms\"\n\n\
             [target.web-image]\nimage = {{ name = \"{IMAGE}\", context = \".\" }}\n\n\
             [service.web]\nimage = \"web-image\"\nports = [\"127.0.0.1:{KILN_PORT}:8080\"]\n\
             sync = [{{ path = \"static\", target = \"/www\", action = \"sync\" }}]\n\
             ready = {{ http = \"http://127.0.0.1:{KILN_PORT}/\", period = \"100ms\" }}\n\
             stop_timeout = \"1s\"\n"
        ),
    )
}

fn port_free(port: u16) -> Result<(), String> {
    std::net::TcpListener::bind(("127.0.0.1", port)).map(drop).map_err(|e| {
        format!("port {port} is not free ({e}): is another run of this benchmark, or the live-update example, running?")
    })
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Starts `kiln up --json` in `dir` and waits until `web` serves `/`.
fn start_kiln(kiln: &Path, dir: &Path, base: &Path) -> Result<(KilnUp, Events), String> {
    let stderr_log = base.join("kiln-up.log");
    let stderr = std::fs::File::create(&stderr_log).map_err(|e| format!("{}: {e}", stderr_log.display()))?;
    let events_log = base.join("events.jsonl");
    let events = std::fs::File::create(&events_log).map_err(|e| format!("{}: {e}", events_log.display()))?;
    let mut child = Command::new(kiln)
        .args(["--json", "up", "--progress", "plain"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", kiln.display()))?;
    let stdout = child.stdout.take().ok_or("kiln up has no stdout")?;
    let name = dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let mut up = KilnUp { child, containers: format!("kiln-{name}-") };
    let events = Events::read(stdout, events);
    let start = Instant::now();
    loop {
        interrupted()?;
        if let Ok(Some(status)) = up.child.try_wait() {
            return Err(format!(
                "kiln up ended ({status}) before `web` was ready; its output ({}):\n{}\n\
                 (a kiln without live update rejects `sync`: `--by-hand-only` measures the rest)",
                stderr_log.display(),
                tail(&stderr_log)
            ));
        }
        if get(KILN_PORT, "/").is_some_and(|a| a.status == 200) {
            return Ok((up, events));
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(format!(
                "kiln up did not have `web` serving on port {KILN_PORT} within {} s; its output ({}):\n{}",
                START_TIMEOUT.as_secs(),
                stderr_log.display(),
                tail(&stderr_log)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

fn batch_name(i: usize) -> String {
    format!("f{i:03}.txt")
}

/// The two projects, the containers serving them and what was measured.
struct Bench<'a> {
    args: &'a LiveUpdateArgs,
    kiln_dir: PathBuf,
    hand_dir: PathBuf,
    events: Option<Events>,
    series: Vec<Series>,
    /// Deliveries that did not happen (method, scenario, trial).
    misses: Vec<String>,
    nonce: String,
    /// How long writing the 200 files took (part of every method's time).
    batch_writes: Vec<Duration>,
}

impl Bench<'_> {
    fn record(&mut self, scenario: &'static str, method: &'static str, took: Option<Duration>, trial: usize) {
        let i = match self.series.iter().position(|s| s.scenario == scenario && s.method == method) {
            Some(i) => i,
            None => {
                self.series.push(Series { scenario, method, times: Vec::new(), reports: Vec::new() });
                self.series.len() - 1
            }
        };
        match took {
            Some(t) if trial > 0 => self.series[i].times.push(t),
            Some(_) => {}
            None => self.misses.push(format!("{method}, {scenario}, trial {trial}: not served within 10 s")),
        }
    }

    /// After kiln served what a save changed: its `update.completed`, kept with the series.
    fn kiln_report(&mut self, scenario: &'static str, trial: usize) -> Result<(), String> {
        let Some(events) = &self.events else { return Ok(()) };
        let report = events.completed(EVENT_TIMEOUT)?;
        // Let kiln finish its bookkeeping before the next save.
        std::thread::sleep(Duration::from_millis(50));
        match report {
            Some(r) if trial > 0 => {
                if let Some(s) = self.series.iter_mut().find(|s| s.scenario == scenario && s.method == "kiln up") {
                    s.reports.push(r);
                }
            }
            Some(_) => {}
            None => eprintln!("warning: no update.completed from kiln for {scenario}, trial {trial}"),
        }
        Ok(())
    }

    fn token(&self, method: Method, scenario: &str, trial: usize) -> String {
        let m = match method {
            Method::Kiln => "kiln",
            Method::Cp => "cp",
            Method::Tar => "tar",
        };
        format!("{m}-{scenario}-{trial}-{}", self.nonce)
    }

    fn one_file(&mut self, method: Method, trial: usize) -> Result<(), String> {
        let token = self.token(method, "one", trial);
        let text = format!("{token}\n");
        let dir = if method == Method::Kiln { &self.kiln_dir } else { &self.hand_dir };
        let file = dir.join("static/bench.txt");
        if let Some(events) = &self.events {
            events.drain();
        }
        let start = Instant::now();
        write_file(&file, &text)?;
        let (port, label) = match method {
            Method::Kiln => (KILN_PORT, "kiln up"),
            Method::Cp => {
                run("podman", &["cp", &file.to_string_lossy(), &format!("{HAND_NAME}:/www/bench.txt")])?;
                (HAND_PORT, "podman cp, poll")
            }
            Method::Tar => {
                let data = std::fs::read(&file).map_err(|e| format!("read {}: {e}", file.display()))?;
                exec_untar(&tar_of(&[("www/bench.txt".into(), data)]))?;
                (HAND_PORT, "podman exec -i tar -x, poll")
            }
        };
        let took = poll(port, "/bench.txt", start, &serves(&token))?;
        self.record("1 file", label, took, trial);
        if method == Method::Kiln && took.is_some() {
            self.kiln_report("1 file", trial)?;
        }
        Ok(())
    }

    fn batch(&mut self, method: Method, trial: usize) -> Result<(), String> {
        let token = self.token(method, "batch", trial);
        let dir = if method == Method::Kiln {
            self.kiln_dir.join("static/batch")
        } else {
            self.hand_dir.join("static/batch")
        };
        if let Some(events) = &self.events {
            events.drain();
        }
        let start = Instant::now();
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        for i in 0..BATCH {
            write_file(&dir.join(batch_name(i)), &format!("{token} {i}\n"))?;
        }
        if trial > 0 {
            self.batch_writes.push(start.elapsed());
        }
        let (port, label) = match method {
            Method::Kiln => (KILN_PORT, "kiln up"),
            Method::Cp => {
                run("podman", &["cp", &dir.to_string_lossy(), &format!("{HAND_NAME}:/www/")])?;
                (HAND_PORT, "podman cp of the directory, poll")
            }
            Method::Tar => {
                let mut files = Vec::with_capacity(BATCH);
                for i in 0..BATCH {
                    let path = dir.join(batch_name(i));
                    let data = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
                    files.push((format!("www/batch/{}", batch_name(i)), data));
                }
                exec_untar(&tar_of(&files))?;
                (HAND_PORT, "podman exec -i tar -x, poll")
            }
        };
        let last = format!("/batch/{}", batch_name(BATCH - 1));
        let took = poll(port, &last, start, &serves(&token))?;
        self.record("200 files", label, took, trial);
        if took.is_some() {
            if method == Method::Kiln {
                self.kiln_report("200 files", trial)?;
            }
            // Every file, not only the last one polled.
            let missing = (0..BATCH)
                .filter(|i| !get(port, &format!("/batch/{}", batch_name(*i))).is_some_and(|a| serves(&token)(&a)))
                .count();
            if missing > 0 {
                self.misses.push(format!("{label}, 200 files, trial {trial}: {missing} files not served"));
            }
        }
        Ok(())
    }

    fn deletion(&mut self, method: Method, trial: usize) -> Result<(), String> {
        if let Some(events) = &self.events {
            events.drain();
        }
        let start = Instant::now();
        let (port, label) = match method {
            Method::Kiln => {
                let file = self.kiln_dir.join("static/bench.txt");
                std::fs::remove_file(&file).map_err(|e| format!("rm {}: {e}", file.display()))?;
                (KILN_PORT, "kiln up")
            }
            Method::Cp | Method::Tar => {
                let file = self.hand_dir.join("static/bench.txt");
                std::fs::remove_file(&file).map_err(|e| format!("rm {}: {e}", file.display()))?;
                run("podman", &["exec", HAND_NAME, "rm", "-f", "/www/bench.txt"])?;
                (HAND_PORT, "podman exec rm -f, poll")
            }
        };
        let took = poll(port, "/bench.txt", start, &not_found)?;
        self.record("deletion", label, took, trial);
        if method == Method::Kiln && took.is_some() {
            self.kiln_report("deletion", trial)?;
        }
        Ok(())
    }

    /// One trial: every method in each scenario, starting with a different one each time.
    /// Trial 0 is a warm-up and is not recorded.
    fn trial(&mut self, n: usize) -> Result<(), String> {
        let mut methods = if self.args.by_hand_only {
            vec![Method::Cp, Method::Tar]
        } else {
            vec![Method::Kiln, Method::Cp, Method::Tar]
        };
        let len = methods.len();
        methods.rotate_left(n % len);
        for m in &methods {
            self.one_file(*m, n)?;
        }
        // One deletion per project: the by-hand one once, for its container.
        let deleters: Vec<Method> = methods.iter().copied().filter(|m| *m != Method::Tar).collect();
        for m in &deleters {
            self.deletion(*m, n)?;
        }
        for m in &methods {
            self.batch(*m, n)?;
        }
        Ok(())
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn median_f(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn run_bench(args: &LiveUpdateArgs) -> Result<(), String> {
    catch_signals()?;
    port_free(HAND_PORT)?;
    if !args.by_hand_only {
        port_free(KILN_PORT)?;
    }
    let base = std::env::temp_dir().join(format!("kiln-live-update-bench-{}", std::process::id()));
    let _tmp = TempDir(base.clone());
    let kiln_dir = base.join(format!("kiln-live-bench-{}", std::process::id()));
    let hand_dir = base.join("by-hand");
    write_project(&kiln_dir)?;
    write_project(&hand_dir)?;

    // By hand: the same image, built from the same context, and a container of it.
    let tag = format!("{IMAGE}:by-hand");
    run("podman", &["build", "-q", "-t", &tag, &hand_dir.to_string_lossy()])?;
    HandContainer::remove();
    let _hand = HandContainer;
    let port = format!("127.0.0.1:{HAND_PORT}:8080");
    run("podman", &["run", "-d", "--name", HAND_NAME, "-p", &port, &tag])?;
    let start = Instant::now();
    if poll(HAND_PORT, "/", start, &|a| a.status == 200)?.is_none() {
        return Err(format!("the container {HAND_NAME} did not serve / on port {HAND_PORT}"));
    }

    let (_up, events) = if args.by_hand_only {
        (None, None)
    } else {
        let (up, events) = start_kiln(&args.kiln, &kiln_dir, &base)?;
        (Some(up), Some(events))
    };
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut bench = Bench {
        args,
        kiln_dir,
        hand_dir,
        events,
        series: Vec::new(),
        misses: Vec::new(),
        nonce: format!("{nonce:x}"),
        batch_writes: Vec::new(),
    };
    for n in 0..=args.trials {
        bench.trial(n)?;
        if n > 0 {
            let last: Vec<String> = bench
                .series
                .iter()
                .filter(|s| s.scenario == "1 file")
                .map(|s| format!("{} {}", s.method, s.times.last().map_or_else(|| "-".into(), |t| ms(*t))))
                .collect();
            eprintln!("trial {n}/{}: 1 file: {}", args.trials, last.join(", "));
        }
    }
    print_report(args, &bench.series);
    if !bench.batch_writes.is_empty() {
        println!("\nwriting the 200 files (in every method's time) took {} (median)", ms(median(bench.batch_writes)));
    }
    if !bench.misses.is_empty() {
        let message = format!("not every method delivered:\n  {}", bench.misses.join("\n  "));
        if args.check {
            return Err(message);
        }
        eprintln!("warning: {message}");
    }
    if args.check {
        println!("\ncheck passed: every method delivered the content in all {} trials", args.trials);
    }
    Ok(())
}

fn print_report(args: &LiveUpdateArgs, series: &[Series]) {
    println!();
    println!("save → served by busybox httpd in the container, {} trials (after a warm-up),", args.trials);
    println!("methods alternating; kiln's debounce (settings.debounce) {DEBOUNCE_MS} ms:");
    println!();
    println!("| scenario | method | median | fastest | slowest |");
    println!("|---|---|---:|---:|---:|");
    let debounce = Duration::from_millis(DEBOUNCE_MS);
    let mut series: Vec<&Series> = series.iter().filter(|s| !s.times.is_empty()).collect();
    series.sort_by_key(|s| SCENARIOS.iter().position(|n| *n == s.scenario));
    for s in &series {
        let (m, lo, hi) = (median(s.times.clone()), s.times.iter().min(), s.times.iter().max());
        let (lo, hi) = (lo.copied().unwrap_or(m), hi.copied().unwrap_or(m));
        println!("| {} | {} | {} | {} | {} |", s.scenario, s.method, ms(m), ms(lo), ms(hi));
        if s.method == "kiln up" {
            let less = |d: Duration| ms(d.saturating_sub(debounce));
            println!("| {} | kiln up − debounce | {} | {} | {} |", s.scenario, less(m), less(lo), less(hi));
        }
    }
    let kiln: Vec<&&Series> = series.iter().filter(|s| s.method == "kiln up" && !s.reports.is_empty()).collect();
    if kiln.is_empty() {
        return;
    }
    println!();
    println!("kiln's own account (update.completed latency_ms; service.synced duration_ms), medians:");
    println!();
    let keys = ["detect", "debounce", "build", "deploy", "ready", "total"];
    println!("| scenario | {} | copy (synced) | updates |", keys.join(" | "));
    println!("|---|{}---:|---:|", "---:|".repeat(keys.len()));
    for s in kiln {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| {
                median_f(s.reports.iter().filter_map(|r| r.latency.get(*k).copied()).collect())
                    .map_or_else(|| "-".into(), |v| format!("{v:.1}"))
            })
            .collect();
        let synced = median_f(s.reports.iter().filter_map(|r| r.synced_ms).collect())
            .map_or_else(|| "-".into(), |v| format!("{v:.1}"));
        println!("| {} | {} | {synced} | {} |", s.scenario, cells.join(" | "), s.reports.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_of_is_read_by_tar_with_its_directories() {
        let tar = tar_of(&[("www/batch/f000.txt".into(), b"one\n".to_vec()), ("www/batch/f001.txt".into(), vec![])]);
        assert_eq!(tar.len() % 512, 0);
        let dir = std::env::temp_dir().join(format!("kiln-bench-tar-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("tar")
            .args(["-x", "-C", &dir.to_string_lossy()])
            .stdin(Stdio::piped())
            .spawn()
            .expect("tar is needed for this test");
        child.stdin.take().unwrap().write_all(&tar).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read_to_string(dir.join("www/batch/f000.txt")).unwrap(), "one\n");
        assert_eq!(std::fs::read(dir.join("www/batch/f001.txt")).unwrap(), b"");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
