//! How the cache fails.

/// Expected failures of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache entry for `{path}` is corrupt (blob {digest} does not match its content); it was discarded")]
    Corrupt { path: String, digest: String },
    #[error("cache blob {digest} for `{path}` is missing; the entry was discarded")]
    Missing { path: String, digest: String },
    #[error("refusing to restore `{path}`: it would be written outside the project root")]
    Escapes { path: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CacheError {
    let context = context.into();
    move |source| CacheError::Io { context, source }
}
