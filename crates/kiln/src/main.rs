//! The kiln binary: parses the command line, loads the project, runs the engine and renders
//! its events. The only crate that talks to the user.

mod api_client;
mod api_info;
mod api_routes;
mod api_server;
mod cli;
mod cloud_event;
mod commands;
mod connection_limit;
mod dashboard_assets;
mod events_sink;
mod exit;
mod human_lines;
mod json_view;
mod live_view;
mod metrics_view;
mod out;
mod plain_view;
mod project;
mod run_report;
mod signals;
mod sink_client;
mod sink_retry;
mod status_view;
mod stream_slots;
mod trace_view;
mod up_view;
mod view_out;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::out::{errln, out};

fn main() -> ExitCode {
    install_panic_hook();
    if std::env::args_os().nth(1).is_some_and(|a| a == kiln_engine::WATCHDOG_ARG) {
        kiln_engine::watchdog_main();
    }
    // Lets the tests see what a user sees when kiln has a bug; not in release builds.
    #[cfg(debug_assertions)]
    if let Some(message) = std::env::var_os("KILN_TEST_PANIC") {
        panic!("{}", message.to_string_lossy());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return exit::code(if e.use_stderr() { exit::USAGE } else { exit::SUCCESS });
        }
    };
    let control = matches!(
        cli.command,
        Command::Status { .. }
            | Command::Ps
            | Command::Wait { .. }
            | Command::Trigger { .. }
            | Command::Down { .. }
            | Command::Dashboard
            | Command::Logs(_)
    );
    let loaded =
        if control { project::load_for_control(&cli.global) } else { project::load(&cli.global).map(|c| (c, false)) };
    let (config, stand_in) = match loaded {
        Ok(c) => c,
        Err(project::ProjectError(text)) => {
            errln!("{text}");
            return exit::code(exit::USAGE);
        }
    };
    let code = match cli.command {
        Command::Build(args) => with_runtime(commands::build::run(config, args, cli.global.json)),
        Command::Up(args) => with_runtime(commands::up::run(
            config,
            args,
            cli.global.json,
            cli.global.profile.clone(),
            cli.global.engine.map(cli::EngineArg::choice),
        )),
        Command::Explain { target } => commands::explain::run(&config, &target, cli.global.json),
        Command::Logs(args) => commands::logs::run(&config, &args, stand_in, cli.global.json),
        Command::Status { services: false } => commands::control::status(&config, cli.global.json),
        Command::Status { services: true } | Command::Ps => commands::ps::run(&config, cli.global.json),
        Command::Wait { names, timeout } => commands::control::wait(&config, &names, timeout, !stand_in),
        Command::Trigger { name, target, service } => {
            let kind = match (target, service) {
                (true, _) => Some(kiln_engine::TriggerKind::Target),
                (_, true) => Some(kiln_engine::TriggerKind::Service),
                _ => None,
            };
            commands::control::trigger(&config, &name, kind, !stand_in)
        }
        Command::Down { timeout } => commands::control::down(&config, timeout),
        Command::Dashboard => commands::dashboard::run(&config, cli.global.json),
        Command::Graph(args) => {
            out!("{}", commands::graph::render(&config, args.format));
            exit::SUCCESS
        }
        Command::Cache(command) => commands::cache::run(&config, &command, cli.global.json),
        Command::Clean(args) => commands::clean::run(&config, args.all),
    };
    exit::code(code)
}

/// A panic is a bug in kiln: the user gets one line saying so instead of Rust's panic text
/// and backtrace. `KILN_BACKTRACE=1` shows Rust's own report too, for whoever debugs it.
/// (A worker's panic is also caught where it happened and fails its target with the
/// message; this line is printed all the same.)
fn install_panic_hook() {
    let rust_report = std::panic::take_hook();
    let debugging = std::env::var_os("KILN_BACKTRACE").is_some_and(|v| v != "0");
    std::panic::set_hook(Box::new(move |info| {
        if debugging {
            rust_report(info);
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic without a message");
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        errln!("kiln: internal error: {message}{at} (please report)");
    }));
}

/// Runs an async command on a runtime whose idle threads are not waited for at exit. The
/// watchdog that kills leftover process groups if kiln dies starts first.
fn with_runtime(command: impl std::future::Future<Output = u8>) -> u8 {
    if let Ok(me) = std::env::current_exe() {
        kiln_engine::start_watchdog(&me);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the runtime starts: it needs only threads and an epoll fd");
    let code = runtime.block_on(command);
    // Idle blocking threads need not be joined: every command has been reaped.
    runtime.shutdown_background();
    code
}
