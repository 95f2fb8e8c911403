//! `kiln up`: build, then watch and keep the selected targets up to date until Ctrl-C.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use kiln_config::Config;
use std::sync::Mutex;

use kiln_engine::{BuildError, EventBus, Layout, UpError, UpExit, UpOptions, run_up};
use tokio::sync::mpsc;

use crate::api_server::{ApiServer, remove_info};
use crate::live_view::terminal_size;
use crate::out::errln;
use crate::status_view::StatusView;
use crate::up_view::UpView;

/// Where the human-readable side of `kiln up` goes.
enum Human {
    Plain(PlainView<Box<dyn Write + Send>>),
    Live(UpView<std::io::Stderr>),
}

use crate::cli::UpArgs;
use crate::exit;
use crate::json_view::JsonView;
use crate::plain_view::PlainView;

pub async fn run(
    config: Config,
    args: UpArgs,
    json: bool,
    profile: Option<String>,
    engine: Option<kiln_config::EngineChoice>,
) -> u8 {
    let bus = Arc::new(EventBus::new());
    let mut events = bus.subscribe();
    let verbose = args.verbose;
    let status = Arc::new(Mutex::new(StatusView::default()));
    let (controls_tx, controls) = mpsc::unbounded_channel();
    let kiln_dir = Layout::new(&config.root).kiln;
    if let Err(e) = ApiServer::start(args.port, &kiln_dir, bus.clone(), status.clone(), controls_tx).await {
        errln!("error: cannot serve the control API on 127.0.0.1:{}: {e}", args.port);
        return exit::FAILED;
    }
    let view_status = status.clone();
    let live = crate::commands::build::live_wanted(args.progress);
    let view = tokio::spawn(async move {
        let mut json_view = json.then(|| JsonView::new(BufWriter::new(std::io::stdout())));
        let out: Box<dyn Write + Send> = if json {
            Box::new(BufWriter::new(std::io::stderr()))
        } else {
            Box::new(BufWriter::new(std::io::stdout()))
        };
        let mut human = if live {
            Human::Live(UpView::new(std::io::stderr(), terminal_size(), verbose))
        } else {
            Human::Plain(PlainView::new(out, verbose))
        };
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                envelope = events.recv() => {
                    let Some(envelope) = envelope else { break };
                    view_status.lock().expect("status lock is never poisoned").on_event(&envelope.event, &envelope.ts);
                    if let Some(j) = json_view.as_mut() {
                        j.on_event(&envelope);
                    }
                    match &mut human {
                        Human::Plain(v) => v.on_event(&envelope.event),
                        Human::Live(v) => v.on_event(&envelope.event, &envelope.ts),
                    }
                    if events.is_empty() {
                        if let Some(j) = json_view.as_mut() {
                            j.flush();
                        }
                        match &mut human {
                            Human::Plain(v) => v.flush(),
                            Human::Live(v) => v.redraw(),
                        }
                    }
                }
                _ = tick.tick(), if live => {
                    if let Human::Live(v) = &mut human {
                        v.redraw();
                    }
                }
            }
        }
        match &mut human {
            Human::Plain(v) => v.finish(),
            Human::Live(v) => v.finish(),
        }
    });

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
    let cancel = crate::signals::cancel_on_signals();
    let result = run_up(config, options, bus.clone(), cancel, controls).await;
    remove_info(&kiln_dir);
    bus.close();
    let _ = view.await;
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
