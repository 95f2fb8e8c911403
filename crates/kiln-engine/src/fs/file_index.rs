//! A sorted listing of the files under the input roots, with their metadata.
//!
//! One parallel walk covers the literal prefixes of every selected target's input patterns,
//! honouring .gitignore, .ignore and .git/info/exclude (also outside a git repository) and
//! never entering `.git` or `.kiln`. A target's input set is then a range lookup plus glob
//! matching, not a walk of its own. Paths are escaped (see [`crate::fs::rel_path`]): a name
//! that is not UTF-8 is listed like any other. What could not be read is kept too, so that a
//! target whose inputs may be in an unreadable directory fails instead of silently building
//! without them ([`FileIndex::unreadable_in`]).

use std::path::Path;

use crate::fs::file_meta::FileMeta;
use crate::fs::path_pattern::{PathPattern, is_under};
use crate::fs::walker::{Scope, Unreadable, walk};

/// Files (root-relative, `/`-separated, escaped, sorted) and their metadata, and what could
/// not be read.
#[derive(Debug, Default, Clone)]
pub struct FileIndex {
    entries: Vec<(String, FileMeta)>,
    unreadable: Vec<Unreadable>,
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
        let walked = walk(root, &scope, honour_ignores, threads);
        let mut entries = walked.files;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut unreadable = walked.unreadable;
        unreadable.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        FileIndex { entries, unreadable }
    }

    /// Everything the walk could not read, sorted by path.
    pub fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }

    /// The first unreadable directory or file that may hold (or be) a file selected by
    /// `include` and not `exclude`: while it exists, the selection is not known.
    pub fn unreadable_in(&self, include: &[PathPattern], exclude: &[PathPattern]) -> Option<&Unreadable> {
        self.unreadable.iter().find(|u| {
            let concerned = include.iter().any(|p| {
                if u.is_dir { is_under(&u.path, &p.prefix) || is_under(&p.prefix, &u.path) } else { p.matches(&u.path) }
            });
            concerned && !exclude.iter().any(|x| x.matches(&u.path))
        })
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

    #[test]
    fn an_unreadable_directory_concerns_the_patterns_that_may_reach_into_it() {
        let u = |path: &str, is_dir: bool| Unreadable { path: path.into(), is_dir, error: "denied".into() };
        let index = FileIndex {
            entries: Vec::new(),
            unreadable: vec![u("gen/out", true), u("src/locked", true), u("top/x.c", false)],
        };
        let p = |t: &str| PathPattern::new(t);
        let found = |inc: &[PathPattern], exc: &[PathPattern]| index.unreadable_in(inc, exc).map(|u| u.path.clone());
        assert_eq!(found(&[p("src/**/*.c")], &[]).as_deref(), Some("src/locked"), "under the prefix");
        assert_eq!(found(&[p("src/locked/deep/*.c")], &[]).as_deref(), Some("src/locked"), "on the way");
        assert_eq!(found(&[p("docs/**")], &[]), None, "elsewhere");
        assert_eq!(found(&[p("src/**")], &[p("src/locked")]), None, "excluded (a declared output)");
        assert_eq!(found(&[p("top/*.c")], &[]).as_deref(), Some("top/x.c"), "a file the pattern matches");
        assert_eq!(found(&[p("top/*.h")], &[]), None, "a file it does not");
        assert_eq!(found(&[p("**/*.c")], &[]).as_deref(), Some("gen/out"), "the root prefix reaches everything");
    }
}
