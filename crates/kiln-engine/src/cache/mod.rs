//! Keys and the content-addressed cache: digests, metadata fingerprints, the stat cache,
//! manifests (what went into a key), the store of blobs and action records, and the state of
//! each target's last build.

pub mod action_record;
pub mod cache_error;
pub mod digest;
pub mod fingerprint;
pub mod manifest;
pub mod prune;
pub mod restore;
pub mod stat_cache;
pub mod state;
pub mod store;
