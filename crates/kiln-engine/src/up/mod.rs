//! `kiln up`: the dispatcher that owns targets, rounds and services while files change.

pub mod run_up;
