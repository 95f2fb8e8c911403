//! A minimal client of the Docker-compatible HTTP API over a Unix socket: what live update
//! needs to copy files into a running container and run a command in it, without starting
//! an engine CLI per change.
//!
//! - podman: [`EngineApi::connect`] starts `podman system service --time=0` on a socket in
//!   kiln's run directory, as a child in a process group of its own that the watchdog knows
//!   (it dies with kiln, even on SIGKILL), and waits until it answers `GET /_ping`.
//! - docker: the daemon's socket, `$DOCKER_HOST` when it is `unix://…`, else
//!   `/var/run/docker.sock`; nothing is started.
//!
//! Every request is one connection (HTTP/1.1, `Host: docker`), with a timeout; a response
//! body is read with a bound (1 MiB) unless it must stream: an exec's output keeps its last
//! 8 KiB, a tar upload is sent in chunks from its file.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

use crate::container::engine::{Engine, EngineKind};
use crate::exec::watchdog::GroupGuard;

/// How long a request may take to be answered (its headers), and a bounded body to be read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `podman system service` has to answer its first ping.
const SERVICE_START: Duration = Duration::from_secs(10);
/// How long a stopped service has between SIGTERM and SIGKILL.
const SERVICE_STOP: Duration = Duration::from_secs(2);
/// The most of a response body read into memory.
const BODY_LIMIT: usize = 1 << 20;
/// The most of an exec's output kept (its end).
const OUTPUT_LIMIT: usize = 8 << 10;
/// The most of the service's stderr kept for a message.
const STDERR_LIMIT: usize = 4 << 10;
/// A tar is uploaded in chunks of this size.
const CHUNK: usize = 256 << 10;
/// The longest path a Unix socket address holds (`sun_path` less its NUL).
const SOCKET_PATH_MAX: usize = 107;

/// What failed talking to the engine's API, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot start `podman system service` on {socket}: {why}")]
    ServiceSpawn { socket: String, why: String },
    #[error("podman system service did not answer on {socket} within {secs} s: {said}; check that `podman info` works")]
    ServiceNoAnswer { socket: String, secs: u64, said: String },
    #[error(
        "cannot reach the docker engine at {socket}: {why}; start the docker daemon, or set DOCKER_HOST to its \
         unix:// socket"
    )]
    DockerUnreachable { socket: String, why: String },
    #[error("cannot prepare the engine's socket {socket}: {why}")]
    Socket { socket: String, why: String },
    #[error("cannot connect to the engine's API at {socket}: {why}")]
    Connect { socket: String, why: String },
    #[error("the engine's API did not answer {what} within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("{what}: the engine answered {status}: {message}")]
    Status { what: String, status: u16, message: String },
    #[error("{what}: {why}")]
    Protocol { what: String, why: String },
    #[error("cannot read the tar {path} to upload: {why}")]
    Upload { path: String, why: String },
    #[error("{what} in container {container} did not finish within {secs} s")]
    ExecTimeout { what: String, container: String, secs: u64 },
    #[error("the container {container} runs as user `{user}`, which cannot be resolved: {why}")]
    Owner { container: String, user: String, why: String },
}

/// How a command run with [`EngineApi::exec`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// Its stdout and stderr as they came, the last 8 KiB at most, lossy UTF-8.
    pub output: String,
}

/// Who owns what is copied into a container: its user's numeric ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The `podman system service` kiln started.
struct Service {
    child: tokio::process::Child,
    pid: u32,
    _group: GroupGuard,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    /// A short directory for the socket when the run directory's path is too long for one.
    _short_dir: Option<tempfile::TempDir>,
}

/// A client of one engine's Docker-compatible API.
pub struct EngineApi {
    kind: EngineKind,
    socket: PathBuf,
    service: Option<Service>,
    /// podman's CLI, for commands run in containers: an exec session made through podman's
    /// compat API outlives its command by `exit_command_delay` (5 minutes, two conmon
    /// processes each), while `podman exec` removes it at once.
    cli: Option<PathBuf>,
}

impl std::fmt::Debug for EngineApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineApi").field("kind", &self.kind).field("socket", &self.socket).finish()
    }
}

impl EngineApi {
    /// Connects to `engine`'s API. For podman this starts its service on
    /// `<run_dir>/podman.sock` (the caller made `run_dir`, under `.kiln/run/`, without
    /// following a planted link; a stale socket there is removed first). Call it from a task
    /// on the runtime, not from a blocking thread: the service dies with the thread that
    /// started it (besides the watchdog), and a blocking thread ends when idle.
    pub async fn connect(engine: &Engine, run_dir: &Path) -> Result<EngineApi, ApiError> {
        match engine.kind {
            EngineKind::Docker => EngineApi::connect_docker(std::env::var("DOCKER_HOST").ok().as_deref()).await,
            EngineKind::Podman => start_podman(&engine.program, run_dir).await,
        }
    }

    /// The docker daemon's API at `docker_host` (`$DOCKER_HOST`: a `unix://` one, else the
    /// default socket), once it answers a ping.
    pub async fn connect_docker(docker_host: Option<&str>) -> Result<EngineApi, ApiError> {
        let api = EngineApi { kind: EngineKind::Docker, socket: docker_socket(docker_host), service: None, cli: None };
        api.ping(Duration::from_secs(5)).await.map_err(|e| ApiError::DockerUnreachable {
            socket: api.socket.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(api)
    }

    /// An API on a socket that is already served (`podman system service` someone else
    /// runs, a docker daemon): nothing is started or stopped.
    pub fn at_socket(kind: EngineKind, socket: PathBuf) -> EngineApi {
        EngineApi { kind, socket, service: None, cli: None }
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The process (and process group) of the podman service kiln started, if it did.
    pub fn service_pid(&self) -> Option<u32> {
        self.service.as_ref().map(|s| s.pid)
    }

    /// The socket the API is reached on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the podman service kiln started (SIGTERM, then SIGKILL after 2 s) and removes
    /// its socket. Nothing to do for docker.
    pub async fn shutdown(mut self) {
        if let Some(mut service) = self.service.take() {
            let _ = killpg(Pid::from_raw(service.pid as i32), Signal::SIGTERM);
            if tokio::time::timeout(SERVICE_STOP, service.child.wait()).await.is_err() {
                let _ = killpg(Pid::from_raw(service.pid as i32), Signal::SIGKILL);
                let _ = service.child.wait().await;
            }
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    /// `GET /_ping`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), ApiError> {
        let what = "ping the engine";
        let response = self.send(Method::GET, "/_ping", ReqBody::empty(), None, timeout, what).await?;
        expect_success(response, what).await.map(|_| ())
    }

    /// Unpacks the tar file at `tar` into the container at `/`, streamed from the file.
    /// The tar's own owners and modes are kept: podman's compat handler chowns only when
    /// asked with `copyUIDGID`, which this does not send.
    pub async fn put_archive(&self, container: &str, tar: &Path) -> Result<(), ApiError> {
        let what = format!("copy into container {container}");
        let upload = |e: io::Error| ApiError::Upload { path: tar.display().to_string(), why: e.to_string() };
        let mut file = std::fs::File::open(tar).map_err(upload)?;
        let len = file.metadata().map_err(upload)?.len();
        // Read on a blocking thread, a few chunks ahead of the socket.
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut left = len;
            while left > 0 {
                let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
                let chunk = match io::Read::read(&mut file, &mut buf) {
                    Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file got shorter while sent")),
                    Ok(n) => {
                        buf.truncate(n);
                        left -= n as u64;
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                };
                let failed = chunk.is_err();
                if tx.blocking_send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        let path = format!("/containers/{}/archive?path=%2F", encode(container));
        let body = ReqBody::Stream { rx, left: len };
        // The upload takes as long as it takes: a bound for every 16 MiB on top.
        let timeout = REQUEST_TIMEOUT + Duration::from_secs(len / (16 << 20));
        let sent = self.send(Method::PUT, &path, body, Some("application/x-tar"), timeout, &what).await;
        // A reader still blocked on a full channel ends when the body (its receiver) is gone.
        drop(reader);
        expect_success(sent?, &what).await.map(|_| ())
    }

    /// Runs `argv` in the container (as `user`, else the container's user) and waits for it,
    /// at most `timeout` from the start: its exit code and the end of its output. A command
    /// not found is exit code 127 with the engine's words in the output. On timeout the
    /// command may still run in the container: the engine's API has no way to kill an exec.
    pub async fn exec(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
        timeout: Duration,
    ) -> Result<ExecOutcome, ApiError> {
        if let Some(cli) = &self.cli {
            return exec_cli(cli, container, argv, user, timeout).await;
        }
        let deadline = Instant::now() + timeout;
        let what = format!("`{}`", argv.first().map_or("", String::as_str));
        let create_what = format!("create the exec of {what} in container {container}");
        let mut spec = serde_json::json!({ "AttachStdout": true, "AttachStderr": true, "AttachStdin": false, "Tty": false, "Cmd": argv });
        if let Some(user) = user {
            spec["User"] = Value::from(user);
        }
        let path = format!("/containers/{}/exec", encode(container));
        let created = self.post_json(&path, &spec, REQUEST_TIMEOUT.min(timeout), &create_what).await?;
        let id = created
            .get("Id")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::Protocol { what: create_what.clone(), why: "the answer has no `Id`".into() })?
            .to_string();
        let timed_out = || ApiError::ExecTimeout {
            what: what.clone(),
            container: container.to_string(),
            secs: timeout.as_secs().max(1),
        };
        let start_what = format!("start {what} in container {container}");
        let start = serde_json::to_vec(&serde_json::json!({ "Detach": false, "Tty": false }))
            .expect("a JSON literal serializes");
        let path = format!("/exec/{}/start", encode(&id));
        let left = deadline.saturating_duration_since(Instant::now());
        let response = match self
            .send(Method::POST, &path, ReqBody::full(start), Some("application/json"), left, &start_what)
            .await
        {
            Err(ApiError::Timeout { .. }) => return Err(timed_out()),
            other => other?,
        };
        if !response.status().is_success() {
            return Err(status_error(response, &start_what).await);
        }
        let mut frames = FrameReader::default();
        let mut body = response.into_body();
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, async {
            while let Some(frame) = next_frame(&mut body).await {
                let frame = frame.map_err(|e| ApiError::Protocol { what: start_what.clone(), why: e.to_string() })?;
                if let Ok(data) = frame.into_data() {
                    frames.push(&data);
                }
            }
            Ok::<(), ApiError>(())
        })
        .await;
        match read {
            Err(_) => return Err(timed_out()),
            Ok(result) => result?,
        }
        // The stream ends when the command's output does; its exit code may be recorded
        // a moment later.
        let inspect_what = format!("inspect the exec of {what} in container {container}");
        let path = format!("/exec/{}/json", encode(&id));
        loop {
            let state = self.get_json(&path, &inspect_what).await?;
            let running = state.get("Running").and_then(Value::as_bool).unwrap_or(false);
            if let (false, Some(code)) = (running, state.get("ExitCode").and_then(Value::as_i64)) {
                return Ok(ExecOutcome { exit_code: code, output: frames.output() });
            }
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The owner of what is copied into the container: its configured user (`.Config.User`)
    /// resolved as docker does, through the container's `/etc/passwd` and `/etc/group`.
    pub async fn container_owner(&self, container: &str) -> Result<Owner, ApiError> {
        let what = format!("inspect container {container}");
        let path = format!("/containers/{}/json", encode(container));
        let info = self.get_json(&path, &what).await?;
        let user = info.pointer("/Config/User").and_then(Value::as_str).unwrap_or("").to_string();
        let needs = OwnerFiles::of(&user);
        let unresolved = |why: String| ApiError::Owner { container: container.to_string(), user: user.clone(), why };
        // podman itself resolves the user to serve a file; what it says is why.
        let engine_said = |e: ApiError| match e {
            ApiError::Status { message, .. } => unresolved(format!("the engine says: {message}")),
            other => other,
        };
        let passwd =
            if needs.passwd { self.read_file(container, "/etc/passwd").await.map_err(engine_said)? } else { None };
        let group =
            if needs.group { self.read_file(container, "/etc/group").await.map_err(engine_said)? } else { None };
        resolve_owner(&user, passwd.as_deref(), group.as_deref()).map_err(unresolved)
    }

    /// One small file of the container (`GET …/archive`, a tar of one entry); `None` when
    /// it has none.
    async fn read_file(&self, container: &str, file: &str) -> Result<Option<String>, ApiError> {
        let what = format!("read {file} of container {container}");
        let path = format!("/containers/{}/archive?path={}", encode(container), encode(file));
        let response = self.send(Method::GET, &path, ReqBody::empty(), None, REQUEST_TIMEOUT, &what).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let tar = expect_success(response, &what).await?;
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries = archive.entries().map_err(|e| ApiError::Protocol { what: what.clone(), why: e.to_string() })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ApiError::Protocol { what: what.clone(), why: e.to_string() })?;
            if entry.header().entry_type().is_file() {
                let mut text = Vec::new();
                io::Read::read_to_end(&mut entry, &mut text)
                    .map_err(|e| ApiError::Protocol { what: what.clone(), why: e.to_string() })?;
                return Ok(Some(String::from_utf8_lossy(&text).into_owned()));
            }
        }
        // A link or something else: nothing kiln can read names from.
        Ok(None)
    }

    async fn get_json(&self, path: &str, what: &str) -> Result<Value, ApiError> {
        let response = self.send(Method::GET, path, ReqBody::empty(), None, REQUEST_TIMEOUT, what).await?;
        let body = expect_success(response, what).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Protocol { what: what.into(), why: format!("not JSON: {e}") })
    }

    async fn post_json(&self, path: &str, body: &Value, timeout: Duration, what: &str) -> Result<Value, ApiError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
        let response =
            self.send(Method::POST, path, ReqBody::full(bytes), Some("application/json"), timeout, what).await?;
        let body = expect_success(response, what).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Protocol { what: what.into(), why: format!("not JSON: {e}") })
    }

    /// One request on a connection of its own; the response once its headers came.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<&str>,
        timeout: Duration,
        what: &str,
    ) -> Result<hyper::Response<Incoming>, ApiError> {
        let socket = self.socket.display().to_string();
        let mut request = Request::builder().method(method).uri(path).header("Host", "docker");
        if let Some(kind) = content_type {
            request = request.header("Content-Type", kind);
        }
        if let Some(len) = body.len() {
            request = request.header("Content-Length", len);
        }
        let request = request
            .body(body)
            .map_err(|e| ApiError::Protocol { what: what.into(), why: format!("bad request: {e}") })?;
        let exchange = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|e| ApiError::Connect { socket: socket.clone(), why: e.to_string() })?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| ApiError::Connect { socket: socket.clone(), why: e.to_string() })?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            sender.send_request(request).await.map_err(|e| ApiError::Protocol { what: what.into(), why: e.to_string() })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ApiError::Timeout { what: what.into(), secs: timeout.as_secs().max(1) })?
    }
}

/// `podman exec [--user U] CONTAINER ARGV…`, its output bounded to the last
/// [`OUTPUT_LIMIT`] bytes, killed after `timeout`.
async fn exec_cli(
    cli: &Path,
    container: &str,
    argv: &[String],
    user: Option<&str>,
    timeout: Duration,
) -> Result<ExecOutcome, ApiError> {
    use tokio::io::AsyncReadExt;
    let what = format!("`{}`", argv.first().map_or("", String::as_str));
    let mut command = tokio::process::Command::new(cli);
    command.arg("exec");
    if let Some(user) = user {
        command.args(["--user", user]);
    }
    let failed = |why: String| ApiError::Protocol { what: format!("run {what} in container {container}"), why };
    // One pipe for both streams: the output keeps the order it was written in.
    let (reader, writer) = std::io::pipe().map_err(|e| failed(format!("cannot make a pipe: {e}")))?;
    let writer2 = writer.try_clone().map_err(|e| failed(format!("cannot make a pipe: {e}")))?;
    command
        .arg(container)
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| failed(format!("cannot start {}: {e}", cli.display())))?;
    // The parent's copies of the write end are gone with `command`: the reader ends with the child.
    drop(command);
    let mut out = tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))
        .map_err(|e| failed(format!("cannot read its output: {e}")))?;
    let run = async {
        let mut tail: VecDeque<u8> = VecDeque::new();
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = out.read(&mut buf).await {
            tail.extend(&buf[..n]);
            let over = tail.len().saturating_sub(OUTPUT_LIMIT);
            tail.drain(..over);
        }
        let status = child.wait().await;
        let bytes: Vec<u8> = tail.into_iter().collect();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Err(ApiError::ExecTimeout { what, container: container.to_string(), secs: timeout.as_secs().max(1) }),
        Ok((Err(e), _)) => Err(failed(e.to_string())),
        // 125: podman itself failed (no such container, say) and printed why.
        Ok((Ok(status), output)) if status.code() == Some(125) => {
            Err(failed(output.trim().lines().last().unwrap_or("podman exec failed").to_string()))
        }
        Ok((Ok(status), output)) => Ok(ExecOutcome { exit_code: i64::from(status.code().unwrap_or(-1)), output }),
    }
}

impl Drop for EngineApi {
    fn drop(&mut self) {
        if let Some(service) = self.service.take() {
            let _ = killpg(Pid::from_raw(service.pid as i32), Signal::SIGKILL);
            let _ = std::fs::remove_file(&self.socket);
            // The child is reaped by tokio (`kill_on_drop`); the guard unregisters the group.
        }
    }
}

/// The docker daemon's socket: `$DOCKER_HOST` when it is `unix://PATH`, else the default.
pub fn docker_socket(docker_host: Option<&str>) -> PathBuf {
    match docker_host.and_then(|h| h.strip_prefix("unix://")) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

async fn start_podman(program: &Path, run_dir: &Path) -> Result<EngineApi, ApiError> {
    let wanted = run_dir.join("podman.sock");
    match std::fs::symlink_metadata(run_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(m) => {
            let why = format!(
                "{} is {}, not a directory: remove it and kiln recreates it",
                run_dir.display(),
                crate::fs::no_follow::describe(m.file_type())
            );
            return Err(ApiError::Socket { socket: wanted.display().to_string(), why });
        }
        Err(e) => return Err(ApiError::Socket { socket: wanted.display().to_string(), why: e.to_string() }),
    }
    let (socket, short_dir) = if wanted.as_os_str().len() <= SOCKET_PATH_MAX {
        (wanted, None)
    } else {
        // Too long for a socket address: a private directory in /tmp instead.
        let dir = tempfile::Builder::new().prefix("kiln-run-").tempdir().map_err(|e| ApiError::Socket {
            socket: wanted.display().to_string(),
            why: format!("the path is too long for a socket and no short directory could be made: {e}"),
        })?;
        (dir.path().join("podman.sock"), Some(dir))
    };
    let shown = socket.display().to_string();
    remove_stale_socket(&socket).map_err(|why| ApiError::Socket { socket: shown.clone(), why })?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    crate::exec::command::configure_child(&mut command);
    let mut child =
        command.spawn().map_err(|e| ApiError::ServiceSpawn { socket: shown.clone(), why: e.to_string() })?;
    // A pid of 0 would signal kiln's own group: a child without one is an error.
    let pid = child
        .id()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| ApiError::ServiceSpawn { socket: shown.clone(), why: "it exited at once".into() })?;
    let group = GroupGuard::new(pid);
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(mut err) = child.stderr.take() {
        let tail = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut tail = tail.lock().expect("the stderr tail's lock is never poisoned");
                tail.extend(&buf[..n]);
                let over = tail.len().saturating_sub(STDERR_LIMIT);
                tail.drain(..over);
            }
        });
    }
    let service = Service { child, pid, _group: group, stderr, _short_dir: short_dir };
    let mut api =
        EngineApi { kind: EngineKind::Podman, socket, service: Some(service), cli: Some(program.to_path_buf()) };
    let started = Instant::now();
    loop {
        let exited = api.service.as_mut().and_then(|s| s.child.try_wait().ok().flatten());
        if exited.is_none() && api.socket.exists() && api.ping(Duration::from_secs(2)).await.is_ok() {
            return Ok(api);
        }
        if exited.is_some() || started.elapsed() >= SERVICE_START {
            // Give its last words a moment to arrive.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let said = api.service.as_ref().map(stderr_tail).unwrap_or_default();
            let said = match (exited, said.is_empty()) {
                (Some(status), true) => format!("it exited ({status}) without a word"),
                (Some(status), false) => format!("it exited ({status}): {said}"),
                (None, true) => "it said nothing".to_string(),
                (None, false) => said,
            };
            let socket = api.socket.display().to_string();
            api.shutdown().await;
            return Err(ApiError::ServiceNoAnswer { socket, secs: SERVICE_START.as_secs(), said });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stderr_tail(service: &Service) -> String {
    let tail = service.stderr.lock().expect("the stderr tail's lock is never poisoned");
    let bytes: Vec<u8> = tail.iter().copied().collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// Removes whatever an earlier kiln left at the socket's path (never following a link: the
/// entry itself goes); a directory there is refused.
fn remove_stale_socket(socket: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(socket) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(m) if m.is_dir() => Err("a directory is in its place: remove it".into()),
        Ok(_) => std::fs::remove_file(socket).map_err(|e| format!("cannot remove the stale one: {e}")),
    }
}

/// Percent-encodes a path segment or query value (container names, ids and paths).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The body of a successful response (at most 1 MiB), or an error with the engine's message.
async fn expect_success(response: hyper::Response<Incoming>, what: &str) -> Result<Vec<u8>, ApiError> {
    if !response.status().is_success() {
        return Err(status_error(response, what).await);
    }
    let (body, cut) = read_bounded(response.into_body(), BODY_LIMIT)
        .await
        .map_err(|e| ApiError::Protocol { what: what.into(), why: e.to_string() })?;
    if cut {
        return Err(ApiError::Protocol { what: what.into(), why: format!("the answer is over {BODY_LIMIT} bytes") });
    }
    Ok(body)
}

/// A non-2xx response as an error: its JSON `message`, else its text, bounded.
async fn status_error(response: hyper::Response<Incoming>, what: &str) -> ApiError {
    let status = response.status().as_u16();
    let message = match read_bounded(response.into_body(), 16 << 10).await {
        Ok((body, _)) => server_message(&body),
        Err(e) => format!("(its message could not be read: {e})"),
    };
    ApiError::Status { what: what.into(), status, message }
}

/// What the engine said in an error body: the JSON `message` field, else the text (its first
/// 1,000 characters).
pub fn server_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(message) = value.get("message").and_then(Value::as_str)
    {
        return message.trim().to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".into();
    }
    let mut cut: String = text.chars().take(1000).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

async fn next_frame(body: &mut Incoming) -> Option<Result<Frame<Bytes>, hyper::Error>> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

/// Up to `limit` bytes of a body; whether there was more (the rest is not read).
async fn read_bounded(mut body: Incoming, limit: usize) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = next_frame(&mut body).await {
        if let Ok(data) = frame?.into_data() {
            let room = limit - out.len();
            if data.len() > room {
                out.extend_from_slice(&data[..room]);
                return Ok((out, true));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok((out, false))
}

/// Reads the multiplexed stream of an exec without a TTY: frames of an 8-byte header
/// (stream, 0, 0, 0, big-endian length) and their payload, stdout and stderr alike kept in
/// order, the last 8 KiB of it.
#[derive(Debug, Default)]
pub struct FrameReader {
    header: Vec<u8>,
    /// Payload bytes still to come in the current frame.
    left: usize,
    tail: VecDeque<u8>,
}

impl FrameReader {
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.left == 0 {
                let need = 8 - self.header.len();
                let take = need.min(data.len());
                self.header.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.header.len() == 8 {
                    let len = u32::from_be_bytes([self.header[4], self.header[5], self.header[6], self.header[7]]);
                    self.left = len as usize;
                    self.header.clear();
                }
                continue;
            }
            let take = self.left.min(data.len());
            self.tail.extend(&data[..take]);
            let over = self.tail.len().saturating_sub(OUTPUT_LIMIT);
            self.tail.drain(..over);
            self.left -= take;
            data = &data[take..];
        }
    }

    /// The output kept, lossy UTF-8.
    pub fn output(&self) -> String {
        let bytes: Vec<u8> = self.tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Which of the container's files name its user's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerFiles {
    pub passwd: bool,
    pub group: bool,
}

impl OwnerFiles {
    /// What resolving `user` (`.Config.User`) reads: `/etc/passwd` for a name, or for a
    /// uid without a group (its gid); `/etc/group` for a group name.
    pub fn of(user: &str) -> OwnerFiles {
        let (name, group) = split_user(user);
        let numeric = |s: &str| s.parse::<u32>().is_ok();
        OwnerFiles {
            passwd: !name.is_empty() && (!numeric(name) || group.is_none()),
            group: group.is_some_and(|g| !numeric(g)),
        }
    }
}

fn split_user(user: &str) -> (&str, Option<&str>) {
    let user = user.trim();
    match user.split_once(':') {
        Some((name, group)) if !group.is_empty() => (name, Some(group)),
        Some((name, _)) => (name, None),
        None => (user, None),
    }
}

/// A container's `.Config.User` as numeric ids, by docker's rules: `""` is 0:0; a uid
/// without a group takes the gid of its passwd entry, else 0; a name must be in
/// `/etc/passwd`, a group name in `/etc/group`; `uid:gid` needs neither. `None` is a file
/// the container does not have.
pub fn resolve_owner(user: &str, passwd: Option<&str>, group: Option<&str>) -> Result<Owner, String> {
    let (name, group_spec) = split_user(user);
    let entries = |text: Option<&str>| -> Vec<Vec<String>> {
        text.unwrap_or("")
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() >= 3)
            .collect()
    };
    let users = entries(passwd);
    let (uid, passwd_gid) = if name.is_empty() {
        (0, Some(0))
    } else if let Ok(uid) = name.parse::<u32>() {
        let gid = users.iter().find(|f| f[2].parse() == Ok(uid)).and_then(|f| f.get(3)?.parse().ok());
        (uid, gid)
    } else {
        let entry = users.iter().find(|f| f[0] == name).ok_or_else(|| match passwd {
            None => format!("the container has no /etc/passwd to look up `{name}` in; use a numeric uid"),
            Some(_) => format!("no user `{name}` in the container's /etc/passwd"),
        })?;
        let uid =
            entry[2].parse::<u32>().map_err(|_| format!("the /etc/passwd entry of `{name}` has no numeric uid"))?;
        (uid, entry.get(3).and_then(|g| g.parse().ok()))
    };
    let gid = match group_spec {
        None => passwd_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = entries(group);
                let entry = groups.iter().find(|f| f[0] == g).ok_or_else(|| match group {
                    None => format!("the container has no /etc/group to look up `{g}` in; use a numeric gid"),
                    Some(_) => format!("no group `{g}` in the container's /etc/group"),
                })?;
                entry[2].parse::<u32>().map_err(|_| format!("the /etc/group entry of `{g}` has no numeric gid"))?
            }
        },
    };
    Ok(Owner { uid, gid })
}

/// A request's body: nothing, bytes in memory, or chunks of a file as they are read.
enum ReqBody {
    Full(Option<Bytes>),
    Stream { rx: mpsc::Receiver<io::Result<Bytes>>, left: u64 },
}

impl ReqBody {
    fn empty() -> ReqBody {
        ReqBody::Full(None)
    }

    fn full(bytes: Vec<u8>) -> ReqBody {
        ReqBody::Full(Some(Bytes::from(bytes)))
    }

    /// The Content-Length to send (none for an empty body).
    fn len(&self) -> Option<u64> {
        match self {
            ReqBody::Full(None) => None,
            ReqBody::Full(Some(b)) => Some(b.len() as u64),
            ReqBody::Stream { left, .. } => Some(*left),
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ReqBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream { rx, left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Ok(b))) => {
                        *left = left.saturating_sub(b.len() as u64);
                        Poll::Ready(Some(Ok(Frame::data(b))))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upload ended before its length",
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Full(bytes) => bytes.is_none(),
            ReqBody::Stream { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Stream { left, .. } => SizeHint::with_exact(*left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![stream, 0, 0, 0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_are_read_across_chunk_boundaries_and_only_the_tail_is_kept() {
        let mut stream = frame(1, b"hello ");
        stream.extend(frame(2, b"world"));
        stream.extend(frame(1, b""));
        stream.extend(frame(1, b"!\n"));
        for size in [1, 3, 7, 8, 9, stream.len()] {
            let mut r = FrameReader::default();
            for chunk in stream.chunks(size) {
                r.push(chunk);
            }
            assert_eq!(r.output(), "hello world!\n", "chunks of {size}");
        }
        let mut r = FrameReader::default();
        r.push(&frame(1, &vec![b'a'; 10_000]));
        r.push(&frame(2, b"end"));
        let out = r.output();
        assert_eq!(out.len(), OUTPUT_LIMIT);
        assert!(out.ends_with("aend"));
    }

    #[test]
    fn owners_resolve_by_dockers_rules() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n# a comment\napp:x:1000:1001::/home/app:/bin/sh\nnogid:x:1002\n";
        let group = "root:x:0:\nstaff:x:50:\napp:x:1001:\n";
        let r = |user: &str| resolve_owner(user, Some(passwd), Some(group));
        assert_eq!(r(""), Ok(Owner { uid: 0, gid: 0 }));
        assert_eq!(r("0"), Ok(Owner { uid: 0, gid: 0 }));
        assert_eq!(r("1000"), Ok(Owner { uid: 1000, gid: 1001 }), "the gid of its passwd entry");
        assert_eq!(r("4242"), Ok(Owner { uid: 4242, gid: 0 }), "no entry: gid 0");
        assert_eq!(r("1000:1000"), Ok(Owner { uid: 1000, gid: 1000 }));
        assert_eq!(r("app"), Ok(Owner { uid: 1000, gid: 1001 }));
        assert_eq!(r("app:staff"), Ok(Owner { uid: 1000, gid: 50 }));
        assert_eq!(r("app:7"), Ok(Owner { uid: 1000, gid: 7 }));
        assert_eq!(r("1000:"), Ok(Owner { uid: 1000, gid: 1001 }));
        assert_eq!(r("nogid"), Ok(Owner { uid: 1002, gid: 0 }), "an entry without a gid field");
        assert_eq!(r("ghost"), Err("no user `ghost` in the container's /etc/passwd".into()));
        assert_eq!(r("app:ghosts"), Err("no group `ghosts` in the container's /etc/group".into()));
        assert_eq!(
            resolve_owner("app", None, None),
            Err("the container has no /etc/passwd to look up `app` in; use a numeric uid".into())
        );
        assert_eq!(resolve_owner("1000", None, None), Ok(Owner { uid: 1000, gid: 0 }));
        assert_eq!(resolve_owner("5:6", None, None), Ok(Owner { uid: 5, gid: 6 }));
    }

    #[test]
    fn only_the_files_a_user_needs_are_read() {
        let f = |u: &str| (OwnerFiles::of(u).passwd, OwnerFiles::of(u).group);
        assert_eq!(f(""), (false, false));
        assert_eq!(f("1000:1000"), (false, false));
        assert_eq!(f("1000"), (true, false));
        assert_eq!(f("app"), (true, false));
        assert_eq!(f("app:staff"), (true, true));
        assert_eq!(f("1000:staff"), (false, true));
    }

    #[test]
    fn messages_paths_and_sockets() {
        assert_eq!(
            server_message(br#"{"cause":"x","message":"no such container","response":404}"#),
            "no such container"
        );
        assert_eq!(server_message(b"page not found\n"), "page not found");
        assert_eq!(server_message(b""), "(no message)");
        assert_eq!(server_message(&[b'x'; 5000]).chars().count(), 1001);
        assert_eq!(encode("kiln-app_1.x"), "kiln-app_1.x");
        assert_eq!(encode("/etc/passwd"), "%2Fetc%2Fpasswd");
        assert_eq!(docker_socket(Some("unix:///run/user/1/docker.sock")), PathBuf::from("/run/user/1/docker.sock"));
        assert_eq!(docker_socket(Some("tcp://1.2.3.4:2375")), PathBuf::from("/var/run/docker.sock"));
        assert_eq!(docker_socket(None), PathBuf::from("/var/run/docker.sock"));
    }
}
