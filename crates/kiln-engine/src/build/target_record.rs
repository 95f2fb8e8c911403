//! The state record of a target whose outputs are intact: what `fresh` is checked against
//! next time.

use std::time::SystemTime;

use crate::cache::action_record::OutputFile;
use crate::cache::digest::Digest;
use crate::cache::fingerprint::fingerprint;
use crate::cache::manifest::Manifest;
use crate::cache::state::TargetRecord;
use crate::event::timestamp::rfc3339;
use crate::fs::file_meta::FileMeta;

/// The fingerprint of recorded outputs as they are on disk now (`None` if one is missing, or
/// is no longer what was recorded: a file, or a symbolic link).
pub(crate) fn outputs_fingerprint(root: &std::path::Path, outputs: &[OutputFile]) -> Option<Digest> {
    let metas: Option<Vec<FileMeta>> = outputs
        .iter()
        .map(|o| {
            std::fs::symlink_metadata(crate::fs::rel_path::under(root, &o.path))
                .ok()
                .filter(|m| if o.link.is_some() { m.file_type().is_symlink() } else { m.is_file() })
                .map(|m| FileMeta::of(&m))
        })
        .collect();
    let metas = metas?;
    fingerprint(outputs.iter().zip(&metas).map(|(o, m)| (o.path.as_str(), m)))
}

/// The state record of a target whose outputs are now intact on disk.
pub(crate) fn record_for(
    root: &std::path::Path,
    manifest: &Manifest,
    produced: Produced,
    inputs_meta: Option<Digest>,
) -> TargetRecord {
    TargetRecord {
        key: manifest.key(),
        output_digest: produced.output_digest,
        outputs_meta: outputs_fingerprint(root, &produced.outputs),
        outputs: produced.outputs,
        duration_ms: produced.duration_ms,
        finished_at: produced.at,
        reason: produced.reason,
        inputs_meta,
        inputs_digest: Some(manifest.inputs_digest()),
        image: None,
    }
}

/// Outputs as produced by a run or a restore: what they are, how long the command took,
/// when and why.
pub(crate) struct Produced {
    pub(crate) output_digest: Digest,
    pub(crate) outputs: Vec<OutputFile>,
    pub(crate) duration_ms: u64,
    pub(crate) at: String,
    pub(crate) reason: String,
}

impl Produced {
    pub(crate) fn now(output_digest: Digest, outputs: Vec<OutputFile>, duration_ms: u64, reason: &str) -> Produced {
        Produced { output_digest, outputs, duration_ms, at: rfc3339(SystemTime::now()), reason: reason.to_string() }
    }
}
