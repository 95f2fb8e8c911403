//! Running one command: `sh -c CMD` in its own process group, output read line by line from
//! both streams at once, a timeout and cancellation that kill the whole group.
//!
//! Children get `PR_SET_PDEATHSIG`, so they die with kiln even when kiln is killed with
//! SIGKILL. Killing the group also takes grandchildren (a `sleep` started by the command),
//! unless they start a session of their own.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::event::Stream;

/// What to run.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub cmd: String,
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// The log file the combined output is written to (created with the first line).
    pub log: Option<PathBuf>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    Exited(i32),
    Signalled(i32),
    TimedOut(Duration),
    Cancelled,
    /// It could not be started at all.
    SpawnFailed(String),
}

impl ExecOutcome {
    pub fn success(&self) -> bool {
        *self == ExecOutcome::Exited(0)
    }
}

/// Sets up a child so it dies with kiln and runs in a process group of its own.
pub fn configure_child(command: &mut tokio::process::Command) {
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// `sh -c CMD` in `dir` with `env`, output piped, in a process group of its own that dies
/// with kiln: how every command and service is started.
pub fn shell_command(cmd: &str, dir: &std::path::Path, env: &BTreeMap<String, String>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    configure_child(&mut command);
    command
}

/// Sends `signal` to the whole process group led by `pid`.
pub fn signal_group(pid: u32, signal: Signal) {
    // 0 (no process known) would mean kiln's own group to killpg, 1 init's.
    if let Ok(pid) = i32::try_from(pid)
        && pid > 1
    {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Runs the command to completion, sending each output line to `lines`. `cancel` turning
/// true kills the group. Returns how it ended and the captured output (for the cache).
pub async fn run(
    spec: &CommandSpec,
    lines: mpsc::UnboundedSender<(Stream, String)>,
    mut cancel: watch::Receiver<bool>,
) -> (ExecOutcome, Vec<u8>) {
    // The log of the previous run goes now; a new one is created with the first line, so a
    // silent command costs no file.
    if let Some(p) = &spec.log {
        let _ = std::fs::remove_file(p);
    }
    let mut log: Option<std::fs::File> = None;
    let mut captured = Vec::new();
    if !spec.dir.is_dir() {
        let message = format!("working directory {} does not exist", spec.dir.display());
        return (ExecOutcome::SpawnFailed(message), captured);
    }
    let mut child = match shell_command(&spec.cmd, &spec.dir, &spec.env).spawn() {
        Ok(c) => c,
        Err(e) => {
            return (ExecOutcome::SpawnFailed(format!("cannot start sh: {e}")), captured);
        }
    };
    let pid = child.id().unwrap_or(0);
    let _group = crate::exec::watchdog::GroupGuard::new(pid);
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<(Stream, String)>();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, Stream::Stdout, line_tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, Stream::Stderr, line_tx.clone()));
    }
    drop(line_tx);

    let started = Instant::now();
    // A timeout past what the clock can represent (`timeout = "5000000000000000h"`) is no
    // deadline at all, not a panic.
    let deadline = spec.timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
    let sleep_until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until);
    let mut streams_open = true;
    let mut status = None;
    let mut outcome = None;
    while status.is_none() || streams_open {
        tokio::select! {
            line = line_rx.recv(), if streams_open => match line {
                Some((stream, text)) => {
                    captured.extend_from_slice(text.as_bytes());
                    captured.push(b'\n');
                    if log.is_none()
                        && let Some(p) = &spec.log
                    {
                        log = p
                            .parent()
                            .and_then(|dir| std::fs::create_dir_all(dir).ok())
                            .and_then(|()| std::fs::File::create(p).ok());
                    }
                    if let Some(f) = log.as_mut() {
                        let _ = writeln!(f, "{text}");
                    }
                    let _ = lines.send((stream, text));
                }
                None => streams_open = false,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                // The shell is gone; whatever it left in its group goes too, so that pipes
                // held by background grandchildren cannot keep the run waiting.
                signal_group(pid, Signal::SIGKILL);
            }
            () = &mut sleep_until, if outcome.is_none() => {
                signal_group(pid, Signal::SIGKILL);
                outcome = Some(ExecOutcome::TimedOut(started.elapsed()));
            }
            changed = cancel.changed(), if outcome.is_none() => {
                if changed.is_err() || *cancel.borrow() {
                    signal_group(pid, Signal::SIGKILL);
                    outcome = Some(ExecOutcome::Cancelled);
                }
            }
        }
    }
    if let Some(outcome) = outcome {
        return (outcome, captured);
    }
    let outcome = match status {
        Some(Ok(s)) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(code), _) => ExecOutcome::Exited(code),
            (None, Some(sig)) => ExecOutcome::Signalled(sig),
            (None, None) => ExecOutcome::Exited(-1),
        },
        Some(Err(e)) => ExecOutcome::SpawnFailed(format!("cannot wait for sh: {e}")),
        None => ExecOutcome::Exited(-1),
    };
    (outcome, captured)
}

async fn forward_lines(
    reader: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    tx: mpsc::UnboundedSender<(Stream, String)>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                if tx.send((stream, String::from_utf8_lossy(&buf).into_owned())).is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &str) -> CommandSpec {
        CommandSpec { cmd: cmd.into(), dir: std::env::temp_dir(), env: BTreeMap::new(), timeout: None, log: None }
    }

    #[tokio::test]
    async fn streams_both_outputs_and_exit_code() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let (outcome, _) = run(&spec("echo out; echo err >&2; exit 3"), tx, cancel).await;
        assert_eq!(outcome, ExecOutcome::Exited(3));
        let mut got = Vec::new();
        while let Ok(l) = rx.try_recv() {
            got.push(l);
        }
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(got, vec![(Stream::Stderr, "err".to_string()), (Stream::Stdout, "out".to_string())]);
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let mut s = spec("sleep 30 & sleep 30");
        s.timeout = Some(Duration::from_millis(200));
        let started = Instant::now();
        let (outcome, _) = run(&s, tx, cancel).await;
        assert!(matches!(outcome, ExecOutcome::TimedOut(_)), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
