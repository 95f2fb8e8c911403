//! The size of the cache and its pruning: keep the most recently used entries that fit.
//!
//! Nothing here follows a symbolic link: a pruning that went through a link planted in the
//! cache would delete someone else's files. A cache directory that is not a real directory
//! is not pruned at all.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cache::digest::Digest;

use crate::cache::action_record::ActionRecord;
use crate::cache::cache_error::{CacheError, io};
use crate::cache::store::{Cache, clear};
use crate::fs::no_follow::{check_dir, read_regular};

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

impl Cache {
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats { entries: count_files(&self.dir.join("actions")).0, ..Default::default() };
        let (blobs, bytes) = count_files(&self.dir.join("blobs"));
        stats.blobs = blobs;
        stats.bytes = bytes;
        stats
    }

    /// Keeps the most recently used entries whose blobs fit in `max_bytes`; removes the rest
    /// and every blob no kept entry uses. Fails, removing nothing, when the cache directory
    /// (or its `actions` or `blobs`) is not a real directory.
    pub fn prune(&self, max_bytes: u64) -> Result<PruneReport, CacheError> {
        for dir in [self.dir.clone(), self.dir.join("actions"), self.dir.join("blobs")] {
            check_dir(&self.base, &dir).map_err(io("cannot prune the cache"))?;
        }
        let mut records: Vec<(std::time::SystemTime, PathBuf, Option<ActionRecord>)> =
            read_dir_files(&self.dir.join("actions"))
                .into_iter()
                .map(|p| {
                    let mtime = p.symlink_metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                    let rec = read_regular(&p).ok().and_then(|b| serde_json::from_slice::<ActionRecord>(&b).ok());
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
                blobs.push((log, std::fs::symlink_metadata(self.blob_path(&log)).map(|m| m.len()).unwrap_or(0)));
            }
            // Sizes come from a file on disk: a damaged one must not overflow the sum.
            let extra =
                blobs.iter().filter(|(d, _)| !keep.contains(d)).fold(0u64, |sum, (_, s)| sum.saturating_add(*s));
            if kept_bytes.saturating_add(extra) <= max_bytes {
                kept_bytes = kept_bytes.saturating_add(extra);
                keep.extend(blobs.iter().map(|(d, _)| *d));
            } else {
                let _ = std::fs::remove_file(path);
                report.removed_entries += 1;
            }
        }
        // Only real directories are entered (`symlink_metadata`): a link planted as
        // `blobs/ab` is removed as a link, not emptied.
        for dir in read_dir_files(&self.dir.join("blobs")) {
            if !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_file(&dir);
                continue;
            }
            for blob in read_dir_files(&dir) {
                let used = blob
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(Digest::from_hex)
                    .is_some_and(|d| keep.contains(&d));
                if !used {
                    report.freed_bytes += blob.symlink_metadata().map(|m| m.len()).unwrap_or(0);
                    clear(&blob);
                    if blob.symlink_metadata().is_err() {
                        report.removed_blobs += 1;
                    }
                }
            }
        }
        report.kept_bytes = kept_bytes;
        Ok(report)
    }
}

fn read_dir_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
}

/// Files under `dir` and their bytes, without following links.
fn count_files(dir: &Path) -> (usize, u64) {
    let mut count = 0;
    let mut bytes = 0;
    for p in read_dir_files(dir) {
        let Ok(meta) = p.symlink_metadata() else { continue };
        if meta.is_dir() {
            let (c, b) = count_files(&p);
            count += c;
            bytes += b;
        } else {
            count += 1;
            bytes += meta.len();
        }
    }
    (count, bytes)
}
