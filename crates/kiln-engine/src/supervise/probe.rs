//! Readiness and liveness probes: an HTTP GET answered with 2xx or 3xx, a TCP connect, or a
//! command that exits 0, each within the probe's timeout. (The `log` probe watches the
//! service's output and lives with the replica.) A command runs in a process group of its
//! own, killed as a whole when the check ends: after a timeout (or when the attempt drops
//! the check), nothing it started (`sleep 100 &`) is left behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kiln_config::ProbeCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs one check; `Err` says why it failed. A connect that takes longer than `connect`
/// is given up (and tried again at the next period): a port the engine has published
/// before the container's network is up swallows the SYN, and the kernel would wait a
/// second or more before sending it again.
pub async fn check(
    probe: &ProbeCheck,
    timeout: Duration,
    connect: Duration,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(), String> {
    let run = async {
        match probe {
            ProbeCheck::Http(url) => http(url, connect).await,
            ProbeCheck::Tcp(addr) => connect_to(addr, connect).await.map(|_| ()),
            ProbeCheck::Cmd(cmd) => command(cmd, dir, env).await,
            ProbeCheck::Log(_) => Err("waiting for the log line".into()),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(match probe {
            ProbeCheck::Cmd(cmd) => format!(
                "`{cmd}` did not finish within {}; its processes were killed",
                kiln_config::format_duration(timeout)
            ),
            _ => format!("no answer within {}", kiln_config::format_duration(timeout)),
        }),
    }
}

/// A minimal HTTP/1.1 GET: enough to read a status code from a local server.
async fn connect_to(addr: &str, within: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(within, TcpStream::connect(addr)).await {
        Ok(result) => result.map_err(|e| format!("connect {addr}: {e}")),
        Err(_) => Err(format!("connect {addr}: no answer within {}", kiln_config::format_duration(within))),
    }
}

async fn http(url: &str, connect: Duration) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let mut stream = connect_to(&addr, connect).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: kiln\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 4096];
    while head.len() < 12 {
        let n = stream.read(&mut buf).await.map_err(|e| format!("read from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    // Read the rest of the answer too (bounded in bytes and time) before closing: closing a
    // socket with unread bytes in it sends a reset, which servers log as an error per probe.
    // `Connection: close` makes the server end its answer with EOF; one that keeps the socket
    // open anyway is left after `DRAIN`, with its status already decided.
    const MAX_ANSWER: usize = 64 * 1024;
    const DRAIN: Duration = Duration::from_millis(500);
    let mut answer = head.clone();
    let drain = async {
        while answer.len() < MAX_ANSWER && !answer_complete(&answer) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN, drain).await;
    let got = head.len().min(64);
    let line = String::from_utf8_lossy(&head[..got]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    if (200..400).contains(&status) { Ok(()) } else { Err(format!("{url} answered {status}")) }
}

/// Whether `answer` holds a whole HTTP response: its head, and as many body bytes as its
/// `Content-Length` says (an answer without one ends at EOF).
fn answer_complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&answer[..end]);
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
    });
    length.is_some_and(|n| answer.len() >= end + 4 + n)
}

async fn command(cmd: &str, dir: &Path, env: &BTreeMap<String, String>) -> Result<(), String> {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd).current_dir(dir).envs(env).stdin(std::process::Stdio::null());
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).kill_on_drop(true);
    crate::exec::command::configure_child(&mut c);
    let mut child = c.spawn().map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    // Dropped when the check ends, however it ends (a timeout drops this future): the whole
    // group goes, not only `sh`. Registered with the watchdog meanwhile, so it dies with kiln.
    let _group = child.id().map(GroupKill::new);
    let status = child.wait().await.map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{cmd}` exited with {}", status.code().unwrap_or(-1))) }
}

/// A probe command's process group: SIGKILLed when dropped.
struct GroupKill(u32, #[expect(dead_code, reason = "held for its drop")] crate::exec::watchdog::GroupGuard);

impl GroupKill {
    fn new(pid: u32) -> GroupKill {
        GroupKill(pid, crate::exec::watchdog::GroupGuard::new(pid))
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        crate::exec::command::signal_group(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_and_tcp_probes_against_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let url = ProbeCheck::Http(format!("http://{addr}/health"));
        let dir = std::env::temp_dir();
        let env = BTreeMap::new();
        assert_eq!(check(&url, Duration::from_secs(2), Duration::from_secs(1), &dir, &env).await, Ok(()));
        let err = check(&url, Duration::from_secs(2), Duration::from_secs(1), &dir, &env).await.expect_err("503");
        assert!(err.contains("answered 503"), "{err}");
        let closed = ProbeCheck::Tcp("127.0.0.1:1".into());
        assert!(check(&closed, Duration::from_secs(2), Duration::from_secs(1), &dir, &env).await.is_err());
        assert_eq!(
            check(&ProbeCheck::Cmd("true".into()), Duration::from_secs(2), Duration::from_secs(1), &dir, &env).await,
            Ok(())
        );
        assert!(
            check(&ProbeCheck::Cmd("exit 3".into()), Duration::from_secs(2), Duration::from_secs(1), &dir, &env)
                .await
                .is_err()
        );
    }

    #[test]
    fn an_answer_is_complete_at_its_content_length() {
        assert!(!answer_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"));
        assert!(!answer_complete(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab"));
        assert!(answer_complete(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"));
        // Without a length, the answer ends at EOF.
        assert!(!answer_complete(b"HTTP/1.0 200 OK\r\n\r\nabc"));
    }

    #[tokio::test]
    async fn a_cmd_probe_that_times_out_leaves_no_process_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("child.pid");
        let cmd = format!("sleep 100 & echo $! > {}; sleep 100", pid_file.display());
        let err = check(
            &ProbeCheck::Cmd(cmd),
            Duration::from_millis(300),
            Duration::from_secs(1),
            dir.path(),
            &BTreeMap::new(),
        )
        .await
        .expect_err("times out");
        assert!(err.contains("did not finish within 300ms; its processes were killed"), "{err}");
        let pid: i32 =
            std::fs::read_to_string(&pid_file).expect("the child wrote its pid").trim().parse().expect("a pid");
        // Killed at once; its parent (init, or a subreaper) reaps it soon after.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running(pid) {
            assert!(std::time::Instant::now() < deadline, "the probe's child {pid} still runs");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether `pid` is a process that runs (a zombie does not).
    fn running(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    }
}
