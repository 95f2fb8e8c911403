//! Restoring a cache entry's outputs (every byte verified) and its log.
//!
//! A restore never blocks a build: an entry that names a path outside the target's declared
//! outputs is discarded before anything is written, and any restore that fails (a damaged
//! or unreadable blob, a link leaving the project, a destination that cannot be written)
//! becomes a run of the command, with a warning naming the target and the path.

use std::time::Instant;

use crate::build::build_ctx::{Ctx, Done, Evaluation, RunRequest, Track};
use crate::build::target_record::{Produced, record_for};
use crate::cache::action_record::OutputFile;
use crate::cache::digest::Digest;
use crate::cache::restore::is_plain;
use crate::event::{Event, NoticeLevel, Stream, TargetStatus};
use crate::graph::target_graph::TargetId;

/// Restores a cache entry's outputs; an entry that cannot be restored is reported and the
/// target runs instead.
pub(crate) fn restore(
    ctx: &Ctx,
    id: TargetId,
    request: RunRequest,
    output_digest: Digest,
    outputs: Vec<OutputFile>,
    duration_ms: u64,
    why: String,
) -> Evaluation {
    let name = ctx.graph.name(id);
    let key = request.manifest.key();
    let warn = |message: String| ctx.bus.publish(Event::Notice { level: NoticeLevel::Warning, message });
    let declared = &ctx.outputs[id];
    // (A path that is not even plain, absolute or with `..`, is refused as such by the
    // cache's own check of the record.)
    if let Some(out) = outputs.iter().find(|o| is_plain(&o.path) && !declared.iter().any(|p| p.matches(&o.path))) {
        ctx.cache.discard_entry(&key);
        let list: Vec<String> = declared.iter().map(|p| format!("`{}`", p.text)).collect();
        let list = if list.is_empty() { "none".to_string() } else { list.join(", ") };
        warn(format!(
            "{name}: cache entry names `{}`, which is not under its declared outputs ({list}); it was discarded; rebuilding",
            out.path
        ));
        return Evaluation::Run(RunRequest { reason: format!("{why}; the cache entry was discarded"), ..request });
    }
    let restoring = Instant::now();
    let restored = ctx.cache.restore(&key, &outputs, &ctx.stat);
    ctx.span(name, "restore", Track::Worker, restoring);
    match restored {
        Ok(written) => {
            ctx.cache.touch(&key);
            let (status, reason) = if outputs.is_empty() {
                (TargetStatus::Cached, format!("{why}; succeeded before with this key (no outputs to restore)"))
            } else if written == 0 {
                (TargetStatus::Fresh, format!("{why}; outputs already match the cache"))
            } else {
                let files = if written == 1 { "1 file".to_string() } else { format!("{written} files") };
                (TargetStatus::Cached, format!("{why}; restored {files} from cache"))
            };
            restore_log(ctx, name, &key);
            let root = &ctx.config.root;
            let produced = Produced::now(output_digest, outputs, duration_ms, &reason);
            let record = record_for(root, &request.manifest, produced, request.inputs_meta);
            Evaluation::Done(Done { record: Some(record), status, reason, key: Some(key), log: None })
        }
        Err(e) => {
            warn(format!("{name}: {e}; rebuilding"));
            let what = if e.discards_entry() { "was discarded" } else { "could not be restored" };
            Evaluation::Run(RunRequest { reason: format!("{why}; the cache entry {what}"), ..request })
        }
    }
}

/// Puts the output stored with a cache entry where `kiln logs` finds it, and replays it as
/// events when asked (`--verbose`).
pub(crate) fn restore_log(ctx: &Ctx, name: &str, key: &Digest) {
    let path = ctx.layout.log(name);
    let text = ctx.cache.lookup(key).and_then(|r| r.log).and_then(|d| ctx.cache.get_bytes(&d));
    // Without a usable `.kiln/logs` (reported once when the run started) there is nothing
    // to keep or remove.
    if ctx.logs_kept {
        match &text {
            Some(bytes) => {
                if let Err(e) = crate::fs::atomic_write::write(&ctx.layout.kiln, &path, bytes) {
                    let shown = crate::fs::no_follow::shown(&ctx.layout.kiln, &path);
                    ctx.bus.publish(Event::Notice {
                        level: NoticeLevel::Warning,
                        message: format!("{name}: cannot keep the output of its cached run in {shown}: {e}"),
                    });
                }
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if ctx.replay_logs {
        for line in String::from_utf8_lossy(text.as_deref().unwrap_or_default()).lines() {
            ctx.bus.publish(Event::TargetOutput {
                target: name.to_string(),
                stream: Stream::Stdout,
                line: line.to_string(),
                replayed: true,
            });
        }
    }
}
