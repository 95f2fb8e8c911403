//! Where kiln keeps its state in a project: `.kiln/` beside kiln.toml.
//!
//! `.kiln` itself must be a real directory (a symbolic link there is refused: everything
//! kiln writes, the lock first, would go through it). The directories below it are checked
//! again by whatever writes in them (see [`crate::fs::no_follow`]), where a problem becomes
//! a warning: a cache that cannot be used is off, a state that cannot be saved is rebuilt.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::libc;

use crate::fs::no_follow::ensure_dir;

/// Paths inside `.kiln/`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub kiln: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout { root: root.to_path_buf(), kiln: root.join(".kiln") }
    }

    pub fn cache(&self) -> PathBuf {
        self.kiln.join("cache")
    }

    pub fn state(&self) -> PathBuf {
        self.kiln.join("state")
    }

    pub fn logs(&self) -> PathBuf {
        self.kiln.join("logs")
    }

    pub fn log(&self, target: &str) -> PathBuf {
        self.logs().join(format!("{target}.log"))
    }

    /// Where the output of a service's replica is kept, across its restarts.
    pub fn service_log(&self, service: &str, replica: u32) -> PathBuf {
        self.logs().join("services").join(format!("{service}.{replica}.log"))
    }

    pub fn lock(&self) -> PathBuf {
        self.kiln.join("lock")
    }

    /// Held by a running `kiln up` for its whole life: one session per project.
    pub fn up_lock(&self) -> PathBuf {
        self.kiln.join("up.lock")
    }

    /// Creates `.kiln/` with a `.gitignore` so its contents never reach version control, and
    /// the directories below it where possible. Fails only when `.kiln` itself is not a real
    /// directory (or cannot be made one).
    pub fn ensure(&self) -> std::io::Result<()> {
        ensure_dir(&self.kiln, &self.kiln)?;
        // `create_new` never follows a link planted under the name (a dangling one included).
        match std::fs::File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.kiln.join(".gitignore"))
        {
            Ok(mut f) => f.write_all(b"*\n")?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        for dir in [self.cache(), self.state(), self.logs()] {
            // Checked again, with a warning, by whatever writes there.
            let _ = ensure_dir(&self.kiln, &dir);
        }
        Ok(())
    }

    /// Whether `.kiln` exists, as a real directory (a symbolic link or a file there is an
    /// error: kiln never works through it).
    pub fn exists(&self) -> std::io::Result<bool> {
        crate::fs::no_follow::check_dir(&self.kiln, &self.kiln)
    }
}
