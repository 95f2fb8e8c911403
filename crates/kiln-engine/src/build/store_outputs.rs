//! Storing what a successful command produced: declared outputs into the cache (or an
//! image's ID as its output digest), and the record of the build.
//!
//! A cache that cannot take the outputs (read-only, full, off) never fails the build: the
//! outputs are recorded in the state as usual, with the same digests, and a warning says
//! they were not cached.

use crate::build::build_ctx::{Ctx, image_digest};
use crate::build::target_record::{Produced, record_for};
use crate::cache::action_record::{OutputFile, link_digest, output_digest};
use crate::cache::digest::Digest;
use crate::cache::manifest::Manifest;
use crate::cache::state::TargetRecord;
use crate::container::engine::Engine;
use crate::event::{Event, NoticeLevel};
use crate::fs::file_index::FileIndex;
use crate::fs::output_entry::OutputEntry;
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
    // Read without following a link planted under its name (the ID is checked below).
    let written = crate::fs::no_follow::read_regular(&iidfile)
        .ok()
        .map(|t| String::from_utf8_lossy(&t).trim().trim_start_matches("sha256:").to_string());
    let _ = std::fs::remove_file(&iidfile);
    let image_id = match written.filter(|id| id.len() == 64) {
        Some(id) => id,
        None => engine.image_id(&tag).map_err(|e| format!("the build succeeded but the image is not there: {e}"))?,
    };
    let output_digest = image_digest(&image_id);
    if ctx.cache.is_on()
        && let Err(e) = ctx.cache.store_record(ctx.graph.name(id), manifest, output_digest, Some(log), duration_ms)
    {
        not_cached(ctx, id, &e.to_string());
    }
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
    // A directory the outputs are in that cannot be read fails the target (naming it)
    // instead of leaving its files out of the record.
    let index = FileIndex::scan_small(root, patterns.iter().map(|p| p.prefix.clone()), false);
    if let Some(unreadable) = index.unreadable_in(patterns, &[]) {
        return Err(format!(
            "the command succeeded but its outputs cannot be listed: {}",
            unreadable.message("output")
        ));
    }
    let files = OutputEntry::list(root, patterns);
    if let Some(missing) = patterns.iter().find(|p| !files.iter().any(|f| p.matches(&f.path))) {
        return Err(format!("the command succeeded but did not write declared output `{}`", missing.text));
    }
    let stored = if target.cache && ctx.cache.is_on() {
        match ctx.cache.store(&target.name, manifest, &files, Some(log), duration_ms, &ctx.stat) {
            Ok(rec) => Some((rec.output_digest, rec.outputs)),
            Err(e) => {
                not_cached(ctx, id, &e.to_string());
                None
            }
        }
    } else {
        None
    };
    let (output_digest, outputs) = match stored {
        Some(stored) => stored,
        None => {
            let mut outputs = Vec::with_capacity(files.len());
            for entry in &files {
                outputs.push(uncached(ctx, entry)?);
            }
            (output_digest(&manifest.key(), &outputs), outputs)
        }
    };
    Ok(record_for(root, manifest, Produced::now(output_digest, outputs, duration_ms, reason), inputs_meta))
}

/// An output as the state records it when it is not in the cache: the same digest the cache
/// would give it.
fn uncached(ctx: &Ctx, entry: &OutputEntry) -> Result<OutputFile, String> {
    let path = &entry.path;
    Ok(match &entry.link {
        Some(target) => {
            use std::os::unix::ffi::OsStrExt;
            let text = target.to_str().map(str::to_string);
            let bytes = target.as_os_str().as_bytes();
            OutputFile {
                path: path.clone(),
                digest: link_digest(bytes),
                size: bytes.len() as u64,
                executable: false,
                link: text,
            }
        }
        None => {
            let digest = ctx
                .stat
                .digest(&ctx.config.root, path, &entry.meta)
                .map_err(|e| format!("cannot read output {}: {e}", crate::fs::rel_path::display(path)))?;
            OutputFile {
                path: path.clone(),
                digest,
                size: entry.meta.size,
                executable: entry.meta.executable,
                link: None,
            }
        }
    })
}

/// Says that a target's outputs were built but could not be cached.
fn not_cached(ctx: &Ctx, id: TargetId, why: &str) {
    ctx.bus.publish(Event::Notice {
        level: NoticeLevel::Warning,
        message: format!("{}: outputs were not cached ({why}); the build goes on", ctx.graph.name(id)),
    });
}
