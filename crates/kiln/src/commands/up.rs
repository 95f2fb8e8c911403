//! `kiln up`: build, then watch and keep the selected targets up to date until Ctrl-C.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use kiln_config::Config;
use std::sync::Mutex;

use kiln_engine::{BuildError, EventBus, Layout, UpError, UpExit, UpOptions, run_up};
use tokio::sync::mpsc;

use crate::api_server::{ApiServer, remove_info};
use crate::status_view::StatusView;

use crate::cli::UpArgs;
use crate::exit;
use crate::json_view::JsonView;
use crate::plain_view::PlainView;

pub async fn run(config: Config, args: UpArgs, json: bool, profile: Option<String>) -> u8 {
    let bus = Arc::new(EventBus::new());
    let mut events = bus.subscribe();
    let verbose = args.verbose;
    let status = Arc::new(Mutex::new(StatusView::default()));
    let (controls_tx, controls) = mpsc::unbounded_channel();
    let kiln_dir = Layout::new(&config.root).kiln;
    if let Err(e) = ApiServer::start(args.port, &kiln_dir, bus.clone(), status.clone(), controls_tx).await {
        eprintln!("error: cannot serve the control API on 127.0.0.1:{}: {e}", args.port);
        return exit::FAILED;
    }
    let view_status = status.clone();
    let view = tokio::spawn(async move {
        let mut json_view = json.then(|| JsonView::new(BufWriter::new(std::io::stdout())));
        let out: Box<dyn Write + Send> = if json {
            Box::new(BufWriter::new(std::io::stderr()))
        } else {
            Box::new(BufWriter::new(std::io::stdout()))
        };
        let mut human = PlainView::new(out, verbose);
        while let Some(envelope) = events.recv().await {
            view_status.lock().expect("status lock is never poisoned").on_event(&envelope.event, &envelope.ts);
            if let Some(j) = json_view.as_mut() {
                j.on_event(&envelope);
            }
            human.on_event(&envelope.event);
            if events.is_empty() {
                if let Some(j) = json_view.as_mut() {
                    j.flush();
                }
                human.flush();
            }
        }
        human.finish();
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
            eprintln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
    }
}
