//! How the cache fails. None of these stops a build: a restore that fails becomes a run
//! (with a warning), a store that fails leaves the outputs uncached (with a warning).

/// Expected failures of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache entry for `{path}` is corrupt (blob {blob} does not match its content); it was discarded")]
    Corrupt { path: String, blob: String },
    #[error("cache blob {blob} for `{path}` is missing; the entry was discarded")]
    Missing { path: String, blob: String },
    #[error("cache blob {blob} for `{path}` cannot be read ({why}); it was discarded")]
    Unreadable { path: String, blob: String, why: String },
    /// The record itself is not to be trusted: a path outside the project root or the
    /// target's outputs, a link leaving the root.
    #[error("cache entry for `{path}` {why}; it was discarded")]
    BadRecord { path: String, why: String },
    #[error("refusing to restore `{path}`: `{link}` is a symbolic link, and kiln never writes through one")]
    ThroughSymlink { path: String, link: String },
    #[error("the cache is off for this run")]
    Off,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CacheError {
    /// Whether the blob named in the error is bad and must go (with the entry using it).
    pub(crate) fn discards_blob(&self) -> bool {
        matches!(self, CacheError::Corrupt { .. } | CacheError::Missing { .. } | CacheError::Unreadable { .. })
    }

    /// Whether the entry must go: its blob is bad or the record itself is.
    pub(crate) fn discards_entry(&self) -> bool {
        self.discards_blob() || matches!(self, CacheError::BadRecord { .. })
    }
}

pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CacheError {
    let context = context.into();
    move |source| CacheError::Io { context, source }
}
