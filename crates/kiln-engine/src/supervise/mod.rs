//! Services: every replica's state in one [`service_set::ServiceSet`], the pure decisions it
//! takes (replica state machine, rolling restarts, restart policy, backoff), the runner of one
//! attempt (a process or a container, with its probes), and the spec it runs from.

pub mod backoff;
pub mod probe;
pub mod replica_log;
pub mod replica_runner;
pub mod replica_state;
pub mod restart_policy;
pub mod rollout;
pub mod service_set;
pub mod service_spec;
