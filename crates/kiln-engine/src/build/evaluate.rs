//! Evaluating a target: the facts its verdict needs — the fingerprint of its inputs'
//! metadata, their hashes (through the stat cache, so an unchanged input costs a `stat`, not
//! a read), its key, the cache's records, its outputs on disk — then the verdict of
//! [`crate::build::decide`] (fresh, cached, or a run, with the reason) carried out. Image
//! targets ask the container engine whether it has the image of the key.

use std::time::{Instant, SystemTime};

use kiln_config::{ImageSpec, Target, TargetKind};

use crate::build::build_ctx::{Ctx, Done, Evaluation, RunRequest, Track, failed, image_digest};
use crate::build::build_options::PlanAction;
use crate::build::decide::{self, Verdict};
use crate::build::restore_outputs::restore;
use crate::build::target_inputs::{hash_inputs, image_inputs};
use crate::build::target_record::{Produced, outputs_fingerprint, record_for};
use crate::cache::action_record::OutputFile;
use crate::cache::digest::Digest;
use crate::cache::fingerprint::fingerprint;
use crate::cache::manifest::{Manifest, summarize};
use crate::cache::state::TargetRecord;
use crate::cache::store::current_digest;
use crate::container::engine::image_tag;
use crate::event::TargetStatus;
use crate::event::timestamp::rfc3339;
use crate::fs::file_index::FileIndex;
use crate::fs::file_meta::FileMeta;
use crate::fs::rel_path;
use crate::graph::target_graph::TargetId;

/// Decides what a target needs: fresh, a restore from the cache, or a run.
pub(crate) fn evaluate(ctx: &Ctx, id: TargetId, deps: &[(String, Option<Digest>)], refresh: bool) -> Evaluation {
    let target = ctx.target(id);
    let root = &ctx.config.root;
    let hashing = Instant::now();
    if let Some((dep, _)) = deps.iter().find(|(_, d)| d.is_none()) {
        return Evaluation::Plan {
            action: PlanAction::Run,
            reason: format!("dependency {dep} would be rebuilt"),
            digest: None,
        };
    }
    let mut manifest = Manifest::for_target(target, &ctx.config.env);
    manifest.deps = deps.iter().map(|(n, d)| (n.clone(), d.expect("checked above"))).collect();
    let rescanned;
    let index = if refresh {
        rescanned = FileIndex::scan_small(root, ctx.inputs[id].iter().map(|p| p.prefix.clone()), true);
        &rescanned
    } else {
        &ctx.index
    };
    // A directory the inputs may be in that cannot be read: building without what it holds
    // would be building something else.
    if let Some(unreadable) = index.unreadable_in(&ctx.inputs[id], &ctx.outputs[id]) {
        return failed(unreadable.message("input"), None);
    }
    let files = index.select(&ctx.inputs[id], &ctx.outputs[id]);
    if let TargetKind::Image(spec) = &target.kind {
        return evaluate_image(ctx, target, spec, manifest, &files, hashing);
    }
    let name = &target.name;
    let prev = ctx.prev.targets.get(name);
    let inputs_meta = fingerprint(files.iter().map(|e| (e.0.as_str(), &e.1)));

    // Fast path: inputs' metadata and outputs' metadata exactly as recorded, and the deps'
    // outputs unchanged, so the key is the recorded one without reading any content.
    let forced = ctx.force.contains(name);
    if let Some(p) = prev
        && !forced
        && inputs_meta.is_some()
        && p.inputs_meta == inputs_meta
        && let Some(inputs_digest) = p.inputs_digest
        && manifest.key_with(&inputs_digest) == p.key
        && p.outputs_meta.is_some()
        && outputs_fingerprint(root, &p.outputs) == p.outputs_meta
    {
        ctx.span(name, "hash", Track::Worker, hashing);
        let done = Done {
            record: Some(p.clone()),
            status: TargetStatus::Fresh,
            reason: "up to date".into(),
            key: Some(p.key),
            log: None,
        };
        return plan_or(ctx, done, PlanAction::Fresh);
    }

    // The previous build's manifest: the reason for a rebuild is the difference from it, and
    // while the inputs' metadata is unchanged its per-file digests are still true.
    let looking = Instant::now();
    let previous = prev.and_then(|p| ctx.cache.lookup(&p.key));
    ctx.span(name, "lookup", Track::Worker, looking);
    let reusable = previous.as_ref().filter(|old| {
        inputs_meta.is_some()
            && prev.is_some_and(|p| p.inputs_meta == inputs_meta)
            && old.manifest.inputs.len() == files.len()
            && old.manifest.inputs.iter().zip(&files).all(|((a, _), b)| *a == b.0)
    });
    match reusable {
        Some(old) => manifest.inputs = old.manifest.inputs.clone(),
        None => {
            if let Err(reason) = hash_inputs(root, &ctx.stat, &files, &mut manifest) {
                return failed(reason, None);
            }
        }
    }
    let key = manifest.key();
    ctx.span(name, "hash", Track::Worker, hashing);
    if forced {
        return run_or_plan(ctx, RunRequest { manifest, reason: "triggered".into(), inputs_meta });
    }

    if let Some(prev) = prev.filter(|p| p.key == key) {
        let damaged: Vec<&OutputFile> =
            prev.outputs.iter().filter(|o| current_digest(root, &o.path, &ctx.stat) != Some(o.digest)).collect();
        let damage = (!damaged.is_empty()).then(|| describe_damage(&damaged, root));
        let request = RunRequest { manifest, reason: String::new(), inputs_meta };
        if damage.is_some() && target.cache {
            // Its outputs are not as built: the cache is asked for them.
            ctx.looked_up(id, previous.is_some());
        }
        return match decide::same_key(damage, target.cache, previous.is_some()) {
            Verdict::Fresh => {
                let produced = Produced {
                    output_digest: prev.output_digest,
                    outputs: prev.outputs.clone(),
                    duration_ms: prev.duration_ms,
                    at: prev.finished_at.clone(),
                    reason: prev.reason.clone(),
                };
                let record = record_for(root, &request.manifest, produced, inputs_meta);
                let reason = "up to date".into();
                let done =
                    Done { record: Some(record), status: TargetStatus::Fresh, reason, key: Some(key), log: None };
                plan_or(ctx, done, PlanAction::Fresh)
            }
            Verdict::Run(reason) => run_or_plan(ctx, RunRequest { reason, ..request }),
            Verdict::Restore(what) if ctx.dry_run => Evaluation::Plan {
                action: PlanAction::Restore,
                reason: format!("{what}; would restore from cache"),
                digest: Some(prev.output_digest),
            },
            Verdict::Restore(what) => {
                restore(ctx, id, request, prev.output_digest, prev.outputs.clone(), prev.duration_ms, what)
            }
        };
    }

    let summary = previous.as_ref().map(|old| summarize(&manifest.changes_since(&old.manifest)));
    let reason = decide::change_reason(prev.is_some(), summary);
    let looking = Instant::now();
    let hit = if target.cache { ctx.cache.lookup(&key) } else { None };
    ctx.span(name, "lookup", Track::Worker, looking);
    if target.cache {
        ctx.looked_up(id, hit.is_some());
    }
    let request = RunRequest { manifest, reason: String::new(), inputs_meta };
    // A new key: restored when the cache has outputs for it (an earlier build of the same
    // content), run otherwise, with what changed as the reason either way.
    match hit {
        Some(rec) if ctx.dry_run => Evaluation::Plan {
            action: PlanAction::Restore,
            reason: format!("{reason}; would restore from cache"),
            digest: Some(rec.output_digest),
        },
        Some(rec) => {
            let request = RunRequest { reason: reason.clone(), ..request };
            restore(ctx, id, request, rec.output_digest, rec.outputs, rec.duration_ms, reason)
        }
        None => run_or_plan(ctx, RunRequest { reason, ..request }),
    }
}

/// Decides what an image target needs. Its inputs are its build context (after the ignore
/// file), its Containerfile and any declared inputs outside the context; it is `fresh` when
/// the engine still has the image tagged with its key, `cached` when the engine has the tag
/// of a new key (an earlier build of the same content), and runs otherwise.
pub(crate) fn evaluate_image(
    ctx: &Ctx,
    target: &Target,
    spec: &ImageSpec,
    mut manifest: Manifest,
    declared: &[&(String, FileMeta)],
    hashing: Instant,
) -> Evaluation {
    let root = &ctx.config.root;
    let name = &target.name;
    let files = match image_inputs(root, spec, declared) {
        Ok(files) => files,
        Err(why) => return failed(why, None),
    };
    let refs: Vec<&(String, FileMeta)> = files.iter().collect();
    let inputs_meta = fingerprint(files.iter().map(|e| (e.0.as_str(), &e.1)));
    let prev = ctx.prev.targets.get(name);
    let forced = ctx.force.contains(name);

    // While the context's metadata is as recorded, its content digest is the recorded one.
    let reused = prev.and_then(|p| {
        let digest = p.inputs_digest?;
        (inputs_meta.is_some() && p.inputs_meta == inputs_meta && manifest.key_with(&digest) == p.key).then_some(digest)
    });
    let inputs_digest = match reused {
        Some(d) => d,
        None => {
            if let Err(reason) = hash_inputs(root, &ctx.stat, &refs, &mut manifest) {
                return failed(reason, None);
            }
            manifest.inputs_digest()
        }
    };
    let key = manifest.key_with(&inputs_digest);
    ctx.span(name, "hash", Track::Worker, hashing);
    let engine = match ctx.engine() {
        Ok(engine) => engine,
        Err(why) => return failed(why, Some(key)),
    };
    let tag = image_tag(spec, &key);
    let same_key = prev.is_some_and(|p| p.key == key);
    // Only a key this project built before can have its tag in the engine (the cache keeps
    // the record of every build): a new key goes straight to the build, without asking.
    // The tag is looked up on its own (listing every image costs podman seconds once it has
    // a few dozen); one that cannot be found counts as absent, and building it is correct.
    let known = same_key || ctx.cache.lookup(&key).is_some();
    let existing = if known { engine.image_id(&tag).ok().map(|id| image_digest(&id)) } else { None };
    let fresh_image = same_key && existing.is_some();
    if !forced
        && !fresh_image
        && let Some(id) = ctx.graph.id(name)
    {
        // A new key (or an image gone from the engine): is an earlier build's image there?
        ctx.looked_up(id, existing.is_some());
    }
    let why = || -> String {
        match prev {
            None => "no previous build".to_string(),
            Some(p) => match ctx.cache.lookup(&p.key) {
                Some(old) if !manifest.inputs.is_empty() || old.manifest.inputs.is_empty() => {
                    summarize(&manifest.changes_since(&old.manifest))
                }
                _ => "inputs or definition changed".to_string(),
            },
        }
    };
    if let Some(output_digest) = existing.filter(|_| !forced) {
        let (status, reason, at) = match prev.filter(|_| same_key) {
            Some(p) => (TargetStatus::Fresh, "up to date".to_string(), p.finished_at.clone()),
            None => (
                TargetStatus::Cached,
                format!("{}; {} already has image {tag}", why(), engine.name()),
                rfc3339(SystemTime::now()),
            ),
        };
        if status == TargetStatus::Cached && !ctx.dry_run {
            // Its manifest, for the reasons and `explain` of the next change.
            let _ = ctx.cache.store_record(name, &manifest, output_digest, None, 0);
        }
        let record = TargetRecord {
            key,
            output_digest,
            outputs: Vec::new(),
            duration_ms: prev.map_or(0, |p| p.duration_ms),
            finished_at: at,
            reason: if status == TargetStatus::Fresh {
                prev.map_or_else(String::new, |p| p.reason.clone())
            } else {
                reason.clone()
            },
            inputs_meta,
            inputs_digest: Some(inputs_digest),
            outputs_meta: fingerprint(std::iter::empty()),
            image: Some(tag),
        };
        let done = Done { record: Some(record), status, reason, key: Some(key), log: None };
        let action = if status == TargetStatus::Fresh { PlanAction::Fresh } else { PlanAction::Restore };
        return plan_or(ctx, done, action);
    }
    let reason = if forced {
        "triggered".to_string()
    } else if same_key {
        format!("image {tag} is no longer in {}", engine.name())
    } else {
        why()
    };
    if reused.is_some()
        && let Err(reason) = hash_inputs(root, &ctx.stat, &refs, &mut manifest)
    {
        return failed(reason, Some(key));
    }
    run_or_plan(ctx, RunRequest { manifest, reason, inputs_meta })
}

pub(crate) fn run_or_plan(ctx: &Ctx, request: RunRequest) -> Evaluation {
    if ctx.dry_run {
        return Evaluation::Plan { action: PlanAction::Run, reason: request.reason, digest: None };
    }
    Evaluation::Run(request)
}

pub(crate) fn plan_or(ctx: &Ctx, done: Done, action: PlanAction) -> Evaluation {
    if ctx.dry_run {
        let digest = done.record.as_ref().map(|r| r.output_digest);
        return Evaluation::Plan { action, reason: done.reason, digest };
    }
    Evaluation::Done(done)
}

pub(crate) fn describe_damage(damaged: &[&OutputFile], root: &std::path::Path) -> String {
    let first = damaged[0];
    let how = if std::fs::symlink_metadata(rel_path::under(root, &first.path)).is_ok() {
        "was modified"
    } else {
        "is missing"
    };
    let shown = rel_path::display(&first.path);
    match damaged.len() {
        1 => format!("output {shown} {how}"),
        n => format!("output {shown} {how} (and {} more)", n - 1),
    }
}
