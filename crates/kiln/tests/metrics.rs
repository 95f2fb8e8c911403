//! `GET /metrics` of a real `kiln up`: OpenMetrics text without a token, checked by
//! `promtool check metrics` and scraped by a real Prometheus.

mod common;
use common::{Project, Up, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const CONFIG: &str = r#"
[settings]
debounce = "50ms"
[target.core]
cmd = "echo built core"
inputs = ["src/*.txt"]
cache = false
[target.lib]
cmd = "mkdir -p out && cp src/l.txt out/l.txt"
inputs = ["src/l.txt"]
outputs = ["out/l.txt"]
[service.web]
cmd = "echo listening; exec sleep 1000"
ready = { log = "listening" }
deps = ["core"]
[service.crasher]
cmd = "exit 3"
"#;

/// GETs `path` with `host` as the Host header (no token) and returns (head, body).
fn get(addr: &str, host: &str, path: &str) -> (String, String) {
    get_with(addr, host, path, "")
}

/// Like [`get`], with more header lines (each ending in CRLF).
fn get_with(addr: &str, host: &str, path: &str, more: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{more}Connection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the answer");
    let (head, body) = out.split_once("\r\n\r\n").expect("an answer has a head");
    (head.to_string(), dechunk(head, body))
}

fn dechunk(head: &str, body: &str) -> String {
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn address(p: &Project) -> String {
    let info: serde_json::Value = serde_json::from_str(&p.read(".kiln/api.json")).expect("json");
    info["address"].as_str().expect("address").to_string()
}

/// The value of the sample line starting with `series ` in OpenMetrics `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// Fetches /metrics until `series` reaches at least `want` (at most 20 s): the metrics
/// follow the event stream on a task of their own, a moment after `--json` shows an event.
fn wait_value(addr: &str, series: &str, want: f64) -> String {
    let mut text = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        text = get(addr, "127.0.0.1", "/metrics").1;
        value(&text, series).is_some_and(|v| v >= want)
    });
    assert!(ok, "`{series}` never reached {want}:\n{text}");
    text
}

#[test]
fn metrics_need_no_token_and_count_what_happened() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    p.write("src/l.txt", "1\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["service"] == "web" && e["phase"] == "ready");
    let addr = address(&p);

    let (head, text) = get(&addr, "127.0.0.1", "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let (head, _) = get(&addr, "attacker.example", "/metrics");
    assert!(head.starts_with("HTTP/1.1 403"), "a foreign Host is refused: {head}");
    let (head, _) = get(&addr, "127.0.0.1", "/api/status");
    assert!(head.starts_with("HTTP/1.1 401"), "the rest still needs the token: {head}");

    let text = wait_value(&addr, r#"kiln_target_builds_total{target="core",status="built"}"#, 1.0);
    assert_eq!(value(&text, r#"kiln_service_ready_replicas{service="web"}"#), Some(1.0), "{text}");
    assert!(value(&text, r#"kiln_reconciles_total{service="web",result="ok"}"#) >= Some(1.0), "{text}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(value(&text, &format!(r#"kiln_build_info{{version="{version}"}}"#)), Some(1.0), "{text}");
    // The crasher exits, backs off and is started again.
    let text = wait_value(&addr, r#"kiln_service_restarts_total{service="crasher",reason="crash"}"#, 1.0);
    assert!(value(&text, r#"kiln_reconciles_total{service="crasher",result="requeued"}"#) >= Some(1.0), "{text}");

    // An edit: a change seen, a second build.
    p.write("src/a.txt", "b\n");
    let text = wait_value(&addr, r#"kiln_target_builds_total{target="core",status="built"}"#, 2.0);
    assert!(value(&text, "kiln_watch_changes_total") >= Some(1.0), "{text}");
    assert!(value(&text, r#"kiln_target_build_duration_seconds_count{target="core"}"#) >= Some(2.0), "{text}");
    assert_eq!(value(&text, "kiln_events_dropped_total"), Some(0.0), "{text}");
    // The cache is asked only for targets that use it (`core` has `cache = false`): `lib`'s
    // first build and an edit miss; going back to the first content is a hit.
    assert_eq!(value(&text, r#"kiln_cache_requests_total{result="miss"}"#), Some(1.0), "{text}");
    p.write("src/l.txt", "2\n");
    let text = wait_value(&addr, r#"kiln_cache_requests_total{result="miss"}"#, 2.0);
    assert_eq!(value(&text, r#"kiln_cache_requests_total{result="hit"}"#), None, "{text}");
    p.write("src/l.txt", "1\n");
    let text = wait_value(&addr, r#"kiln_cache_requests_total{result="hit"}"#, 1.0);
    assert_eq!(value(&text, r#"kiln_cache_requests_total{result="miss"}"#), Some(2.0), "{text}");
    assert_eq!(value(&text, r#"kiln_target_builds_total{target="lib",status="cached"}"#), Some(1.0), "{text}");
    // Restarts are counted by their cause: the new build of core, then `kiln trigger`.
    let text = wait_value(&addr, r#"kiln_service_restarts_total{service="web",reason="build"}"#, 1.0);
    assert_eq!(value(&text, r#"kiln_service_restarts_total{service="web",reason="trigger"}"#), None, "{text}");
    let run = p.kiln(&["trigger", "web"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    wait_value(&addr, r#"kiln_service_restarts_total{service="web",reason="trigger"}"#, 1.0);

    // promtool reads Prometheus's text format, which kiln answers to `Accept: text/plain`.
    let (head, plain) = get_with(&addr, "127.0.0.1", "/metrics", "Accept: text/plain\r\n");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    promtool_check(&plain);
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
}

/// `promtool check metrics` (Debian's `prometheus`) accepts the text, lint warnings included.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's `prometheus` package (scripts/install-deps.sh does)")
        });
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

/// A Prometheus server of the test's own, killed on every way out.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A query string's value, percent-encoded.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET that gives up (`None`) while the server is not listening yet.
fn try_get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.to_string(), dechunk(head, body)))
}

/// The single value Prometheus answers for an instant `query`, if any.
fn prometheus_value(addr: &str, query: &str) -> Option<String> {
    let (head, body) = try_get(addr, &format!("/api/v1/query?query={}", encode(query)))?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"].get(0)?["value"].get(1)?.as_str().map(str::to_string)
}

#[test]
fn a_real_prometheus_scrapes_kiln_and_answers_queries_of_its_values() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["service"] == "web" && e["phase"] == "ready");
    let kiln = address(&p);
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let prom = format!("127.0.0.1:{port}");
    p.write(
        "prom/prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: kiln\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{kiln}']\n"
        ),
    );
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", p.path("prom/prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", p.path("prom/data").display()))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run prometheus ({e}): install Debian's `prometheus` (scripts/install-deps.sh does)")
        });
    let _prometheus = Prometheus(child);
    // Scraped (OpenMetrics, which Prometheus asks for) and stored: its query API answers.
    let mut last = None;
    let scraped = wait_until(Duration::from_secs(90), || {
        last = prometheus_value(&prom, r#"kiln_target_builds_total{target="core",status="built"}"#);
        last.as_deref() == Some("1")
    });
    if !scraped {
        let targets = try_get(&prom, "/api/v1/targets").map(|(_, b)| b).unwrap_or_default();
        panic!("Prometheus never had kiln_target_builds_total = 1 (last {last:?}); its targets: {targets}");
    }
    assert_eq!(prometheus_value(&prom, r#"up{job="kiln"}"#).as_deref(), Some("1"));
    assert_eq!(prometheus_value(&prom, r#"kiln_service_ready_replicas{service="web"}"#).as_deref(), Some("1"));
    // An edit: the next scrapes carry the second build.
    p.write("src/a.txt", "b\n");
    let rebuilt = wait_until(Duration::from_secs(60), || {
        prometheus_value(&prom, r#"kiln_target_builds_total{target="core",status="built"}"#).as_deref() == Some("2")
    });
    assert!(rebuilt, "Prometheus never saw the second build");
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
}
