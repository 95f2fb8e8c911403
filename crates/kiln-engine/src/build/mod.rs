//! Building targets: their inputs, the decision per target (fresh, cached, run), the run of
//! a command and the storing of its outputs, the ready-queue scheduler, and `explain`.

pub mod build_ctx;
pub mod build_options;
pub mod build_session;
pub mod decide;
pub mod evaluate;
pub mod execute;
pub mod explain;
pub mod restore_outputs;
pub mod run_build;
pub mod scheduler;
pub mod store_outputs;
pub mod target_inputs;
pub mod target_record;
pub mod worker_panic;
