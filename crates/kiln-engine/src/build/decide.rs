//! The decision for a target once its key is known, pure: the facts come from `evaluate.rs`
//! (which hashes, looks in the cache and checks outputs on disk), the verdict and its reason
//! from here.
//!
//! - a trigger runs it, whatever the key;
//! - the key of its last build, with intact outputs: `fresh`; with outputs missing or
//!   modified: restored from the cache, or run when the cache is off for it or no longer has
//!   the entry;
//! - a new key: what changed is the reason (restored when the cache has an entry for it, run
//!   otherwise).

/// What to do with the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    Run(String),
    /// Restore the outputs recorded for the key, saying why.
    Restore(String),
}

/// The key is the one of the last build; `damage` says which outputs on disk no longer match
/// (`None`: all intact).
pub fn same_key(damage: Option<String>, cache_enabled: bool, entry_kept: bool) -> Verdict {
    match damage {
        None => Verdict::Fresh,
        Some(what) if !cache_enabled => Verdict::Run(format!("{what} (cache disabled for this target)")),
        // Pruned or cleaned away: nothing to restore from, and nothing wrong with that.
        Some(what) if !entry_kept => Verdict::Run(format!("{what}; the cache no longer has it")),
        Some(what) => Verdict::Restore(what),
    }
}

/// Why a new key differs from the last build's: `summary` of the manifests' difference when
/// the last build's manifest is still in the cache.
pub fn change_reason(had_previous_build: bool, summary: Option<String>) -> String {
    match (had_previous_build, summary) {
        (false, _) => "no previous build".to_string(),
        (true, Some(what)) => what,
        (true, None) => "inputs or definition changed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_is_fresh_or_restored_or_run_when_it_cannot_be_restored() {
        assert_eq!(same_key(None, true, true), Verdict::Fresh);
        assert_eq!(
            same_key(Some("output o is missing".into()), true, true),
            Verdict::Restore("output o is missing".into())
        );
        assert_eq!(
            same_key(Some("output o is missing".into()), false, true),
            Verdict::Run("output o is missing (cache disabled for this target)".into())
        );
        assert_eq!(
            same_key(Some("output o was modified".into()), true, false),
            Verdict::Run("output o was modified; the cache no longer has it".into())
        );
    }

    #[test]
    fn a_new_key_says_what_changed() {
        assert_eq!(change_reason(false, Some("x".into())), "no previous build");
        assert_eq!(change_reason(true, Some("env CFLAGS changed".into())), "env CFLAGS changed");
        assert_eq!(change_reason(true, None), "inputs or definition changed");
    }
}
