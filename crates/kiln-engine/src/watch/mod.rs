//! Watching files: the inotify (or polling) watch set and the debouncer.

pub mod debouncer;
pub mod watch_set;
