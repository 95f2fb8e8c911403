//! The file system: file metadata, root-relative paths (any bytes), the tree walker, the file
//! index, path patterns, atomic writes, the `.kiln` layout and the project lock.

pub mod atomic_write;
pub mod cpus;
pub mod file_index;
pub mod file_meta;
pub mod layout;
pub mod path_pattern;
pub mod project_lock;
pub mod rel_path;
pub mod walker;
