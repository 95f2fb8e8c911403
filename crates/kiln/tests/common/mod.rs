//! A small builder for integration tests: a temporary project, the real `kiln` binary run in
//! it, and helpers to read what it did.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use serde_json::Value;
use std::time::{Duration, Instant};

pub struct Project {
    dir: tempfile::TempDir,
}

/// What one run of kiln did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a prepared kiln command to completion.
    pub fn of(command: &mut Command) -> Run {
        Run::from(command.output().expect("kiln runs"))
    }

    /// The JSON events printed on stdout.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
    }

    /// `target.finished` events as (target, status, reason).
    pub fn finished(&self) -> Vec<(String, String, String)> {
        self.events()
            .iter()
            .filter(|e| e["type"] == "target.finished")
            .map(|e| {
                (
                    e["target"].as_str().unwrap_or_default().to_string(),
                    e["status"].as_str().unwrap_or_default().to_string(),
                    e["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Status of each target, from `--json` output.
    pub fn status_of(&self, target: &str) -> String {
        self.finished()
            .into_iter()
            .find(|(t, _, _)| t == target)
            .map(|(_, s, _)| s)
            .unwrap_or_else(|| panic!("no target.finished for {target}:\n{}", self.stdout))
    }

    /// Targets whose status is `status`, sorted.
    pub fn with_status(&self, status: &str) -> Vec<String> {
        let mut v: Vec<String> =
            self.finished().into_iter().filter(|(_, s, _)| s == status).map(|(t, _, _)| t).collect();
        v.sort();
        v
    }
}

pub fn kiln_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kiln")
}

impl Project {
    pub fn new(config: &str) -> Project {
        let dir = tempfile::tempdir().expect("temporary directory");
        let p = Project { dir };
        p.write("kiln.toml", config);
        p
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kiln_bin());
        c.args(args).current_dir(self.root()).env("NO_COLOR", "1").stdin(Stdio::null());
        c
    }

    /// Runs kiln with `args` to completion.
    pub fn kiln(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("kiln runs"))
    }

    /// `kiln --json build ARGS…`
    pub fn build(&self, args: &[&str]) -> Run {
        let mut all = vec!["--json", "build"];
        all.extend_from_slice(args);
        self.kiln(&all)
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A running `kiln --json up` and the events it has printed so far.
pub struct Up {
    pub child: Child,
    rx: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Up {
    pub fn start(p: &Project, args: &[&str]) -> Up {
        Up::start_with(p, args, |_| {})
    }

    /// Like [`Up::start`], with the command adjusted first (environment, say).
    pub fn start_with(p: &Project, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Up {
        let mut all = vec!["--json", "up"];
        all.extend_from_slice(args);
        let mut command = p.command(&all);
        adjust(&mut command);
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kiln up starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut up = Up { child, rx, seen: Vec::new() };
        up.wait_for("watching", |e| e["type"] == "watch.started");
        up
    }

    /// Waits (at most 20 s) for an event matching `pred`, returning it.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Err(_) => panic!("timed out waiting for {what}; events so far:\n{}", self.dump()),
            }
        }
    }

    /// The first event matching `pred`, among those already seen or still to come.
    pub fn wait_seen(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        self.wait_for(what, pred)
    }

    /// Waits until everything that happened before now has been evaluated: touches `input`
    /// (an existing input file of some target; its content stays the same) and waits for the
    /// batch holding that touch to be decided — `watch.unchanged` naming it, or
    /// `watch.changed` naming it and the next `run.finished`. File events are delivered in
    /// order, so every earlier change was in that batch or an earlier one: a positive signal,
    /// instead of a quiet period. Rounds are per target, so the touch says this of the
    /// targets that read `input` (and of what they depend on): choose an input that the
    /// targets in question read.
    pub fn settled(&mut self, p: &Project, input: &str) {
        let file = std::fs::File::options().append(true).open(p.path(input)).expect("open the input to touch");
        file.set_modified(std::time::SystemTime::now()).expect("touch");
        drop(file);
        let names = |e: &Value| e["paths"].as_array().is_some_and(|ps| ps.iter().any(|x| x == input));
        let e = self.wait_for("the touch to be evaluated", |e| {
            (e["type"] == "watch.unchanged" || e["type"] == "watch.changed") && names(e)
        });
        if e["type"] == "watch.changed" {
            self.wait_for("the round of that batch", |e| e["type"] == "run.finished");
        }
    }

    pub fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.seen.iter().filter(|e| pred(e)).count()
    }

    pub fn runs(&self) -> usize {
        self.count(|e| e["type"] == "run.finished")
    }

    pub fn dump(&self) -> String {
        self.seen.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
    }

    pub fn stop(mut self) -> (i32, String) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        let status = self.child.wait().expect("exits");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the networks whose name starts with `prefix` (`kiln-<project>-`, the prefix of a
/// test project's containers, or a shorter one): a test that fails kills its `kiln up` with
/// SIGKILL, which leaves the project network behind. Call it after the containers on them
/// are removed; never panics (it runs while a failed test unwinds).
pub fn remove_networks_named(prefix: &str) {
    let prefix = prefix.trim_end_matches('-');
    let listed = Command::new("podman").args(["network", "ls", "--format", "{{.Name}}"]).output().ok();
    let names: Vec<String> =
        listed.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()).unwrap_or_default();
    let ours: Vec<&str> = names.iter().map(String::as_str).filter(|n| n.starts_with(prefix)).collect();
    if !ours.is_empty() {
        let mut args = vec!["network", "rm"];
        args.extend(ours);
        let _ = Command::new("podman").args(args).output();
    }
}
