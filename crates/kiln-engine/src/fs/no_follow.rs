//! Kiln's own files and directories under `.kiln/`, reached so that nothing planted there is
//! ever followed.
//!
//! - Directories (`.kiln` itself and every directory kiln makes below it) are checked one
//!   component at a time with `symlink_metadata` before kiln writes in them: a symbolic link,
//!   a file or anything else where kiln's own directory belongs is refused with an
//!   [`UnsafeDir`] error naming it (kiln does not replace it: it may be someone's data, and
//!   the message says to remove it); a missing one is created.
//! - Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`: a temporary name in the same
//!   directory, then a rename, which replaces whatever entry held the final name (a file, a
//!   symbolic link, a hard link to someone else's file) without writing through it.
//! - Files are read with `O_NOFOLLOW | O_NONBLOCK`, and only when they are regular files, so
//!   a symbolic link, a directory or a FIFO in their place is an error, never a hang.
//!
//! The project root and the directories above it are trusted: checks start at `.kiln`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

/// Something other than a directory where kiln keeps one of its own.
#[derive(Debug)]
pub struct UnsafeDir {
    /// The path as shown: relative to the project root (`.kiln/cache`).
    pub shown: String,
    /// What is there instead: `a symbolic link`, `a file`, ….
    pub found: &'static str,
}

impl fmt::Display for UnsafeDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let UnsafeDir { shown, found } = self;
        if *found == "a symbolic link" {
            write!(
                f,
                "`{shown}` is a symbolic link, not a directory, and kiln never writes through one: \
                 remove it and kiln recreates the directory"
            )
        } else {
            write!(f, "`{shown}` is {found}, not a directory: remove it and kiln recreates the directory")
        }
    }
}

impl std::error::Error for UnsafeDir {}

/// What a file-system entry is, in words.
pub fn describe(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a file"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a device"
    }
}

/// `path` as shown in messages: relative to the directory holding `base` (`.kiln/…`).
pub fn shown(base: &Path, path: &Path) -> String {
    let top = base.parent().unwrap_or(base);
    path.strip_prefix(top).unwrap_or(path).display().to_string()
}

/// Makes sure `dir` (`base` itself or a directory inside it) is a real directory all the way
/// from `base`, creating what is missing.
pub fn ensure_dir(base: &Path, dir: &Path) -> io::Result<()> {
    walk_dirs(base, dir, true).map(|_| ())
}

/// Whether `dir` (`base` itself or inside it) exists as a real directory all the way from
/// `base`: `Ok(false)` when some part is missing, an error when some part is not a
/// directory.
pub fn check_dir(base: &Path, dir: &Path) -> io::Result<bool> {
    walk_dirs(base, dir, false)
}

fn walk_dirs(base: &Path, dir: &Path, create: bool) -> io::Result<bool> {
    let rest = dir.strip_prefix(base).expect("kiln's directories are inside .kiln");
    let mut path = base.to_path_buf();
    if !one_dir(base, &path, create)? {
        return Ok(false);
    }
    for component in rest.components() {
        path.push(component);
        if !one_dir(base, &path, create)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn one_dir(base: &Path, path: &Path, create: bool) -> io::Result<bool> {
    let unsafe_dir =
        |found| io::Error::new(io::ErrorKind::NotADirectory, UnsafeDir { shown: shown(base, path), found });
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", shown(base, path)));
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(m) => Err(unsafe_dir(describe(m.file_type()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => match std::fs::create_dir(path) {
            Ok(()) => Ok(true),
            // Another worker made it first; it must be a directory now.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => Ok(true),
                Ok(m) => Err(unsafe_dir(describe(m.file_type()))),
                Err(e) => Err(context(e)),
            },
            Err(e) => Err(context(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(context(e)),
    }
}

/// Opens a regular file for reading without following a symbolic link at `path` and without
/// blocking on a FIFO: anything but a regular file is an error saying what it is.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(e.kind(), "it is a symbolic link, which kiln does not follow here")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = describe(meta.file_type());
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("it is {what}, not a regular file")));
    }
    Ok(file)
}

/// Reads a whole regular file (see [`open_regular`]).
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A new temporary file in `dir`, created with `O_EXCL | O_NOFOLLOW` (mode 0600), to be
/// renamed over its final name.
pub fn temp_file_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().make_in(dir, |path| {
        OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
    })
}

/// The directory a file of kiln's is written in.
pub fn parent(path: &Path) -> PathBuf {
    path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_created_and_links_or_files_in_their_place_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join(".kiln");
        ensure_dir(&base, &base.join("cache/blobs/ab")).expect("created");
        assert!(check_dir(&base, &base.join("cache/blobs/ab")).expect("checked"));
        assert!(!check_dir(&base, &base.join("state")).expect("checked"));

        std::os::unix::fs::symlink(dir.path(), base.join("state")).expect("symlink");
        let err = ensure_dir(&base, &base.join("state")).expect_err("a symlink is refused");
        assert_eq!(
            err.to_string(),
            "`.kiln/state` is a symbolic link, not a directory, and kiln never writes through one: \
             remove it and kiln recreates the directory"
        );
        std::fs::write(base.join("logs"), "x").expect("write");
        let err = check_dir(&base, &base.join("logs/deeper")).expect_err("a file is refused");
        assert_eq!(
            err.to_string(),
            "`.kiln/logs` is a file, not a directory: remove it and kiln recreates the directory"
        );
    }

    #[test]
    fn reads_refuse_links_directories_and_fifos_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "text").expect("write");
        assert_eq!(read_regular(&file).expect("read"), b"text");
        std::os::unix::fs::symlink(&file, dir.path().join("link")).expect("symlink");
        assert!(read_regular(&dir.path().join("link")).is_err());
        assert!(read_regular(dir.path()).expect_err("a directory").to_string().contains("a directory"));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        assert!(read_regular(&fifo).expect_err("a FIFO").to_string().contains("a FIFO"));
    }
}
