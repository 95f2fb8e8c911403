//! How kiln answers the signals that end it.
//!
//! SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed: a tmux session killed, an ssh
//! connection dropped, a terminal window shut) are one request: stop gracefully. The
//! receiver [`cancel_on_signals`] returns turns true; `kiln build` kills its running
//! commands, `kiln up` stops every service (`stop_signal`, `stop_timeout`, then SIGKILL;
//! containers stopped and removed) and removes `.kiln/api.json`; kiln exits 130.
//!
//! A second one of them, any of the three, while that runs exits at once with 130. Process
//! groups die with kiln (their parent-death signal, and the watchdog in
//! `exec/watchdog.rs`). Containers do not: their engine keeps them. So first, for a project
//! with container services, the project's containers (found by their `kiln.project` label)
//! are force-removed, then its network, for at most [`ABORT_BOUND`]; an engine that does not answer in time is
//! left to it, and the next `kiln up` or `kiln down` removes what is left by the same label
//! (the leftover sweep, which also covers a kiln killed with SIGKILL). A third signal
//! exits without waiting for the engine either.
//!
//! SIGPIPE stays ignored (Rust's runtime ignores it before `main`): a closed stdout is a
//! write error that the views handle (`view_out.rs`), never a death. The messages here are
//! written without `eprintln!`, which panics when the write fails: after a hangup the
//! terminal is gone and every write to it fails with EIO, and a panic here would end the
//! task that answers the second signal.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kiln_config::{Config, format_duration};
use kiln_engine::Engine;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The longest a second signal waits for the engine to remove the project's containers.
pub const ABORT_BOUND: Duration = Duration::from_secs(5);

/// What a second signal cleans up before kiln exits at once.
#[derive(Default)]
pub struct OnAbort {
    /// The engine and the project root whose labelled containers are removed.
    containers: Option<(Engine, PathBuf)>,
    /// `.kiln/` of a `kiln up`, whose `api.json` would otherwise point at a dead process.
    kiln_dir: Option<PathBuf>,
}

impl OnAbort {
    /// For `kiln up` of `config`: its containers (when it has container services and an
    /// engine is on PATH) and its `api.json`.
    pub fn up(config: &Config, kiln_dir: PathBuf) -> OnAbort {
        let engine = if config.runs_containers() { Engine::find(config.settings.engine).ok() } else { None };
        OnAbort { containers: engine.map(|e| (e, config.root.clone())), kiln_dir: Some(kiln_dir) }
    }

    /// Runs the clean-up, never for much longer than `bound`; returns what it said.
    fn run(self, bound: Duration) -> Option<std::sync::mpsc::Receiver<()>> {
        if let Some(dir) = &self.kiln_dir {
            crate::api_server::remove_info(dir);
        }
        let (engine, root) = self.containers?;
        let (tx, rx) = std::sync::mpsc::channel();
        let name = engine.name();
        // On a thread of its own: if the engine hangs, kiln exits anyway and the engine's
        // CLI finishes (or not) without it.
        std::thread::spawn(move || {
            let _ = tx.send(kiln_engine::remove_leftovers(&engine, &root));
        });
        match rx.recv_timeout(bound) {
            Ok(Ok(left)) if left.is_empty() => None,
            Ok(Ok(left)) => {
                let mut said =
                    format!("kiln: removed {} container(s): {}", left.containers.len(), left.containers.join(", "));
                if !left.networks.is_empty() {
                    said.push_str(&format!("; and the network {}", left.networks.join(", ")));
                }
                if let Some(why) = left.network_error {
                    said.push_str(&format!("\nkiln: {why}"));
                }
                Some(say_aside(said))
            }
            Ok(Err(why)) => Some(say_aside(format!(
                "kiln: cannot remove this project's containers: {why}\n  = `kiln down` (or the next `kiln up`) removes them"
            ))),
            Err(_) => Some(say_aside(format!(
                "kiln: {name} did not remove this project's containers within {}; exiting without waiting\n  \
                 = `kiln down` (or the next `kiln up`) removes them",
                format_duration(bound)
            ))),
        }
    }
}

/// The signals that stop kiln.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Int,
    Term,
    Hup,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Int => "SIGINT",
            Stop::Term => "SIGTERM",
            Stop::Hup => "SIGHUP",
        }
    }

    /// What kiln says when the first one arrives.
    fn first_message(self) -> String {
        match self {
            Stop::Int => "kiln: interrupted, stopping gracefully… (press Ctrl-C again to exit now)".to_string(),
            Stop::Term => "kiln: SIGTERM received, stopping gracefully… (a second signal exits now)".to_string(),
            Stop::Hup => {
                "kiln: the terminal closed (SIGHUP), stopping gracefully… (a second signal exits now)".to_string()
            }
        }
    }

    /// What kiln says when a second one arrives.
    fn again_message(self, first: Stop, removing: bool) -> String {
        let again = if self == first { format!("{} again", self.name()) } else { self.name().to_string() };
        let rest = if removing { ": exiting now, removing this project's containers first" } else { ": exiting now" };
        format!("kiln: {again} while stopping{rest}")
    }
}

/// Where kiln is in ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Running,
    /// Stopping gracefully since this signal.
    Stopping(Stop),
    /// Removing containers before exiting.
    Aborting,
}

/// What a signal makes kiln do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Stop gracefully.
    Stop,
    /// Clean up what would be left (bounded), then exit.
    Abort { first: Stop },
    /// Exit now, without waiting for the clean-up either.
    ExitNow,
}

/// The next state and what to do, for a signal `got` in `state`.
fn step(state: Ending, got: Stop) -> (Ending, Action) {
    match state {
        Ending::Running => (Ending::Stopping(got), Action::Stop),
        Ending::Stopping(first) => (Ending::Aborting, Action::Abort { first }),
        Ending::Aborting => (Ending::Aborting, Action::ExitNow),
    }
}

/// Writes a line to stderr, ignoring failure: the terminal may be gone.
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes()).and_then(|()| err.write_all(b"\n"));
}

/// [`say`] on a thread of its own: stderr may be a pipe nobody reads (or locked by a view
/// blocked on it), and nothing that handles a signal may wait for it.
/// The returned receiver hears when the line is written.
fn say_aside(line: String) -> std::sync::mpsc::Receiver<()> {
    let (done, written) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new().name("kiln-say".into()).spawn(move || {
        say(&line);
        let _ = done.send(());
    });
    written
}

/// Gives lines said aside a moment to reach stderr before kiln exits, never longer.
fn flush_said(lines: &[std::sync::mpsc::Receiver<()>]) {
    let end = std::time::Instant::now() + Duration::from_millis(500);
    for line in lines {
        let _ = line.recv_timeout(end.saturating_duration_since(std::time::Instant::now()));
    }
}

/// Returns a receiver that turns true on the first SIGINT, SIGTERM or SIGHUP. A second one
/// runs `on_abort` (bounded by [`ABORT_BOUND`]) and exits with the interrupted code.
pub fn cancel_on_signals(on_abort: OnAbort) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    // Installed here, not in the task: a signal that arrives from now on is ours, not the
    // default action (which would kill kiln at once).
    let signals = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()));
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = signals else {
        say(
            "kiln: warning: cannot handle SIGINT, SIGTERM and SIGHUP: a signal will kill kiln without stopping services",
        );
        return rx;
    };
    tokio::spawn(async move {
        let mut on_abort = Some(on_abort);
        let mut state = Ending::Running;
        loop {
            let got = tokio::select! {
                _ = int.recv() => Stop::Int,
                _ = term.recv() => Stop::Term,
                _ = hup.recv() => Stop::Hup,
            };
            let action;
            (state, action) = step(state, got);
            match action {
                Action::Stop => {
                    // The request first, the message after: nothing may keep it from the engine.
                    let _ = tx.send(true);
                    say_aside(got.first_message());
                }
                Action::Abort { first } => {
                    let abort = on_abort.take().unwrap_or_default();
                    let said = say_aside(got.again_message(first, abort.containers.is_some()));
                    // On a thread, so that this loop still hears a third signal.
                    std::thread::spawn(move || {
                        let more = abort.run(ABORT_BOUND);
                        flush_said(&[Some(said), more].into_iter().flatten().collect::<Vec<_>>());
                        std::process::exit(i32::from(crate::exit::INTERRUPTED));
                    });
                }
                Action::ExitNow => std::process::exit(i32::from(crate::exit::INTERRUPTED)),
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    /// A stand-in for podman: a shell script that logs its arguments and answers `ps` with
    /// two names (or, with `hang`, does not answer until the file `release` exists).
    fn fake_engine(dir: &std::path::Path, hang: bool) -> Engine {
        let program = dir.join("podman");
        let body = if hang {
            format!("while [ ! -e {}/release ]; do sleep 0.05; done", dir.display())
        } else {
            "case \"$1\" in ps) echo kiln-p-a-0; echo kiln-p-b-0;; esac".to_string()
        };
        std::fs::write(&program, format!("#!/bin/sh\necho \"$@\" >> {}/calls\n{body}\n", dir.display())).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Engine { kind: kiln_engine::EngineKind::Podman, program }
    }

    #[test]
    fn an_abort_kills_and_removes_the_projects_containers_by_label_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api.json"), format!("{{\"pid\":{}}}", std::process::id())).unwrap();
        let abort = OnAbort {
            containers: Some((fake_engine(dir.path(), false), PathBuf::from("/some/project"))),
            kiln_dir: Some(dir.path().to_path_buf()),
        };
        abort.run(Duration::from_secs(30));
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert!(lines[0].starts_with("ps -a --filter label=kiln.project="), "{calls}");
        // `-t 0`: no stop timeout to wait for; the graceful stop was the first signal's job.
        assert_eq!(lines[1], "rm -f -t 0 kiln-p-a-0 kiln-p-b-0", "{calls}");
        assert!(!dir.path().join("api.json").exists());
    }

    #[test]
    fn an_abort_does_not_wait_for_an_engine_that_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let abort = OnAbort { containers: Some((fake_engine(dir.path(), true), PathBuf::from("/p"))), kiln_dir: None };
        let started = Instant::now();
        abort.run(Duration::from_millis(200));
        let elapsed = started.elapsed();
        std::fs::write(dir.path().join("release"), "").unwrap();
        assert!(elapsed < Duration::from_secs(30), "returned at the bound, not when the engine answered");
    }

    #[test]
    fn the_first_signal_stops_the_second_aborts_the_third_exits_now() {
        let (state, action) = step(Ending::Running, Stop::Hup);
        assert_eq!((state, action), (Ending::Stopping(Stop::Hup), Action::Stop));
        let (state, action) = step(state, Stop::Term);
        assert_eq!((state, action), (Ending::Aborting, Action::Abort { first: Stop::Hup }));
        assert_eq!(step(state, Stop::Int), (Ending::Aborting, Action::ExitNow));
    }

    #[test]
    fn messages_name_the_signal_and_what_happens_next() {
        assert_eq!(
            Stop::Hup.first_message(),
            "kiln: the terminal closed (SIGHUP), stopping gracefully… (a second signal exits now)"
        );
        assert_eq!(
            Stop::Term.again_message(Stop::Hup, true),
            "kiln: SIGTERM while stopping: exiting now, removing this project's containers first"
        );
        assert_eq!(Stop::Int.again_message(Stop::Int, false), "kiln: SIGINT again while stopping: exiting now");
    }
}
