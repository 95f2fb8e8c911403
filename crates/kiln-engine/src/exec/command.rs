//! Running one command: `sh -c CMD` in its own process group, output read as bytes from both
//! streams at once (each read to a log that keeps the last `log_limit` bytes, the lines it
//! completes as events), a timeout and cancellation that kill the whole group. Memory stays bounded however much the command prints.
//!
//! Children get `PR_SET_PDEATHSIG`, so they die with kiln even when kiln is killed with
//! SIGKILL. Killing the group also takes grandchildren (a `sleep` started by the command),
//! unless they start a session of their own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

use crate::event::Stream;
use crate::exec::output_lines::{Chunk, ChunkReader};
use crate::exec::tail_log::{TailLog, previous_part};

/// What to run.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub cmd: String,
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// The log file the combined output is written to (created with the first line).
    pub log: Option<PathBuf>,
    /// Bytes the log keeps (its last ones).
    pub log_limit: u64,
    /// Kiln's directory (`.kiln`) the log is inside, if it is: its directories are then
    /// checked from there without following symbolic links (see [`TailLog::inside`]).
    pub log_base: Option<PathBuf>,
}

/// How a command ran.
#[derive(Debug)]
pub struct CommandRun {
    pub outcome: ExecOutcome,
    /// The last [`TAIL_KEPT`] bytes of its combined output, to describe a failure.
    pub tail: Vec<u8>,
    /// Why the log could not be written, if it could not (the run itself goes on).
    pub log_failure: Option<String>,
}

/// Bytes of output kept in memory (the end), to describe a failure.
pub const TAIL_KEPT: usize = 8 * 1024;

/// How long output is still read after the command has exited (from processes that left
/// its group and still hold the pipes).
const STREAMS_AFTER_EXIT: Duration = Duration::from_secs(5);

/// Reads (of up to 64 KiB each) queued from the pipes before their reading waits.
const CHUNKS_QUEUED: usize = 4;

/// Lines sent on to the caller before the command's reading waits for it.
const LINES_QUEUED: usize = 256;

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

/// A line's text and the stream it came from.
pub type Line = (Stream, String);

/// The channel a command's lines are sent to: bounded, so a command that prints faster
/// than its lines are taken waits for them (as it would for a terminal).
pub fn line_channel() -> (mpsc::Sender<Line>, mpsc::Receiver<Line>) {
    mpsc::channel(LINES_QUEUED)
}

/// Whether any live process of the group led by `pid` is left. Zombies do not count: a
/// grandchild killed with its shell waits, a zombie, until init reaps it, which can take a
/// second on some systems.
pub fn group_alive(pid: u32) -> bool {
    let Ok(group) = i32::try_from(pid) else { return false };
    if group <= 1 || killpg(Pid::from_raw(group), None).is_err() {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else { return true };
    procs.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // `pid (comm) state ppid pgrp …`: comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else { return false };
        let mut fields = rest.split(' ');
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(group) && state != Some("Z")
    })
}

/// Runs the command to completion, sending the text of each output line to `lines` (a line
/// past 64 KiB is sent once, with its start; the log has all of it). `cancel`
/// turning true kills the group.
pub async fn run(
    spec: &CommandSpec,
    lines: mpsc::Sender<(Stream, String)>,
    mut cancel: watch::Receiver<bool>,
) -> CommandRun {
    // The log of the previous run goes now; a new one is created with the first line, so a
    // silent command costs no file.
    if let Some(p) = &spec.log {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(previous_part(p));
    }
    let mut log = spec.log.clone().map(|p| {
        let log = TailLog::replace(p, spec.log_limit);
        match &spec.log_base {
            Some(base) => log.inside(base),
            None => log,
        }
    });
    let mut tail = Vec::new();
    if !spec.dir.is_dir() {
        let message = format!("working directory {} does not exist", spec.dir.display());
        return done(ExecOutcome::SpawnFailed(message), tail, log).await;
    }
    let mut child = match shell_command(&spec.cmd, &spec.dir, &spec.env).spawn() {
        Ok(c) => c,
        Err(e) => return done(ExecOutcome::SpawnFailed(format!("cannot start sh: {e}")), tail, log).await,
    };
    let pid = child.id().unwrap_or(0);
    let _group = crate::exec::watchdog::GroupGuard::new(pid);
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<(Stream, Chunk)>(CHUNKS_QUEUED);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_chunks(ChunkReader::new(out, Stream::Stdout), chunk_tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_chunks(ChunkReader::new(err, Stream::Stderr), chunk_tx.clone()));
    }
    drop(chunk_tx);

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
    // Once the shell has exited (its group killed), the pipes may still be held by a process
    // that left the group (`setsid`): its output is read for a while longer, not forever.
    let mut streams_end: Option<tokio::time::Instant> = None;
    while status.is_none() || streams_open {
        let streams_left = async {
            match streams_end {
                Some(end) => tokio::time::sleep_until(end).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            chunk = chunk_rx.recv(), if streams_open => match chunk {
                Some((stream, chunk)) => {
                    if let Some(l) = log.as_mut() {
                        l.write(&chunk.raw);
                    }
                    keep_tail(&mut tail, &chunk.raw);
                    for line in chunk.lines {
                        let _ = lines.send((stream, line)).await;
                    }
                }
                None => streams_open = false,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                // The shell is gone; whatever it left in its group goes too, so that pipes
                // held by background grandchildren cannot keep the run waiting.
                signal_group(pid, Signal::SIGKILL);
                streams_end = Some(tokio::time::Instant::now() + STREAMS_AFTER_EXIT);
            }
            () = streams_left, if streams_open => {
                streams_open = false;
                let note = format!(
                    "kiln: stopped reading output {}s after the command ended: a process it started in a \
                     session of its own (setsid) still holds its output",
                    STREAMS_AFTER_EXIT.as_secs()
                );
                keep_tail(&mut tail, note.as_bytes());
                let _ = lines.send((Stream::Stderr, note)).await;
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
        return done(outcome, tail, log).await;
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
    done(outcome, tail, log).await
}

/// Ends the run: its log joined into one file of at most `log_limit` bytes (a copy of up to
/// twice that, on a blocking thread).
async fn done(outcome: ExecOutcome, tail: Vec<u8>, log: Option<TailLog>) -> CommandRun {
    let log_failure = match log {
        Some(log) => tokio::task::spawn_blocking(move || {
            let failure = log.failure().map(str::to_string);
            let _ = log.finish();
            failure
        })
        .await
        .unwrap_or_else(|e| Some(format!("cannot finish the log: {e}"))),
        None => None,
    };
    CommandRun { outcome, tail, log_failure }
}

/// Keeps the last [`TAIL_KEPT`] bytes (trimmed in batches, so each byte is moved rarely).
fn keep_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    tail.extend_from_slice(&bytes[bytes.len().saturating_sub(TAIL_KEPT)..]);
    if tail.len() > 2 * TAIL_KEPT {
        tail.drain(..tail.len() - TAIL_KEPT);
    }
}

async fn forward_chunks(mut reader: ChunkReader<impl tokio::io::AsyncRead + Unpin>, tx: mpsc::Sender<(Stream, Chunk)>) {
    while let Some(chunk) = reader.next().await {
        if tx.send((reader.stream, chunk)).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &str) -> CommandSpec {
        CommandSpec {
            cmd: cmd.into(),
            dir: std::env::temp_dir(),
            env: BTreeMap::new(),
            timeout: None,
            log: None,
            log_limit: 1 << 20,
            log_base: None,
        }
    }

    #[tokio::test]
    async fn streams_both_outputs_and_exit_code() {
        let (tx, mut rx) = line_channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let outcome = run(&spec("echo out; echo err >&2; exit 3"), tx, cancel).await.outcome;
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
        let (tx, _rx) = line_channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let mut s = spec("sleep 30 & sleep 30");
        s.timeout = Some(Duration::from_millis(200));
        let started = Instant::now();
        let outcome = run(&s, tx, cancel).await.outcome;
        assert!(matches!(outcome, ExecOutcome::TimedOut(_)), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_flood_of_output_keeps_memory_and_the_log_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx) = line_channel();
        let taker = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let (_cancel_tx, cancel) = watch::channel(false);
        let mut s = spec("head -c 20000000 /dev/zero | tr '\\0' 'a' | fold -w 100; printf 'last \\377'");
        s.log = Some(dir.path().join("t.log"));
        s.log_limit = 100_000;
        let ran = run(&s, tx, cancel).await;
        taker.await.expect("taker");
        assert_eq!(ran.outcome, ExecOutcome::Exited(0));
        assert!(ran.tail.len() <= 2 * TAIL_KEPT && ran.tail.ends_with(b"last \xff"), "{}", ran.tail.len());
        let log = std::fs::read(dir.path().join("t.log")).expect("log");
        assert!(log.len() < 100_200, "{}", log.len());
        assert!(log.starts_with(b"[kiln: "), "{}", String::from_utf8_lossy(&log[..80]));
        assert!(log.ends_with(b"last \xff"));
    }

    #[tokio::test]
    async fn a_daemon_in_a_session_of_its_own_holding_the_output_does_not_hang_the_run() {
        let (tx, mut rx) = line_channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("detached");
        // The shell waits until the daemon has its own session, so the group kill misses it.
        let cmd = format!(
            "setsid sh -c 'touch {m}; exec sleep 600' & while [ ! -e {m} ]; do :; done; echo started",
            m = marker.display()
        );
        let ran = run(&spec(&cmd), tx, cancel).await;
        assert_eq!(ran.outcome, ExecOutcome::Exited(0));
        let mut lines = Vec::new();
        while let Ok((_, l)) = rx.try_recv() {
            lines.push(l);
        }
        assert_eq!(lines[0], "started");
        assert!(lines[1].contains("(setsid) still holds its output"), "{lines:?}");
        let _ = std::process::Command::new("pkill").args(["-f", "^sleep 600$"]).status();
    }
}
