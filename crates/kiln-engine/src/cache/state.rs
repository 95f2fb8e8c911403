//! `.kiln/state/targets.json`: what each target's last successful build produced, so the
//! next run (or a restart of `kiln up`) knows what is already up to date.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::action_record::OutputFile;
use crate::cache::digest::Digest;
use crate::fs::no_follow::read_regular;

/// The last successful build of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub key: Digest,
    pub output_digest: Digest,
    pub outputs: Vec<OutputFile>,
    /// How long the command took when it last ran (not restores).
    pub duration_ms: u64,
    /// RFC 3339 time the outputs were produced (built or restored).
    pub finished_at: String,
    /// Why they were produced then: the reason the target last ran or was restored.
    #[serde(default)]
    pub reason: String,
    /// Fingerprint of the input files' paths and metadata when the key was computed. While
    /// it still matches, the inputs' content is known without hashing or a stat-cache lookup.
    #[serde(default)]
    pub inputs_meta: Option<Digest>,
    /// The digest of the inputs' (path, content digest) list that went into the key.
    #[serde(default)]
    pub inputs_digest: Option<Digest>,
    /// Fingerprint of the outputs' paths and metadata once they were known to be intact.
    #[serde(default)]
    pub outputs_meta: Option<Digest>,
    /// For an image target: the image built, `NAME:kiln-<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Per-target records of the project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub targets: BTreeMap<String, TargetRecord>,
}

impl State {
    /// Loads the state; a missing or unreadable file (a symbolic link, a FIFO, which are
    /// neither followed nor waited on) is an empty state.
    pub fn load(path: &Path) -> State {
        read_regular(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Saves the state at `path` inside `kiln` (`.kiln`), atomically and never through a
    /// symbolic link.
    pub fn save(&self, kiln: &Path, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).expect("state always serializes");
        crate::fs::atomic_write::write(kiln, path, &json)
    }
}
