//! A parallel walk of part of the project tree, honouring ignore files the way git does.
//!
//! In: the project root, a [`Scope`] (the prefixes to list and, implicitly, the directories
//! leading to them), and whether ignore files apply. Out: every regular file in scope, with
//! its metadata. Guarantees: `.git` and `.kiln` are never entered; directories outside the
//! scope are never read; a directory that an ignore rule excludes is not entered.
//!
//! Ignore rules: `.gitignore` and `.ignore` in every directory (`.ignore` wins), plus, when
//! the root is inside a git repository, `.git/info/exclude` and the `.gitignore` files of
//! the directories between the repository's top and the root. Deeper rules win, and a
//! negation (`!keep.txt`) re-includes. Unlike a general-purpose walker, metadata comes from
//! `fstatat` on the directory just read, and no file is opened that a directory listing
//! shows to be absent.
//!
//! Names are bytes: a name that is not UTF-8 is listed in its escaped form (see
//! [`crate::fs::rel_path`]), never skipped. A directory that cannot be read (or a file whose
//! metadata cannot be read) for any reason but having vanished is reported in
//! [`Walked::unreadable`], never silently left out: the caller decides whether it concerns
//! what it lists.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::fs::file_meta::FileMeta;
use crate::fs::rel_path;

/// Directories the walker never enters.
pub const SKIPPED_DIRS: [&str; 2] = [".git", ".kiln"];

/// The part of the tree a walk covers: everything under a prefix, and the directories
/// leading to one.
pub struct Scope {
    prefixes: HashSet<String>,
    ancestors: HashSet<String>,
}

impl Scope {
    pub fn new(prefixes: impl IntoIterator<Item = String>) -> Scope {
        let prefixes: HashSet<String> = prefixes.into_iter().collect();
        let mut ancestors = HashSet::new();
        for p in &prefixes {
            let mut cur = p.as_str();
            while let Some((parent, _)) = cur.rsplit_once('/') {
                ancestors.insert(parent.to_string());
                cur = parent;
            }
            if !p.is_empty() {
                ancestors.insert(String::new());
            }
        }
        Scope { prefixes, ancestors }
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The prefixes that are not inside another prefix.
    fn roots(&self) -> Vec<String> {
        let mut roots: Vec<String> = self
            .prefixes
            .iter()
            .filter(|p| {
                let mut cur = p.as_str();
                while let Some((parent, _)) = cur.rsplit_once('/') {
                    if self.prefixes.contains(parent) {
                        return false;
                    }
                    cur = parent;
                }
                p.is_empty() || !self.prefixes.contains("")
            })
            .cloned()
            .collect();
        roots.sort();
        roots
    }

    /// Whether a path is in scope: under a prefix, or a directory on the way to one.
    pub fn admits(&self, rel: &str, is_dir: bool) -> bool {
        if self.prefixes.contains("") {
            return true;
        }
        let mut cur = rel;
        loop {
            if self.prefixes.contains(cur) {
                return true;
            }
            match cur.rsplit_once('/') {
                Some((parent, _)) => cur = parent,
                None => break,
            }
        }
        is_dir && self.ancestors.contains(rel)
    }
}

/// Ignore rules in force in a directory: its own and its ancestors', deepest first.
struct Rules {
    matcher: Option<Gitignore>,
    parent: Option<Arc<Rules>>,
}

impl Rules {
    fn ignored(&self, abs: &Path, is_dir: bool) -> bool {
        let mut cur = Some(self);
        while let Some(rules) = cur {
            if let Some(m) = &rules.matcher {
                match m.matched(abs, is_dir) {
                    Match::Ignore(_) => return true,
                    Match::Whitelist(_) => return false,
                    Match::None => {}
                }
            }
            cur = rules.parent.as_deref();
        }
        false
    }
}

/// Rules from outside the root that still apply inside it (git's own view).
fn outer_rules(root: &Path) -> Option<Arc<Rules>> {
    let top = root.ancestors().find(|d| d.join(".git").exists())?;
    let mut rules: Option<Arc<Rules>> = None;
    let exclude = top.join(".git/info/exclude");
    if exclude.is_file() {
        let mut b = GitignoreBuilder::new(top);
        let _ = b.add(&exclude);
        rules = Some(Arc::new(Rules { matcher: b.build().ok(), parent: None }));
    }
    // Ancestors strictly above the root, from the repository's top down.
    let mut above: Vec<&Path> = root.ancestors().skip(1).take_while(|d| d.starts_with(top)).collect();
    above.reverse();
    for dir in above {
        let file = dir.join(".gitignore");
        if file.is_file() {
            let mut b = GitignoreBuilder::new(dir);
            let _ = b.add(&file);
            rules = Some(Arc::new(Rules { matcher: b.build().ok(), parent: rules }));
        }
    }
    rules
}

struct Job {
    rel: String,
    /// Inside a prefix: everything below is in scope, no need to ask.
    inside: bool,
    rules: Option<Arc<Rules>>,
}

struct Shared<'a> {
    root: &'a Path,
    scope: &'a Scope,
    honour_ignores: bool,
    /// List files (with their metadata) or only directories.
    list_files: bool,
    queue: Mutex<Vec<Job>>,
    wake: Condvar,
    /// Jobs queued or in progress; the walk ends when it reaches zero.
    pending: AtomicUsize,
    found: Mutex<Vec<(String, FileMeta)>>,
    /// Directories that were read, root-relative (`""` for the root).
    dirs: Mutex<Vec<String>>,
    unreadable: Mutex<Vec<Unreadable>>,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<(String, FileMeta)>,
    /// Every directory that was read: the ones a watcher must watch.
    pub dirs: Vec<String>,
    /// What could not be read: whatever is in it is unknown.
    pub unreadable: Vec<Unreadable>,
}

/// A directory that could not be listed, or a file whose metadata could not be read (for
/// another reason than having vanished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Root-relative, escaped (see [`crate::fs::rel_path`]); `""` is the root.
    pub path: String,
    pub is_dir: bool,
    /// What the system said (`Permission denied (os error 13)`).
    pub error: String,
}

impl Unreadable {
    fn new(path: &str, is_dir: bool, error: &std::io::Error) -> Unreadable {
        Unreadable { path: path.to_string(), is_dir, error: error.to_string() }
    }

    /// What failed, where, and what to do; `role` says what the files were for (`input`,
    /// `output`, `build context`).
    pub fn message(&self, role: &str) -> String {
        let shown = if self.path.is_empty() { ".".into() } else { rel_path::display(&self.path) };
        let (what, fix) = if self.is_dir { ("directory", "u+rx") } else { ("file", "u+r") };
        format!(
            "cannot read {role} {what} `{shown}`: {}; make it readable (`chmod {fix} '{shown}'`) or leave it out of the \
             {role} patterns",
            self.error
        )
    }
}

/// Lists every file in scope under `root`, using `threads` threads.
pub fn walk(root: &Path, scope: &Scope, honour_ignores: bool, threads: usize) -> Walked {
    walk_with(root, scope, honour_ignores, threads, true)
}

/// Lists only the directories in scope: no file is looked at (for setting up watches).
pub fn walk_dirs(root: &Path, scope: &Scope, threads: usize) -> Vec<String> {
    walk_with(root, scope, true, threads, false).dirs
}

fn walk_with(root: &Path, scope: &Scope, honour_ignores: bool, threads: usize, list_files: bool) -> Walked {
    let rules = if honour_ignores { outer_rules(root) } else { None };
    // Without ignore files there is no need to come down from the root: start at each
    // prefix (a file prefix is simply looked at).
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    let start = if honour_ignores {
        vec![Job { rel: String::new(), inside: scope.admits("", false), rules }]
    } else {
        let mut jobs = Vec::new();
        for prefix in scope.roots() {
            match std::fs::symlink_metadata(rel_path::under(root, &prefix)) {
                Ok(m) if m.is_dir() => jobs.push(Job { rel: prefix, inside: true, rules: None }),
                Ok(m) if m.is_file() => found.push((prefix, FileMeta::of(&m))),
                Ok(_) => {}
                Err(e) if vanished(&e) => {}
                // A walk's start that cannot be looked at stands for everything under it.
                Err(e) => unreadable.push(Unreadable::new(&prefix, true, &e)),
            }
        }
        jobs
    };
    let shared = Shared {
        root,
        scope,
        honour_ignores,
        list_files,
        pending: AtomicUsize::new(start.len()),
        queue: Mutex::new(start),
        wake: Condvar::new(),
        found: Mutex::new(found),
        dirs: Mutex::new(Vec::new()),
        unreadable: Mutex::new(unreadable),
    };
    if threads <= 1 {
        worker(&shared);
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| worker(&shared));
            }
        });
    }
    Walked {
        files: shared.found.into_inner().expect("walker lock is never poisoned"),
        dirs: shared.dirs.into_inner().expect("walker lock is never poisoned"),
        unreadable: shared.unreadable.into_inner().expect("walker lock is never poisoned"),
    }
}

/// An error that means the entry is simply not there (any more): a later listing would not
/// show it either.
fn vanished(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory)
}

fn worker(shared: &Shared<'_>) {
    loop {
        let job = {
            let mut queue = shared.queue.lock().expect("walker lock is never poisoned");
            loop {
                if let Some(job) = queue.pop() {
                    break Some(job);
                }
                if shared.pending.load(Ordering::Acquire) == 0 {
                    break None;
                }
                queue = shared.wake.wait(queue).expect("walker lock is never poisoned");
            }
        };
        let Some(job) = job else {
            shared.wake.notify_all();
            return;
        };
        let rel = job.rel.clone();
        let (children, files) = read_dir(shared, job);
        shared.dirs.lock().expect("walker lock is never poisoned").push(rel);
        shared.found.lock().expect("walker lock is never poisoned").extend(files);
        if !children.is_empty() {
            shared.pending.fetch_add(children.len(), Ordering::AcqRel);
            shared.queue.lock().expect("walker lock is never poisoned").extend(children);
        }
        shared.pending.fetch_sub(1, Ordering::AcqRel);
        shared.wake.notify_all();
    }
}

/// Reads one directory: its subdirectories to walk and its files in scope.
fn read_dir(shared: &Shared<'_>, job: Job) -> (Vec<Job>, Vec<(String, FileMeta)>) {
    let dir: PathBuf = rel_path::under(shared.root, &job.rel);
    let unreadable = |e: &std::io::Error, path: &str, is_dir: bool| {
        let u = Unreadable::new(path, is_dir, e);
        shared.unreadable.lock().expect("walker lock is never poisoned").push(u);
    };
    let listing = match std::fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if vanished(&e) => return (Vec::new(), Vec::new()),
        Err(e) => {
            unreadable(&e, &job.rel, true);
            return (Vec::new(), Vec::new());
        }
    };
    let mut entries: Vec<std::fs::DirEntry> = Vec::new();
    for entry in listing {
        match entry {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                // The listing broke off: what is missing from it is unknown.
                unreadable(&e, &job.rel, true);
                break;
            }
        }
    }
    let mut rules = job.rules;
    if shared.honour_ignores {
        let has = |name: &str| entries.iter().any(|e| e.file_name() == name);
        let (gitignore, ignore) = (has(".gitignore"), has(".ignore"));
        if gitignore || ignore {
            let mut b = GitignoreBuilder::new(&dir);
            if gitignore {
                let _ = b.add(dir.join(".gitignore"));
            }
            if ignore {
                let _ = b.add(dir.join(".ignore"));
            }
            rules = Some(Arc::new(Rules { matcher: b.build().ok(), parent: rules }));
        }
    }
    let mut children = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        let os_name = entry.file_name();
        let name = rel_path::escape_name(&os_name);
        let name: &str = &name;
        let rel = if job.rel.is_empty() { name.to_string() } else { format!("{}/{name}", job.rel) };
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if vanished(&e) => continue,
            Err(e) => {
                unreadable(&e, &rel, false);
                continue;
            }
        };
        let (is_dir, meta) = if file_type.is_symlink() {
            // Symlinked files count as their target; symlinked directories are not entered.
            match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_file() => (false, Some(m)),
                _ => continue,
            }
        } else {
            (file_type.is_dir(), None)
        };
        if is_dir && SKIPPED_DIRS.contains(&name) {
            continue;
        }
        if !job.inside && !shared.scope.admits(&rel, is_dir) {
            continue;
        }
        if let Some(r) = &rules
            && r.ignored(&entry.path(), is_dir)
        {
            continue;
        }
        if is_dir {
            let inside = job.inside || shared.scope.admits(&rel, false);
            children.push(Job { rel, inside, rules: rules.clone() });
        } else if !shared.list_files {
            continue;
        } else {
            let meta = match meta.map_or_else(|| entry.metadata(), Ok) {
                Ok(m) => m,
                Err(e) if vanished(&e) => continue,
                Err(e) => {
                    unreadable(&e, &rel, false);
                    continue;
                }
            };
            // Sockets, fifos and devices are not files a build reads.
            if meta.is_file() {
                files.push((rel, FileMeta::of(&meta)));
            }
        }
    }
    (children, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    fn names(root: &Path, prefixes: &[&str], honour: bool) -> Vec<String> {
        let scope = Scope::new(prefixes.iter().map(|p| (*p).to_string()));
        let mut v: Vec<String> = walk(root, &scope, honour, 2).files.into_iter().map(|(p, _)| p).collect();
        v.sort();
        v
    }

    #[test]
    fn honours_nested_ignore_files_and_negation() {
        let dir = tree(&[
            (".gitignore", "*.log\nbuild/\n"),
            ("a.txt", ""),
            ("a.log", ""),
            ("build/x", ""),
            ("src/.ignore", "!keep.log\ngen/\n"),
            ("src/keep.log", ""),
            ("src/drop.log", ""),
            ("src/gen/g.c", ""),
            ("src/m.c", ""),
            (".git/info/exclude", "secret\n"),
            ("secret", ""),
            (".kiln/state", ""),
        ]);
        let all = names(dir.path(), &[""], true);
        assert_eq!(all, vec![".gitignore", "a.txt", "src/.ignore", "src/keep.log", "src/m.c"]);
        let raw = names(dir.path(), &["build", "src/gen"], false);
        assert_eq!(raw, vec!["build/x", "src/gen/g.c"]);
    }

    #[test]
    fn reads_only_what_is_in_scope() {
        let dir = tree(&[("a/x.c", ""), ("a/sub/y.c", ""), ("b/z.c", ""), ("top.c", "")]);
        assert_eq!(names(dir.path(), &["a/sub"], true), vec!["a/sub/y.c"]);
        assert_eq!(names(dir.path(), &["a/x.c", "b"], true), vec!["a/x.c", "b/z.c"]);
        assert_eq!(names(dir.path(), &["missing"], true), Vec::<String>::new());
    }

    #[test]
    fn names_that_are_not_utf8_are_listed_escaped_not_skipped() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tree(&[("src/ok.c", "")]);
        let bad = std::ffi::OsStr::from_bytes(b"bad\xff.c");
        std::fs::write(dir.path().join("src").join(bad), "x").expect("write");
        let sub = dir.path().join("src").join(std::ffi::OsStr::from_bytes(b"d\xfe"));
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("in.c"), "y").expect("write");
        let escaped = |b: &[u8]| rel_path::escape(b).into_owned();
        let want = vec![escaped(b"src/bad\xff.c"), escaped(b"src/d\xfe/in.c"), "src/ok.c".to_string()];
        for honour in [true, false] {
            let walked = walk(dir.path(), &Scope::new(["src".to_string()]), honour, 2);
            let mut got: Vec<String> = walked.files.into_iter().map(|(p, _)| p).collect();
            got.sort();
            assert_eq!(got, want, "honour_ignores = {honour}");
            assert!(walked.unreadable.is_empty());
        }
        let dirs = walk_dirs(dir.path(), &Scope::new(["src".to_string()]), 1);
        assert!(dirs.contains(&escaped(b"src/d\xfe")), "{dirs:?}");
    }

    #[test]
    fn unreadable_message_names_the_directory_and_the_fix() {
        let err = std::io::Error::from_raw_os_error(13);
        let u = Unreadable::new(&rel_path::escape(b"src/lo\xffcked"), true, &err);
        assert_eq!(
            u.message("input"),
            "cannot read input directory `src/lo\u{FFFD}cked`: Permission denied (os error 13); make it readable \
             (`chmod u+rx 'src/lo\u{FFFD}cked'`) or leave it out of the input patterns"
        );
    }

    #[test]
    fn scope_admits_prefixes_and_their_ancestors() {
        let scope = Scope::new(["a/b".to_string()]);
        assert!(scope.admits("a", true));
        assert!(!scope.admits("a", false));
        assert!(scope.admits("a/b/c/d", false));
        assert!(!scope.admits("a/c", true));
    }
}
