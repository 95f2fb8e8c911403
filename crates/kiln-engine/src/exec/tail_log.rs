//! A log file that keeps the last `limit` bytes of a run's output (`settings.log_limit`).
//!
//! Bytes go to `NAME.log` as they come. When it reaches the limit it becomes `NAME.log.1`
//! (replacing the one before) and a new `NAME.log` starts, so the disk holds at most twice
//! the limit while output flows, and never more than the limit once the run is finished:
//! [`TailLog::finish`] joins the tail of the two into one file that starts with a line
//! saying how much earlier output was cut. [`read_tail`] reads a log the same way while it
//! is still being written. Files are never opened through a symlink planted at their path,
//! and a log [`TailLog::inside`] `.kiln` never has its directory reached through one either
//! (a symlinked `.kiln/logs` or `.kiln/logs/services` fails the log, see
//! [`crate::fs::no_follow`]).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::fs::no_follow::{open_regular, read_regular};

/// A log being written.
pub struct TailLog {
    path: PathBuf,
    limit: u64,
    /// Unbuffered: callers write whole reads (up to 64 KiB) at once, so what is written is on
    /// disk for `kiln logs` at once.
    file: Option<File>,
    /// Bytes in the current file.
    written: u64,
    /// Bytes cut so far: no longer in either file.
    cut: u64,
    /// Whether the file may be continued (a service's log across restarts) rather than
    /// replaced on the first write. Such a log is written in records: a write is never cut
    /// in two parts (a part may pass the limit by one write when the write alone does).
    append: bool,
    /// A write failed (full disk, no permission): the log is given up, not the run.
    failed: Option<String>,
    /// Kiln's directory (`.kiln`) the log's directory is inside: checked and created from
    /// there without following symbolic links. `None`: created as any directory.
    base: Option<PathBuf>,
}

/// The file that holds the part before the current one.
pub fn previous_part(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn open_new(path: &Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).custom_flags(OFlag::O_NOFOLLOW.bits()).mode(0o644).open(path)
}

impl TailLog {
    /// A log that replaces `path` (and its previous part) with its first write. Nothing is
    /// created for a run that writes nothing.
    pub fn replace(path: PathBuf, limit: u64) -> TailLog {
        TailLog { path, limit: limit.max(1), file: None, written: 0, cut: 0, append: false, failed: None, base: None }
    }

    /// A log that continues `path`, as a service's log does across restarts.
    pub fn continue_at(path: PathBuf, limit: u64) -> TailLog {
        TailLog { path, limit: limit.max(1), file: None, written: 0, cut: 0, append: true, failed: None, base: None }
    }

    /// The same log, its directory inside `base` (`.kiln`): every directory from `base` down
    /// is checked (and made) without following a symbolic link planted in its place.
    pub fn inside(mut self, base: &Path) -> TailLog {
        self.base = Some(base.to_path_buf());
        self
    }

    /// Why the log could not be written, if it could not.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                match &self.base {
                    Some(base) => crate::fs::no_follow::ensure_dir(base, dir)?,
                    None => std::fs::create_dir_all(dir)?,
                }
            }
            let continued = if self.append {
                // O_NOFOLLOW: a symlink planted at the path fails the open, and is replaced.
                OpenOptions::new().append(true).custom_flags(OFlag::O_NOFOLLOW.bits()).open(&self.path).ok()
            } else {
                let _ = std::fs::remove_file(previous_part(&self.path));
                None
            };
            let file = match continued {
                Some(f) => {
                    self.written = f.metadata()?.len();
                    f
                }
                None => {
                    self.written = 0;
                    open_new(&self.path)?
                }
            };
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Appends bytes; a write error gives the log up (and is kept for [`TailLog::failure`]).
    pub fn write(&mut self, bytes: &[u8]) {
        if self.failed.is_some() || bytes.is_empty() {
            return;
        }
        if let Err(e) = self.try_write(bytes) {
            self.failed = Some(format!("cannot write the log {}: {e}", self.path.display()));
            self.file = None;
        }
    }

    fn try_write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        if self.append {
            // Opened first: a continued log counts what the file already holds.
            self.open()?;
            if self.written > 0 && self.written + bytes.len() as u64 > self.limit {
                self.rotate()?;
            }
            self.open()?.write_all(bytes)?;
            self.written += bytes.len() as u64;
            return Ok(());
        }
        while !bytes.is_empty() {
            if self.written >= self.limit {
                self.rotate()?;
            }
            let room = usize::try_from(self.limit - self.written).unwrap_or(usize::MAX);
            let (now, later) = bytes.split_at(bytes.len().min(room));
            self.open()?.write_all(now)?;
            self.written += now.len() as u64;
            bytes = later;
        }
        Ok(())
    }

    /// The current file becomes the previous part; the one before it is cut.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let previous = previous_part(&self.path);
        self.cut += std::fs::symlink_metadata(&previous).map(|m| m.len()).unwrap_or(0);
        std::fs::rename(&self.path, &previous)?;
        self.file = Some(open_new(&self.path)?);
        self.written = 0;
        Ok(())
    }

    /// Ends the log: one file of at most `limit` bytes (plus a first line saying how much
    /// was cut, if anything was). Returns whether a log exists.
    pub fn finish(mut self) -> bool {
        self.file = None;
        if self.failed.is_none()
            && let Err(e) = join_parts(&self.path, self.limit, self.cut)
        {
            self.failed = Some(format!("cannot write the log {}: {e}", self.path.display()));
        }
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_file())
    }
}

/// The line a log starts with when its beginning was cut (`cut` bytes, when known).
pub fn cut_marker(cut: Option<u64>, limit: u64) -> String {
    let what = match cut {
        Some(n) => format!("{n} earlier bytes of output were cut"),
        None => "earlier output was cut".to_string(),
    };
    format!("[kiln: {what}; the log keeps the last {} (settings.log_limit)]\n", kiln_config::format_size(limit))
}

fn join_parts(path: &Path, limit: u64, cut_before: u64) -> std::io::Result<()> {
    let previous = previous_part(path);
    let Ok(mut old) = open_regular(&previous) else { return Ok(()) };
    let current = std::fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0);
    let old_len = old.metadata()?.len();
    let keep_old = limit.saturating_sub(current).min(old_len);
    let cut = cut_before + (old_len - keep_old);
    let tmp = {
        let mut name = path.as_os_str().to_owned();
        name.push(".tmp");
        PathBuf::from(name)
    };
    let mut out = open_new(&tmp)?;
    if cut > 0 {
        out.write_all(cut_marker(Some(cut), limit).as_bytes())?;
    }
    old.seek(SeekFrom::Start(old_len - keep_old))?;
    std::io::copy(&mut old, &mut out)?;
    if let Ok(mut now) = open_regular(path) {
        std::io::copy(&mut now, &mut out)?;
    }
    drop(out);
    std::fs::rename(&tmp, path)?;
    std::fs::remove_file(&previous)
}

/// The last `limit` bytes of a log that may still be written to (its two parts), with the
/// cut marker when some of it is left out (earlier cuts are not counted here).
pub fn read_tail(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let read = |p: &Path| read_regular(p).ok();
    let current = read(path);
    let previous = read(&previous_part(path));
    if current.is_none() && previous.is_none() {
        return None;
    }
    let mut all = previous.unwrap_or_default();
    all.extend(current.unwrap_or_default());
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if all.len() <= limit {
        return Some(all);
    }
    let cut = all.len() - limit;
    let mut out = cut_marker(None, limit as u64).into_bytes();
    out.extend_from_slice(&all[cut..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_its_limit_keeps_the_last_bytes_and_says_what_was_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/t.log");
        let mut log = TailLog::replace(path.clone(), 1000);
        let mut all = Vec::new();
        for i in 0..500 {
            let line = format!("line {i}\n");
            all.extend_from_slice(line.as_bytes());
            log.write(line.as_bytes());
        }
        assert!(log.finish());
        let text = std::fs::read(&path).expect("log");
        let marker = cut_marker(Some(all.len() as u64 - 1000), 1000);
        assert!(text.starts_with(marker.as_bytes()), "{}", String::from_utf8_lossy(&text[..100]));
        assert_eq!(&text[marker.len()..], &all[all.len() - 1000..]);
        assert!(!previous_part(&path).exists());
    }

    #[test]
    fn a_short_log_is_kept_whole_with_no_marker_and_a_silent_run_makes_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.log");
        let mut log = TailLog::replace(path.clone(), 1000);
        log.write(b"hello \xff\n");
        assert!(log.finish());
        assert_eq!(std::fs::read(&path).expect("log"), b"hello \xff\n");
        let silent = dir.path().join("s.log");
        assert!(!TailLog::replace(silent.clone(), 1000).finish());
        assert!(!silent.exists());
    }

    #[test]
    fn a_symlink_planted_at_the_log_is_replaced_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").expect("victim");
        for append in [false, true] {
            let path = dir.path().join(format!("l{append}.log"));
            std::os::unix::fs::symlink(&victim, &path).expect("symlink");
            let mut log =
                if append { TailLog::continue_at(path.clone(), 100) } else { TailLog::replace(path.clone(), 100) };
            log.write(b"x\n");
            assert!(log.finish());
            assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep me");
            assert!(!std::fs::symlink_metadata(&path).expect("log").file_type().is_symlink());
        }
    }

    #[test]
    fn a_log_inside_kiln_is_never_written_through_a_symlinked_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kiln = dir.path().join(".kiln");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&kiln).expect("kiln");
        std::fs::create_dir_all(elsewhere.join("services")).expect("elsewhere");
        // `.kiln/logs` a link, then `.kiln/logs/services` a link.
        std::os::unix::fs::symlink(&elsewhere, kiln.join("logs")).expect("symlink");
        for round in 0..2 {
            let path = kiln.join("logs/services/web.0.log");
            let mut log = TailLog::continue_at(path.clone(), 100).inside(&kiln);
            log.write(b"x\n");
            assert!(log.failure().is_some_and(|f| f.contains("symbolic link")), "{:?}", log.failure());
            assert!(!log.finish());
            assert!(!elsewhere.join("services/web.0.log").exists(), "round {round}: written through a link");
            if round == 0 {
                std::fs::remove_file(kiln.join("logs")).expect("rm");
                std::fs::create_dir(kiln.join("logs")).expect("mkdir");
                std::os::unix::fs::symlink(elsewhere.join("services"), kiln.join("logs/services")).expect("symlink");
            }
        }
        // Real directories are made as needed.
        std::fs::remove_file(kiln.join("logs/services")).expect("rm");
        let path = kiln.join("logs/services/web.0.log");
        let mut log = TailLog::continue_at(path.clone(), 100).inside(&kiln);
        log.write(b"y\n");
        assert!(log.failure().is_none(), "{:?}", log.failure());
        assert!(log.finish());
        assert_eq!(std::fs::read(&path).expect("log"), b"y\n");
    }

    #[test]
    fn a_continued_log_appends_and_reading_it_while_written_gives_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.log");
        std::fs::write(&path, "before\n").expect("old");
        let mut log = TailLog::continue_at(path.clone(), 10);
        log.write(b"0123456789abcdef\n");
        // Still running: two parts on disk, read as one tail.
        let tail = read_tail(&path, 10).expect("tail");
        assert!(tail.ends_with(b"789abcdef\n"), "{}", String::from_utf8_lossy(&tail));
        assert!(tail.starts_with(b"[kiln: earlier output was cut"), "{}", String::from_utf8_lossy(&tail));
    }
}
