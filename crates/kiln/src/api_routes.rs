//! What the control API answers: the routes, and the checks every request passes first.
//!
//! In order:
//! 1. the `Host` must name a loopback address (a page elsewhere cannot reach the API through
//!    DNS rebinding) → 403;
//! 2. a POST whose `Origin` is present must come from this very server: `http://` and the
//!    `Host` it asked for (a page on another site, or on another port of this machine,
//!    cannot make the browser post here) → 403;
//! 3. `GET /metrics` (counts and names only, in OpenMetrics text) needs no token, for a
//!    scraper: it is routed now;
//! 4. `GET /?token=T` (the URL `kiln dashboard` prints): with the right token, `303 See
//!    Other` to the dashboard's own path `/s/SID/` (SID: a random secret of this session)
//!    with `Set-Cookie: kiln_token_PORT=T; HttpOnly; SameSite=Strict; Path=/s/SID/`, so that
//!    the token leaves the address bar and script on the page never sees it; with a wrong
//!    one, the 401 page. A browser sends a cookie to every port of a host: scoped to a path
//!    nobody else knows, it never goes to another server on 127.0.0.1 (a service the user
//!    opens from the dashboard, another program's page);
//! 5. the request must carry the token from `.kiln/api.json`, as `Authorization: Bearer
//!    <token>`, or, under `/s/SID/` only, as the cookie → 401 (a page for the dashboard's
//!    paths, JSON for the API's). Tokens are compared in constant time. `/s/SID/PATH` is
//!    served as `/PATH` is;
//! 6. a request authenticated by the cookie alone that is not a GET or HEAD must carry
//!    this server's `Origin` (a browser sends it with every POST of a page's script; a
//!    request without one did not come from the dashboard) → 403. SameSite=Strict already
//!    keeps other sites' requests from carrying the cookie; this is the second lock.
//!
//! Only then is it routed: the dashboard's embedded page and files (`dashboard_assets.rs`),
//! and the API.
//!
//! `GET /api/events` streams the event bus as Server-Sent Events, each with `id: <seq>`.
//! With `Last-Event-ID: N` (what an EventSource sends when it reconnects) or `?since=N`
//! (the header wins), the events after N that the bus still keeps come first (its replay
//! ring: 10,000 events, 8 MiB; `replay_ring.rs` in the engine), preceded by one
//! `stream.lagged` if some are no longer kept; then the live ones, without a gap or a
//! duplicate (the replay and the subscription are taken at one instant).
//! The body is pulled by hyper only as fast as the client reads: an event is taken from the
//! subscription when there is room to write it, so a client that stops reading leaves its
//! backlog in its bus subscription (whose bound is the bus's) and nowhere else.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiln_engine::{Envelope, EventBus, TriggerKind, Triggered, UpControl};
use tokio::sync::{mpsc, oneshot};

use crate::dashboard_assets::Asset;
use crate::metrics_view::{self, MetricsView};
use crate::status_view::StatusView;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub token: Arc<str>,
    pub bus: Arc<EventBus>,
    pub status: Arc<Mutex<StatusView>>,
    pub metrics: Arc<Mutex<MetricsView>>,
    pub controls: mpsc::UnboundedSender<UpControl>,
    /// Where the logs are, and how much of each is kept (`settings.log_limit`).
    pub logs: Arc<(kiln_engine::Layout, u64)>,
    /// The name of the dashboard's cookie: `kiln_token_PORT` (see [`cookie_name`]).
    pub cookie: Arc<str>,
    /// The dashboard's path, `/s/SID` (see the module doc, step 4).
    pub page_root: Arc<str>,
    /// The event streams open (at most `stream_slots::MAX_STREAMS`).
    pub streams: Arc<crate::stream_slots::StreamSlots>,
}

/// The dashboard's cookie for a session on `port`. A browser keeps cookies per host, not
/// per port: with one name for all, opening a second project's dashboard would sign the
/// first one's tab out.
pub fn cookie_name(port: u16) -> String {
    format!("kiln_token_{port}")
}

/// The control API's routes, behind its checks. The dashboard's page, files and API are
/// also served under its path (`/s/SID/…`), where its cookie is sent.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/assets/app.js", get(dashboard))
        .route("/assets/style.css", get(dashboard))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/api/graph", get(graph))
        .route("/api/logs/{name}", get(logs))
        .route("/api/trigger/{name}", post(trigger))
        .route("/api/stop", post(stop));
    let root = state.page_root.to_string();
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route(&format!("{root}/"), get(page))
        .merge(api.clone())
        .nest(&root, api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn json(code: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (code, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(code: StatusCode, message: &str) -> Response {
    json(code, &serde_json::json!({ "error": message }))
}

async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let Some(host) = host.filter(|h| is_loopback_host(h)).map(str::to_string) else {
        return error(
            StatusCode::FORBIDDEN,
            "the Host header must name a loopback address (127.0.0.1, localhost or [::1])",
        );
    };
    let origin = headers.get(header::ORIGIN);
    if request.method() == Method::POST && origin.is_some_and(|o| !o.to_str().is_ok_and(|o| is_own_origin(o, &host))) {
        return error(
            StatusCode::FORBIDDEN,
            "cross-site request refused: the Origin is not this server (http:// and the Host asked for)",
        );
    }
    let read_only = request.method() == Method::GET || request.method() == Method::HEAD;
    let path = request.uri().path();
    if read_only && path == "/metrics" {
        return next.run(request).await;
    }
    if read_only
        && path == "/"
        && let Some(given) = query_param(request.uri().query(), "token")
    {
        if !constant_time_eq(given.as_bytes(), state.token.as_bytes()) {
            return crate::dashboard_assets::unauthorized_page(true);
        }
        return sign_in(&state.cookie, &state.token, &state.page_root);
    }
    // Under the dashboard's path: the cookie counts, and the rest of the path is routed.
    let inner = path.strip_prefix(&*state.page_root).filter(|rest| rest.is_empty() || rest.starts_with('/'));
    if inner == Some("") {
        // The page's links are relative to its path, which ends in `/`.
        let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
        let location = HeaderValue::from_str(&format!("{}/", state.page_root)).expect("a session id is hex digits");
        response.headers_mut().insert(header::LOCATION, location);
        return response;
    }
    let by_bearer = bearer_is(headers, &state.token);
    let by_cookie = !by_bearer && inner.is_some() && cookie_is(headers, &state.cookie, &state.token);
    if !by_bearer && !by_cookie {
        if crate::dashboard_assets::is_page_path(inner.unwrap_or(path)) {
            return crate::dashboard_assets::unauthorized_page(false);
        }
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <token>` with the token from .kiln/api.json",
        );
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    if by_cookie && !read_only && origin.is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "a request signed in by the dashboard's cookie must carry the page's Origin (or use `Authorization: Bearer <token>`)",
        );
    }
    next.run(request).await
}

/// `303 See Other` to the dashboard's path, setting the cookie for that path only.
fn sign_in(name: &str, token: &str, page_root: &str) -> Response {
    let cookie = HeaderValue::from_str(&format!("{name}={token}; HttpOnly; SameSite=Strict; Path={page_root}/"))
        .expect("a token and a session id are hex digits");
    let location = HeaderValue::from_str(&format!("{page_root}/")).expect("a session id is hex digits");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The value of `name` in a query string (`a=1&token=…`), as given (a token is hex digits:
/// nothing to decode).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

fn bearer_is(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| constant_time_eq(given, token.as_bytes()))
}

/// Whether a `Cookie` header has the cookie `name` with the token (every one is compared,
/// in constant time).
fn cookie_is(headers: &HeaderMap, name: &str, token: &str) -> bool {
    let mut found = false;
    for value in headers.get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if let Some(given) = pair.strip_prefix(name.as_bytes()).and_then(|rest| rest.strip_prefix(b"=")) {
                found |= constant_time_eq(given, token.as_bytes());
            }
        }
    }
    found
}

/// Whether `a == b`, in a time that depends on their lengths only (the token's length is no
/// secret), so that timing does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `127.0.0.1`, `localhost` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(name.to_ascii_lowercase().as_str(), "127.0.0.1" | "localhost" | "[::1]")
}

/// Whether `origin` is this server's: `http://` and exactly the `host` the request asked
/// for (a page on another port of this machine is another origin).
fn is_own_origin(origin: &str, host: &str) -> bool {
    origin.strip_prefix("http://").is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// The page at the dashboard's own path.
async fn page() -> Response {
    match Asset::at("/") {
        Some(asset) => asset.response(),
        None => not_found().await,
    }
}

async fn dashboard(uri: axum::http::Uri) -> Response {
    match Asset::at(uri.path()) {
        Some(asset) => asset.response(),
        None => not_found().await,
    }
}

async fn status(State(state): State<ApiState>) -> Response {
    let view = state.status.lock().expect("status lock is never poisoned").clone();
    let view = match tokio::task::spawn_blocking(move || view.at(std::time::SystemTime::now())).await {
        Ok(view) => view,
        Err(e) => return json(StatusCode::INTERNAL_SERVER_ERROR, &serde_json::json!({ "error": e.to_string() })),
    };
    let body = serde_json::to_value(&view).expect("status serializes");
    json(StatusCode::OK, &body)
}

/// OpenMetrics text, or Prometheus's text format 0.0.4 for a client that asks for
/// `text/plain` only.
async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let plain = metrics_view::wants_prometheus_text(headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()));
    let text = state.metrics.lock().expect("metrics lock is never poisoned").encode(plain);
    let mut response = (StatusCode::OK, text).into_response();
    let kind = if plain { metrics_view::PROMETHEUS_TEXT_TYPE } else { metrics_view::CONTENT_TYPE };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

async fn events(State(state): State<ApiState>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    // What EventSource sends on a reconnect wins over the `?since=` of the URL it was
    // opened with (which it sends again, unchanged).
    let since = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or("Last-Event-ID")),
        None => query_param(uri.query(), "since").map(|v| v.parse::<u64>().map_err(|_| "?since=")),
    };
    // Subscribed before the answer's head goes out: the client sees every event after it.
    let (missed, rx) = match since {
        None => (Vec::new(), state.bus.subscribe()),
        Some(Ok(after)) => state.bus.subscribe_since(after),
        Some(Err(what)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{what} must be the number (`id:`) of the last event seen, as sent in the stream"),
            );
        }
    };
    let slot = crate::stream_slots::StreamSlots::open(&state.streams);
    let feed = Feed { missed: missed.into_iter(), rx, sent: 0, slot };
    let frames = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            let envelope = match feed.missed.next() {
                Some(e) => e,
                // A newer stream took this one's place: it ends (see stream_slots.rs).
                None => tokio::select! {
                    e = feed.rx.recv() => e?,
                    () = feed.slot.evicted() => return None,
                },
            };
            // The replay and the subscription are taken at one instant; this only makes "no
            // duplicate" hold whatever happens to that.
            let lag = matches!(envelope.event, kiln_engine::Event::StreamLagged { .. });
            if envelope.seq <= feed.sent && !lag {
                continue;
            }
            feed.sent = envelope.seq;
            return Some((Ok::<_, std::convert::Infallible>(sse_frame(&envelope)), feed));
        }
    });
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// What an event stream sends: the replay, then the subscription's events.
struct Feed {
    missed: std::vec::IntoIter<std::sync::Arc<Envelope>>,
    rx: kiln_engine::Subscription,
    /// The number of the last event sent.
    sent: u64,
    slot: crate::stream_slots::StreamSlot,
}

fn sse_frame(envelope: &Envelope) -> Bytes {
    let json = serde_json::to_string(envelope).expect("events serialize");
    Bytes::from(format!("id: {}\ndata: {json}\n\n", envelope.seq))
}

/// Asked of the dispatcher, which holds the configuration running now (reloads included).
async fn graph(State(state): State<ApiState>) -> Response {
    let (reply, answer) = oneshot::channel();
    if state.controls.send(UpControl::Graph { reply }).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "`kiln up` is stopping");
    }
    match answer.await {
        Ok(graph) => json(StatusCode::OK, &serde_json::to_value(&graph).expect("the graph serializes")),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "`kiln up` is stopping"),
    }
}

/// Lines `GET /api/logs/NAME` answers by default, and at most.
const LOG_TAIL: usize = 200;
const LOG_TAIL_MAX: usize = 2000;

/// The last lines of a target's log and of a service's replicas' (a name may be both: then
/// both, or with `?kind=target|service` the one asked for), read off the async threads.
async fn logs(State(state): State<ApiState>, Path(name): Path<String>, uri: axum::http::Uri) -> Response {
    let kind = match kind_param(&uri) {
        Ok(kind) => kind,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let n = match query_param(uri.query(), "tail").map(str::parse::<usize>) {
        None => LOG_TAIL,
        Some(Ok(n)) => n.min(LOG_TAIL_MAX),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("?tail= must be a number of lines (at most {LOG_TAIL_MAX})"),
            );
        }
    };
    let (reply, answer) = oneshot::channel();
    if state.controls.send(UpControl::Graph { reply }).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "`kiln up` is stopping");
    }
    let Ok(graph) = answer.await else { return error(StatusCode::SERVICE_UNAVAILABLE, "`kiln up` is stopping") };
    let target = kind != Some(TriggerKind::Service) && graph.targets.iter().any(|t| t.name == name);
    let service = kind != Some(TriggerKind::Target) && graph.services.iter().any(|s| s.name == name);
    if !target && !service {
        let targets: Vec<String> = graph.targets.into_iter().map(|t| t.name).collect();
        let services: Vec<String> = graph.services.into_iter().map(|s| s.name).collect();
        let what = match kind {
            None => "no target or service named",
            Some(TriggerKind::Target) => "no target named",
            Some(TriggerKind::Service) => "no service named",
        };
        return unknown_name(&name, what, targets, services);
    }
    let logs = state.logs.clone();
    let read = tokio::task::spawn_blocking(move || {
        let (layout, limit) = &*logs;
        let (t, s) = (target.then_some(name.as_str()), service.then_some(name.as_str()));
        crate::commands::logs::tail(layout, *limit, t, s, n).map_err(|e| (e, layout.logs()))
    })
    .await;
    match read {
        Ok(Ok(lines)) => {
            let lines: Vec<serde_json::Value> = lines.iter().map(crate::commands::logs::TailLine::to_json).collect();
            json(StatusCode::OK, &serde_json::json!({ "lines": lines }))
        }
        Ok(Err((e, dir))) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot read the logs in {}: {e} (check that kiln can read it)", dir.display()),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("reading the logs failed: {e}")),
    }
}

/// A 404 for a name the session does not know: the names it does, and the closest.
fn unknown_name(name: &str, what: &str, targets: Vec<String>, services: Vec<String>) -> Response {
    let hint = kiln_config::did_you_mean(name, targets.iter().chain(&services).map(String::as_str));
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({
            "error": format!("{what} `{name}`"),
            "targets": targets,
            "services": services,
            "did_you_mean": hint,
        }),
    )
}

/// `?kind=target|service`, for a name that is both (absent: `None`), or what the 400 says.
fn kind_param(uri: &axum::http::Uri) -> Result<Option<TriggerKind>, String> {
    match query_param(uri.query(), "kind") {
        None => Ok(None),
        Some("target") => Ok(Some(TriggerKind::Target)),
        Some("service") => Ok(Some(TriggerKind::Service)),
        Some(other) => {
            Err(format!("?kind= must be `target` or `service`, not `{other}` (leave it out to mean either)"))
        }
    }
}

/// `POST /api/trigger/NAME[?kind=target|service]`: rebuilds a target or restarts a service;
/// without `kind`, a running service of that name comes first. Answers which it did.
async fn trigger(State(state): State<ApiState>, Path(name): Path<String>, uri: axum::http::Uri) -> Response {
    let kind = match kind_param(&uri) {
        Ok(kind) => kind,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let (reply, answer) = oneshot::channel();
    if state.controls.send(UpControl::Trigger { name: name.clone(), kind, reply }).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "`kiln up` is stopping");
    }
    let done = |what: &str| json(StatusCode::ACCEPTED, &serde_json::json!({ "ok": true, "triggered": what }));
    match answer.await {
        Ok(Triggered::Target) => done("target"),
        Ok(Triggered::Service) => done("service"),
        Ok(Triggered::Unknown { targets, services }) => {
            let what = match kind {
                None => "no target or running service named",
                Some(TriggerKind::Target) => "no selected target named",
                Some(TriggerKind::Service) => "no running service named",
            };
            unknown_name(&name, what, targets, services)
        }
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "`kiln up` is stopping"),
    }
}

async fn stop(State(state): State<ApiState>) -> Response {
    if state.controls.send(UpControl::Stop).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "`kiln up` is stopping");
    }
    json(StatusCode::ACCEPTED, &serde_json::json!({ "ok": true }))
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint (GET /, GET /api/status, GET /api/events, GET /api/graph, GET /api/logs/NAME[?kind=target|service], POST /api/trigger/NAME[?kind=target|service], POST /api/stop, GET /metrics)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_origins() {
        for host in ["127.0.0.1", "127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]", "[::1]:9"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["attacker.example", "127.0.0.1.evil:80", "localhost.evil", "10.0.0.1", "", "[::1]x"] {
            assert!(!is_loopback_host(host), "{host}");
        }
        for (origin, host) in [("http://127.0.0.1:4000", "127.0.0.1:4000"), ("http://LOCALHOST:9", "localhost:9")] {
            assert!(is_own_origin(origin, host), "{origin}");
        }
        for origin in [
            "null",
            "http://127.0.0.1:4001",
            "http://127.0.0.1",
            "https://127.0.0.1:4000",
            "http://localhost:4000",
            "http://127.0.0.1:4000/x",
            "http://127.0.0.1:40000",
        ] {
            assert!(!is_own_origin(origin, "127.0.0.1:4000"), "{origin}");
        }
    }

    #[test]
    fn the_token_is_read_from_the_query_and_the_cookie() {
        assert_eq!(query_param(Some("token=abc"), "token"), Some("abc"));
        assert_eq!(query_param(Some("x=1&token=abc&y"), "token"), Some("abc"));
        assert_eq!(query_param(Some("tokens=abc"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
        let with = |cookies: &[&str]| {
            let mut h = HeaderMap::new();
            for c in cookies {
                h.append(header::COOKIE, HeaderValue::from_str(c).expect("header"));
            }
            cookie_is(&h, &cookie_name(19001), "t0k")
        };
        assert!(with(&["kiln_token_19001=t0k"]));
        assert!(with(&["a=b; kiln_token_19001=t0k; c=d"]));
        assert!(with(&["a=b", "kiln_token_19001=t0k"]));
        assert!(
            with(&["kiln_token_19001=old; kiln_token_19001=t0k"]),
            "any of two (paths differ) may be the right one"
        );
        assert!(!with(&["kiln_token_19001=t0"]));
        assert!(!with(&["kiln_token_19002=t0k"]), "another session's cookie");
        assert!(!with(&["xkiln_token_19001=t0k"]));
        assert!(!with(&["kiln_token_190011=t0k"]));
        assert!(!with(&[]));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abce"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
