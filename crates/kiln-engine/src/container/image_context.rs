//! What an image build sees: the files of its context that `.containerignore` (or, without
//! one, `.dockerignore`) does not exclude, and its Containerfile. They are an image
//! target's inputs: its key changes exactly when what the engine would be sent changes.

use std::path::Path;

use globset::GlobMatcher;
use kiln_config::ImageSpec;

use crate::container::engine::containerfile;
use crate::fs::file_index::FileIndex;
use crate::fs::file_meta::FileMeta;

/// The context's files (root-relative, sorted) after the ignore file, plus the
/// Containerfile. Git's ignore files do not apply: the engine does not read them either.
pub fn context_files(root: &Path, spec: &ImageSpec) -> Result<Vec<(String, FileMeta)>, String> {
    let context = if spec.context == "." { String::new() } else { spec.context.trim_end_matches('/').to_string() };
    if !root.join(&context).is_dir() {
        return Err(format!("the build context `{}` is not a directory", spec.context));
    }
    let rules = IgnoreRules::load(&root.join(&context))?;
    let index = FileIndex::scan_small(root, [context.clone()], false);
    let inside = |path: &str| if context.is_empty() { path.to_string() } else { path[context.len() + 1..].to_string() };
    // What the engine would fail to send, unless the ignore file leaves it out anyway.
    if let Some(unreadable) = index.unreadable().iter().find(|u| u.path == context || !rules.excludes(&inside(&u.path)))
    {
        return Err(unreadable.message("build context"));
    }
    let mut files: Vec<(String, FileMeta)> = index
        .into_entries()
        .into_iter()
        .filter(|(path, _)| {
            let inside = if context.is_empty() { path.as_str() } else { &path[context.len() + 1..] };
            !rules.excludes(inside)
        })
        .collect();
    let file = containerfile(spec, root);
    if !files.iter().any(|(p, _)| *p == file) {
        let meta =
            std::fs::metadata(root.join(&file)).map_err(|e| format!("cannot read the Containerfile `{file}`: {e}"))?;
        files.push((file, FileMeta::of(&meta)));
        files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(files)
}

/// The rules of a `.containerignore` / `.dockerignore`: globs relative to the context, a
/// rule also covering everything under a directory it matches, `!` re-including, the last
/// matching rule deciding.
#[derive(Default)]
pub struct IgnoreRules {
    rules: Vec<(bool, GlobMatcher)>,
}

impl IgnoreRules {
    pub fn load(context: &Path) -> Result<IgnoreRules, String> {
        for name in [".containerignore", ".dockerignore"] {
            let path = context.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => return IgnoreRules::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        Ok(IgnoreRules::default())
    }

    pub fn parse(text: &str) -> Result<IgnoreRules, String> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (include, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches('/').trim_start_matches("./").trim_end_matches('/');
            if pattern.is_empty() {
                continue;
            }
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("bad pattern `{line}`: {e}"))?;
            rules.push((include, glob.compile_matcher()));
        }
        Ok(IgnoreRules { rules })
    }

    /// Whether a path (relative to the context) is left out of the build context.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (include, rule) in &self.rules {
            if matches_or_parent(rule, path) {
                excluded = !include;
            }
        }
        excluded
    }
}

/// Whether `rule` matches `path` (escaped, see [`crate::fs::rel_path`]: globs see its raw
/// bytes) or one of its parent directories.
fn matches_or_parent(rule: &GlobMatcher, path: &str) -> bool {
    let is_match = |p: &str| rule.is_match(crate::fs::rel_path::to_path(p));
    if is_match(path) {
        return true;
    }
    path.match_indices('/').any(|(i, _)| is_match(&path[..i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules_follow_the_docker_semantics() {
        let rules = IgnoreRules::parse("# notes\n*.md\ntarget\n**/*.log\n!keep.md\n/tmp/*\n").unwrap();
        assert!(rules.excludes("README.md"));
        assert!(!rules.excludes("keep.md"), "a later `!` re-includes");
        assert!(!rules.excludes("docs/README.md"), "`*` does not cross directories");
        assert!(rules.excludes("target/debug/app"), "a directory rule covers what is under it");
        assert!(rules.excludes("a/b/c.log"));
        assert!(rules.excludes("tmp/x"));
        assert!(!rules.excludes("src/main.c"));
    }

    #[test]
    fn names_that_are_not_utf8_are_in_the_context_and_ignore_rules_see_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir(&app).unwrap();
        std::fs::write(app.join("Containerfile"), "FROM scratch\n").unwrap();
        std::fs::write(app.join(".containerignore"), "skip?.log\n").unwrap();
        std::fs::write(app.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), "x").unwrap();
        std::fs::write(app.join(std::ffi::OsStr::from_bytes(b"skip\xff.log")), "x").unwrap();
        let spec =
            ImageSpec { name: "x".into(), context: "app".into(), file: None, stage: None, args: Default::default() };
        let files: Vec<String> = context_files(dir.path(), &spec).unwrap().into_iter().map(|(p, _)| p).collect();
        let bad = crate::fs::rel_path::escape(b"app/bad\xff.txt").into_owned();
        assert_eq!(files, vec!["app/.containerignore".to_string(), "app/Containerfile".to_string(), bad]);
    }

    #[test]
    fn containerignore_wins_over_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.log\n").unwrap();
        assert!(IgnoreRules::load(dir.path()).unwrap().excludes("a.log"));
        std::fs::write(dir.path().join(".containerignore"), "*.tmp\n").unwrap();
        let rules = IgnoreRules::load(dir.path()).unwrap();
        assert!(rules.excludes("a.tmp") && !rules.excludes("a.log"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// A `.containerignore` may hold anything: a bad pattern is an error, never a panic.
        #[test]
        fn any_ignore_file_parses_or_fails(text in "(\\PC{0,12}|[!/*.{}\\[\\]a-c]{0,8})(\n(\\PC{0,12}|[!/*.{}\\[\\]a-c]{0,8})){0,6}", path in "[a-c/.]{0,10}") {
            if let Ok(rules) = IgnoreRules::parse(&text) {
                let _ = rules.excludes(&path);
            }
        }
    }
}
