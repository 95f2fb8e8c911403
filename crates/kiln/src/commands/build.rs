//! `kiln build`: run the engine once and render its events.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use kiln_config::Config;
use kiln_engine::{BuildError, BuildOptions, EventBus, PlanAction, run_build};

use crate::cli::BuildArgs;
use crate::exit;
use crate::human_view::HumanView;
use crate::json_view::JsonView;

pub async fn run(config: Config, args: BuildArgs, json: bool) -> u8 {
    let bus = Arc::new(EventBus::new());
    let mut events = bus.subscribe();
    let dry_run = args.dry_run;
    let view = tokio::spawn(async move {
        // Buffered, and flushed whenever the engine has nothing more queued: one write per
        // burst of events instead of one per line.
        let mut json_view = json.then(|| JsonView::new(BufWriter::new(std::io::stdout())));
        let mut human: HumanView<Box<dyn Write + Send>> = HumanView::new(if json {
            Box::new(BufWriter::new(std::io::stderr()))
        } else {
            Box::new(BufWriter::new(std::io::stdout()))
        });
        while let Some(envelope) = events.recv().await {
            if let Some(j) = json_view.as_mut() {
                j.on_event(&envelope);
            }
            if !dry_run {
                human.on_event(&envelope.event);
            }
            if events.is_empty() {
                if let Some(j) = json_view.as_mut() {
                    j.flush();
                }
                human.flush();
            }
        }
        human
    });

    let options =
        BuildOptions {
        targets: args.targets,
        jobs: args.jobs.unwrap_or(0),
        keep_going: args.keep_going,
        dry_run,
        replay_logs: false,
        spans: false,
    };
    let cancel = crate::signals::cancel_on_signals();
    let result = run_build(Arc::new(config), options, bus.clone(), cancel).await;
    bus.close();
    let mut human = view.await.expect("the view task does not panic");
    match result {
        Err(e @ BuildError::UnknownTarget { .. }) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
        Ok(summary) if dry_run => {
            let mut out: Box<dyn Write> = if json { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
            let mut would_run = 0;
            for entry in &summary.plan {
                let verb = match entry.action {
                    PlanAction::Fresh => "fresh",
                    PlanAction::Restore => "restore",
                    PlanAction::Run => "run",
                };
                would_run += usize::from(entry.action != PlanAction::Fresh);
                let _ = writeln!(out, "{verb:>7} {} — {}", entry.target, entry.reason);
            }
            let _ = writeln!(
                out,
                "dry run: {would_run} of {} targets would run or restore; nothing was run",
                summary.plan.len()
            );
            exit::SUCCESS
        }
        Ok(summary) => {
            human.summary(&summary);
            if summary.interrupted {
                exit::INTERRUPTED
            } else if summary.ok() {
                exit::SUCCESS
            } else {
                exit::FAILED
            }
        }
    }
}
