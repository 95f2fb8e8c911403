//! Restoring an entry's outputs into the project: every byte re-hashed against its digest,
//! written through a temporary file and a rename, never outside the project root and never
//! through a symlink.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::cache::digest::Digest;
use crate::cache::stat_cache::StatCache;
use crate::fs::file_meta::FileMeta;

use crate::cache::action_record::OutputFile;
use crate::cache::cache_error::{CacheError, io};
use crate::cache::store::{Cache, current_digest, is_executable};

impl Cache {
    /// Makes the files on disk match `outputs`, copying from blobs only what differs.
    /// Returns how many files were written.
    pub fn restore(&self, key: &Digest, outputs: &[OutputFile], stat: &StatCache) -> Result<usize, CacheError> {
        let mut written = 0;
        for out in outputs {
            if current_digest(&self.root, &out.path, stat) == Some(out.digest)
                && is_executable(&crate::fs::rel_path::under(&self.root, &out.path)) == out.executable
            {
                continue;
            }
            if let Err(e) = self.restore_one(out, stat) {
                if matches!(e, CacheError::Corrupt { .. } | CacheError::Missing { .. }) {
                    let _ = std::fs::remove_file(self.blob_path(&out.digest));
                    let _ = std::fs::remove_file(self.action_path(key));
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
        let blob = self.blob_path(&out.digest);
        let mut src = match std::fs::File::open(&blob) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CacheError::Missing { path: out.path.clone(), digest: out.digest.short() });
            }
            Err(e) => return Err(io("cannot read cache blob")(e)),
        };
        // The copy is assembled in the cache's own temporary directory, so a run killed
        // half-way leaves nothing in the project tree (it is swept at the next start); only
        // an output directory on another file system gets its temporary file beside it.
        let tmp_dir = self.tmp_dir();
        std::fs::create_dir_all(&tmp_dir).map_err(io("cannot create cache directory"))?;
        let same_fs = {
            use std::os::unix::fs::MetadataExt;
            match (std::fs::metadata(&tmp_dir), std::fs::metadata(dir)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev(),
                _ => false,
            }
        };
        let tmp_in = if same_fs { tmp_dir.as_path() } else { dir };
        let mut tmp =
            tempfile::NamedTempFile::new_in(tmp_in).map_err(io(format!("cannot write into {}", tmp_in.display())))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = src.read(&mut buf).map_err(io("cannot read cache blob"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io("cannot write restored file"))?;
        }
        if Digest(*hasher.finalize().as_bytes()) != out.digest {
            return Err(CacheError::Corrupt { path: out.path.clone(), digest: out.digest.short() });
        }
        let mode = if out.executable { 0o755 } else { 0o644 };
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io("cannot set file mode"))?;
        tmp.persist(&dest)
            .map_err(|e| CacheError::Io { context: format!("cannot restore {}", out.path), source: e.error })?;
        if let Ok(meta) = std::fs::symlink_metadata(&dest) {
            stat.remember(&out.path, FileMeta::of(&meta), out.digest);
        }
        Ok(())
    }
}

/// The absolute destination of a restore, refusing anything that would leave the root:
/// absolute paths, `..`, and existing symlinked directories on the way.
pub(crate) fn safe_destination(root: &Path, rel: &str) -> Result<PathBuf, CacheError> {
    let escapes = || CacheError::Escapes { path: rel.to_string() };
    // Escaped names stand for their raw bytes (an escape is never `/` or `.`).
    let on_disk = crate::fs::rel_path::to_path(rel);
    let rel_path: &Path = &on_disk;
    if rel_path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(escapes());
    }
    let mut dir = root.to_path_buf();
    let parents: Vec<Component> = rel_path.components().collect();
    for c in &parents[..parents.len().saturating_sub(1)] {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => return Err(escapes()),
            Ok(m) if m.is_dir() => {}
            Ok(_) => std::fs::remove_file(&dir).map_err(io(format!("cannot replace {}", dir.display())))?,
            Err(_) => std::fs::create_dir(&dir).map_err(io(format!("cannot create {}", dir.display())))?,
        }
    }
    let dest = root.join(rel_path);
    if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&dest).map_err(io(format!("cannot replace {}", dest.display())))?;
    }
    Ok(dest)
}
