//! Where kiln keeps its state in a project: `.kiln/` beside kiln.toml.

use std::path::{Path, PathBuf};

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

    /// Creates `.kiln/` with a `.gitignore` so its contents never reach version control.
    pub fn ensure(&self) -> std::io::Result<()> {
        for dir in [self.cache(), self.state(), self.logs()] {
            std::fs::create_dir_all(dir)?;
        }
        let ignore = self.kiln.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(ignore, "*\n")?;
        }
        Ok(())
    }
}
