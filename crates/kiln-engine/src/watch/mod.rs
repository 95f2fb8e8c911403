//! Watching files: the inotify (or polling) watch set and the debouncer.

pub mod debouncer;
pub mod editor_temp;
pub mod watch_scope;
pub mod watch_set;
