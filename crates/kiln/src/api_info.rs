//! `.kiln/api.json`: where a running `kiln up` listens and the token its control API wants.
//!
//! The token comes from the OS random source and nothing else: if that fails, `kiln up`
//! does not start (a guessable token would open the API to every local process). The file
//! is written mode 0600 through a temporary created with `O_CREAT|O_EXCL|O_NOFOLLOW`, then
//! renamed over `api.json`: a symlink planted at either name is never written through
//! (the stale temporary is unlinked first, and a rename replaces a symlink itself, never its
//! target).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where a running `kiln up` can be reached; written to `.kiln/api.json` (mode 0600).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiInfo {
    pub address: String,
    pub token: String,
    pub pid: u32,
}

impl ApiInfo {
    /// The dashboard's sign-in URL: `http://127.0.0.1:PORT/?token=…`.
    pub fn dashboard_url(&self) -> String {
        format!("http://{}/?token={}", self.address, self.token)
    }
}

/// Bytes of randomness in a token (shown as twice as many hex digits).
const TOKEN_BYTES: usize = 32;

/// Why the control API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiSetupError {
    #[error(
        "cannot make a token for the control API: the OS random source failed ({}); \
         kiln does not fall back to a guessable token (check that /dev/urandom or the getrandom system call is available)",
        random_cause(.0)
    )]
    Random(getrandom::Error),
    #[error("cannot write {}: {source} (check the permissions of {})", path.display(), dir.display())]
    Write { path: PathBuf, dir: PathBuf, source: std::io::Error },
    #[error("cannot listen on 127.0.0.1:{port}: {source} (choose another with --port, or 0 for a free one)")]
    Bind { port: u16, source: std::io::Error },
}

/// An OS error as the system says it (`Input/output error (os error 5)`), else getrandom's words.
fn random_cause(e: &getrandom::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), |code| std::io::Error::from_raw_os_error(code).to_string())
}

/// A new token from the OS random source.
pub fn new_token() -> Result<String, ApiSetupError> {
    token_from(getrandom::fill)
}

/// A token from `fill`, which must fill the buffer with random bytes or fail.
fn token_from(fill: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>) -> Result<String, ApiSetupError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    fill(&mut bytes).map_err(ApiSetupError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `api.json` in `kiln_dir` (created if missing), mode 0600, never through a symlink.
pub fn write_info(kiln_dir: &Path, info: &ApiInfo) -> Result<(), ApiSetupError> {
    let path = kiln_dir.join("api.json");
    let tmp = kiln_dir.join("api.json.tmp");
    let fail = |at: &Path, source| ApiSetupError::Write { path: at.to_path_buf(), dir: kiln_dir.to_path_buf(), source };
    std::fs::create_dir_all(kiln_dir).map_err(|e| fail(kiln_dir, e))?;
    // A temporary left by a killed `kiln up`, or a symlink planted there: unlinked, never followed.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(&tmp, e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| fail(&tmp, e))?;
    let text = serde_json::to_string(info).expect("api info is plain strings and a number");
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| fail(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| fail(&path, e))
}

/// Removes `api.json` when `kiln up` ends.
/// Removes `api.json` if it is this process's (never another session's).
pub fn remove_info(kiln_dir: &Path) {
    let path = kiln_dir.join("api.json");
    let ours = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["pid"].as_u64() == Some(u64::from(std::process::id())));
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_failing_random_source_is_an_error_not_a_fallback() {
        let err = token_from(|_| Err(getrandom::Error::UNSUPPORTED)).expect_err("no token without randomness");
        let text = err.to_string();
        assert!(text.starts_with("cannot make a token for the control API: the OS random source failed"), "{text}");
        assert!(text.contains("does not fall back"), "{text}");
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token().expect("random"), new_token().expect("random"));
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    fn info() -> ApiInfo {
        ApiInfo { address: "127.0.0.1:1".into(), token: "t".into(), pid: 1 }
    }

    #[test]
    fn api_json_is_never_written_through_a_planted_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kiln = dir.path().join(".kiln");
        std::fs::create_dir_all(&kiln).expect("mkdir");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "precious").expect("write");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::os::unix::fs::symlink(&outside, kiln.join("api.json.tmp")).expect("symlink");
        std::os::unix::fs::symlink(&outside, kiln.join("api.json")).expect("symlink");
        write_info(&kiln, &info()).expect("written");
        assert_eq!(std::fs::read_to_string(&outside).expect("read"), "precious");
        let meta = std::fs::symlink_metadata(kiln.join("api.json")).expect("api.json");
        assert!(meta.file_type().is_file(), "a file of its own, not the symlink");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&outside).expect("outside").permissions().mode() & 0o777, 0o644);
        assert!(!kiln.join("api.json.tmp").exists());
    }

    #[test]
    fn a_stale_temporary_with_loose_permissions_does_not_keep_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tmp = dir.path().join("api.json.tmp");
        std::fs::write(&tmp, "stale").expect("write");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        write_info(dir.path(), &info()).expect("written");
        let mode = std::fs::metadata(dir.path().join("api.json")).expect("api.json").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
