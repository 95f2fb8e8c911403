//! An input or output pattern: a literal path (a file, or a directory meaning everything
//! under it) or a glob, with the literal directory prefix that a walk must start from.

use std::collections::HashMap;
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};

/// One entry of `inputs` or `outputs`, relative to the project root.
#[derive(Debug, Clone)]
pub struct PathPattern {
    pub text: String,
    /// The longest leading run of path components without glob characters; `""` is the root.
    pub prefix: String,
    /// Matches the part of a path after `prefix/`.
    matcher: Matcher,
}

/// How the part after the prefix is matched. The common shapes (`*.c`, `**/*.c`, `**`) are
/// checked directly; anything else goes through a compiled glob.
#[derive(Debug, Clone)]
enum Matcher {
    /// A literal path: the prefix itself or anything under it.
    Literal,
    /// `**` or `**/*`: everything under the prefix.
    Any,
    /// `*SUFFIX` (one level) or `**/*SUFFIX` (any depth).
    Suffix {
        suffix: String,
        any_depth: bool,
    },
    Glob(Arc<GlobMatcher>),
}

impl Matcher {
    /// Recognises the shapes that need no glob engine.
    fn simple(rest: &str) -> Option<Matcher> {
        if rest == "**" || rest == "**/*" {
            return Some(Matcher::Any);
        }
        let (any_depth, tail) = match rest.strip_prefix("**/") {
            Some(tail) => (true, tail),
            None => (false, rest),
        };
        let suffix = tail.strip_prefix('*')?;
        if suffix.contains(['*', '?', '[', '{', '/', '\\']) {
            return None;
        }
        Some(Matcher::Suffix { suffix: suffix.to_string(), any_depth })
    }
}

fn has_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', '{'])
}

/// Compiles patterns, sharing one matcher between patterns whose glob part is the same
/// (`a/*.c` and `b/*.c` both match `*.c` below their prefix): compiling a glob costs far
/// more than matching with it, and workspaces repeat the same shapes.
#[derive(Default)]
pub struct PatternCompiler {
    matchers: HashMap<String, Option<Arc<GlobMatcher>>>,
}

impl PatternCompiler {
    /// Compiles a pattern that the configuration already checked; a glob that does not
    /// compile is treated as a literal path.
    pub fn compile(&mut self, text: &str) -> PathPattern {
        let text = text.trim_start_matches("./").trim_end_matches('/').to_string();
        let components: Vec<&str> = text.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        let literal_len = components.iter().take_while(|c| !has_meta(c)).count();
        let prefix = components[..literal_len].join("/");
        let matcher = if literal_len == components.len() {
            Matcher::Literal
        } else {
            let rest = components[literal_len..].join("/");
            match Matcher::simple(&rest) {
                Some(m) => m,
                None => self
                    .matchers
                    .entry(rest)
                    .or_insert_with_key(|rest| {
                        GlobBuilder::new(rest)
                            .literal_separator(true)
                            .build()
                            .ok()
                            .map(|g| Arc::new(g.compile_matcher()))
                    })
                    .clone()
                    .map_or(Matcher::Literal, Matcher::Glob),
            }
        };
        PathPattern { text, prefix, matcher }
    }
}

impl PathPattern {
    /// Compiles one pattern on its own.
    pub fn new(text: &str) -> PathPattern {
        PatternCompiler::default().compile(text)
    }

    /// Whether `rel` (a root-relative path with `/` separators, escaped as
    /// [`crate::fs::rel_path`] says) is selected. A byte that is not UTF-8 is one character of
    /// the escaped form, so `*` matches it and `?` matches exactly one.
    pub fn matches(&self, rel: &str) -> bool {
        if let Matcher::Literal = self.matcher {
            return is_under(rel, &self.prefix);
        }
        let rest = if self.prefix.is_empty() {
            rel
        } else if is_under(rel, &self.prefix) && rel.len() > self.prefix.len() {
            &rel[self.prefix.len() + 1..]
        } else {
            return false;
        };
        match &self.matcher {
            Matcher::Literal | Matcher::Any => true,
            Matcher::Suffix { suffix, any_depth: true } => {
                rest.rsplit('/').next().is_some_and(|name| name.ends_with(suffix.as_str()))
            }
            Matcher::Suffix { suffix, any_depth: false } => !rest.contains('/') && rest.ends_with(suffix.as_str()),
            // globset matches bytes: the name as it is on disk.
            Matcher::Glob(m) => m.is_match(crate::fs::rel_path::to_path(rest)),
        }
    }
}

/// Whether `rel` is `dir` itself or inside it; everything is under the root `""`.
pub fn is_under(rel: &str, dir: &str) -> bool {
    dir.is_empty() || rel == dir || (rel.starts_with(dir) && rel.as_bytes().get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literal_prefix() {
        assert_eq!(PathPattern::new("core/**/*.c").prefix, "core");
        assert_eq!(PathPattern::new("*.c").prefix, "");
        assert_eq!(PathPattern::new("./a/b/").prefix, "a/b");
        assert!(matches!(PathPattern::new("a/b").matcher, Matcher::Literal));
    }

    #[test]
    fn star_does_not_cross_directories() {
        let p = PathPattern::new("core/*.c");
        assert!(p.matches("core/a.c"));
        assert!(!p.matches("core/sub/a.c"));
        assert!(PathPattern::new("core/**/*.c").matches("core/sub/a.c"));
    }

    #[test]
    fn shared_matchers_keep_their_own_prefix() {
        let mut c = PatternCompiler::default();
        let a = c.compile("a/*.c");
        let b = c.compile("b/*.c");
        assert!(a.matches("a/x.c") && !a.matches("b/x.c"));
        assert!(b.matches("b/x.c") && !b.matches("a/x.c"));
        let x = c.compile("a/[xy].c");
        let y = c.compile("b/[xy].c");
        assert!(x.matches("a/x.c") && !x.matches("b/x.c") && y.matches("b/y.c"));
        assert_eq!(c.matchers.len(), 1, "one compiled glob for both");
        assert!(c.compile("**/*.c").matches("deep/er/x.c"));
    }

    #[test]
    fn simple_shapes_match_like_globs() {
        let cases = [
            ("src/*.txt", "src/a.txt", true),
            ("src/*.txt", "src/.txt", true),
            ("src/*.txt", "src/d/a.txt", false),
            ("src/*.txt", "src/a.txt.bak", false),
            ("src/**/*.c", "src/a.c", true),
            ("src/**/*.c", "src/x/y/a.c", true),
            ("src/**/*.c", "src/x/y/a.h", false),
            ("src/**", "src/x/y/z", true),
            ("src/**/*", "src/z", true),
            ("src/*", "src/x/y", false),
            ("*.c", "top.c", true),
            ("*.c", "dir/top.c", false),
            ("**/*.c", "dir/top.c", true),
        ];
        for (pattern, path, want) in cases {
            let glob =
                globset::GlobBuilder::new(pattern).literal_separator(true).build().expect("glob").compile_matcher();
            assert_eq!(glob.is_match(path), want, "globset disagrees on {pattern} {path}");
            assert_eq!(PathPattern::new(pattern).matches(path), want, "{pattern} {path}");
        }
    }

    #[test]
    fn names_that_are_not_utf8_match_like_any_other() {
        let bad = crate::fs::rel_path::escape(b"src/bad\xff.c").into_owned();
        for pattern in ["src/*.c", "src/**/*.c", "src/**", "src", "src/b*", "src/{bad,good}*.c", "src/bad?.c", "**/*.c"]
        {
            assert!(PathPattern::new(pattern).matches(&bad), "{pattern} matches {bad:?}");
        }
        for pattern in ["src/*.h", "src/good*", "src/bad??.c", "src/bad.c"] {
            assert!(!PathPattern::new(pattern).matches(&bad), "{pattern} does not match {bad:?}");
        }
        let deep = crate::fs::rel_path::escape(b"src/d\xfe/x.c").into_owned();
        assert!(PathPattern::new("src/*/x.c").matches(&deep));
        assert!(!PathPattern::new("src/*.c").matches(&deep), "an escaped byte is not a separator");
    }

    #[test]
    fn literal_directory_covers_its_tree() {
        let p = PathPattern::new("out/dir");
        assert!(p.matches("out/dir/x"));
        assert!(p.matches("out/dir"));
        assert!(!p.matches("out/dir2"));
    }
}
