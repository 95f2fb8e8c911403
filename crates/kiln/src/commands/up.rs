//! `kiln up`: build, then watch and keep the selected targets up to date until Ctrl-C.

use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::Duration;

use kiln_config::Config;
use std::sync::Mutex;

use kiln_engine::{
    BuildError, EventBus, Layout, ProjectLock, Received, ReplayLimits, UpError, UpExit, UpOptions, run_up,
};
use tokio::sync::mpsc;

use crate::api_server::{ApiServer, remove_info};
use crate::live_view::terminal_size;
use crate::metrics_view::MetricsView;
use crate::out::errln;
use crate::status_view::StatusView;
use crate::up_view::UpView;

/// How long the end of `kiln up` waits for its output to be taken by the terminal or pipe.
const VIEW_DRAIN: Duration = Duration::from_millis(500);

/// Where the human-readable side of `kiln up` goes.
enum Human {
    Plain(PlainView<Box<dyn Write + Send>>),
    Live(Box<UpView<std::io::Stderr>>),
}

use crate::cli::UpArgs;
use crate::exit;
use crate::json_view::JsonView;
use crate::plain_view::PlainView;
use crate::signals::OnAbort;

/// What the bus keeps for clients of `GET /api/events` that reconnect: 10,000 events and
/// 8 MiB, or (in a debug build, for tests) `KILN_TEST_REPLAY_EVENTS` events.
fn replay_limits() -> ReplayLimits {
    #[cfg(debug_assertions)]
    if let Some(events) = std::env::var("KILN_TEST_REPLAY_EVENTS").ok().and_then(|v| v.parse().ok()) {
        return ReplayLimits { events, ..ReplayLimits::DEFAULT };
    }
    ReplayLimits::DEFAULT
}

pub async fn run(
    config: Config,
    args: UpArgs,
    json: bool,
    profile: Option<String>,
    engine: Option<kiln_config::EngineChoice>,
) -> u8 {
    let layout = Layout::new(&config.root);
    let kiln_dir = layout.kiln.clone();
    // A bad --events-sink or $K_SINK is said before anything starts.
    let bus = Arc::new(EventBus::with_replay(replay_limits()));
    let sink = match crate::events_sink::start_for(args.events_sink.as_deref(), &config, &bus) {
        Ok(sink) => sink,
        Err(e) => {
            errln!("error: {e}");
            return exit::USAGE;
        }
    };
    // One session per project: a second would run every service twice and take over the
    // control API. Held until this function returns (the process ends: even `kill -9`).
    let _session = match layout.ensure().and_then(|()| ProjectLock::try_acquire(&layout.up_lock())) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            let who = ProjectLock::holder(&layout.up_lock()).map_or_else(String::new, |pid| format!(" (pid {pid})"));
            errln!(
                "error: another `kiln up`{who} is running in this project ({})\n  \
                 = `kiln status` shows it, `kiln down` stops it; run `kiln up` again once it has ended",
                config.root.display()
            );
            return exit::FAILED;
        }
        Err(e) => {
            errln!("error: cannot take {}: {e}", layout.up_lock().display());
            return exit::FAILED;
        }
    };
    // First: from here on a signal (the terminal closing included) stops kiln gracefully
    // instead of killing it, even before the API server writes api.json.
    let cancel = crate::signals::cancel_on_signals(OnAbort::up(&config, kiln_dir.clone()));
    let mut events = bus.subscribe();
    let verbose = args.verbose;
    let status = Arc::new(Mutex::new(StatusView::default()));
    let mut metrics = MetricsView::new(Some(bus.clone()));
    if let Some(sink) = &sink {
        metrics = metrics.with_sink_drops(sink.dropped());
    }
    let metrics = Arc::new(Mutex::new(metrics));
    let (controls_tx, controls) = mpsc::unbounded_channel();
    let api = match ApiServer::start(
        args.port,
        &kiln_dir,
        bus.clone(),
        status.clone(),
        metrics.clone(),
        controls_tx,
        config.settings.log_limit,
    )
    .await
    {
        Ok(api) => api,
        Err(e) => {
            errln!("error: {e}");
            return exit::FAILED;
        }
    };
    // Printed first, by the view (never on the bus: it carries the token, and the bus goes
    // to HTTP clients and event sinks).
    let dashboard = api.dashboard_url();
    let listening = serde_json::json!({
        "type": "api.listening",
        "address": api.address,
        "dashboard": dashboard,
        "ts": kiln_engine::rfc3339(std::time::SystemTime::now()),
        "seq": 0,
    });
    // The status the API serves follows the stream on a task of its own, so a terminal that
    // does not keep up never makes it stale.
    let mut status_events = bus.subscribe();
    let view_status = status.clone();
    tokio::spawn(async move {
        while let Some(envelope) = status_events.recv().await {
            view_status.lock().expect("status lock is never poisoned").on_envelope(&envelope);
        }
    });
    // So do the metrics of `GET /metrics`.
    let mut metrics_events = bus.subscribe();
    tokio::spawn(async move {
        while let Some(envelope) = metrics_events.recv().await {
            metrics.lock().expect("metrics lock is never poisoned").on_event(&envelope.event);
        }
    });
    let live = crate::commands::build::live_wanted(args.progress);
    // The views write to the terminal or a pipe, which may block (a pipe nobody reads): they
    // run on a thread of their own, never on the runtime's workers.
    let (view_done_tx, view_done) = std::sync::mpsc::channel::<()>();
    let view = std::thread::Builder::new().name("kiln-view".into()).spawn(move || {
        let mut json_view = json.then(|| JsonView::new(BufWriter::new(std::io::stdout())));
        if let Some(j) = json_view.as_mut() {
            j.line(&listening);
            j.flush();
        }
        let dashboard_line = format!("dashboard: {dashboard}");
        let out: Box<dyn Write + Send> = if json {
            Box::new(BufWriter::new(std::io::stderr()))
        } else {
            Box::new(BufWriter::new(std::io::stdout()))
        };
        let mut human = if live {
            // The table's first row: a line printed above it would be drawn over.
            Human::Live(Box::new(UpView::new(std::io::stderr(), terminal_size(), verbose).with_header(dashboard_line)))
        } else {
            let mut plain = PlainView::new(out, verbose);
            plain.line(&dashboard_line);
            plain.flush();
            Human::Plain(plain)
        };
        let tick = if live { Duration::from_millis(250) } else { Duration::from_secs(3600) };
        // Drawn when the queue is drained, and at least every tick while it never is (a
        // flood): what waits to be drawn stays small.
        let mut drawn = std::time::Instant::now();
        loop {
            match events.recv_timeout(tick) {
                Received::Event(envelope) => {
                    if let Some(j) = json_view.as_mut() {
                        j.on_event(&envelope);
                    }
                    match &mut human {
                        Human::Plain(v) => v.on_event(&envelope.event),
                        Human::Live(v) => v.on_envelope(&envelope),
                    }
                    if events.is_empty() || drawn.elapsed() >= tick.min(Duration::from_millis(250)) {
                        drawn = std::time::Instant::now();
                        if let Some(j) = json_view.as_mut() {
                            j.flush();
                        }
                        match &mut human {
                            Human::Plain(v) => v.flush(),
                            Human::Live(v) => v.redraw(),
                        }
                    }
                }
                Received::TimedOut => {
                    if let Human::Live(v) = &mut human {
                        v.redraw();
                    }
                }
                Received::Closed => break,
            }
        }
        match &mut human {
            Human::Plain(v) => v.finish(),
            Human::Live(v) => v.finish(),
        }
        let _ = view_done_tx.send(());
    });
    if let Err(e) = view {
        errln!("error: cannot start the output thread: {e}");
        return exit::FAILED;
    }

    let cwd = std::env::current_dir().unwrap_or_default();
    let display_path =
        config.file.strip_prefix(&cwd).map_or_else(|_| config.file.clone(), std::path::Path::to_path_buf);
    let options = UpOptions {
        config_file: config.file.clone(),
        display_path,
        profile,
        names: args.names,
        jobs: args.jobs.unwrap_or(0),
        keep_going: args.keep_going,
        no_build: args.no_build,
        debounce: args.debounce,
        replay_logs: args.verbose,
        engine,
    };
    let result = run_up(config, options, bus.clone(), cancel, controls).await;
    remove_info(&kiln_dir);
    // Before the bus closes: a warning about events left undelivered still reaches the views.
    if let Some(sink) = sink {
        sink.finish(crate::events_sink::FLUSH_TIME).await;
    }
    bus.close();
    // What is queued for the terminal is shown, unless nobody reads it: a pipe that stays
    // full does not keep kiln from ending.
    let _ = tokio::task::spawn_blocking(move || view_done.recv_timeout(VIEW_DRAIN)).await;
    match result {
        Ok(UpExit::Interrupted) => exit::INTERRUPTED,
        Ok(UpExit::Stopped) => exit::SUCCESS,
        Err(UpError::Build(e @ BuildError::UnknownTarget { .. })) => {
            errln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            errln!("error: {e}");
            exit::FAILED
        }
    }
}
