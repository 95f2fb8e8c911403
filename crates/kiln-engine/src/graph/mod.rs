//! The target graph: dependencies, order, and what a change affects.

pub mod target_graph;

pub use target_graph::{Graph, TargetId};
