//! Writes that are all-or-nothing and never go through a symbolic link: the directory is
//! checked (see [`crate::fs::no_follow`]), a temporary file is created beside the final name
//! with `O_EXCL | O_NOFOLLOW`, then renamed over it, replacing whatever entry was there.

use std::io::Write;
use std::path::Path;

use crate::fs::no_follow::{ensure_dir, parent, temp_file_in};

/// Replaces `path` with `bytes` atomically. `path` is inside `base` (`.kiln`): the
/// directories from `base` down to `path`'s are created if missing and must be real
/// directories.
pub fn write(base: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent(path);
    ensure_dir(base, &dir)?;
    let mut tmp = temp_file_in(&dir)?;
    tmp.as_file_mut().write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_planted_link_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join(".kiln");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("write");
        std::fs::create_dir_all(base.join("state")).expect("mkdir");
        let path = base.join("state/targets.json");
        std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        write(&base, &path, b"{}").expect("written");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert!(std::fs::symlink_metadata(&path).expect("meta").is_file());

        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, base.join("logs")).expect("symlink");
        let err = write(&base, &base.join("logs/t.log"), b"x").expect_err("refused");
        assert!(err.to_string().contains("`.kiln/logs` is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).expect("dir").count(), 0, "nothing written through the link");
    }
}
