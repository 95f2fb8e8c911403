//! What to watch: the literal prefixes of the watched input patterns, and the output
//! prefixes to leave alone.

use std::collections::BTreeSet;

use crate::fs::path_pattern::{PathPattern, is_under};

/// What to watch: input prefixes to cover and output prefixes to leave alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchScope {
    pub inputs: BTreeSet<String>,
    pub outputs: BTreeSet<String>,
}

impl WatchScope {
    pub fn new(inputs: &[&PathPattern], outputs: &[&PathPattern]) -> WatchScope {
        WatchScope {
            inputs: inputs.iter().map(|p| p.prefix.clone()).collect(),
            outputs: outputs.iter().map(|p| p.prefix.clone()).collect(),
        }
    }

    /// A directory that only holds declared outputs: under an output prefix, with no input
    /// pointing into it.
    pub fn output_only(&self, dir: &str) -> bool {
        self.outputs.iter().any(|o| is_under(dir, o) && !o.is_empty())
            && !self
                .inputs
                .iter()
                .any(|i| is_under(i, dir) || (is_under(dir, i) && self.outputs.iter().any(|o| is_under(i, o))))
    }
}
