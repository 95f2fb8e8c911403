//! Services: one controller per replica (process or container), probes, restart policy and
//! backoff.

pub mod backoff;
pub mod probe;
pub mod replica;
pub mod replica_state;
pub mod restart_policy;
pub mod supervisor;
