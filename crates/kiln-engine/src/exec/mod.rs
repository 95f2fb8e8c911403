//! Running one command in its own process group, with its output as bytes split into lines,
//! a log that keeps its tail, a timeout and cancellation; and the watchdog that kills process
//! groups kiln leaves behind.

pub mod command;
pub mod listen_ports;
pub mod log_records;
pub mod output_lines;
pub mod tail_log;
pub mod watchdog;
