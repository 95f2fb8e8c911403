//! Running one command in its own process group, with its output as lines, a timeout and
//! cancellation; and the watchdog that kills process groups kiln leaves behind.

pub mod command;
pub mod watchdog;
