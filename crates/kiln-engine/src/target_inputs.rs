//! What a target reads: its input and output patterns compiled once per run, and the
//! hashing of its input files into a manifest. Shared by builds and `explain`.

use std::path::Path;

use kiln_config::Config;

use crate::digest::Digest;
use crate::file_index::FileMeta;
use crate::graph::Graph;
use crate::manifest::Manifest;
use crate::path_pattern::{PathPattern, PatternCompiler};
use crate::stat_cache::StatCache;

/// Every target's compiled `inputs` and `outputs`, indexed like the graph.
pub struct Patterns {
    pub inputs: Vec<Vec<PathPattern>>,
    pub outputs: Vec<Vec<PathPattern>>,
}

impl Patterns {
    pub fn compile(config: &Config, graph: &Graph) -> Patterns {
        let mut compiler = PatternCompiler::default();
        let mut compile_all = |list: fn(&kiln_config::Target) -> &Vec<String>| -> Vec<Vec<PathPattern>> {
            (0..graph.len())
                .map(|id| list(&config.targets[graph.name(id)]).iter().map(|p| compiler.compile(p)).collect())
                .collect()
        };
        let inputs = compile_all(|t| &t.inputs);
        let outputs = compile_all(|t| &t.outputs);
        Patterns { inputs, outputs }
    }
}

/// Above this many input files (or any file above [`DIRECT_HASH_MAX_BYTES`]), hashing goes
/// through the stat cache; below, reading the files directly is cheaper than loading it.
const DIRECT_HASH_MAX_FILES: usize = 64;
const DIRECT_HASH_MAX_BYTES: u64 = 256 * 1024;

/// Fills in the content digests of `files`; a file that vanished since the listing is left
/// out, as a later listing would.
pub fn hash_inputs(
    root: &Path,
    stat: &StatCache,
    files: &[&(String, FileMeta)],
    manifest: &mut Manifest,
) -> Result<(), String> {
    let direct = files.len() <= DIRECT_HASH_MAX_FILES && files.iter().all(|e| e.1.size <= DIRECT_HASH_MAX_BYTES);
    for (path, meta) in files.iter().map(|e| (&e.0, &e.1)) {
        let digest: std::io::Result<Digest> =
            if direct { Digest::of_file(&root.join(path)) } else { stat.digest(root, path, meta) };
        match digest {
            Ok(d) => manifest.inputs.push((path.clone(), d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read input {path}: {e}")),
        }
    }
    Ok(())
}
