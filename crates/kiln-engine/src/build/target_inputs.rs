//! What a target reads: its input and output patterns compiled once per run, and the
//! hashing of its input files into a manifest. Shared by builds and `explain`.

use std::path::Path;

use kiln_config::{Config, ImageSpec, TargetKind};

use crate::container::engine::containerfile;

use crate::cache::digest::Digest;
use crate::cache::manifest::Manifest;
use crate::cache::stat_cache::StatCache;
use crate::fs::file_meta::FileMeta;
use crate::fs::path_pattern::{PathPattern, PatternCompiler, is_under};
use crate::fs::rel_path;
use crate::graph::target_graph::Graph;

/// Every target's compiled `inputs` and `outputs`, indexed like the graph, and for image
/// targets their build context and Containerfile (listed by `image_context` on its own
/// terms, but watched like inputs).
pub struct Patterns {
    pub inputs: Vec<Vec<PathPattern>>,
    pub outputs: Vec<Vec<PathPattern>>,
    pub contexts: Vec<Vec<PathPattern>>,
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
        let contexts = (0..graph.len())
            .map(|id| match &config.targets[graph.name(id)].kind {
                TargetKind::Image(spec) => {
                    let context = if spec.context == "." { "**".to_string() } else { format!("{}/**", spec.context) };
                    vec![compiler.compile(&context), compiler.compile(&containerfile(spec, &config.root))]
                }
                TargetKind::Cmd(_) => Vec::new(),
            })
            .collect();
        Patterns { inputs, outputs, contexts }
    }

    /// What a change to which reaches target `id` in watch mode: its inputs, and an image
    /// target's build context and Containerfile.
    pub fn watched(&self, id: usize) -> impl Iterator<Item = &PathPattern> {
        self.inputs[id].iter().chain(&self.contexts[id])
    }
}

/// Above this many input files (or any file above [`DIRECT_HASH_MAX_BYTES`]), hashing goes
/// through the stat cache; below, reading the files directly is cheaper than loading it.
const DIRECT_HASH_MAX_FILES: usize = 64;
const DIRECT_HASH_MAX_BYTES: u64 = 256 * 1024;

/// Fills in the content digests of `files` (escaped paths, see [`crate::fs::rel_path`]); a
/// file that vanished since the listing is left out, as a later listing would.
pub fn hash_inputs(
    root: &Path,
    stat: &StatCache,
    files: &[&(String, FileMeta)],
    manifest: &mut Manifest,
) -> Result<(), String> {
    let direct = files.len() <= DIRECT_HASH_MAX_FILES && files.iter().all(|e| e.1.size <= DIRECT_HASH_MAX_BYTES);
    for (path, meta) in files.iter().map(|e| (&e.0, &e.1)) {
        let digest: std::io::Result<Digest> =
            if direct { Digest::of_file(&rel_path::under(root, path)) } else { stat.digest(root, path, meta) };
        match digest {
            Ok(d) => manifest.inputs.push((path.clone(), d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read input {}: {e}", rel_path::display(path))),
        }
    }
    Ok(())
}

/// The files an image target reads: its build context after the ignore file, its
/// Containerfile, and those of its declared inputs (`declared`) outside the context.
pub fn image_inputs(
    root: &Path,
    spec: &ImageSpec,
    declared: &[&(String, FileMeta)],
) -> Result<Vec<(String, FileMeta)>, String> {
    let context = if spec.context == "." { "" } else { spec.context.as_str() };
    let mut files: Vec<(String, FileMeta)> =
        declared.iter().filter(|e| context.is_empty() || !is_under(&e.0, context)).map(|e| (*e).clone()).collect();
    let found = crate::container::image_context::context_files(root, spec)
        .map_err(|why| format!("image {}: {why}", spec.name))?;
    files.extend(found);
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    Ok(files)
}
