//! Restoring an entry's outputs into the project: every byte re-hashed against its digest,
//! written through a temporary file and a rename, never outside the project root and never
//! through a symlink.
//!
//! Before anything is written the record is checked as a whole: every path must be a plain
//! relative path (no `..`, not absolute, nothing in `.git` or `.kiln`), and every symbolic
//! link must resolve inside the project root; otherwise the entry is discarded. On the way
//! to each destination a file where a directory must go is replaced by the directory, a
//! symbolic link there is refused (kiln never writes through one); at the destination,
//! whatever is there (a file, a link, a directory) is replaced, never written through.
//! Symbolic links are restored as links with their recorded target text.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::cache::digest::Digest;
use crate::cache::stat_cache::StatCache;
use crate::fs::file_meta::FileMeta;
use crate::fs::no_follow::{check_dir, ensure_dir, open_regular, parent, temp_file_in};
use crate::fs::rel_path;
use crate::fs::walker::SKIPPED_DIRS;

use crate::cache::action_record::{OutputFile, link_digest};
use crate::cache::cache_error::{CacheError, io};
use crate::cache::store::{Cache, clear, current_digest, is_executable};

impl Cache {
    /// Makes the files on disk match `outputs`, copying from blobs only what differs.
    /// Returns how many files were written. An entry found damaged or untrustworthy is
    /// discarded (see [`CacheError::discards_entry`]) before the error is returned.
    pub fn restore(&self, key: &Digest, outputs: &[OutputFile], stat: &StatCache) -> Result<usize, CacheError> {
        if !self.is_on() {
            return Err(CacheError::Off);
        }
        if let Err(e) = check_record(outputs) {
            self.discard_entry(key);
            return Err(e);
        }
        let mut written = 0;
        for out in outputs {
            if current_digest(&self.root, &out.path, stat) == Some(out.digest)
                && (out.link.is_some() || is_executable(&rel_path::under(&self.root, &out.path)) == out.executable)
            {
                continue;
            }
            if let Err(e) = self.restore_one(out, stat) {
                if e.discards_blob() {
                    self.discard_blob(&out.digest);
                }
                if e.discards_entry() {
                    self.discard_entry(key);
                }
                return Err(e);
            }
            written += 1;
        }
        Ok(written)
    }

    fn restore_one(&self, out: &OutputFile, stat: &StatCache) -> Result<(), CacheError> {
        let dest = safe_destination(&self.root, &out.path)?;
        let dir = dest.parent().expect("outputs are files inside the root");
        // The copy is assembled in the cache's own temporary directory, so a run killed
        // half-way leaves nothing in the project tree (it is swept at the next start); an
        // output directory on another file system, or a cache that cannot be written (a
        // read-only one still restores), gets its temporary file beside the destination.
        let tmp_dir = self.tmp_dir();
        let same_fs = ensure_dir(&self.base, &tmp_dir).is_ok() && {
            use std::os::unix::fs::MetadataExt;
            match (std::fs::metadata(&tmp_dir), std::fs::metadata(dir)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev(),
                _ => false,
            }
        };
        let in_project = |e| io(format!("cannot write into {}", self.shown(dir)))(e);
        if let Some(target) = &out.link {
            let make = |at: &Path| tempfile::Builder::new().make_in(at, |p| std::os::unix::fs::symlink(target, p));
            let tmp = match same_fs.then(|| make(&tmp_dir)) {
                Some(Ok(tmp)) => tmp,
                _ => make(dir).map_err(in_project)?,
            };
            clear_dir_at(&dest);
            tmp.persist(&dest).map_err(|e| CacheError::Io {
                context: format!("cannot restore {}", rel_path::display(&out.path)),
                source: e.error,
            })?;
            return Ok(());
        }
        let blob = self.blob_path(&out.digest);
        let unreadable = |why: String| CacheError::Unreadable { path: out.path.clone(), blob: self.shown(&blob), why };
        let missing = || CacheError::Missing { path: out.path.clone(), blob: self.shown(&blob) };
        match check_dir(&self.base, &parent(&blob)) {
            Ok(true) => {}
            Ok(false) => return Err(missing()),
            Err(e) => return Err(unreadable(e.to_string())),
        }
        let mut src = match open_regular(&blob) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(unreadable(e.to_string())),
        };
        let mut tmp = match same_fs.then(|| temp_file_in(&tmp_dir)) {
            Some(Ok(tmp)) => tmp,
            _ => temp_file_in(dir).map_err(in_project)?,
        };
        let mut hasher = blake3::Hasher::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = src.read(&mut buf).map_err(|e| unreadable(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.as_file_mut()
                .write_all(&buf[..n])
                .map_err(io(format!("cannot write restored file {}", rel_path::display(&out.path))))?;
        }
        if Digest(*hasher.finalize().as_bytes()) != out.digest {
            return Err(CacheError::Corrupt { path: out.path.clone(), blob: self.shown(&blob) });
        }
        let mode = if out.executable { 0o755 } else { 0o644 };
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io("cannot set file mode"))?;
        clear_dir_at(&dest);
        tmp.persist(&dest).map_err(|e| CacheError::Io {
            context: format!("cannot restore {}", rel_path::display(&out.path)),
            source: e.error,
        })?;
        if let Ok(meta) = std::fs::symlink_metadata(&dest) {
            stat.remember(&out.path, FileMeta::of(&meta), out.digest);
        }
        Ok(())
    }
}

/// A rename replaces a file or a link at the destination, but not a directory: a directory
/// where a file (or link) must go is removed first.
fn clear_dir_at(dest: &Path) {
    if std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        clear(dest);
    }
}

/// Whether a recorded path is a plain path inside the root: relative, no `..` or `.`, no
/// empty component, nothing inside `.git` or `.kiln` (which no output listing enters).
pub(crate) fn is_plain(rel: &str) -> bool {
    !rel.is_empty()
        && rel.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !SKIPPED_DIRS.contains(&c))
        && Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Whether a symbolic link at `rel` with this target text points inside the root, resolved
/// lexically from the link's directory (an absolute target never does).
pub(crate) fn link_stays_inside(rel: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth: Vec<&str> = rel.split('/').collect();
    depth.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            name => depth.push(name),
        }
    }
    true
}

/// Checks a record before anything is restored from it: plain paths, links that stay inside
/// the root and match their digests.
pub(crate) fn check_record(outputs: &[OutputFile]) -> Result<(), CacheError> {
    for out in outputs {
        let bad = |why: String| Err(CacheError::BadRecord { path: out.path.clone(), why });
        if !is_plain(&out.path) {
            return bad("names a path outside the project root".into());
        }
        if let Some(target) = &out.link {
            if !link_stays_inside(&out.path, target) {
                return bad(format!("is a symbolic link to `{target}`, which is outside the project root"));
            }
            if link_digest(target.as_bytes()) != out.digest {
                return bad("is a symbolic link that does not match its recorded digest".into());
            }
        }
    }
    Ok(())
}

/// The absolute destination of a restore, refusing anything that would leave the root:
/// a path that is not plain, and existing symbolic links on the way (which the restore
/// would write through). A file (or anything else) where a directory must go is replaced
/// by the directory.
pub(crate) fn safe_destination(root: &Path, rel: &str) -> Result<PathBuf, CacheError> {
    if !is_plain(rel) {
        return Err(CacheError::BadRecord {
            path: rel.to_string(),
            why: "names a path outside the project root".into(),
        });
    }
    // Escaped names stand for their raw bytes (an escape is never `/` or `.`).
    let on_disk = rel_path::to_path(rel);
    let mut dir = root.to_path_buf();
    let parents: Vec<Component> = on_disk.components().collect();
    for (i, c) in parents[..parents.len().saturating_sub(1)].iter().enumerate() {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = rel.split('/').take(i + 1).collect::<Vec<_>>().join("/");
                return Err(CacheError::ThroughSymlink {
                    path: rel_path::display(rel).into_owned(),
                    link: rel_path::display(&link).into_owned(),
                });
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&dir).map_err(io(format!("cannot replace {}", dir.display())))?;
                std::fs::create_dir(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
            }
            Err(_) => std::fs::create_dir(&dir).map_err(io(format!("cannot create {}", dir.display())))?,
        }
    }
    Ok(root.join(on_disk))
}

/// Removes a recorded output (a file or a symbolic link, never what a link points to) if it
/// is inside the root and reached without going through a symbolic link. For `kiln clean`.
pub fn remove_output(root: &Path, rel: &str) -> bool {
    if !is_plain(rel) {
        return false;
    }
    let on_disk = rel_path::to_path(rel);
    let components: Vec<Component> = on_disk.components().collect();
    let mut dir = root.to_path_buf();
    for c in &components[..components.len() - 1] {
        dir.push(c);
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return false;
        }
    }
    let path = rel_path::under(root, rel);
    path.symlink_metadata().is_ok_and(|m| m.is_file() || m.file_type().is_symlink())
        && std::fs::remove_file(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_resolve_inside_the_root() {
        assert!(link_stays_inside("dist/current", "v1"));
        assert!(link_stays_inside("dist/a/b", "../../src/x"));
        assert!(link_stays_inside("dist/a", "./../dist/./b"));
        assert!(!link_stays_inside("dist/a", "../../x"));
        assert!(!link_stays_inside("a", "../a"));
        assert!(!link_stays_inside("dist/a", "/etc/passwd"));
        assert!(!link_stays_inside("dist/a", "b/../../../x"));
    }

    #[test]
    fn recorded_paths_must_be_plain() {
        for ok in ["out/a", "a", "dist/.hidden", "dist/..x"] {
            assert!(is_plain(ok), "{ok}");
        }
        for bad in ["", "/etc/x", "../x", "a/../b", "a//b", "./a", "a/.", ".kiln/state/targets.json", "x/.git/hooks/a"]
        {
            assert!(!is_plain(bad), "{bad}");
        }
    }
}
