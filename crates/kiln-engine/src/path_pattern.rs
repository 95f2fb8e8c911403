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
    /// Matches the part of a path after `prefix/`; `None` for a literal path.
    matcher: Option<Arc<GlobMatcher>>,
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
        let text = text
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let components: Vec<&str> = text
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let literal_len = components.iter().take_while(|c| !has_meta(c)).count();
        let prefix = components[..literal_len].join("/");
        let matcher = if literal_len == components.len() {
            None
        } else {
            let rest = components[literal_len..].join("/");
            self.matchers
                .entry(rest)
                .or_insert_with_key(|rest| {
                    GlobBuilder::new(rest)
                        .literal_separator(true)
                        .build()
                        .ok()
                        .map(|g| Arc::new(g.compile_matcher()))
                })
                .clone()
        };
        PathPattern {
            text,
            prefix,
            matcher,
        }
    }
}

impl PathPattern {
    /// Compiles one pattern on its own.
    #[cfg(test)]
    pub fn new(text: &str) -> PathPattern {
        PatternCompiler::default().compile(text)
    }

    /// Whether `rel` (a root-relative path with `/` separators) is selected.
    pub fn matches(&self, rel: &str) -> bool {
        match &self.matcher {
            None => is_under(rel, &self.prefix),
            Some(m) if self.prefix.is_empty() => m.is_match(rel),
            Some(m) => {
                is_under(rel, &self.prefix)
                    && rel.len() > self.prefix.len()
                    && m.is_match(&rel[self.prefix.len() + 1..])
            }
        }
    }
}

/// Whether `rel` is `dir` itself or inside it; everything is under the root `""`.
pub fn is_under(rel: &str, dir: &str) -> bool {
    dir.is_empty()
        || rel == dir
        || (rel.starts_with(dir) && rel.as_bytes().get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literal_prefix() {
        assert_eq!(PathPattern::new("core/**/*.c").prefix, "core");
        assert_eq!(PathPattern::new("*.c").prefix, "");
        assert_eq!(PathPattern::new("./a/b/").prefix, "a/b");
        assert!(PathPattern::new("a/b").matcher.is_none());
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
        assert_eq!(c.matchers.len(), 1);
        assert!(c.compile("**/*.c").matches("deep/er/x.c"));
    }

    #[test]
    fn literal_directory_covers_its_tree() {
        let p = PathPattern::new("out/dir");
        assert!(p.matches("out/dir/x"));
        assert!(p.matches("out/dir"));
        assert!(!p.matches("out/dir2"));
    }
}
