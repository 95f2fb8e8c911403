//! The content-addressed cache in `.kiln/cache`.
//!
//! - `blobs/ab/abcdef…`: file contents, named by their BLAKE3 digest.
//! - `actions/<key>.json`: for a key, the manifest that produced it and the outputs it made
//!   (path, digest, mode, or a symbolic link's target text), plus the digest of the run's log.
//!
//! Every write is a temporary file renamed into place, and the action record is written only
//! after all its blobs, so a run killed at any point leaves either a whole entry or none.
//! Nothing is written through a symbolic link: every directory on the way from `.kiln` is
//! checked, files are created with `O_EXCL | O_NOFOLLOW` and read with `O_NOFOLLOW |
//! O_NONBLOCK` (see [`crate::fs::no_follow`]).
//!
//! Faults degrade, they never block a build: an entry whose blob does not match its name,
//! is missing or cannot be read is reported, discarded and rebuilt (`restore.rs`); a store
//! that fails (a read-only or full cache) leaves the outputs uncached with a warning; a
//! cache directory that is not a real directory turns the cache off for the run.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::libc;

use crate::cache::digest::Digest;
use crate::cache::manifest::Manifest;
use crate::cache::stat_cache::StatCache;
use crate::fs::file_meta::FileMeta;
use crate::fs::no_follow::{check_dir, ensure_dir, open_regular, parent, read_regular, temp_file_in};
use crate::fs::output_entry::OutputEntry;
use crate::fs::rel_path;

use crate::cache::action_record::{ActionRecord, OutputFile, link_digest, output_digest};
use crate::cache::cache_error::{CacheError, io};

/// The store itself.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The project root, which restores never leave.
    pub(crate) root: PathBuf,
    pub(crate) dir: PathBuf,
    /// `.kiln`: kiln's own directories are checked from here down.
    pub(crate) base: PathBuf,
    /// Off for this run: nothing is looked up, restored or stored.
    off: bool,
}

impl Cache {
    /// The cache in `dir` (`.kiln/cache`) for the project at `root`.
    pub fn new(root: PathBuf, dir: PathBuf) -> Cache {
        let base = dir.parent().map_or_else(|| dir.clone(), Path::to_path_buf);
        Cache { root, dir, base, off: false }
    }

    /// Makes sure the cache directory can be used: a real directory (created if missing).
    pub fn prepare(&self) -> Result<(), CacheError> {
        ensure_dir(&self.base, &self.dir)
            .map_err(io("the cache is off for this run (outputs are neither restored nor stored)"))
    }

    /// This cache, off: lookups find nothing and nothing is stored.
    pub fn turned_off(mut self) -> Cache {
        self.off = true;
        self
    }

    /// Whether the cache is used at all.
    pub fn is_on(&self) -> bool {
        !self.off
    }

    /// A path of the cache as messages show it: relative to the project root.
    pub(crate) fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
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

    /// Whether the directory holding `path` is a real directory of the cache.
    pub(crate) fn dir_of_is_safe(&self, path: &Path) -> bool {
        matches!(check_dir(&self.base, &parent(path)), Ok(true))
    }

    /// Removes temporary files a killed run left behind. Call while holding the project lock.
    pub fn sweep_tmp(&self) {
        // Only inside a real cache directory: through a planted link, the sweep would
        // delete someone else's files. (A `tmp` that is itself a link is removed as a link.)
        if matches!(check_dir(&self.base, &self.dir), Ok(true)) {
            let _ = std::fs::remove_dir_all(self.tmp_dir());
        }
    }

    /// The record for `key`, if the cache has a readable one.
    pub fn lookup(&self, key: &Digest) -> Option<ActionRecord> {
        let path = self.action_path(key);
        if self.off || !self.dir_of_is_safe(&path) {
            return None;
        }
        let bytes = read_regular(&path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes the record for `key` (a damaged or untrustworthy entry).
    pub(crate) fn discard_entry(&self, key: &Digest) {
        let path = self.action_path(key);
        if self.dir_of_is_safe(&path) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Removes whatever holds a blob's name (a bad file, a directory, a FIFO, a link).
    pub(crate) fn discard_blob(&self, digest: &Digest) {
        let path = self.blob_path(digest);
        if self.dir_of_is_safe(&path) {
            clear(&path);
        }
    }

    /// Stores a blob (if absent) from an output file, returning its digest.
    pub(crate) fn put_file(&self, src: &Path, rel: &str) -> Result<Digest, CacheError> {
        let tmp_dir = self.tmp_dir();
        ensure_dir(&self.base, &tmp_dir).map_err(io("cannot create a cache file"))?;
        let mut tmp =
            temp_file_in(&tmp_dir).map_err(io(format!("cannot create a file in {}", self.shown(&tmp_dir))))?;
        let mut file = open_regular(src).map_err(io(format!("cannot read output {}", rel_path::display(rel))))?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io(format!("cannot read output {}", rel_path::display(rel))))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            tmp.as_file_mut().write_all(&buf[..n]).map_err(io(format!("cannot write {}", self.shown(tmp.path()))))?;
        }
        let digest = Digest(*hasher.finalize().as_bytes());
        let dest = self.blob_path(&digest);
        if !holds_blob(&dest, size) {
            ensure_dir(&self.base, &parent(&dest)).map_err(io("cannot store a cache blob"))?;
            clear(&dest);
            tmp.persist(&dest).map_err(|e| CacheError::Io {
                context: format!("cannot store cache blob {}", self.shown(&dest)),
                source: e.error,
            })?;
        }
        Ok(digest)
    }

    /// Stores bytes as a blob (for logs).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, CacheError> {
        if self.off {
            return Err(CacheError::Off);
        }
        let digest = Digest::of_bytes(bytes);
        let dest = self.blob_path(&digest);
        if !holds_blob(&dest, bytes.len() as u64) {
            let context = format!("cannot store cache blob {}", self.shown(&dest));
            if self.dir_of_is_safe(&dest) {
                clear(&dest);
            }
            crate::fs::atomic_write::write(&self.base, &dest, bytes).map_err(io(context))?;
        }
        Ok(digest)
    }

    pub fn get_bytes(&self, digest: &Digest) -> Option<Vec<u8>> {
        let path = self.blob_path(digest);
        if self.off || !self.dir_of_is_safe(&path) {
            return None;
        }
        read_regular(&path).ok().filter(|b| Digest::of_bytes(b) == *digest)
    }

    /// Stores the given outputs (root-relative) and then the action record.
    pub fn store(
        &self,
        target: &str,
        manifest: &Manifest,
        files: &[OutputEntry],
        log: Option<&[u8]>,
        duration_ms: u64,
        stat: &StatCache,
    ) -> Result<ActionRecord, CacheError> {
        if self.off {
            return Err(CacheError::Off);
        }
        let key = manifest.key();
        let mut outputs = Vec::with_capacity(files.len());
        for entry in files {
            let out = match &entry.link {
                Some(target) => {
                    let text = target.to_str().ok_or_else(|| CacheError::Io {
                        context: format!("cannot store output {}", rel_path::display(&entry.path)),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "it is a symbolic link whose target is not UTF-8 text",
                        ),
                    })?;
                    OutputFile {
                        path: entry.path.clone(),
                        digest: link_digest(text.as_bytes()),
                        size: text.len() as u64,
                        executable: false,
                        link: Some(text.to_string()),
                    }
                }
                None => {
                    let digest = self.put_file(&rel_path::under(&self.root, &entry.path), &entry.path)?;
                    stat.remember(&entry.path, entry.meta, digest);
                    OutputFile {
                        path: entry.path.clone(),
                        digest,
                        size: entry.meta.size,
                        executable: entry.meta.executable,
                        link: None,
                    }
                }
            };
            outputs.push(out);
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
        self.write_record(&record)?;
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
        if self.off {
            return Err(CacheError::Off);
        }
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
        self.write_record(&record)?;
        Ok(record)
    }

    fn write_record(&self, record: &ActionRecord) -> Result<(), CacheError> {
        let json = serde_json::to_vec_pretty(record).expect("action records always serialize");
        let path = self.action_path(&record.key);
        let context = format!("cannot write cache entry {}", self.shown(&path));
        crate::fs::atomic_write::write(&self.base, &path, &json).map_err(io(context))
    }

    /// Marks an entry as just used, for least-recently-used pruning.
    pub fn touch(&self, key: &Digest) {
        let path = self.action_path(key);
        if self.off || !self.dir_of_is_safe(&path) {
            return;
        }
        let opened = std::fs::File::options().append(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path);
        if let Ok(f) = opened {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }
}

/// Whether `path` already holds a blob of this size (a regular file; its content is
/// verified when it is restored).
fn holds_blob(path: &Path, size: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Removes whatever entry has this name: a file, a link (not what it points to), a FIFO, a
/// directory and everything in it. Only called where the directory holding `path` was
/// checked to be kiln's own (or the project's).
pub(crate) fn clear(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// The digest of an output on disk now, if it is there (through the stat cache for a file;
/// a symbolic link's from its target text, never followed).
pub fn current_digest(root: &Path, rel: &str, stat: &StatCache) -> Option<Digest> {
    let path = rel_path::under(root, rel);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if meta.file_type().is_symlink() {
        use std::os::unix::ffi::OsStrExt;
        return std::fs::read_link(&path).ok().map(|t| link_digest(t.as_os_str().as_bytes()));
    }
    if !meta.is_file() {
        return None;
    }
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

    fn write(root: &Path, rel: &str, text: &str) -> Vec<OutputEntry> {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        let meta = FileMeta::of(&std::fs::metadata(&p).expect("meta"));
        vec![OutputEntry { path: rel.to_string(), meta, link: None }]
    }

    #[test]
    fn store_then_restore_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cache = Cache::new(root.to_path_buf(), root.join(".kiln/cache"));
        let stat = StatCache::default();
        let meta = write(root, "out/a", "hello");
        let rec = cache.store("t", &manifest(), &meta, Some(b"log"), 5, &stat).expect("stored");
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
        let rec = cache.store("t", &manifest(), &meta, None, 5, &stat).expect("stored");
        std::fs::write(cache.blob_path(&rec.outputs[0].digest), "tampered").expect("tamper");
        std::fs::remove_file(root.join("out/a")).expect("rm");
        let err = cache.restore(&rec.key, &rec.outputs, &stat).expect_err("corrupt");
        assert!(matches!(err, CacheError::Corrupt { .. }), "{err}");
        assert!(cache.lookup(&rec.key).is_none(), "entry discarded");
        assert!(!root.join("out/a").exists(), "nothing half-written");
    }

    #[test]
    fn links_round_trip_as_links_and_an_escaping_one_discards_the_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cache = Cache::new(root.to_path_buf(), root.join(".kiln/cache"));
        let stat = StatCache::default();
        std::fs::create_dir_all(root.join("out")).expect("mkdir");
        std::os::unix::fs::symlink("a", root.join("out/a")).expect("symlink");
        let meta = FileMeta::of(&std::fs::symlink_metadata(root.join("out/a")).expect("meta"));
        let entry = OutputEntry { path: "out/a".into(), meta, link: Some("a".into()) };
        let rec = cache.store("t", &manifest(), std::slice::from_ref(&entry), None, 5, &stat).expect("stored");
        assert_eq!(rec.outputs[0].link.as_deref(), Some("a"));
        assert_eq!(current_digest(root, "out/a", &stat), Some(rec.outputs[0].digest));
        std::fs::remove_file(root.join("out/a")).expect("rm");
        std::fs::write(root.join("out/a"), "a file where the link goes").expect("write");
        assert_eq!(cache.restore(&rec.key, &rec.outputs, &stat).expect("restored"), 1);
        assert_eq!(std::fs::read_link(root.join("out/a")).expect("a link").to_str(), Some("a"));

        let mut escaping = rec.outputs.clone();
        escaping[0].link = Some("../../etc".into());
        escaping[0].digest = crate::cache::action_record::link_digest(b"../../etc");
        let err = cache.restore(&rec.key, &escaping, &stat).expect_err("refused");
        assert!(matches!(err, CacheError::BadRecord { .. }), "{err}");
        assert!(cache.lookup(&rec.key).is_none(), "entry discarded");
    }

    #[test]
    fn restore_refuses_to_escape_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("p");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::os::unix::fs::symlink(dir.path(), root.join("link")).expect("symlink");
        assert!(matches!(safe_destination(&root, "../x"), Err(CacheError::BadRecord { .. })));
        assert!(matches!(safe_destination(&root, "/etc/x"), Err(CacheError::BadRecord { .. })));
        assert!(matches!(safe_destination(&root, "link/x"), Err(CacheError::ThroughSymlink { .. })));
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
        let old = cache.store("t", &m1, &meta, None, 1, &stat).expect("stored");
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .append(true)
            .open(cache.action_path(&old.key))
            .expect("open")
            .set_modified(past)
            .expect("mtime");
        let meta = write(root, "out/a", &"y".repeat(1000));
        let new = cache.store("t", &manifest(), &meta, None, 1, &stat).expect("stored");
        let report = cache.prune(1500).expect("pruned");
        assert_eq!(report.removed_entries, 1);
        assert!(cache.lookup(&new.key).is_some() && cache.lookup(&old.key).is_none());
        assert_eq!(cache.stats().blobs, 1);
    }
}
