//! Restoring a cache entry's outputs (every byte verified) and its log.

use std::time::Instant;

use crate::build::build_ctx::{Ctx, Done, Evaluation, RunRequest, Track, failed};
use crate::build::target_record::{Produced, record_for};
use crate::cache::action_record::OutputFile;
use crate::cache::cache_error::CacheError;
use crate::cache::digest::Digest;
use crate::event::{Event, NoticeLevel, Stream, TargetStatus};

/// Restores a cache entry's outputs; a corrupt entry is reported and the target runs
/// instead.
pub(crate) fn restore(
    ctx: &Ctx,
    name: &str,
    request: RunRequest,
    output_digest: Digest,
    outputs: Vec<OutputFile>,
    duration_ms: u64,
    why: String,
) -> Evaluation {
    let key = request.manifest.key();
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
        Err(e @ (CacheError::Corrupt { .. } | CacheError::Missing { .. })) => {
            ctx.bus.publish(Event::Notice { level: NoticeLevel::Warning, message: format!("{name}: {e}; rebuilding") });
            Evaluation::Run(RunRequest { reason: format!("{why}; the cache entry was damaged"), ..request })
        }
        Err(e) => failed(format!("cannot restore from cache: {e}"), Some(key)),
    }
}

/// Puts the output stored with a cache entry where `kiln logs` finds it, and replays it as
/// events when asked (`--verbose`).
pub(crate) fn restore_log(ctx: &Ctx, name: &str, key: &Digest) {
    let path = ctx.layout.log(name);
    let text = ctx.cache.lookup(key).and_then(|r| r.log).and_then(|d| ctx.cache.get_bytes(&d));
    match &text {
        Some(bytes) => {
            let _ = crate::fs::atomic_write::write(&path, bytes);
        }
        None => {
            let _ = std::fs::remove_file(&path);
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
