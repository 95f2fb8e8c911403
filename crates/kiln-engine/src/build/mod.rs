//! Building targets: their inputs, the decision per target (fresh, cached, run), the run of
//! a command and the storing of its outputs, the ready-queue scheduler, and `explain`.

pub mod explain;
pub mod run_build;
pub mod scheduler;
pub mod target_inputs;
