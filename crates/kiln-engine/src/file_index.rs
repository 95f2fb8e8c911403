//! A sorted listing of the files under the input roots, with their metadata.
//!
//! One parallel walk covers the literal prefixes of every selected target's input patterns,
//! honouring .gitignore, .ignore and .git/info/exclude (also outside a git repository) and
//! never entering `.git` or `.kiln`. A target's input set is then a range lookup plus glob
//! matching, not a walk of its own.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use crate::path_pattern::{PathPattern, is_under};

/// What the stat cache compares to decide whether a file must be hashed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileMeta {
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
    pub executable: bool,
}

impl FileMeta {
    pub fn of(meta: &std::fs::Metadata) -> FileMeta {
        use std::os::unix::fs::MetadataExt;
        FileMeta {
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ino: meta.ino(),
            executable: meta.mode() & 0o111 != 0,
        }
    }
}

/// Files (root-relative, `/`-separated, sorted) and their metadata.
#[derive(Debug, Default, Clone)]
pub struct FileIndex {
    entries: Vec<(String, FileMeta)>,
}

/// Directories the walker never enters.
const SKIPPED_DIRS: [&str; 2] = [".git", ".kiln"];

impl FileIndex {
    /// Walks the given root-relative directories (or files); nested ones are walked once.
    /// `honour_ignores` applies .gitignore and friends (for inputs; outputs are often
    /// ignored files and are listed regardless).
    pub fn scan(
        root: &Path,
        prefixes: impl IntoIterator<Item = String>,
        honour_ignores: bool,
    ) -> FileIndex {
        let prefixes: BTreeSet<String> = prefixes.into_iter().collect();
        let mut minimal: Vec<&String> = Vec::new();
        for p in &prefixes {
            if !minimal.iter().any(|m| is_under(p, m)) {
                minimal.push(p);
            }
        }
        let existing: Vec<std::path::PathBuf> = minimal
            .iter()
            .map(|p| root.join(p))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        let Some((first, rest)) = existing.split_first() else {
            return FileIndex::default();
        };

        let mut builder = ignore::WalkBuilder::new(first);
        for p in rest {
            builder.add(p);
        }
        builder
            .standard_filters(honour_ignores)
            .hidden(false)
            .require_git(false)
            .git_global(false)
            .threads(2)
            .filter_entry(|e| {
                !(e.file_type().is_some_and(|t| t.is_dir())
                    && SKIPPED_DIRS.iter().any(|s| e.file_name() == *s))
            });
        let found = Mutex::new(Vec::new());
        builder.build_parallel().run(|| {
            let found = &found;
            Box::new(move |entry| {
                let Ok(entry) = entry else {
                    return ignore::WalkState::Continue;
                };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return ignore::WalkState::Continue;
                }
                let Ok(rel) = entry.path().strip_prefix(root) else {
                    return ignore::WalkState::Continue;
                };
                let (Some(rel), Ok(meta)) = (rel.to_str(), entry.metadata()) else {
                    return ignore::WalkState::Continue;
                };
                found
                    .lock()
                    .expect("walker lock is never poisoned")
                    .push((rel.to_string(), FileMeta::of(&meta)));
                ignore::WalkState::Continue
            })
        });
        let mut entries = found.into_inner().expect("walker lock is never poisoned");
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        FileIndex { entries }
    }

    /// Files selected by any of `include` and by none of `exclude`, sorted by path.
    pub fn select(
        &self,
        include: &[PathPattern],
        exclude: &[PathPattern],
    ) -> Vec<(String, FileMeta)> {
        let mut out: Vec<(String, FileMeta)> = Vec::new();
        for pattern in include {
            let start = self
                .entries
                .partition_point(|(p, _)| p.as_str() < pattern.prefix.as_str());
            for (path, meta) in &self.entries[start..] {
                if !path.starts_with(pattern.prefix.as_str()) {
                    break;
                }
                if is_under(path, &pattern.prefix)
                    && pattern.matches(path)
                    && !exclude.iter().any(|x| x.matches(path))
                {
                    out.push((path.clone(), *meta));
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
        for f in [
            "src/a.c",
            "src/b.h",
            "src/sub/c.c",
            "src/gen/skip.c",
            "srcx/d.c",
            ".kiln/x.c",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
            std::fs::write(&p, f).expect("write");
        }
        std::fs::write(root.join("src/.gitignore"), "gen/\n").expect("write");
        let index = FileIndex::scan(root, ["src".to_string(), "".to_string()], true);
        let c_files = index.select(&[PathPattern::new("src/**/*.c")], &[]);
        let names: Vec<&str> = c_files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, vec!["src/a.c", "src/sub/c.c"]);
        let all = index.select(
            &[PathPattern::new("**/*.c")],
            &[PathPattern::new("src/sub")],
        );
        let names: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, vec!["src/a.c", "srcx/d.c"]);
    }
}
