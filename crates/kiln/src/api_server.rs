//! The control API of `kiln up`, on 127.0.0.1 only: the dashboard (`GET /` and its files),
//! `GET /api/status`, `GET /api/events` (the event stream as Server-Sent Events, replayed
//! from where a reconnecting client was), `GET /api/graph`, `GET /api/logs/{name}`,
//! `POST /api/trigger/{name}` and `POST /api/stop`, all behind the token of `.kiln/api.json`
//! (see `api_routes.rs` for the checks), and `GET /metrics` (OpenMetrics text, no token).
//!
//! HTTP/1.1 through hyper, routed by axum, with limits a local process cannot talk past:
//! - a request head (request line and headers) of at most 16 KiB, else `431 Request Header
//!   Fields Too Large`;
//! - 10 s to send a request head, from the connection's start or the end of the previous
//!   response; then the connection is closed;
//! - at most 64 connections at once (`connection_limit.rs`): a new one over the limit takes
//!   the slot of the connection idle the longest, and is refused with 503 only if every
//!   connection has a request in flight.
//!
//! A connection that ends after an error answer (431, 400) may leave bytes the client sent
//! unread; closing then would reset the connection and could destroy the answer in flight.
//! So the write side is shut first and the rest read and dropped (bounded) before closing.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use kiln_engine::{EventBus, UpControl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::ServiceExt;

pub use crate::api_info::{ApiInfo, ApiSetupError, remove_info};
use crate::api_info::{new_token, write_info};
use crate::api_routes::{ApiState, router};
use crate::connection_limit::{Busy, ConnectionLimit, Slot};
use crate::metrics_view::MetricsView;
use crate::status_view::StatusView;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// Bytes of a request head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// What hyper buffers per connection, in each direction: a head that has not ended within
/// this many bytes is answered 431 too.
const MAX_BUF_BYTES: usize = 32 * 1024;
/// Time to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an evicted connection may take to flush what it has written.
const EVICTED_FLUSH: Duration = Duration::from_millis(50);
/// After an answer that ends the connection: how much more of what the client sent is read
/// and dropped, and for how long, before closing.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// The control API server.
pub struct ApiServer;

impl ApiServer {
    /// Makes the token, binds 127.0.0.1 (`port` 0 for a free one), writes `api.json` and
    /// serves until the runtime ends.
    pub async fn start(
        port: u16,
        kiln_dir: &Path,
        bus: Arc<EventBus>,
        status: Arc<Mutex<StatusView>>,
        metrics: Arc<Mutex<MetricsView>>,
        controls: mpsc::UnboundedSender<UpControl>,
        log_limit: u64,
    ) -> Result<ApiInfo, ApiSetupError> {
        let token = new_token()?;
        let listener =
            TcpListener::bind(("127.0.0.1", port)).await.map_err(|source| ApiSetupError::Bind { port, source })?;
        let address = listener.local_addr().map_err(|source| ApiSetupError::Bind { port, source })?.to_string();
        let bound = listener.local_addr().map_or(port, |a| a.port());
        let info = ApiInfo { address, token: token.clone(), pid: std::process::id() };
        write_info(kiln_dir, &info)?;
        let root = kiln_dir.parent().unwrap_or(kiln_dir);
        let logs = Arc::new((kiln_engine::Layout::new(root), log_limit));
        let cookie = crate::api_routes::cookie_name(bound).into();
        let page_root = format!("/s/{}", &new_token()?[..32]).into();
        let streams = Default::default();
        let state = ApiState { token: token.into(), bus, status, metrics, controls, logs, cookie, page_root, streams };
        let app = router(state);
        tokio::spawn(accept_loop(listener, app));
        Ok(info)
    }
}

async fn accept_loop(listener: TcpListener, app: Router) {
    let limit = ConnectionLimit::new(MAX_CONNECTIONS);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, or the like: give the process a moment instead of
            // spinning on the error.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Admitted here, one at a time, so that connections beyond the limit wait in the
        // kernel's backlog rather than as open sockets of kiln's.
        match limit.admit().await {
            Some(slot) => {
                tokio::spawn(serve(stream, slot, app.clone()));
            }
            None => refuse(&stream),
        }
    }
}

fn builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_BUF_BYTES);
    builder
}

/// Serves one connection until it ends, the client stays silent too long, or a newer
/// connection evicts it.
async fn serve(stream: TcpStream, slot: Slot, app: Router) {
    let handle = slot.handle();
    let service = hyper::service::service_fn(move |request| {
        let busy = handle.busy();
        let app = app.clone();
        // Boxed: hyper hands the connection back (`into_parts`) only for an `Unpin` future.
        Box::pin(async move {
            let response = app.oneshot(request).await.unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(response.map(|inner| TrackedBody { inner, _busy: busy }))
        })
    });
    let mut conn = builder().serve_connection(TokioIo::new(stream), service);
    let ended = tokio::select! {
        result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => result,
        () = slot.evicted() => {
            // Its slot is wanted now: no lingering. But the end of its last answer may still
            // be in hyper's buffer: that may flush, for a moment at most.
            if !slot.has_served() {
                return;
            }
            std::pin::Pin::new(&mut conn).graceful_shutdown();
            let flushed = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx));
            let _ = tokio::time::timeout(EVICTED_FLUSH, flushed).await;
            return;
        }
    };
    let mut stream = conn.into_parts().io.into_inner();
    if ended.is_err() {
        linger(&mut stream, &slot).await;
    }
}

/// Shuts the write side, then reads and drops what the client still sends (at most
/// [`LINGER_BYTES`] for at most [`LINGER_TIME`]), so that closing does not reset the
/// connection while the answer is still on its way.
async fn linger(stream: &mut TcpStream, slot: &Slot) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(LINGER_TIME, drain) => {}
        () = slot.evicted() => {}
    }
}

/// Every connection has a request in flight: say so, without waiting, and close.
fn refuse(stream: &TcpStream) {
    let body = r#"{"error":"too many connections to the control API (every one has a request in flight); try again"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A new socket's send buffer has room for this; if not, closing says enough.
    let _ = stream.try_write(answer.as_bytes());
}

/// A response body that keeps its connection busy until it has been sent (or dropped).
struct TrackedBody {
    inner: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
