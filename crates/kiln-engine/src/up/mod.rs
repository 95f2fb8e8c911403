//! `kiln up`: the dispatcher that owns targets, rounds and services while files change.

pub mod dispatcher;
pub mod live_update;
pub mod reload;
pub mod round_plan;
pub mod round_worker;
pub mod selection;
pub mod sync_plan;
pub mod up_graph;
pub mod up_options;
