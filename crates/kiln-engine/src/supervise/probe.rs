//! Readiness probes: an HTTP GET answered with 2xx or 3xx, a TCP connect, or a command that
//! exits 0, each within the probe's timeout. (The `log` probe watches the service's output
//! and lives with the replica.)

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
        Err(_) => Err(format!("no answer within {}", kiln_config::format_duration(timeout))),
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
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = stream.read(&mut head[got..]).await.map_err(|e| format!("read from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&head[..got]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    if (200..400).contains(&status) { Ok(()) } else { Err(format!("{url} answered {status}")) }
}

async fn command(cmd: &str, dir: &Path, env: &BTreeMap<String, String>) -> Result<(), String> {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd).current_dir(dir).envs(env).stdin(std::process::Stdio::null());
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).kill_on_drop(true);
    crate::exec::command::configure_child(&mut c);
    let status = c.status().await.map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{cmd}` exited with {}", status.code().unwrap_or(-1))) }
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
}
