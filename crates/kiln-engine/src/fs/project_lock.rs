//! One kiln at a time per project: an exclusive `flock` on `.kiln/lock`. A second run waits
//! (and says whom it waits for); the lock dies with its process, even on `kill -9`.
//!
//! The file is opened with `O_NOFOLLOW` and must be a regular file with no other hard link:
//! kiln writes the holder's pid into it, and that write must never land in a file someone
//! planted there. It is never truncated on opening: the holder writes its pid at offset 0
//! in a fixed width, so the file only changes length the first time (or after an older
//! kiln wrote it).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use nix::libc;

use crate::fs::no_follow::describe;

/// Held for the duration of a run.
pub struct ProjectLock {
    _lock: Flock<File>,
}

/// The pid as written: a fixed width, so that a shorter pid never leaves digits of a longer
/// one behind and the file never needs truncating.
fn pid_text() -> String {
    format!("{:<10}\n", std::process::id())
}

fn open(path: &Path) -> std::io::Result<File> {
    let refuse = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{what}; kiln writes its pid there and never into anything but its own file: remove it and run again"
            ),
        )
    };
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refuse("it is a symbolic link".into()),
            Some(libc::EISDIR) => refuse("it is a directory".into()),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse(format!("it is {}", describe(meta.file_type()))));
    }
    if meta.nlink() > 1 {
        return Err(refuse("it has another hard link".into()));
    }
    Ok(file)
}

fn write_pid(file: &File) -> std::io::Result<()> {
    let text = pid_text();
    file.write_all_at(text.as_bytes(), 0)?;
    if file.metadata()?.len() != text.len() as u64 {
        file.set_len(text.len() as u64)?;
    }
    Ok(())
}

impl ProjectLock {
    /// Takes the lock if it is free right now.
    pub fn try_acquire(path: &Path) -> std::io::Result<Option<ProjectLock>> {
        match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                write_pid(&lock)?;
                Ok(Some(ProjectLock { _lock: lock }))
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }

    /// The pid its holder wrote, if the file says.
    pub fn holder(path: &Path) -> Option<u32> {
        let mut text = String::new();
        open(path).ok()?.read_to_string(&mut text).ok()?;
        text.trim().parse().ok()
    }

    /// The pid of the process holding the lock now, if one does, without touching the lock
    /// (Linux: from `/proc/locks`). The pid in the file stays after its holder ended; this
    /// answers only while the lock is held.
    pub fn held_by(path: &Path) -> Option<u32> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        let dev = meta.dev();
        let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        locks.lines().find_map(|line| {
            // `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`: device in hex, inode.
            let f: Vec<&str> = line.split_whitespace().collect();
            let (kind, pid, file) = (f.get(1)?, f.get(4)?, f.get(5)?);
            let mut parts = file.split(':');
            let maj = u64::from_str_radix(parts.next()?, 16).ok()?;
            let min = u64::from_str_radix(parts.next()?, 16).ok()?;
            let ino: u64 = parts.next()?.parse().ok()?;
            let held = *kind == "FLOCK" && (maj, min, ino) == (major, minor, meta.ino());
            held.then(|| pid.parse().ok()).flatten()
        })
    }

    /// Takes the lock, calling `on_wait` with the holder's pid (if known) before blocking.
    pub fn acquire(path: &Path, on_wait: impl FnOnce(Option<u32>)) -> std::io::Result<ProjectLock> {
        let lock = match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                on_wait(text.trim().parse().ok());
                Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?
            }
            Err((_, e)) => return Err(e.into()),
        };
        write_pid(&lock)?;
        Ok(ProjectLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_holds_the_lock_is_known_only_while_it_is_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("up.lock");
        let lock = ProjectLock::try_acquire(&path).expect("opened").expect("free");
        assert_eq!(ProjectLock::held_by(&path), Some(std::process::id()));
        drop(lock);
        assert_eq!(ProjectLock::held_by(&path), None);
        assert_eq!(ProjectLock::holder(&path), Some(std::process::id()), "the pid stays in the file");
    }

    #[test]
    fn the_pid_is_written_in_place_and_planted_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        std::fs::write(&path, "4294967295 and more left by someone\n").expect("write");
        drop(ProjectLock::try_acquire(&path).expect("opened").expect("free"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.trim().parse::<u32>().ok(), Some(std::process::id()), "{text:?}");

        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let err = ProjectLock::try_acquire(&link).err().expect("a symlink is refused");
        assert!(err.to_string().starts_with("it is a symbolic link; "), "{err}");
        let hard = dir.path().join("hard");
        std::fs::hard_link(&victim, &hard).expect("hard link");
        let err = ProjectLock::acquire(&hard, |_| {}).err().expect("a hard link is refused");
        assert!(err.to_string().starts_with("it has another hard link; "), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        std::fs::create_dir(dir.path().join("dir")).expect("mkdir");
        assert!(ProjectLock::try_acquire(&dir.path().join("dir")).is_err());
    }
}
