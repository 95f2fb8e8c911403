//! A sorted listing of the files under the input roots, with their metadata.
//!
//! One parallel walk covers the literal prefixes of every selected target's input patterns,
//! honouring .gitignore, .ignore and .git/info/exclude (also outside a git repository) and
//! never entering `.git` or `.kiln`. A target's input set is then a range lookup plus glob
//! matching, not a walk of its own.

use std::path::Path;

use crate::fs::file_meta::FileMeta;
use crate::fs::path_pattern::PathPattern;
use crate::fs::walker::{Scope, walk};

/// Files (root-relative, `/`-separated, sorted) and their metadata.
#[derive(Debug, Default, Clone)]
pub struct FileIndex {
    entries: Vec<(String, FileMeta)>,
}

impl FileIndex {
    /// Lists the files under the given root-relative directories (or files), honouring
    /// ignore files when `honour_ignores` (for inputs; outputs are often ignored files and
    /// are listed regardless). See [`crate::fs::walker`].
    pub fn scan(root: &Path, prefixes: impl IntoIterator<Item = String>, honour_ignores: bool) -> FileIndex {
        let threads = crate::fs::cpus::cpus();
        FileIndex::scan_with(root, prefixes, honour_ignores, threads)
    }

    /// Like [`FileIndex::scan`], on the calling thread: for the few files of one target,
    /// where starting threads would cost more than the walk.
    pub fn scan_small(root: &Path, prefixes: impl IntoIterator<Item = String>, honour_ignores: bool) -> FileIndex {
        FileIndex::scan_with(root, prefixes, honour_ignores, 1)
    }

    fn scan_with(
        root: &Path,
        prefixes: impl IntoIterator<Item = String>,
        honour_ignores: bool,
        threads: usize,
    ) -> FileIndex {
        let scope = Scope::new(prefixes);
        if scope.is_empty() {
            return FileIndex::default();
        }
        let mut entries = walk(root, &scope, honour_ignores, threads).files;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        FileIndex { entries }
    }

    /// Every listed path.
    pub fn paths(self) -> Vec<String> {
        self.entries.into_iter().map(|(p, _)| p).collect()
    }

    /// Every listed file with its metadata, sorted by path.
    pub fn into_entries(self) -> Vec<(String, FileMeta)> {
        self.entries
    }

    /// Files selected by any of `include` and by none of `exclude`, sorted by path.
    pub fn select(&self, include: &[PathPattern], exclude: &[PathPattern]) -> Vec<&(String, FileMeta)> {
        let mut out: Vec<&(String, FileMeta)> = Vec::new();
        for pattern in include {
            let start = self.entries.partition_point(|(p, _)| p.as_str() < pattern.prefix.as_str());
            for entry in &self.entries[start..] {
                let path = &entry.0;
                if !path.starts_with(pattern.prefix.as_str()) {
                    break;
                }
                if pattern.matches(path) && !exclude.iter().any(|x| x.matches(path)) {
                    out.push(entry);
                }
            }
        }
        if include.len() > 1 {
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            out.dedup_by(|a, b| a.0 == b.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_by_glob_and_honours_ignore_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for f in ["src/a.c", "src/b.h", "src/sub/c.c", "src/gen/skip.c", "srcx/d.c", ".kiln/x.c"] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
            std::fs::write(&p, f).expect("write");
        }
        std::fs::write(root.join("src/.gitignore"), "gen/\n").expect("write");
        let index = FileIndex::scan(root, ["src".to_string(), String::new()], true);
        assert_eq!(FileIndex::scan(root, ["src/sub".to_string()], true).entries.len(), 1);
        let nested = FileIndex::scan(root, ["src/sub/c.c".to_string(), "srcx".to_string()], true);
        let names: Vec<&str> = nested.entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, vec!["src/sub/c.c", "srcx/d.c"]);
        let c_files = index.select(&[PathPattern::new("src/**/*.c")], &[]);
        let names: Vec<&str> = c_files.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, vec!["src/a.c", "src/sub/c.c"]);
        let all = index.select(&[PathPattern::new("**/*.c")], &[PathPattern::new("src/sub")]);
        let names: Vec<&str> = all.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, vec!["src/a.c", "srcx/d.c"]);
    }
}
