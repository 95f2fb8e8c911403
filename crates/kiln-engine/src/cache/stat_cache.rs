//! The stat cache: (path, size, mtime, inode) → content digest, so unchanged files are not
//! read again.
//!
//! A file modified within [`RACY_WINDOW`] of being hashed is not remembered: a later write in
//! the same mtime tick would otherwise go unseen (git calls these entries "racy").
//!
//! The file is read on first use only: a no-op build whose targets all pass the metadata
//! fingerprint check (see `TargetRecord::inputs_meta`) never needs it.
//!
//! Entries are keyed by the path's raw bytes (callers pass the escaped form of
//! [`crate::fs::rel_path`]), so a name that is not UTF-8 has its own entry. On disk a key is
//! a length and the bytes, exactly as format 2 wrote its UTF-8 `String` keys: files written
//! before stay readable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::cache::digest::Digest;
use crate::fs::file_meta::{FileMeta, is_racy};
use crate::fs::no_follow::read_regular;
use crate::fs::rel_path;

const FORMAT: u32 = 2;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Entry {
    meta: FileMeta,
    digest: Digest,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    entries: Vec<(Vec<u8>, Entry)>,
}

/// Shared by every worker of a run; lookups take a short lock, hashing happens outside it.
#[derive(Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: OnceLock<Mutex<HashMap<Vec<u8>, Entry>>>,
    dirty: std::sync::atomic::AtomicBool,
}

impl StatCache {
    /// The cache stored at `path`, read on first use; a missing, old or damaged file just
    /// means an empty cache.
    pub fn load(path: &Path) -> StatCache {
        StatCache { path: Some(path.to_path_buf()), ..StatCache::default() }
    }

    fn map(&self) -> &Mutex<HashMap<Vec<u8>, Entry>> {
        self.entries.get_or_init(|| {
            let entries = self
                .path
                .as_ref()
                .and_then(|p| read_regular(p).ok())
                .and_then(|bytes| postcard::from_bytes::<OnDisk>(&bytes).ok())
                .filter(|d| d.format == FORMAT)
                .map(|d| d.entries.into_iter().collect())
                .unwrap_or_default();
            Mutex::new(entries)
        })
    }

    /// Writes the cache atomically (never through a symbolic link; `path` is inside `kiln`,
    /// `.kiln`) if anything changed.
    pub fn save(&self, kiln: &Path, path: &Path) -> std::io::Result<()> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let saved = self.write(kiln, path);
        if saved.is_err() {
            // Still to be saved: a later run of this process may succeed.
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        saved
    }

    fn write(&self, kiln: &Path, path: &Path) -> std::io::Result<()> {
        let entries: Vec<(Vec<u8>, Entry)> = {
            let map = self.map().lock().expect("stat cache lock is never poisoned");
            map.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        let bytes = postcard::to_stdvec(&OnDisk { format: FORMAT, entries })
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        crate::fs::atomic_write::write(kiln, path, &bytes)
    }

    /// The digest of `rel` under `root`, hashing it only if its metadata changed.
    pub fn digest(&self, root: &Path, rel: &str, meta: &FileMeta) -> std::io::Result<Digest> {
        if let Some(d) = self.lookup(rel, meta) {
            return Ok(d);
        }
        let digest = Digest::of_file(&rel_path::under(root, rel))?;
        self.remember(rel, *meta, digest);
        Ok(digest)
    }

    /// The digest recorded for `rel` if its metadata still matches.
    pub fn lookup(&self, rel: &str, meta: &FileMeta) -> Option<Digest> {
        let map = self.map().lock().expect("stat cache lock is never poisoned");
        map.get(rel_path::raw(rel).as_ref()).filter(|e| e.meta == *meta).map(|e| e.digest)
    }

    /// Records a digest just computed (or just written) for a file with this metadata.
    pub fn remember(&self, rel: &str, meta: FileMeta, digest: Digest) {
        let racy = is_racy(&meta);
        let mut map = self.map().lock().expect("stat cache lock is never poisoned");
        let key = rel_path::raw(rel);
        if racy {
            map.remove(key.as_ref());
        } else {
            map.insert(key.into_owned(), Entry { meta, digest });
        }
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mtime_ns: i64) -> FileMeta {
        FileMeta { size: 3, mtime_ns, ino: 7, executable: false }
    }

    #[test]
    fn remembers_old_files_and_forgets_racy_ones() {
        let cache = StatCache::default();
        let d = Digest::of_bytes(b"abc");
        cache.remember("old", meta(1_000_000_000), d);
        assert_eq!(cache.lookup("old", &meta(1_000_000_000)), Some(d));
        assert_eq!(cache.lookup("old", &meta(2_000_000_000)), None, "a new mtime misses");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after epoch").as_nanos();
        let fresh = meta(i64::try_from(now).expect("fits"));
        cache.remember("new", fresh, d);
        assert_eq!(cache.lookup("new", &fresh), None, "racy entries are not trusted");
    }

    #[test]
    fn names_that_are_not_utf8_have_entries_of_their_own_on_disk_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stat.bin");
        let ff = rel_path::escape(b"bad\xff.c").into_owned();
        let fe = rel_path::escape(b"bad\xfe.c").into_owned();
        let cache = StatCache::default();
        cache.remember(&ff, meta(5), Digest::of_bytes(b"ff"));
        cache.remember(&fe, meta(5), Digest::of_bytes(b"fe"));
        cache.save(dir.path(), &path).expect("saved");
        let loaded = StatCache::load(&path);
        assert_eq!(loaded.lookup(&ff, &meta(5)), Some(Digest::of_bytes(b"ff")));
        assert_eq!(loaded.lookup(&fe, &meta(5)), Some(Digest::of_bytes(b"fe")));
        let keys: Vec<Vec<u8>> = loaded.map().lock().expect("lock").keys().cloned().collect();
        assert!(keys.contains(&b"bad\xff.c".to_vec()), "keyed by the raw bytes: {keys:?}");
    }

    #[test]
    fn a_file_written_with_string_keys_still_loads() {
        #[derive(Serialize)]
        struct Before {
            format: u32,
            entries: Vec<(String, Entry)>,
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stat.bin");
        let entry = Entry { meta: meta(5), digest: Digest::of_bytes(b"a") };
        let bytes = postcard::to_stdvec(&Before { format: FORMAT, entries: vec![("src/a.c".into(), entry)] });
        std::fs::write(&path, bytes.expect("encodes")).expect("write");
        assert_eq!(StatCache::load(&path).lookup("src/a.c", &meta(5)), Some(Digest::of_bytes(b"a")));
    }

    #[test]
    fn survives_a_round_trip_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stat.bin");
        let cache = StatCache::default();
        cache.remember("a", meta(5), Digest::of_bytes(b"a"));
        cache.save(dir.path(), &path).expect("saved");
        let loaded = StatCache::load(&path);
        assert_eq!(loaded.lookup("a", &meta(5)), Some(Digest::of_bytes(b"a")));
        std::fs::write(&path, b"garbage").expect("write");
        assert_eq!(StatCache::load(&path).lookup("a", &meta(5)), None);
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn entry() -> impl Strategy<Value = (Vec<u8>, Entry)> {
            ("\\PC{0,8}", any::<u64>(), any::<i64>(), any::<u64>(), any::<bool>(), any::<[u8; 32]>()).prop_map(
                |(path, size, mtime_ns, ino, executable, digest)| {
                    let path: String = path;
                    (
                        path.into_bytes(),
                        Entry { meta: FileMeta { size, mtime_ns, ino, executable }, digest: Digest(digest) },
                    )
                },
            )
        }

        /// Reads `bytes` as the stat cache file and uses it: a lookup, a new entry, a save.
        fn use_file(bytes: &[u8]) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("stat.bin");
            std::fs::write(&path, bytes).expect("write");
            let cache = StatCache::load(&path);
            let _ = cache.lookup("a", &FileMeta { size: 1, mtime_ns: 1, ino: 1, executable: false });
            cache.remember("b", FileMeta { size: 2, mtime_ns: 2, ino: 2, executable: true }, Digest::of_bytes(b"b"));
            cache.save(dir.path(), &path).expect("saves");
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn random_bytes_are_an_empty_cache(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                use_file(&bytes);
            }

            /// A valid file with bytes replaced or the end cut off (a full disk, say).
            #[test]
            fn damaged_files_never_panic(
                entries in prop::collection::vec(entry(), 0..6),
                edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut bytes = postcard::to_stdvec(&OnDisk { format: FORMAT, entries }).expect("serializes");
                for (at, byte) in edits {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                use_file(&bytes);
            }
        }
    }
}
