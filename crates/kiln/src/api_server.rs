//! The control API of `kiln up`, on 127.0.0.1 only: `GET /api/status`, `GET /api/events`
//! (the event stream as Server-Sent Events), `POST /api/trigger/{name}` and `POST /api/stop`.
//! Requests whose Host is not a loopback address are refused (a web page elsewhere cannot
//! reach it through DNS rebinding), and every POST needs the token from `.kiln/api.json`.
//! A deliberately small HTTP/1.1 server: one request per connection.

use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln_engine::{EventBus, UpControl};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::status_view::StatusView;

/// Where a running `kiln up` can be reached; written to `.kiln/api.json` (mode 0600).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiInfo {
    pub address: String,
    pub token: String,
    pub pid: u32,
}

/// The control API server.
pub struct ApiServer;

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ApiServer {
    /// Binds 127.0.0.1 (`port` 0 for a free one), writes `api.json`, serves until dropped
    /// with the runtime.
    pub async fn start(
        port: u16,
        kiln_dir: &Path,
        bus: Arc<EventBus>,
        status: Arc<Mutex<StatusView>>,
        controls: mpsc::UnboundedSender<UpControl>,
    ) -> std::io::Result<ApiInfo> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let address = listener.local_addr()?.to_string();
        let info = ApiInfo { address, token: random_token(), pid: std::process::id() };
        write_info(kiln_dir, &info)?;
        let token = info.token.clone();
        let served = info.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (bus, status, controls, token) = (bus.clone(), status.clone(), controls.clone(), token.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &bus, &status, &controls, &token).await;
                });
            }
        });
        Ok(served)
    }
}

fn write_info(kiln_dir: &Path, info: &ApiInfo) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(kiln_dir)?;
    let path = kiln_dir.join("api.json");
    let tmp = kiln_dir.join("api.json.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(serde_json::to_string(info).expect("api info serializes").as_bytes())?;
    std::fs::rename(tmp, path)
}

/// Removes `api.json` when `kiln up` ends.
pub fn remove_info(kiln_dir: &Path) {
    let _ = std::fs::remove_file(kiln_dir.join("api.json"));
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await
}

fn is_loopback_host(host: &str) -> bool {
    let name =
        host.rsplit_once(':').map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

async fn serve(
    mut stream: TcpStream,
    bus: &EventBus,
    status: &Mutex<StatusView>,
    controls: &mpsc::UnboundedSender<UpControl>,
    token: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut host = String::new();
    let mut auth = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "host" => host = v.trim().to_string(),
                "authorization" => auth = v.trim().to_string(),
                _ => {}
            }
        }
    }
    drop(reader);
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !is_loopback_host(&host) {
        return respond(&mut stream, "403 Forbidden", r#"{"error":"Host must be a loopback address"}"#).await;
    }
    let authorized = auth.strip_prefix("Bearer ").is_some_and(|t| t == token);
    match (method, path) {
        ("GET", "/api/status") => {
            let body = serde_json::to_string(&*status.lock().expect("status lock is never poisoned"))
                .expect("status serializes");
            respond(&mut stream, "200 OK", &body).await
        }
        ("GET", "/api/events") => {
            let mut rx = bus.subscribe();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
                .await?;
            while let Some(envelope) = rx.recv().await {
                let json = serde_json::to_string(&*envelope).expect("events serialize");
                stream.write_all(format!("data: {json}\n\n").as_bytes()).await?;
            }
            Ok(())
        }
        ("POST", _) if !authorized => {
            respond(&mut stream, "401 Unauthorized", r#"{"error":"missing or wrong token (see .kiln/api.json)"}"#).await
        }
        ("POST", "/api/stop") => {
            let _ = controls.send(UpControl::Stop);
            respond(&mut stream, "202 Accepted", r#"{"ok":true}"#).await
        }
        ("POST", p) if p.starts_with("/api/trigger/") => {
            let name = p.trim_start_matches("/api/trigger/").to_string();
            let _ = controls.send(UpControl::Trigger(name));
            respond(&mut stream, "202 Accepted", r#"{"ok":true}"#).await
        }
        _ => respond(&mut stream, "404 Not Found", r#"{"error":"no such endpoint"}"#).await,
    }
}
