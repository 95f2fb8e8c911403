//! A small builder for integration tests: a temporary project, the real `kiln` binary run in
//! it, and helpers to read what it did.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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
