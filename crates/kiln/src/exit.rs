//! Exit codes, one per kind of outcome.

use std::process::ExitCode;

/// Everything built (or was already up to date).
pub const SUCCESS: u8 = 0;
/// A target failed or was skipped.
pub const FAILED: u8 = 1;
/// Usage or configuration error.
pub const USAGE: u8 = 2;
/// Interrupted by SIGINT, SIGTERM or SIGHUP (see signals.rs).
pub const INTERRUPTED: u8 = 130;

pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
