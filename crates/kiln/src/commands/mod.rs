//! One module per subcommand.

pub mod build;
pub mod cache;
pub mod clean;
pub mod control;
pub mod dashboard;
pub mod explain;
pub mod graph;
pub mod logs;
pub mod ps;
pub mod up;
