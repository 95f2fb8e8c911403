//! The file system: file metadata, root-relative paths (any bytes), the tree walker, the file
//! index, path patterns, atomic writes, files and directories under `.kiln` reached without
//! following symbolic links, the `.kiln` layout, the project lock, and the listing of a
//! target's outputs.

pub mod atomic_write;
pub mod cpus;
pub mod file_index;
pub mod file_meta;
pub mod layout;
pub mod no_follow;
pub mod output_entry;
pub mod path_pattern;
pub mod project_lock;
pub mod rel_path;
pub mod walker;
