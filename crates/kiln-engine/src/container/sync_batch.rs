//! One live-update transfer into one running container: what changed on the host, as copies
//! and deletions, carried by one tar upload and as few `rm` commands as fit.
//!
//! In: a [`SyncBatch`] — copies, each a path under a sync rule's host root with where that
//! root is in the container; deletions, absolute container paths — and the container's
//! [`Owner`]. Out: the container holds the host's files as they are now.
//!
//! - The tar ([`SyncBatch::write_tar`]) has entries relative to `/`. A copied file keeps its
//!   mode bits and mtime and is owned by the container's user; a symbolic link is a link
//!   with its text as it is (never followed); a directory brings everything under it (a
//!   directory renamed into a synced one arrives as one event). Each directory between the
//!   rule's root and a copied path gets an entry of its own with the host directory's mode,
//!   so a directory the sync creates has the owner and the host's mode; the root itself and
//!   what is above it are the image's and are never changed.
//! - Host files are opened with `O_NOFOLLOW`; a path gone since its event (or a parent that
//!   is no longer a directory) is reported as vanished and deleted in the container.
//! - Deletions run first (a rename arrives as a deletion and a new path), as `rm -rf --`
//!   commands of at most 64 KiB of arguments each (a thousand-file deletion must not hit
//!   ARG_MAX), as root. A name that is not UTF-8 cannot travel in the API's JSON; it is
//!   spelled with `printf` escapes for the container's `sh`.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::container::engine_api::{ApiError, EngineApi, Owner};
use crate::fs::no_follow;
use crate::fs::rel_path;

/// The most bytes of arguments one deletion command carries.
pub const DELETE_ARGV_LIMIT: usize = 64 << 10;
/// How long one deletion command may run.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// One changed host path under a sync rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCopy {
    /// The rule's host root (absolute): a directory, or a single file.
    pub host_root: PathBuf,
    /// Where the rule puts its root in the container (absolute).
    pub container_root: String,
    /// The changed path, relative to `host_root` (empty: the root itself).
    pub rel: PathBuf,
}

impl SyncCopy {
    /// `host_path` (absolute, under `host_root`) as a copy; `None` when it is not under it.
    pub fn under(host_root: &Path, container_root: &str, host_path: &Path) -> Option<SyncCopy> {
        let rel = host_path.strip_prefix(host_root).ok()?;
        Some(SyncCopy { host_root: host_root.to_path_buf(), container_root: container_root.into(), rel: rel.into() })
    }

    /// The host path copied.
    pub fn host_path(&self) -> PathBuf {
        if self.rel.as_os_str().is_empty() { self.host_root.clone() } else { self.host_root.join(&self.rel) }
    }

    /// The path in the container, names in kiln's escaped form (see `fs::rel_path`).
    pub fn container_path(&self) -> String {
        container_join(&self.container_root, &self.rel)
    }
}

/// What one transfer carries into one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncBatch {
    pub copies: Vec<SyncCopy>,
    /// Absolute container paths, names in kiln's escaped form.
    pub deletes: Vec<String>,
}

/// What [`SyncBatch::write_tar`] put in the tar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Files and symbolic links (directories are not counted).
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Container paths whose host path was gone: they are to be deleted.
    pub vanished: Vec<String>,
    /// Entries of any kind, directories included.
    pub entries: u64,
}

/// What one transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub files: u64,
    pub deleted: u64,
    pub bytes: u64,
    pub duration: Duration,
}

/// Which step of a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot read {path} to sync it: {why}")]
    Read { path: String, why: String },
    #[error("cannot write the sync's tar in {dir}: {why}")]
    Tar { dir: String, why: String },
    #[error("refusing to delete `{path}` in the container: only absolute paths below / are synced")]
    BadPath { path: String },
    #[error("cannot delete synced paths in container {container}: {why}")]
    Delete { container: String, why: String },
    #[error("cannot copy synced files into container {container}: {why}")]
    Copy { container: String, why: String },
}

impl SyncBatch {
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty() && self.deletes.is_empty()
    }

    /// Writes the tar of the copies to `out`.
    pub fn write_tar(&self, owner: Owner, out: &mut File) -> Result<TarStats, SyncError> {
        let tar_error = |e: io::Error| SyncError::Tar { dir: "the temporary file".into(), why: e.to_string() };
        let mut writer = TarWriter {
            tar: tar::Builder::new(BufWriter::with_capacity(256 << 10, out)),
            owner,
            seen: HashSet::new(),
            stats: TarStats::default(),
        };
        for copy in &self.copies {
            writer.copy(copy)?;
        }
        let stats = std::mem::take(&mut writer.stats);
        let mut buffered = writer.tar.into_inner().map_err(tar_error)?;
        buffered.flush().map_err(tar_error)?;
        Ok(stats)
    }
}

struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
    owner: Owner,
    /// Tar names written (a directory and a file in it may both be in the batch).
    seen: HashSet<Vec<u8>>,
    stats: TarStats,
}

impl<W: Write> TarWriter<W> {
    fn copy(&mut self, copy: &SyncCopy) -> Result<(), SyncError> {
        // The directories between the root and the copied path, from the host's.
        let mut host = copy.host_root.clone();
        let mut rel = PathBuf::new();
        let components: Vec<_> = copy.rel.components().collect();
        for (i, c) in components.iter().enumerate() {
            host.push(c);
            rel.push(c);
            if i + 1 == components.len() {
                break;
            }
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {
                    let name = tar_name(&copy.container_root, &rel);
                    if self.seen.insert(name.clone()) {
                        self.dir_entry(&name, &m).map_err(|e| read_error(&host, e))?;
                    }
                }
                // Gone, or no longer a directory: the copied path is no longer there.
                Ok(_) => {
                    self.vanished(copy.container_path());
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.vanished(copy.container_path());
                    return Ok(());
                }
                Err(e) => return Err(read_error(&host, e)),
            }
        }
        let root_itself = copy.rel.as_os_str().is_empty();
        self.entry(&copy.host_path(), &copy.container_root, &copy.rel, root_itself)
    }

    fn vanished(&mut self, path: String) {
        self.stats.vanished.push(path);
    }

    /// One host path and, for a directory, everything under it. `root_itself`: the rule's
    /// root directory, whose contents are copied but not its own entry.
    fn entry(&mut self, host: &Path, container_root: &str, rel: &Path, root_itself: bool) -> Result<(), SyncError> {
        let meta = match std::fs::symlink_metadata(host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.vanished(container_join(container_root, rel));
                return Ok(());
            }
            Err(e) => return Err(read_error(host, e)),
        };
        let name = tar_name(container_root, rel);
        if name.is_empty() && !meta.is_dir() {
            // A file rule mapped onto `/` itself: nothing sensible to write.
            return Err(SyncError::Read { path: host.display().to_string(), why: "it would replace `/`".into() });
        }
        // A path met twice (a directory and a file in it both changed) is written once.
        let fresh = !name.is_empty() && self.seen.insert(name.clone());
        if !fresh && !meta.is_dir() {
            return Ok(());
        }
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = match std::fs::read_link(host) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.vanished(container_join(container_root, rel));
                    return Ok(());
                }
                Err(e) => return Err(read_error(host, e)),
            };
            self.link_entry(&name, &meta, &target).map_err(|e| read_error(host, e))?;
        } else if ft.is_dir() {
            if fresh && !root_itself {
                self.dir_entry(&name, &meta).map_err(|e| read_error(host, e))?;
            }
            let mut children = match std::fs::read_dir(host) {
                Ok(list) => list.filter_map(Result::ok).map(|e| e.file_name()).collect::<Vec<_>>(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.vanished(container_join(container_root, rel));
                    return Ok(());
                }
                Err(e) => return Err(read_error(host, e)),
            };
            children.sort();
            for child in children {
                self.entry(&host.join(&child), container_root, &rel.join(&child), false)?;
            }
        } else if ft.is_file() {
            let file = match no_follow::open_regular(host) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.vanished(container_join(container_root, rel));
                    return Ok(());
                }
                Err(e) => return Err(read_error(host, e)),
            };
            let meta = file.metadata().map_err(|e| read_error(host, e))?;
            self.file_entry(&name, &meta, file).map_err(|e| read_error(host, e))?;
        }
        // A FIFO, a socket or a device is not synced.
        Ok(())
    }

    fn header(&self, meta: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(self.owner.uid));
        h.set_gid(u64::from(self.owner.gid));
        h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        h.set_size(0);
        h
    }

    fn dir_entry(&mut self, name: &[u8], meta: &std::fs::Metadata) -> io::Result<()> {
        let mut h = self.header(meta, tar::EntryType::Directory);
        self.stats.entries += 1;
        self.tar.append_data(&mut h, bytes_path(name), io::empty())
    }

    fn link_entry(&mut self, name: &[u8], meta: &std::fs::Metadata, target: &Path) -> io::Result<()> {
        let mut h = self.header(meta, tar::EntryType::Symlink);
        self.stats.entries += 1;
        self.stats.files += 1;
        self.tar.append_link(&mut h, bytes_path(name), target)
    }

    fn file_entry(&mut self, name: &[u8], meta: &std::fs::Metadata, file: File) -> io::Result<()> {
        let mut h = self.header(meta, tar::EntryType::Regular);
        let size = meta.len();
        h.set_size(size);
        self.stats.entries += 1;
        self.stats.files += 1;
        self.stats.bytes += size;
        // Exactly the size the header says, whatever the file does meanwhile: cut when it
        // grew, zeros when it shrank (the next event brings it as it is then).
        let data = file.take(size).chain(io::repeat(0)).take(size);
        self.tar.append_data(&mut h, bytes_path(name), data)
    }
}

fn read_error(path: &Path, e: io::Error) -> SyncError {
    SyncError::Read { path: path.display().to_string(), why: e.to_string() }
}

fn bytes_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// The tar name of `rel` under `container_root`: raw bytes, without the leading `/`.
fn tar_name(container_root: &str, rel: &Path) -> Vec<u8> {
    let root = container_root.trim_matches('/');
    let mut name = root.as_bytes().to_vec();
    let rel = rel.as_os_str().as_bytes();
    if !rel.is_empty() {
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(rel);
    }
    name
}

/// `rel` under `container_root` as an absolute container path in kiln's escaped form.
fn container_join(container_root: &str, rel: &Path) -> String {
    let root = container_root.trim_end_matches('/');
    let rel = rel_path::escape(rel.as_os_str().as_bytes());
    if rel.is_empty() { if root.is_empty() { "/".into() } else { root.into() } } else { format!("{root}/{rel}") }
}

/// Whether a container path may be deleted: absolute, not `/`, no `.` or `..` parts.
fn deletable(path: &str) -> bool {
    let trimmed = path.trim_end_matches('/');
    path.starts_with('/') && !trimmed.is_empty() && trimmed.split('/').skip(1).all(|c| !matches!(c, "" | "." | ".."))
}

/// The commands that delete `paths` (escaped container paths), each with at most `limit`
/// bytes of arguments (a path longer than that alone gets a command of its own). UTF-8 names
/// go to `rm -rf --` as they are; others through `sh` with `printf` escapes.
pub fn delete_commands(paths: &[String], limit: usize) -> Vec<Vec<String>> {
    const SCRIPT: &str = r#"for p; do f=$(printf "${p}x"); rm -rf -- "${f%x}" || exit 1; done"#;
    let mut plain = Vec::new();
    let mut escaped = Vec::new();
    for path in paths {
        let raw = rel_path::raw(path);
        match std::str::from_utf8(&raw) {
            Ok(text) => plain.push(text.to_string()),
            Err(_) => escaped.push(printf_escape(&raw)),
        }
    }
    let mut commands = Vec::new();
    let mut chunk = |prefix: &[&str], args: Vec<String>| {
        let base: usize = prefix.iter().map(|a| a.len() + 1).sum();
        let mut current: Vec<String> = Vec::new();
        let mut size = base;
        for arg in args {
            if !current.is_empty() && size + arg.len() + 1 > limit {
                commands.push(prefix.iter().map(|s| s.to_string()).chain(current.drain(..)).collect());
                size = base;
            }
            size += arg.len() + 1;
            current.push(arg);
        }
        if !current.is_empty() {
            commands.push(prefix.iter().map(|s| s.to_string()).chain(current).collect());
        }
    };
    chunk(&["rm", "-rf", "--"], plain);
    chunk(&["sh", "-c", SCRIPT, "sh"], escaped);
    commands
}

/// Raw bytes as a `printf` format that prints exactly them.
fn printf_escape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    for &b in raw {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'%' => out.push_str("%%"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// Carries `batch` into a running `container`: the tar is written to a temporary file in
/// `tmp_dir` on a blocking thread (paths gone since the event become deletions), the
/// deletions run, then the tar is put; the temporary file is removed afterwards. A deletion
/// that fails does not hold back the copy: the files are copied, then the failure returned.
pub async fn apply(
    api: &EngineApi,
    container: &str,
    batch: &SyncBatch,
    owner: Owner,
    tmp_dir: &Path,
) -> Result<SyncReport, SyncError> {
    apply_with(api, container, batch, owner, tmp_dir, true).await.map(|(report, _)| report)
}

/// [`apply`] for a container that is created but not started (nothing can run in it yet):
/// the copies only; the deletions are returned, to be run once it runs.
pub async fn apply_copies(
    api: &EngineApi,
    container: &str,
    batch: &SyncBatch,
    owner: Owner,
    tmp_dir: &Path,
) -> Result<(SyncReport, Vec<String>), SyncError> {
    apply_with(api, container, batch, owner, tmp_dir, false).await
}

/// One transfer into a container at a time: two at once (a sync job, and a new container
/// catching up with files synced while it started) race in the engine's copier, which then
/// fails with "file exists".
fn transfer_lock(container: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    type Locks = std::collections::HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>;
    static LOCKS: std::sync::Mutex<Option<Locks>> = std::sync::Mutex::new(None);
    let mut locks = LOCKS.lock().expect("the transfer locks' lock is never poisoned");
    let locks = locks.get_or_insert_with(Locks::new);
    locks.retain(|_, l| l.strong_count() > 0);
    if let Some(lock) = locks.get(container).and_then(std::sync::Weak::upgrade) {
        return lock;
    }
    let lock = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(container.to_string(), std::sync::Arc::downgrade(&lock));
    lock
}

async fn apply_with(
    api: &EngineApi,
    container: &str,
    batch: &SyncBatch,
    owner: Owner,
    tmp_dir: &Path,
    delete_now: bool,
) -> Result<(SyncReport, Vec<String>), SyncError> {
    let lock = transfer_lock(container);
    let _one_at_a_time = lock.lock().await;
    let started = Instant::now();
    let mut stats = TarStats::default();
    let mut tar = None;
    if !batch.copies.is_empty() {
        let copies = SyncBatch { copies: batch.copies.clone(), deletes: Vec::new() };
        let dir = tmp_dir.to_path_buf();
        let written = tokio::task::spawn_blocking(move || {
            let mut tmp = no_follow::temp_file_in(&dir)
                .map_err(|e| SyncError::Tar { dir: dir.display().to_string(), why: e.to_string() })?;
            let stats = copies.write_tar(owner, tmp.as_file_mut())?;
            Ok::<_, SyncError>((tmp, stats))
        })
        .await
        .map_err(|e| SyncError::Tar { dir: tmp_dir.display().to_string(), why: format!("the writer failed: {e}") })??;
        stats = written.1;
        tar = Some(written.0);
    }
    let mut deletes: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for path in batch.deletes.iter().chain(&stats.vanished) {
        if !deletable(path) {
            return Err(SyncError::BadPath { path: path.clone() });
        }
        if seen.insert(path.as_str()) {
            deletes.push(path.clone());
        }
    }
    // Deletions first: a directory replaced by a link is removed before the link arrives,
    // so no `rm` ever runs through the new link.
    let mut delete_failed = None;
    if delete_now {
        for argv in delete_commands(&deletes, DELETE_ARGV_LIMIT) {
            let fail = |why: String| SyncError::Delete { container: container.to_string(), why };
            match api.exec(container, &argv, Some("0"), DELETE_TIMEOUT).await {
                Err(e) => delete_failed = Some(fail(e.to_string())),
                Ok(done) if done.exit_code == 0 => {}
                Ok(done) => {
                    let said = done.output.trim();
                    let said = if said.is_empty() { "it said nothing".to_string() } else { said.to_string() };
                    let hint = if matches!(done.exit_code, 126 | 127) {
                        " (the image has no `rm` or `sh`: deleting synced files needs them)"
                    } else {
                        ""
                    };
                    delete_failed = Some(fail(format!("`{}` exited with {}: {said}{hint}", argv[0], done.exit_code)));
                }
            }
            if delete_failed.is_some() {
                break;
            }
        }
    }
    if let Some(tmp) = &tar
        && stats.entries > 0
    {
        api.put_archive(container, tmp.path())
            .await
            .map_err(|e: ApiError| SyncError::Copy { container: container.to_string(), why: e.to_string() })?;
    }
    let copied = tar.is_some() && stats.entries > 0;
    drop(tar);
    if let Some(failed) = delete_failed {
        return Err(match failed {
            SyncError::Delete { container, why } if copied => {
                SyncError::Delete { container, why: format!("{why}; the changed files were copied") }
            }
            other => other,
        });
    }
    let report = SyncReport {
        files: stats.files,
        deleted: if delete_now { deletes.len() as u64 } else { 0 },
        bytes: stats.bytes,
        duration: started.elapsed(),
    };
    Ok((report, if delete_now { Vec::new() } else { deletes }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Name, type, mode, uid, gid, content, link text.
    type Entry = (String, tar::EntryType, u32, u64, u64, Vec<u8>, Option<String>);

    fn read_back(file: &mut File) -> Vec<Entry> {
        use std::io::Seek;
        file.rewind().unwrap();
        let mut archive = tar::Archive::new(file);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                (name, h.entry_type(), h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap(), data, link)
            })
            .collect()
    }

    #[test]
    fn the_tar_holds_files_links_and_new_directories_owned_by_the_container_user() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(root.join("pkg/sub")).unwrap();
        std::fs::set_permissions(root.join("pkg"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::write(root.join("pkg/sub/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("pkg/sub/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(root.join("pkg/sub/data"), "12345").unwrap();
        std::os::unix::fs::symlink("../elsewhere", root.join("link")).unwrap();
        let batch = SyncBatch {
            copies: vec![
                SyncCopy::under(&root, "/code", &root.join("pkg/sub/run.sh")).unwrap(),
                SyncCopy::under(&root, "/code", &root.join("link")).unwrap(),
                SyncCopy::under(&root, "/code", &root.join("gone")).unwrap(),
                SyncCopy::under(&root, "/code", &root.join("pkg/sub")).unwrap(),
            ],
            deletes: vec![],
        };
        let mut out = tempfile::tempfile().unwrap();
        let stats = batch.write_tar(Owner { uid: 1000, gid: 1001 }, &mut out).unwrap();
        assert_eq!(stats.files, 3, "run.sh, link, data (run.sh once)");
        assert_eq!(stats.bytes, 10 + 5);
        assert_eq!(stats.vanished, vec!["/code/gone".to_string()]);
        let entries = read_back(&mut out);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["code/pkg", "code/pkg/sub", "code/pkg/sub/run.sh", "code/link", "code/pkg/sub/data"]);
        assert!(entries.iter().all(|e| e.3 == 1000 && e.4 == 1001), "owned by the container's user");
        assert_eq!((entries[0].1, entries[0].2), (tar::EntryType::Directory, 0o750), "the host dir's mode");
        assert_eq!((entries[2].1, entries[2].2), (tar::EntryType::Regular, 0o755));
        assert_eq!(entries[2].5, b"#!/bin/sh\n");
        assert_eq!(entries[3].1, tar::EntryType::Symlink);
        assert_eq!(entries[3].6.as_deref(), Some("../elsewhere"), "the link's text, not followed");
        assert_eq!(entries[4].5, b"12345");
    }

    #[test]
    fn a_whole_root_a_file_rule_and_names_that_are_not_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(root.join("d")).unwrap();
        let odd = OsStr::from_bytes(b"bad\xff.txt");
        std::fs::write(root.join("d").join(odd), "x").unwrap();
        std::fs::write(dir.path().join("single.conf"), "conf").unwrap();
        let batch = SyncBatch {
            copies: vec![
                SyncCopy::under(&root, "/srv/app/", &root).unwrap(),
                SyncCopy::under(&dir.path().join("single.conf"), "/etc/app.conf", &dir.path().join("single.conf"))
                    .unwrap(),
            ],
            deletes: vec![],
        };
        let mut out = tempfile::tempfile().unwrap();
        batch.write_tar(Owner::default(), &mut out).unwrap();
        use std::io::Seek;
        out.rewind().unwrap();
        let mut archive = tar::Archive::new(&mut out);
        let names: Vec<Vec<u8>> = archive.entries().unwrap().map(|e| e.unwrap().path_bytes().into_owned()).collect();
        assert_eq!(names, [b"srv/app/d".to_vec(), b"srv/app/d/bad\xff.txt".to_vec(), b"etc/app.conf".to_vec()]);
        let copy = SyncCopy::under(&root, "/srv/app", &root.join("d").join(odd)).unwrap();
        assert_eq!(copy.container_path(), format!("/srv/app/d/{}", rel_path::escape(b"bad\xff.txt")));
    }

    #[test]
    fn a_parent_replaced_by_a_file_makes_the_copy_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("was-a-dir"), "now a file").unwrap();
        let batch = SyncBatch {
            copies: vec![SyncCopy::under(&root, "/code", &root.join("was-a-dir/inner.txt")).unwrap()],
            deletes: vec![],
        };
        let mut out = tempfile::tempfile().unwrap();
        let stats = batch.write_tar(Owner::default(), &mut out).unwrap();
        assert_eq!(stats.vanished, ["/code/was-a-dir/inner.txt"]);
        assert_eq!(stats.entries, 0);
    }

    #[test]
    fn deletions_are_split_below_the_argument_limit() {
        let paths: Vec<String> = (0..2000).map(|i| format!("/code/many/a-long-enough-file-name-{i:05}.txt")).collect();
        let commands = delete_commands(&paths, DELETE_ARGV_LIMIT);
        assert!(commands.len() > 1, "{} commands", commands.len());
        for c in &commands {
            assert_eq!(c[..3], ["rm", "-rf", "--"]);
            let size: usize = c.iter().map(|a| a.len() + 1).sum();
            assert!(size <= DELETE_ARGV_LIMIT, "{size}");
        }
        let all: Vec<&String> = commands.iter().flat_map(|c| &c[3..]).collect();
        assert_eq!(all, paths.iter().collect::<Vec<_>>(), "every path once, in order");
        let huge = "/".to_string() + &"x".repeat(100);
        assert_eq!(
            delete_commands(&[huge.clone(), "/a".into()], 64),
            vec![
                vec!["rm".to_string(), "-rf".into(), "--".into(), huge],
                vec!["rm".to_string(), "-rf".into(), "--".into(), "/a".into()],
            ]
        );
        assert!(delete_commands(&[], DELETE_ARGV_LIMIT).is_empty());
    }

    #[test]
    fn names_that_are_not_utf8_are_deleted_through_printf() {
        let odd = format!("/code/{}", rel_path::escape(b"bad\xff%\\.txt"));
        let commands = delete_commands(&[odd, "/code/ok".into()], DELETE_ARGV_LIMIT);
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[0], ["rm", "-rf", "--", "/code/ok"]);
        assert_eq!(commands[1][..2], ["sh", "-c"]);
        assert_eq!(commands[1][4], "/code/bad\\377%%\\\\.txt");
    }

    #[test]
    fn only_absolute_paths_below_the_root_are_deleted() {
        for ok in ["/code/a", "/code/dir/", "/a b"] {
            assert!(deletable(ok), "{ok}");
        }
        for bad in ["/", "//", "", "code/a", "/code/../etc", "/code/./a", "/code//a"] {
            assert!(!deletable(bad), "{bad}");
        }
    }
}
