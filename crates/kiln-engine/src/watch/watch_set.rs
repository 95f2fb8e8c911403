//! Watching the files that targets read.
//!
//! In: the project root, the configuration file, and the input and output patterns of the
//! watched targets. Out: root-relative paths that changed, filtered, on a channel; and the
//! directories being watched, kept in step with the configuration.
//!
//! Every directory that can hold an input is watched on its own (inotify, not recursive):
//! the directories under each input prefix and those leading to it, as the tree walker
//! finds them, so ignore files apply, `.git` and `.kiln` are never watched, and neither are
//! directories that only hold declared outputs. A directory that appears is walked at once:
//! its subdirectories are watched and the files already in it are reported, so that
//! `mkdir -p a/b/c && echo x > a/b/c/f` is not missed. Editor temporaries (vim's `4913`,
//! `*.swp`, `*~`, emacs `#*#` and `.#*`, JetBrains `___jb_tmp___`) never count. When inotify
//! runs out of watches, the directories it refused are polled instead and a notice says
//! which limit to raise; when its queue overflows, a rescan is requested.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::fs::path_pattern::is_under;
use crate::fs::rel_path;
use crate::fs::walker::{SKIPPED_DIRS, Scope, walk_dirs};
use crate::watch::editor_temp::is_editor_temp;
use crate::watch::watch_scope::WatchScope;

/// What the watcher thread hands over.
#[derive(Debug)]
pub enum RawEvent {
    Paths(Vec<PathBuf>),
    /// Events were lost: look at everything again.
    Rescan,
    Error(String),
}

/// Raw events queued for the dispatcher before the watcher drops them (and asks for a rescan
/// instead: nothing is missed, and memory stays bounded however busy the tree is).
pub const RAW_QUEUED: usize = 65_536;

/// The watcher threads' end of the channel to the dispatcher: bounded; when it is full,
/// events are dropped and a [`RawEvent::Rescan`] goes ahead of the next one that fits.
#[derive(Clone)]
pub struct RawSender {
    tx: mpsc::Sender<RawEvent>,
    lost: Arc<AtomicBool>,
}

impl RawSender {
    pub fn channel() -> (RawSender, mpsc::Receiver<RawEvent>) {
        let (tx, rx) = mpsc::channel(RAW_QUEUED);
        (RawSender { tx, lost: Arc::new(AtomicBool::new(false)) }, rx)
    }

    pub fn send(&self, msg: RawEvent) {
        if self.lost.load(Ordering::Relaxed) {
            if self.tx.try_send(RawEvent::Rescan).is_err() {
                return;
            }
            self.lost.store(false, Ordering::Relaxed);
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(msg) {
            self.lost.store(true, Ordering::Relaxed);
        }
    }
}

/// The set of watched directories and the watchers behind it.
pub struct WatchSet {
    root: PathBuf,
    inotify: notify::RecommendedWatcher,
    poller: Option<notify::PollWatcher>,
    tx: RawSender,
    watched: BTreeSet<String>,
    polled: BTreeSet<String>,
    /// Directories refused because the inotify limit was reached, reported once per sync.
    pub refused: Vec<String>,
}

fn handler(tx: RawSender) -> impl notify::EventHandler {
    move |res: notify::Result<notify::Event>| {
        let msg = match res {
            Ok(e) if e.need_rescan() => RawEvent::Rescan,
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => return,
            Ok(e) => RawEvent::Paths(e.paths),
            Err(e) => RawEvent::Error(e.to_string()),
        };
        tx.send(msg);
    }
}

impl WatchSet {
    pub fn new(root: &Path, tx: RawSender) -> notify::Result<WatchSet> {
        let inotify = notify::recommended_watcher(handler(tx.clone()))?;
        Ok(WatchSet {
            root: root.to_path_buf(),
            inotify,
            poller: None,
            tx,
            watched: BTreeSet::new(),
            polled: BTreeSet::new(),
            refused: Vec::new(),
        })
    }

    /// How many directories are watched (by inotify and by polling).
    pub fn watched_dirs(&self) -> usize {
        self.watched.len() + self.polled.len()
    }

    /// The directories a scope covers, found by walking the tree.
    pub fn dirs_for(&self, scope: &WatchScope, within: Option<&str>) -> BTreeSet<String> {
        let prefixes: Vec<String> = match within {
            None => scope.inputs.iter().cloned().collect(),
            Some(dir) => scope
                .inputs
                .iter()
                .filter_map(|p| {
                    if is_under(p, dir) {
                        Some(p.clone())
                    } else if is_under(dir, p) {
                        Some(dir.to_string())
                    } else {
                        None
                    }
                })
                .collect(),
        };
        let walk_scope = Scope::new(prefixes);
        if walk_scope.is_empty() {
            return BTreeSet::new();
        }
        walk_dirs(&self.root, &walk_scope, 2)
            .into_iter()
            .filter(|d| within.is_none_or(|w| is_under(d, w)))
            .filter(|d| !scope.output_only(d))
            .collect()
    }

    /// Watches exactly `dirs` (plus whatever is already watched when `add_only`).
    pub fn sync(&mut self, dirs: &BTreeSet<String>, add_only: bool) {
        self.refused.clear();
        if !add_only {
            let gone: Vec<String> = self.watched.difference(dirs).cloned().collect();
            for d in gone {
                let _ = self.inotify.unwatch(&self.abs(&d));
                self.watched.remove(&d);
            }
            let gone: Vec<String> = self.polled.difference(dirs).cloned().collect();
            for d in gone {
                let abs = self.abs(&d);
                if let Some(p) = self.poller.as_mut() {
                    let _ = p.unwatch(&abs);
                }
                self.polled.remove(&d);
            }
        }
        for d in dirs {
            if self.watched.contains(d) || self.polled.contains(d) {
                continue;
            }
            let abs = self.abs(d);
            match self.inotify.watch(&abs, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d.clone());
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    self.refused.push(d.clone());
                    if self.poll(&abs) {
                        self.polled.insert(d.clone());
                    }
                }
                Err(_) => {} // vanished meanwhile; its parent's events will bring it back
            }
        }
    }

    /// Watches `dirs` again even if they were watched: a directory deleted and created
    /// again under the same name is a new inode that the old watch does not cover.
    pub fn rewatch(&mut self, dirs: &BTreeSet<String>) {
        for d in dirs {
            self.watched.remove(d);
        }
        self.sync(dirs, true);
    }

    /// Forgets a directory that was deleted (inotify drops its watch by itself).
    pub fn forget(&mut self, dir: &str) {
        let gone: Vec<String> = self.watched.iter().filter(|d| is_under(d, dir)).cloned().collect();
        for d in gone {
            let _ = self.inotify.unwatch(&self.abs(&d));
            self.watched.remove(&d);
        }
    }

    pub fn is_watched(&self, dir: &str) -> bool {
        self.watched.contains(dir) || self.polled.contains(dir)
    }

    fn poll(&mut self, abs: &Path) -> bool {
        if self.poller.is_none() {
            // Contents are compared too: the poller sees modification times in whole seconds.
            let config =
                notify::Config::default().with_poll_interval(Duration::from_secs(1)).with_compare_contents(true);
            self.poller = notify::PollWatcher::new(handler(self.tx.clone()), config).ok();
        }
        self.poller.as_mut().is_some_and(|p| p.watch(abs, RecursiveMode::NonRecursive).is_ok())
    }

    fn abs(&self, rel: &str) -> PathBuf {
        rel_path::under(&self.root, rel)
    }

    /// The root-relative form of a reported path (escaped: a name that is not UTF-8 counts
    /// like any other, see [`crate::fs::rel_path`]), unless it is to be ignored.
    pub fn relevant(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        if rel.components().any(|c| SKIPPED_DIRS.iter().any(|d| c.as_os_str() == *d)) {
            return None;
        }
        let out = rel_path::from_relative(rel);
        let name = out.rsplit('/').next().unwrap_or(&out);
        if out.is_empty() || is_editor_temp(name) {
            return None;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_events_and_asks_for_a_rescan_ahead_of_the_next() {
        let (tx, mut rx) = RawSender::channel();
        for i in 0..RAW_QUEUED + 100 {
            tx.send(RawEvent::Paths(vec![PathBuf::from(format!("f{i}"))]));
        }
        let mut seen = 0;
        while let Ok(e) = rx.try_recv() {
            assert!(matches!(e, RawEvent::Paths(_)));
            seen += 1;
        }
        assert_eq!(seen, RAW_QUEUED, "the queue holds its bound, no more");
        tx.send(RawEvent::Paths(vec![PathBuf::from("later")]));
        assert!(matches!(rx.try_recv(), Ok(RawEvent::Rescan)), "the loss is reported first");
        assert!(matches!(rx.try_recv(), Ok(RawEvent::Paths(p)) if p == [PathBuf::from("later")]));
    }

    #[test]
    fn editor_temporaries_are_recognised() {
        for name in ["4913", ".main.c.swp", "main.c~", "#main.c#", ".#main.c", "main.c___jb_tmp___", "x___jb_old___"] {
            assert!(is_editor_temp(name), "{name}");
        }
        for name in ["main.c", "4914", "swp.c", "a#b"] {
            assert!(!is_editor_temp(name), "{name}");
        }
    }

    #[test]
    fn output_only_directories_are_left_alone() {
        let scope = WatchScope {
            inputs: ["src".to_string(), "out/gen/in".to_string()].into(),
            outputs: ["out".to_string()].into(),
        };
        assert!(scope.output_only("out/bin"));
        assert!(!scope.output_only("out"), "it leads to an input");
        assert!(!scope.output_only("out/gen/in/x"), "an input points inside it");
        assert!(!scope.output_only("src/a"));
    }
}
