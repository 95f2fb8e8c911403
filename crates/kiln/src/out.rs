//! Every line kiln prints itself goes through here, so that a reader that goes away
//! (`kiln graph | head -1`) never turns into a panic.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `BrokenPipe`, and `println!`
//! panics on that failure. Who writes decides what happens instead:
//! - [`outln!`] and [`out!`] print to stdout for the short commands that own no children
//!   (graph, status, logs, explain, cache, clean, and the control commands). When the reader
//!   has gone nothing more can be said, and nothing needs stopping: kiln exits at once,
//!   quietly, with 0, as if it had been asked for only that much. Any other failure (a full
//!   disk behind `>`) is reported on stderr, with exit code 1.
//! - [`errln!`] prints to stderr from anywhere and ignores failures: there is nowhere left to
//!   report them.
//! - `kiln build` and `kiln up` never exit from here: their views (`plain_view`,
//!   `json_view`, `live_view`, `up_view`) stop writing at the first failure and the run
//!   goes on, so that kiln finishes its work, stops its services and cleans up its children.

use std::fmt;
use std::io::{self, Write};

use crate::exit;

/// Prints to stdout; a reader that has gone ends kiln quietly (see the module comment).
pub fn stdout(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// [`stdout`] for bytes that need not be text (a target's log).
pub fn stdout_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

pub fn stdout_failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(i32::from(exit::SUCCESS));
    }
    stderr(format_args!("kiln: cannot write to stdout: {e}\n"));
    std::process::exit(i32::from(exit::FAILED));
}

/// Prints to stderr, ignoring failures.
pub fn stderr(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.flush());
}

/// `println!` for the short commands: a closed stdout ends kiln quietly.
macro_rules! outln {
    () => {
        $crate::out::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the short commands: a closed stdout ends kiln quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};
