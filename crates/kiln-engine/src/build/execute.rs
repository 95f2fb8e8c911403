//! Running a target's command: attempts with retries and timeout, output lines as events,
//! then storing its outputs.

use std::sync::Arc;
use std::time::Instant;

use kiln_config::TargetKind;
use tokio::sync::{mpsc, watch};

use crate::build::build_ctx::{Ctx, Done, Msg, RunRequest, Track, millis};
use crate::build::store_outputs::{Ran, collect_and_store, store_image};
use crate::container::engine::image_tag;
use crate::event::{Event, NoticeLevel, TargetStatus};
use crate::exec::command::{CommandSpec, ExecOutcome};
use crate::graph::target_graph::TargetId;

/// Runs the target's command (with retries), then collects and stores its outputs.
pub(crate) async fn execute(
    ctx: &Arc<Ctx>,
    id: TargetId,
    slot: usize,
    request: RunRequest,
    cancel: watch::Receiver<bool>,
    tx: &mpsc::UnboundedSender<Msg>,
) -> Done {
    let RunRequest { manifest, reason, inputs_meta } = request;
    let target = ctx.target(id).clone();
    let key = manifest.key();
    let log_path = ctx.layout.log(&target.name);
    let log_display = log_path.strip_prefix(&ctx.config.root).unwrap_or(&log_path).display().to_string();
    let (cmd, dir, image) = match &target.kind {
        TargetKind::Cmd(cmd) => (cmd.clone(), ctx.config.root.join(&target.dir), None),
        TargetKind::Image(spec) => match ctx.engine() {
            Ok(engine) => {
                let tag = image_tag(spec, &key);
                let iidfile = ctx.layout.state().join(format!("{}.iid", target.name));
                let _ = std::fs::remove_file(&iidfile);
                let cmd = engine.build_command(spec, &tag, &ctx.config.root, &iidfile);
                (cmd, ctx.config.root.clone(), Some((engine, tag)))
            }
            Err(reason) => {
                return Done { record: None, status: TargetStatus::Failed, reason, key: Some(key), log: None };
            }
        },
    };
    let spec = CommandSpec {
        cmd,
        dir,
        env: manifest.env.clone(),
        timeout: target.timeout,
        log: Some(log_path.clone()),
        log_limit: ctx.config.settings.log_limit,
        log_base: Some(ctx.layout.kiln.clone()),
    };
    let mut attempt = 0;
    let started = Instant::now();
    // Without a usable `.kiln/logs` (reported once when the run started), the output is not
    // kept. (The command's run unlinks the previous log, never writing through it.)
    let spec = if ctx.logs_kept { spec } else { CommandSpec { log: None, ..spec } };
    let (outcome, captured) = loop {
        attempt += 1;
        ctx.bus.publish(Event::TargetStarted { target: target.name.clone(), attempt, slot });
        let attempt_started = Instant::now();
        let (lines_tx, mut lines_rx) = crate::exec::command::line_channel();
        let bus = ctx.bus.clone();
        let name = target.name.clone();
        let forward = tokio::spawn(async move {
            while let Some((stream, line)) = lines_rx.recv().await {
                bus.publish(Event::TargetOutput { target: name.clone(), stream, line, replayed: false });
            }
        });
        let ran = crate::exec::command::run(&spec, lines_tx, cancel.clone()).await;
        let _ = forward.await;
        if let Some(why) = &ran.log_failure {
            ctx.bus.publish(Event::Notice {
                level: NoticeLevel::Warning,
                message: format!("{}: {why}; the run goes on without it", target.name),
            });
        }
        let (outcome, captured) = (ran.outcome, ran.tail);
        ctx.span(&target.name, "run", Track::Job(slot), attempt_started);
        let retry = !outcome.success()
            && !matches!(outcome, ExecOutcome::Cancelled | ExecOutcome::SpawnFailed(_))
            && attempt <= target.retries;
        if !retry {
            break (outcome, captured);
        }
    };
    let duration_ms = millis(started.elapsed());
    // A silent command leaves no log file to point at.
    let log_display = log_path.exists().then_some(log_display);
    let fail = |reason: String| Done {
        record: None,
        status: TargetStatus::Failed,
        reason,
        key: Some(key),
        log: log_display.clone(),
    };
    match outcome {
        ExecOutcome::Exited(0) => {}
        ExecOutcome::Cancelled => {
            return Done {
                record: None,
                status: TargetStatus::Skipped,
                reason: "interrupted while running".into(),
                key: Some(key),
                log: log_display,
            };
        }
        other => {
            let why = describe_failure(&other, &captured, attempt);
            return fail(match &image {
                Some((engine, _)) => format!("`{} build` failed: {why}{}", engine.name(), engine_hint(&captured)),
                None => why,
            });
        }
    }

    let _ = tx.send(Msg::Exited(id));
    let ctx2 = ctx.clone();
    let reason2 = reason.clone();
    let image = image.map(|(engine, tag)| (engine.clone(), tag));
    let stored = tokio::task::spawn_blocking(move || {
        let storing = Instant::now();
        // The log as kept on disk (its last `log_limit` bytes) is what the cache keeps.
        let log = crate::fs::no_follow::read_regular(&log_path).unwrap_or_default();
        let ran = Ran { manifest: &manifest, inputs_meta, log: &log, duration_ms, reason: &reason2 };
        let stored = match image {
            Some((engine, tag)) => store_image(&ctx2, id, &engine, tag, &ran),
            None => collect_and_store(&ctx2, id, &ran),
        };
        ctx2.span(ctx2.graph.name(id), "store", Track::Worker, storing);
        stored
    })
    .await
    .expect("store task does not panic");
    match stored {
        Ok(record) => {
            let reason = if attempt > 1 { format!("{reason} (succeeded on attempt {attempt})") } else { reason };
            Done { record: Some(record), status: TargetStatus::Built, reason, key: Some(key), log: log_display }
        }
        Err(why) => fail(why),
    }
}

pub(crate) fn describe_failure(outcome: &ExecOutcome, output: &[u8], attempts: u32) -> String {
    let tries = if attempts > 1 { format!(" after {attempts} attempts") } else { String::new() };
    match outcome {
        ExecOutcome::Exited(127) => {
            let text = String::from_utf8_lossy(output);
            let line = text.lines().rev().find(|l| l.contains("not found")).unwrap_or("").trim();
            let what = line.rsplit_once(": not found").map(|(head, _)| head.rsplit(": ").next().unwrap_or(head).trim());
            match what {
                Some(cmd) if !cmd.is_empty() => {
                    format!("command not found: `{cmd}` (exit 127{tries}); is it installed and on PATH?")
                }
                _ => format!("command not found (exit 127{tries}); is it installed and on PATH?"),
            }
        }
        ExecOutcome::Exited(code) => format!("exit code {code}{tries}"),
        ExecOutcome::Signalled(sig) => format!("killed by signal {sig}{tries}"),
        ExecOutcome::TimedOut(after) => {
            format!("timed out after {}{tries}; its process group was killed", kiln_config::format_duration(*after))
        }
        ExecOutcome::Cancelled => "interrupted".into(),
        ExecOutcome::SpawnFailed(why) => why.clone(),
    }
}

/// A hint for engine failures whose cause is the engine itself, not the build.
pub(crate) fn engine_hint(output: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(output);
    if text.contains("Cannot connect to the Docker daemon") {
        "; the docker daemon is not reachable: start it, or point DOCKER_HOST at a running one"
    } else {
        ""
    }
}
