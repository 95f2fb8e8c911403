//! The fingerprint of a list of files' metadata: equal fingerprints mean unchanged files, so
//! a target whose inputs' fingerprint matches its record needs no content read.

use crate::cache::digest::{Digest, DigestBuilder};
use crate::fs::file_meta::{FileMeta, is_racy};
use crate::fs::rel_path;

/// A digest of files' paths and metadata; `None` when any of them is racy (modified too
/// recently for metadata to vouch for content). Equal fingerprints mean unchanged files.
/// Paths are escaped (see [`crate::fs::rel_path`]); their raw bytes go in.
pub fn fingerprint<'a>(files: impl IntoIterator<Item = (&'a str, &'a FileMeta)>) -> Option<Digest> {
    let mut b = DigestBuilder::new("kiln file metadata v1");
    for (path, meta) in files {
        if is_racy(meta) {
            return None;
        }
        b.bytes(&rel_path::raw(path));
        b.bytes(&meta.size.to_le_bytes());
        b.bytes(&meta.mtime_ns.to_le_bytes());
        b.bytes(&meta.ino.to_le_bytes());
        b.bytes(&[u8::from(meta.executable)]);
    }
    Some(b.finish())
}
