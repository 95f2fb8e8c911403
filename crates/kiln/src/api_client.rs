//! Talking to a running `kiln up` from another terminal: `.kiln/api.json` says where, a
//! plain HTTP/1.1 request over a loopback socket does the rest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;

use crate::api_server::ApiInfo;

/// Why a command could not talk to `kiln up`.
pub enum ClientError {
    /// No `kiln up` is running in this project.
    NotRunning,
    Io(String),
}

impl ClientError {
    pub fn message(&self) -> String {
        match self {
            ClientError::NotRunning => "no `kiln up` is running in this project (start one with `kiln up`)".into(),
            ClientError::Io(e) => format!("cannot reach `kiln up`: {e}"),
        }
    }
}

pub fn info(kiln_dir: &Path) -> Result<ApiInfo, ClientError> {
    let text = std::fs::read_to_string(kiln_dir.join("api.json")).map_err(|_| ClientError::NotRunning)?;
    let info: ApiInfo = serde_json::from_str(&text).map_err(|_| ClientError::NotRunning)?;
    // A crashed `kiln up` leaves its api.json behind; its pid tells.
    if !is_alive(info.pid) {
        return Err(ClientError::NotRunning);
    }
    Ok(info)
}

/// Whether a process exists and is not a zombie (a killed kiln whose parent has not reaped it).
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may contain spaces.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

fn connect(info: &ApiInfo, method: &str, path: &str) -> Result<TcpStream, ClientError> {
    let mut stream = TcpStream::connect(&info.address).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ClientError::NotRunning,
        _ => ClientError::Io(e.to_string()),
    })?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        info.address, info.token
    );
    stream.write_all(request.as_bytes()).map_err(|e| ClientError::Io(e.to_string()))?;
    Ok(stream)
}

/// One request; returns the status code and body.
pub fn request(info: &ApiInfo, method: &str, path: &str) -> Result<(u16, String), ClientError> {
    let mut stream = connect(info, method, path)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|e| ClientError::Io(e.to_string()))?;
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((code, body))
}

/// Follows the event stream, calling `each` with every event until it returns false or
/// the stream ends.
pub fn follow(info: &ApiInfo, mut each: impl FnMut(&serde_json::Value) -> bool) -> Result<(), ClientError> {
    let stream = connect(info, "GET", "/api/events")?;
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if let Some(data) = line.strip_prefix("data: ")
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
            && !each(&v)
        {
            break;
        }
    }
    Ok(())
}
