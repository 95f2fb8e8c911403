//! `kiln build`: run the engine once and render its events: plain lines or live progress,
//! JSON lines with `--json`, a trace file with `--trace`, and the summary at the end.

use std::io::{BufWriter, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use kiln_config::Config;
use kiln_engine::{BuildError, BuildOptions, EventBus, PlanAction, Received, run_build};

use crate::cli::{BuildArgs, ProgressMode};
use crate::exit;
use crate::json_view::JsonView;
use crate::live_view::{LiveView, terminal_width};
use crate::out::errln;
use crate::plain_view::PlainView;
use crate::trace_view::TraceView;

/// How long an interrupted `kiln build` waits for its output to be taken.
const VIEW_DRAIN: Duration = Duration::from_millis(500);

/// Tells the waiting side that the view thread ended, however it ended.
struct DoneOnDrop(std::sync::mpsc::Sender<()>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Where the human-readable side of a run goes.
enum Human {
    Plain(PlainView<Box<dyn Write + Send>>),
    Live(LiveView<std::io::Stderr>),
    /// A dry run prints its plan instead.
    Silent,
}

impl Human {
    fn on_event(&mut self, event: &kiln_engine::Event) {
        match self {
            Human::Plain(v) => v.on_event(event),
            Human::Live(v) => v.on_event(event),
            Human::Silent => {}
        }
    }

    /// Called when no more events are queued: show what arrived.
    fn settle(&mut self) {
        match self {
            Human::Plain(v) => v.flush(),
            Human::Live(v) => v.redraw(),
            Human::Silent => {}
        }
    }

    fn finish(&mut self) {
        match self {
            Human::Plain(v) => v.finish(),
            Human::Live(v) => v.finish(),
            Human::Silent => {}
        }
    }
}

/// Live progress only on a terminal that can show it, and never in CI.
pub fn live_wanted(mode: ProgressMode) -> bool {
    match mode {
        ProgressMode::Live => true,
        ProgressMode::Plain => false,
        ProgressMode::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("CI").is_none()
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

pub async fn run(config: Config, args: BuildArgs, json: bool) -> u8 {
    let bus = Arc::new(EventBus::new());
    let sink = match crate::events_sink::start_for(args.events_sink.as_deref(), &config, &bus) {
        Ok(sink) => sink,
        Err(e) => {
            errln!("error: {e}");
            return exit::USAGE;
        }
    };
    let mut events = bus.subscribe();
    let dry_run = args.dry_run;
    let live = !dry_run && live_wanted(args.progress);
    let mut human = if dry_run {
        Human::Silent
    } else if live {
        Human::Live(LiveView::new(std::io::stderr(), terminal_width(), args.verbose))
    } else {
        // Buffered, and flushed whenever the engine has nothing more queued: one write per
        // burst of events instead of one per line.
        let out: Box<dyn Write + Send> = if json {
            Box::new(BufWriter::new(std::io::stderr()))
        } else {
            Box::new(BufWriter::new(std::io::stdout()))
        };
        Human::Plain(PlainView::new(out, args.verbose))
    };
    let trace_path = args.trace.clone();
    // On a thread of its own: a terminal or pipe that blocks never holds up the runtime.
    let (view_done_tx, view_done) = std::sync::mpsc::channel::<()>();
    let view = std::thread::spawn(move || {
        let _done = DoneOnDrop(view_done_tx);
        let mut json_view = json.then(|| JsonView::new(BufWriter::new(std::io::stdout())));
        let mut trace = trace_path.is_some().then(TraceView::default);
        let tick = if live { Duration::from_millis(100) } else { Duration::from_secs(3600) };
        // Drawn when the queue is drained, and at least every 100 ms while it never is.
        let mut drawn = std::time::Instant::now();
        loop {
            match events.recv_timeout(tick) {
                Received::Event(envelope) => {
                    if let Some(j) = json_view.as_mut() {
                        j.on_event(&envelope);
                    }
                    if let Some(t) = trace.as_mut() {
                        t.on_event(&envelope.event);
                    }
                    human.on_event(&envelope.event);
                    if events.is_empty() || drawn.elapsed() >= Duration::from_millis(100) {
                        drawn = std::time::Instant::now();
                        if let Some(j) = json_view.as_mut() {
                            j.flush();
                        }
                        human.settle();
                    }
                }
                Received::TimedOut => human.settle(),
                Received::Closed => break,
            }
        }
        (human, trace)
    });

    let options = BuildOptions {
        targets: args.targets,
        jobs: args.jobs.unwrap_or(0),
        keep_going: args.keep_going,
        dry_run,
        replay_logs: args.verbose,
        spans: args.trace.is_some(),
        watch_mode: false,
        ..BuildOptions::default()
    };
    let cancel = crate::signals::cancel_on_signals(crate::signals::OnAbort::default());
    let interrupted = cancel.clone();
    let result = run_build(Arc::new(config), options, bus.clone(), cancel).await;
    // Before the bus closes: a warning about events left undelivered still reaches the views.
    if let Some(sink) = sink {
        sink.finish(crate::events_sink::FLUSH_TIME).await;
    }
    bus.close();
    // The output is shown to its end however slowly it is read, unless kiln was interrupted:
    // then a reader that takes nothing does not keep kiln from ending.
    let finished = tokio::task::spawn_blocking(move || {
        loop {
            match view_done.recv_timeout(Duration::from_millis(100)) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !*interrupted.borrow() => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break view_done.recv_timeout(VIEW_DRAIN).is_ok(),
                _ => break true,
            }
        }
    })
    .await
    .unwrap_or(true);
    if !finished {
        return exit::INTERRUPTED;
    }
    let (mut human, trace) = view.join().expect("the view thread does not panic");
    if let (Some(trace), Some(path)) = (trace, &args.trace)
        && let Err(e) = trace.write(path)
    {
        errln!("error: cannot write the trace to {}: {e}", path.display());
    }
    match result {
        Err(e @ BuildError::UnknownTarget { .. }) => {
            errln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            errln!("error: {e}");
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
            human.finish();
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
