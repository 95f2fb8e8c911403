//! An input or output pattern: a literal path (a file, or a directory meaning everything
//! under it) or a glob, with the literal directory prefix that a walk must start from.

use globset::{GlobBuilder, GlobMatcher};

/// One entry of `inputs` or `outputs`, relative to the project root.
#[derive(Debug, Clone)]
pub struct PathPattern {
    pub text: String,
    /// The longest leading run of path components without glob characters; `""` is the root.
    pub prefix: String,
    /// `None` for a literal path.
    matcher: Option<GlobMatcher>,
}

fn has_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', '{'])
}

impl PathPattern {
    /// Compiles a pattern that the configuration already checked; a glob that does not
    /// compile is treated as a literal path.
    pub fn new(text: &str) -> PathPattern {
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
            GlobBuilder::new(&components.join("/"))
                .literal_separator(true)
                .build()
                .ok()
                .map(|g| g.compile_matcher())
        };
        PathPattern {
            text,
            prefix,
            matcher,
        }
    }

    /// Whether `rel` (a root-relative path with `/` separators) is selected.
    pub fn matches(&self, rel: &str) -> bool {
        match &self.matcher {
            Some(m) => m.is_match(rel),
            None => is_under(rel, &self.prefix),
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
    fn literal_directory_covers_its_tree() {
        let p = PathPattern::new("out/dir");
        assert!(p.matches("out/dir/x"));
        assert!(p.matches("out/dir"));
        assert!(!p.matches("out/dir2"));
    }
}
