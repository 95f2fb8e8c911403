//! Storing what a successful command produced: declared outputs into the cache (or an
//! image's ID as its output digest), and the record of the build.

use crate::build::build_ctx::{Ctx, image_digest};
use crate::build::target_record::{Produced, record_for};
use crate::cache::action_record::{OutputFile, output_digest};
use crate::cache::digest::Digest;
use crate::cache::manifest::Manifest;
use crate::cache::state::TargetRecord;
use crate::container::engine::Engine;
use crate::fs::file_index::FileIndex;
use crate::fs::file_meta::FileMeta;
use crate::graph::target_graph::TargetId;

/// A command that succeeded, as its results are recorded.
pub(crate) struct Ran<'a> {
    pub(crate) manifest: &'a Manifest,
    pub(crate) inputs_meta: Option<Digest>,
    pub(crate) log: &'a [u8],
    pub(crate) duration_ms: u64,
    pub(crate) reason: &'a str,
}

/// Records a built image: its ID is the target's output digest, and the action record
/// (the manifest and the build's output) goes to the cache for `explain` and `logs`.
pub(crate) fn store_image(
    ctx: &Ctx,
    id: TargetId,
    engine: &Engine,
    tag: String,
    ran: &Ran,
) -> Result<TargetRecord, String> {
    let Ran { manifest, inputs_meta, log, duration_ms, reason } = *ran;
    // The build wrote the image ID; asking the engine costs another process.
    let iidfile = ctx.layout.state().join(format!("{}.iid", ctx.graph.name(id)));
    let written = std::fs::read_to_string(&iidfile).ok().map(|t| t.trim().trim_start_matches("sha256:").to_string());
    let _ = std::fs::remove_file(&iidfile);
    let image_id = match written.filter(|id| id.len() == 64) {
        Some(id) => id,
        None => engine.image_id(&tag).map_err(|e| format!("the build succeeded but the image is not there: {e}"))?,
    };
    let output_digest = image_digest(&image_id);
    ctx.cache
        .store_record(ctx.graph.name(id), manifest, output_digest, Some(log), duration_ms)
        .map_err(|e| format!("cannot record the build in the cache: {e}"))?;
    let produced = Produced::now(output_digest, Vec::new(), duration_ms, reason);
    let mut record = record_for(&ctx.config.root, manifest, produced, inputs_meta);
    record.image = Some(tag);
    Ok(record)
}

/// Lists the declared outputs, checks each was written, stores them in the cache.
pub(crate) fn collect_and_store(ctx: &Ctx, id: TargetId, ran: &Ran) -> Result<TargetRecord, String> {
    let Ran { manifest, inputs_meta, log, duration_ms, reason } = *ran;
    let target = ctx.target(id);
    let root = &ctx.config.root;
    let patterns = &ctx.outputs[id];
    let index = FileIndex::scan_small(root, patterns.iter().map(|p| p.prefix.clone()), false);
    if let Some(unreadable) = index.unreadable_in(patterns, &[]) {
        return Err(format!(
            "the command succeeded but its outputs cannot be listed: {}",
            unreadable.message("output")
        ));
    }
    let files: Vec<(String, FileMeta)> = index.select(patterns, &[]).into_iter().cloned().collect();
    if let Some(missing) = patterns.iter().find(|p| !files.iter().any(|(f, _)| p.matches(f))) {
        return Err(format!("the command succeeded but did not write declared output `{}`", missing.text));
    }
    let (output_digest, outputs) = if target.cache {
        let rec = ctx
            .cache
            .store(&target.name, manifest, &files, Some(log), duration_ms, &ctx.stat)
            .map_err(|e| format!("cannot store outputs in the cache: {e}"))?;
        (rec.output_digest, rec.outputs)
    } else {
        let mut outputs = Vec::new();
        for (path, meta) in &files {
            let digest = ctx
                .stat
                .digest(root, path, meta)
                .map_err(|e| format!("cannot read output {}: {e}", crate::fs::rel_path::display(path)))?;
            outputs.push(OutputFile { path: path.clone(), digest, size: meta.size, executable: meta.executable });
        }
        (output_digest(&manifest.key(), &outputs), outputs)
    };
    Ok(record_for(root, manifest, Produced::now(output_digest, outputs, duration_ms, reason), inputs_meta))
}
