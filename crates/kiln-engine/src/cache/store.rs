//! The content-addressed cache in `.kiln/cache`.
//!
//! - `blobs/ab/abcdef…`: file contents, named by their BLAKE3 digest.
//! - `actions/<key>.json`: for a key, the manifest that produced it and the outputs it made
//!   (path, digest, mode), plus the digest of the run's log.
//!
//! Every write is a temporary file renamed into place, and the action record is written only
//! after all its blobs, so a run killed at any point leaves either a whole entry or none.
//! Every restore re-hashes what it copies; a blob whose content does not match its name is
//! reported as corrupt, deleted with the entries that use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::cache::digest::Digest;
use crate::cache::manifest::Manifest;
use crate::cache::stat_cache::StatCache;
use crate::fs::file_meta::FileMeta;

use crate::cache::action_record::{ActionRecord, OutputFile, output_digest};
use crate::cache::cache_error::{CacheError, io};

/// The store itself.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The project root, which restores never leave.
    pub(crate) root: PathBuf,
    pub(crate) dir: PathBuf,
}

impl Cache {
    /// The cache in `dir` for the project at `root`.
    pub fn new(root: PathBuf, dir: PathBuf) -> Cache {
        Cache { root, dir }
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.dir.join("blobs").join(&hex[..2]).join(hex)
    }

    pub(crate) fn action_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("actions").join(format!("{}.json", key.hex()))
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Removes temporary files a killed run left behind. Call while holding the project lock.
    pub fn sweep_tmp(&self) {
        let _ = std::fs::remove_dir_all(self.tmp_dir());
    }

    /// The record for `key`, if the cache has a readable one.
    pub fn lookup(&self, key: &Digest) -> Option<ActionRecord> {
        let bytes = std::fs::read(self.action_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores a blob (if absent) from a file, returning its digest.
    pub(crate) fn put_file(&self, src: &Path) -> Result<Digest, CacheError> {
        let tmp_dir = self.tmp_dir();
        std::fs::create_dir_all(&tmp_dir).map_err(io("cannot create cache directory"))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io("cannot create cache file"))?;
        let mut file = std::fs::File::open(src).map_err(io(format!("cannot read output {}", src.display())))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io(format!("cannot read output {}", src.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io("cannot write cache file"))?;
        }
        let digest = Digest(*hasher.finalize().as_bytes());
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            std::fs::create_dir_all(dest.parent().expect("blob paths have a parent"))
                .map_err(io("cannot create cache directory"))?;
            tmp.persist(&dest)
                .map_err(|e| CacheError::Io { context: "cannot store cache blob".into(), source: e.error })?;
        }
        Ok(digest)
    }

    /// Stores bytes as a blob (for logs).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, CacheError> {
        let digest = Digest::of_bytes(bytes);
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            crate::fs::atomic_write::write(&dest, bytes).map_err(io("cannot store cache blob"))?;
        }
        Ok(digest)
    }

    pub fn get_bytes(&self, digest: &Digest) -> Option<Vec<u8>> {
        std::fs::read(self.blob_path(digest)).ok().filter(|b| Digest::of_bytes(b) == *digest)
    }

    /// Stores the given output files (root-relative) and then the action record.
    pub fn store(
        &self,
        target: &str,
        manifest: &Manifest,
        files: &[(String, FileMeta)],
        log: Option<&[u8]>,
        duration_ms: u64,
        stat: &StatCache,
    ) -> Result<ActionRecord, CacheError> {
        let key = manifest.key();
        let mut outputs = Vec::with_capacity(files.len());
        for (rel, meta) in files {
            let digest = self.put_file(&crate::fs::rel_path::under(&self.root, rel))?;
            stat.remember(rel, *meta, digest);
            outputs.push(OutputFile { path: rel.clone(), digest, size: meta.size, executable: meta.executable });
        }
        let log = log.filter(|l| !l.is_empty()).map(|l| self.put_bytes(l)).transpose()?;
        let record = ActionRecord {
            target: target.to_string(),
            key,
            manifest: manifest.clone(),
            output_digest: output_digest(&key, &outputs),
            outputs,
            log,
            duration_ms,
        };
        let json = serde_json::to_vec_pretty(&record).expect("action records always serialize");
        crate::fs::atomic_write::write(&self.action_path(&key), &json).map_err(io("cannot write cache entry"))?;
        Ok(record)
    }

    /// Stores the action record of a target whose output lives elsewhere (an image in the
    /// container engine), under its output digest.
    pub fn store_record(
        &self,
        target: &str,
        manifest: &Manifest,
        output_digest: Digest,
        log: Option<&[u8]>,
        duration_ms: u64,
    ) -> Result<ActionRecord, CacheError> {
        let key = manifest.key();
        let log = log.filter(|l| !l.is_empty()).map(|l| self.put_bytes(l)).transpose()?;
        let record = ActionRecord {
            target: target.to_string(),
            key,
            manifest: manifest.clone(),
            outputs: Vec::new(),
            output_digest,
            log,
            duration_ms,
        };
        let json = serde_json::to_vec_pretty(&record).expect("action records always serialize");
        crate::fs::atomic_write::write(&self.action_path(&key), &json).map_err(io("cannot write cache entry"))?;
        Ok(record)
    }

    /// Marks an entry as just used, for least-recently-used pruning.
    pub fn touch(&self, key: &Digest) {
        if let Ok(f) = std::fs::File::options().append(true).open(self.action_path(key)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }
}

/// The digest of a file on disk now, if it exists (through the stat cache).
pub fn current_digest(root: &Path, rel: &str, stat: &StatCache) -> Option<Digest> {
    let meta = std::fs::symlink_metadata(crate::fs::rel_path::under(root, rel)).ok().filter(|m| m.is_file())?;
    stat.digest(root, rel, &FileMeta::of(&meta)).ok()
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::restore::safe_destination;
    use std::collections::BTreeMap;

    fn manifest() -> Manifest {
        Manifest {
            action: "cmd x".into(),
            dir: ".".into(),
            env: BTreeMap::new(),
            outputs: vec!["out/a".into()],
            inputs: vec![],
            deps: vec![],
        }
    }

    fn write(root: &Path, rel: &str, text: &str) -> FileMeta {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        FileMeta::of(&std::fs::metadata(&p).expect("meta"))
    }

    #[test]
    fn store_then_restore_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cache = Cache::new(root.to_path_buf(), root.join(".kiln/cache"));
        let stat = StatCache::default();
        let meta = write(root, "out/a", "hello");
        let rec = cache.store("t", &manifest(), &[("out/a".into(), meta)], Some(b"log"), 5, &stat).expect("stored");
        std::fs::remove_file(root.join("out/a")).expect("rm");
        let n = cache.restore(&rec.key, &rec.outputs, &stat).expect("restored");
        assert_eq!(n, 1);
        assert_eq!(std::fs::read_to_string(root.join("out/a")).expect("read"), "hello");
        assert_eq!(cache.lookup(&rec.key).map(|r| r.outputs), Some(rec.outputs.clone()));
        assert_eq!(cache.get_bytes(&rec.log.expect("log stored")).as_deref(), Some(&b"log"[..]));
    }

    #[test]
    fn corrupt_blob_is_detected_and_discarded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cache = Cache::new(root.to_path_buf(), root.join(".kiln/cache"));
        let stat = StatCache::default();
        let meta = write(root, "out/a", "hello");
        let rec = cache.store("t", &manifest(), &[("out/a".into(), meta)], None, 5, &stat).expect("stored");
        std::fs::write(cache.blob_path(&rec.outputs[0].digest), "tampered").expect("tamper");
        std::fs::remove_file(root.join("out/a")).expect("rm");
        let err = cache.restore(&rec.key, &rec.outputs, &stat).expect_err("corrupt");
        assert!(matches!(err, CacheError::Corrupt { .. }), "{err}");
        assert!(cache.lookup(&rec.key).is_none(), "entry discarded");
        assert!(!root.join("out/a").exists(), "nothing half-written");
    }

    #[test]
    fn restore_refuses_to_escape_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("p");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::os::unix::fs::symlink(dir.path(), root.join("link")).expect("symlink");
        assert!(matches!(safe_destination(&root, "../x"), Err(CacheError::Escapes { .. })));
        assert!(matches!(safe_destination(&root, "/etc/x"), Err(CacheError::Escapes { .. })));
        assert!(matches!(safe_destination(&root, "link/x"), Err(CacheError::Escapes { .. })));
    }

    #[test]
    fn prune_keeps_recent_entries_within_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cache = Cache::new(root.to_path_buf(), root.join(".kiln/cache"));
        let stat = StatCache::default();
        let mut m1 = manifest();
        m1.action = "cmd one".into();
        let meta = write(root, "out/a", &"x".repeat(1000));
        let old = cache.store("t", &m1, &[("out/a".into(), meta)], None, 1, &stat).expect("stored");
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .append(true)
            .open(cache.action_path(&old.key))
            .expect("open")
            .set_modified(past)
            .expect("mtime");
        let meta = write(root, "out/a", &"y".repeat(1000));
        let new = cache.store("t", &manifest(), &[("out/a".into(), meta)], None, 1, &stat).expect("stored");
        let report = cache.prune(1500);
        assert_eq!(report.removed_entries, 1);
        assert!(cache.lookup(&new.key).is_some() && cache.lookup(&old.key).is_none());
        assert_eq!(cache.stats().blobs, 1);
    }
}
