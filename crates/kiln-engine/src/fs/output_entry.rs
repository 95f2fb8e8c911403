//! The files and symbolic links a target's declared outputs select, as they are on disk.
//!
//! Unlike the input walk (where a symlinked file counts as its target), nothing is
//! dereferenced here: a symbolic link inside an output directory (or declared itself) is
//! listed as a link with its target text, dangling or not, and a linked directory is not
//! entered. That is what the cache stores and restores. `.git` and `.kiln` are never
//! entered; FIFOs, sockets and devices are not outputs.

use std::path::{Path, PathBuf};

use crate::fs::file_meta::FileMeta;
use crate::fs::path_pattern::{PathPattern, is_under};
use crate::fs::rel_path;
use crate::fs::walker::SKIPPED_DIRS;

/// One output on disk: a regular file, or a symbolic link (`link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEntry {
    /// Root-relative, `/`-separated, escaped (see [`crate::fs::rel_path`]).
    pub path: String,
    /// The entry's own metadata (a link's, not its target's).
    pub meta: FileMeta,
    /// For a symbolic link: its target, as written.
    pub link: Option<PathBuf>,
}

impl OutputEntry {
    /// Everything `patterns` select under `root`, sorted by path.
    pub fn list(root: &Path, patterns: &[PathPattern]) -> Vec<OutputEntry> {
        let mut prefixes: Vec<&str> = patterns.iter().map(|p| p.prefix.as_str()).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        // A prefix inside another one is walked with it.
        let tops: Vec<&str> =
            prefixes.iter().copied().filter(|p| !prefixes.iter().any(|q| q != p && is_under(p, q))).collect();
        let mut found = Vec::new();
        for top in tops {
            visit(root, top, &mut found);
        }
        found.retain(|e: &OutputEntry| patterns.iter().any(|p| p.matches(&e.path)));
        found.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        found.dedup_by(|a, b| a.path == b.path);
        found
    }
}

fn visit(root: &Path, rel: &str, found: &mut Vec<OutputEntry>) {
    let path = rel_path::under(root, rel);
    let Ok(meta) = std::fs::symlink_metadata(&path) else { return };
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        if let Ok(target) = std::fs::read_link(&path) {
            found.push(OutputEntry { path: rel.to_string(), meta: FileMeta::of(&meta), link: Some(target) });
        }
    } else if file_type.is_file() {
        found.push(OutputEntry { path: rel.to_string(), meta: FileMeta::of(&meta), link: None });
    } else if file_type.is_dir() {
        let Ok(entries) = std::fs::read_dir(&path) else { return };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            // Names that are not UTF-8 are recorded escaped (see `rel_path`).
            let name = rel_path::escape_name(&name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) && SKIPPED_DIRS.contains(&name.as_ref()) {
                continue;
            }
            let child = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            visit(root, &child, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_listed_as_links_and_never_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("dist/v1")).expect("mkdir");
        std::fs::create_dir_all(root.join("elsewhere")).expect("mkdir");
        std::fs::write(root.join("dist/v1/a.js"), "a").expect("write");
        std::fs::write(root.join("elsewhere/secret"), "s").expect("write");
        std::os::unix::fs::symlink("v1", root.join("dist/current")).expect("symlink");
        std::os::unix::fs::symlink("../elsewhere", root.join("dist/out")).expect("symlink");
        std::os::unix::fs::symlink("v1/a.js", root.join("dist/a.js")).expect("symlink");
        std::os::unix::fs::symlink("nowhere", root.join("dist/dangling")).expect("symlink");
        std::os::unix::fs::symlink("dist/v1/a.js", root.join("top.js")).expect("symlink");
        let patterns = [PathPattern::new("dist"), PathPattern::new("*.js"), PathPattern::new("dist/v1")];
        let listed = OutputEntry::list(root, &patterns);
        let shown: Vec<(&str, Option<&str>)> =
            listed.iter().map(|e| (e.path.as_str(), e.link.as_deref().and_then(Path::to_str))).collect();
        assert_eq!(
            shown,
            vec![
                ("dist/a.js", Some("v1/a.js")),
                ("dist/current", Some("v1")),
                ("dist/dangling", Some("nowhere")),
                ("dist/out", Some("../elsewhere")),
                ("dist/v1/a.js", None),
                ("top.js", Some("dist/v1/a.js")),
            ]
        );
    }

    #[test]
    fn names_that_are_not_utf8_are_listed_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("dist")).expect("mkdir");
        let name = std::ffi::OsStr::from_bytes(b"bad\xff.js");
        std::fs::write(root.join("dist").join(name), "b").expect("write");
        std::os::unix::fs::symlink(name, root.join("dist/link")).expect("symlink");
        let listed = OutputEntry::list(root, &[PathPattern::new("dist")]);
        let escaped = rel_path::escape(b"dist/bad\xff.js").into_owned();
        let paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec![escaped.as_str(), "dist/link"]);
        assert_eq!(rel_path::under(root, &listed[0].path), root.join("dist").join(name));
        assert_eq!(listed[1].link.as_deref(), Some(Path::new(name)));
    }
}
