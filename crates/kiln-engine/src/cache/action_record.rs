//! What the cache records for a key: the outputs (path, digest, size, mode; or, for a
//! symbolic link, its target text), the manifest that produced them and the log, and the
//! output digest dependents see.

use serde::{Deserialize, Serialize};

use crate::cache::digest::{Digest, DigestBuilder};
use crate::cache::manifest::Manifest;

/// One output file of a target, as recorded in the cache and in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Root-relative, escaped (see [`crate::fs::rel_path`]).
    pub path: String,
    /// The content's digest; for a symbolic link, [`link_digest`] of its target text.
    pub digest: Digest,
    pub size: u64,
    pub executable: bool,
    /// A symbolic link: its target as written, stored and restored as is (never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
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

/// The digest standing for a symbolic link with this target text (never a file's digest:
/// the domain differs).
pub fn link_digest(target: &[u8]) -> Digest {
    DigestBuilder::new("kiln symlink v1").bytes(target).finish()
}

/// The digest that stands for a set of outputs (or, without outputs, for the key itself).
pub fn output_digest(key: &Digest, outputs: &[OutputFile]) -> Digest {
    if outputs.is_empty() {
        return *key;
    }
    let mut b = DigestBuilder::new("kiln outputs v1");
    for o in outputs {
        b.bytes(&crate::fs::rel_path::raw(&o.path)).digest(&o.digest).bytes(&[u8::from(o.executable)]);
    }
    b.finish()
}
