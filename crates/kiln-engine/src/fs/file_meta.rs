//! A file's metadata as kiln compares it (size, mtime, inode, executable bit), and when that
//! metadata cannot vouch for the content (the "racy" window after a write).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the stat cache compares to decide whether a file must be hashed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileMeta {
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
    pub executable: bool,
}

impl FileMeta {
    pub fn of(meta: &std::fs::Metadata) -> FileMeta {
        use std::os::unix::fs::MetadataExt;
        FileMeta {
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
            ino: meta.ino(),
            executable: meta.mode() & 0o111 != 0,
        }
    }
}

const RACY_WINDOW: Duration = Duration::from_millis(50);

/// Whether a file with this metadata was modified too recently for its metadata to vouch for
/// its content: another write within the same mtime tick would leave the metadata equal.
pub fn is_racy(meta: &FileMeta) -> bool {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_ns = i64::try_from(now.as_nanos()).unwrap_or(i64::MAX);
    meta.mtime_ns >= now_ns - i64::try_from(RACY_WINDOW.as_nanos()).unwrap_or(0)
}
