//! One kiln at a time per project: an exclusive `flock` on `.kiln/lock`. A second run waits
//! (and says whom it waits for); the lock dies with its process, even on `kill -9`.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Held for the duration of a run.
pub struct ProjectLock {
    _lock: Flock<File>,
}

impl ProjectLock {
    /// Takes the lock if it is free right now.
    pub fn try_acquire(path: &Path) -> std::io::Result<Option<ProjectLock>> {
        let file = File::options().read(true).write(true).create(true).truncate(false).open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                lock.set_len(0)?;
                lock.rewind()?;
                write!(lock, "{}", std::process::id())?;
                Ok(Some(ProjectLock { _lock: lock }))
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }

    /// Takes the lock, calling `on_wait` with the holder's pid (if known) before blocking.
    pub fn acquire(path: &Path, on_wait: impl FnOnce(Option<u32>)) -> std::io::Result<ProjectLock> {
        let file = File::options().read(true).write(true).create(true).truncate(false).open(path)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                on_wait(text.trim().parse().ok());
                Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?
            }
            Err((_, e)) => return Err(e.into()),
        };
        lock.set_len(0)?;
        lock.rewind()?;
        write!(lock, "{}", std::process::id())?;
        Ok(ProjectLock { _lock: lock })
    }
}
