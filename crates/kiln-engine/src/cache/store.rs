//! The content-addressed cache in `.kiln/cache`.
//!
//! - `blobs/ab/abcdef…`: file contents, named by their BLAKE3 digest.
//! - `actions/<key>.json`: for a key, the manifest that produced it and the outputs it made
//!   (path, digest, mode), plus the digest of the run's log.
//!
//! Every write is a temporary file renamed into place, and the action record is written only
//! after all its blobs, so a run killed at any point leaves either a whole entry or none.
//! Every restore re-hashes what it copies; a blob whose content does not match its name is
//! reported as corrupt, deleted with the entries that use it, and the target rebuilds.
//! Restores never write outside the project root.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::digest::{Digest, DigestBuilder};
use crate::cache::manifest::Manifest;
use crate::cache::stat_cache::StatCache;
use crate::fs::file_meta::FileMeta;

/// One output file of a target, as recorded in the cache and in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: String,
    pub digest: Digest,
    pub size: u64,
    pub executable: bool,
}

/// What a successful run with a given key produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionRecord {
    pub target: String,
    pub key: Digest,
    pub manifest: Manifest,
    pub outputs: Vec<OutputFile>,
    /// The digest dependents fold into their keys.
    pub output_digest: Digest,
    /// Blob holding the output of the run that produced this entry.
    pub log: Option<Digest>,
    pub duration_ms: u64,
}

/// The digest that stands for a set of outputs (or, without outputs, for the key itself).
pub fn output_digest(key: &Digest, outputs: &[OutputFile]) -> Digest {
    if outputs.is_empty() {
        return *key;
    }
    let mut b = DigestBuilder::new("kiln outputs v1");
    for o in outputs {
        b.str(&o.path).digest(&o.digest).bytes(&[u8::from(o.executable)]);
    }
    b.finish()
}

/// Expected failures of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache entry for `{path}` is corrupt (blob {digest} does not match its content); it was discarded")]
    Corrupt { path: String, digest: String },
    #[error("cache blob {digest} for `{path}` is missing; the entry was discarded")]
    Missing { path: String, digest: String },
    #[error("refusing to restore `{path}`: it would be written outside the project root")]
    Escapes { path: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CacheError {
    let context = context.into();
    move |source| CacheError::Io { context, source }
}

/// Statistics for `kiln cache stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CacheStats {
    pub entries: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// Result of a prune.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PruneReport {
    pub removed_entries: usize,
    pub removed_blobs: usize,
    pub freed_bytes: u64,
    pub kept_bytes: u64,
}

/// The store itself.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The project root, which restores never leave.
    root: PathBuf,
    dir: PathBuf,
}

impl Cache {
    /// The cache in `dir` for the project at `root`.
    pub fn new(root: PathBuf, dir: PathBuf) -> Cache {
        Cache { root, dir }
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.dir.join("blobs").join(&hex[..2]).join(hex)
    }

    fn action_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("actions").join(format!("{}.json", key.hex()))
    }

    fn tmp_dir(&self) -> PathBuf {
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
    fn put_file(&self, src: &Path) -> Result<Digest, CacheError> {
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
            let digest = self.put_file(&self.root.join(rel))?;
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

    /// Makes the files on disk match `outputs`, copying from blobs only what differs.
    /// Returns how many files were written.
    pub fn restore(&self, key: &Digest, outputs: &[OutputFile], stat: &StatCache) -> Result<usize, CacheError> {
        let mut written = 0;
        for out in outputs {
            if current_digest(&self.root, &out.path, stat) == Some(out.digest)
                && is_executable(&self.root.join(&out.path)) == out.executable
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

    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats { entries: count_files(&self.dir.join("actions")).0, ..Default::default() };
        let (blobs, bytes) = count_files(&self.dir.join("blobs"));
        stats.blobs = blobs;
        stats.bytes = bytes;
        stats
    }

    /// Keeps the most recently used entries whose blobs fit in `max_bytes`; removes the rest
    /// and every blob no kept entry uses.
    pub fn prune(&self, max_bytes: u64) -> PruneReport {
        let mut records: Vec<(std::time::SystemTime, PathBuf, Option<ActionRecord>)> =
            read_dir_files(&self.dir.join("actions"))
                .into_iter()
                .map(|p| {
                    let mtime = p.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                    let rec = std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<ActionRecord>(&b).ok());
                    (mtime, p, rec)
                })
                .collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut keep: HashSet<Digest> = HashSet::new();
        let mut kept_bytes = 0u64;
        let mut report = PruneReport::default();
        for (_, path, rec) in &records {
            let Some(rec) = rec else {
                let _ = std::fs::remove_file(path);
                report.removed_entries += 1;
                continue;
            };
            let mut blobs: Vec<(Digest, u64)> = rec.outputs.iter().map(|o| (o.digest, o.size)).collect();
            if let Some(log) = rec.log {
                blobs.push((log, std::fs::metadata(self.blob_path(&log)).map(|m| m.len()).unwrap_or(0)));
            }
            let extra: u64 = blobs.iter().filter(|(d, _)| !keep.contains(d)).map(|(_, s)| *s).sum();
            if kept_bytes + extra <= max_bytes {
                kept_bytes += extra;
                keep.extend(blobs.iter().map(|(d, _)| *d));
            } else {
                let _ = std::fs::remove_file(path);
                report.removed_entries += 1;
            }
        }
        for dir in read_dir_files(&self.dir.join("blobs")).into_iter().filter(|p| p.is_dir()) {
            for blob in read_dir_files(&dir) {
                let used = blob
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(Digest::from_hex)
                    .is_some_and(|d| keep.contains(&d));
                if !used {
                    report.freed_bytes += blob.metadata().map(|m| m.len()).unwrap_or(0);
                    if std::fs::remove_file(&blob).is_ok() {
                        report.removed_blobs += 1;
                    }
                }
            }
        }
        report.kept_bytes = kept_bytes;
        report
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
    let meta = std::fs::symlink_metadata(root.join(rel)).ok().filter(|m| m.is_file())?;
    stat.digest(root, rel, &FileMeta::of(&meta)).ok()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// The absolute destination of a restore, refusing anything that would leave the root:
/// absolute paths, `..`, and existing symlinked directories on the way.
fn safe_destination(root: &Path, rel: &str) -> Result<PathBuf, CacheError> {
    let escapes = || CacheError::Escapes { path: rel.to_string() };
    let rel_path = Path::new(rel);
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

fn read_dir_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
}

fn count_files(dir: &Path) -> (usize, u64) {
    let mut count = 0;
    let mut bytes = 0;
    for p in read_dir_files(dir) {
        if p.is_dir() {
            let (c, b) = count_files(&p);
            count += c;
            bytes += b;
        } else {
            count += 1;
            bytes += p.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    (count, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
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
