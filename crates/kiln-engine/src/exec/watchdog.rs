//! Nothing kiln starts outlives it, even when kiln is killed with SIGKILL.
//!
//! `PR_SET_PDEATHSIG` covers a command's direct child only; a shell running `a; b` or a
//! script forks children that would be left behind. So kiln starts a watchdog, itself
//! again (`kiln __watchdog`), connected by a pipe: every process group kiln creates is
//! written to the pipe when it starts (`+PGID`) and when it is gone (`-PGID`). The watchdog
//! ignores the terminal's signals and waits; when the pipe closes — kiln exited, however it
//! died — it kills every group still listed, then exits.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::Pid;

/// The argument that runs the watchdog.
pub const WATCHDOG_ARG: &str = "__watchdog";

/// The watchdog's program, and the watchdog once it runs. It starts with the first process
/// group: a run that starts no command (a no-op build) pays nothing for it.
struct Watchdog {
    program: Option<PathBuf>,
    running: Option<(Child, ChildStdin)>,
}

static WATCHDOG: Mutex<Watchdog> = Mutex::new(Watchdog { program: None, running: None });

/// Arms the watchdog (`program __watchdog`) for this process; it starts when the first
/// process group is registered.
pub fn start_watchdog(program: &Path) {
    let mut w = WATCHDOG.lock().expect("guard lock is never poisoned");
    w.program.get_or_insert_with(|| program.to_path_buf());
}

fn spawn(program: &Path) -> std::io::Result<(Child, ChildStdin)> {
    let mut child = Command::new(program)
        .arg(WATCHDOG_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("watchdog has no stdin"))?;
    Ok((child, stdin))
}

fn send(line: &str) {
    let mut w = WATCHDOG.lock().expect("guard lock is never poisoned");
    if w.running.is_none()
        && let Some(program) = w.program.clone()
    {
        w.running = spawn(&program).ok();
    }
    if let Some((_, stdin)) = w.running.as_mut() {
        let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
    }
}

/// A process group now exists (its leader's pid).
pub fn register(pgid: u32) {
    send(&format!("+{pgid}"));
}

/// A process group is gone.
pub fn unregister(pgid: u32) {
    send(&format!("-{pgid}"));
}

/// Registers a process group for as long as it lives; drop it once the group was killed.
pub struct GroupGuard(u32);

impl GroupGuard {
    pub fn new(pgid: u32) -> GroupGuard {
        register(pgid);
        GroupGuard(pgid)
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        unregister(self.0);
    }
}

/// The watchdog itself: reads the registry until kiln is gone, then kills what is left.
pub fn watchdog_main() -> ! {
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        // SAFETY: ignoring a signal installs no handler code.
        unsafe {
            let _ = signal(s, SigHandler::SigIgn);
        }
    }
    let mut groups: BTreeSet<i32> = BTreeSet::new();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let (sign, pid) = line.split_at(1.min(line.len()));
        let Ok(pid) = pid.trim().parse::<i32>() else { continue };
        match sign {
            "+" => {
                groups.insert(pid);
            }
            "-" => {
                groups.remove(&pid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    std::process::exit(0)
}
