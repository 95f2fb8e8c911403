//! The control API of `kiln up` and the commands that use it, against a real session.

mod common;
use common::{Project, Up, wait_until};
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const CONFIG: &str = r#"
[settings]
debounce = "50ms"
[target.core]
cmd = "echo built core"
inputs = ["src/*.txt"]
cache = false
[service.web]
cmd = "echo listening; exec sleep 1000"
ready = { log = "listening" }
"#;

/// Sends `request` (a head ending in an empty line) with `Connection: close` added, and
/// reads the whole answer.
fn raw(addr: &str, request: &str) -> String {
    let head = request.strip_suffix("\r\n\r\n").expect("a request head ends with an empty line");
    send_raw(addr, format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
}

/// Sends `bytes` as they are and reads until the session closes the connection. A reset
/// instead of a close fails: it can destroy the answer before the client reads it.
fn send_raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(bytes).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap_or_else(|e| panic!("read the answer: {e}; got {:?}", String::from_utf8_lossy(&out)));
    String::from_utf8_lossy(&out).into_owned()
}

/// The address and token of the session from `.kiln/api.json`.
fn api(p: &Project) -> (String, String) {
    let info: serde_json::Value = serde_json::from_str(&p.read(".kiln/api.json")).expect("json");
    (info["address"].as_str().expect("address").into(), info["token"].as_str().expect("token").into())
}

/// The body of an answer (after the head), de-chunked when it is one chunk.
fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn without_a_session_the_commands_say_so() {
    let p = Project::new(CONFIG);
    for args in [&["status"][..], &["trigger", "core"], &["down"], &["wait", "core"], &["dashboard"]] {
        let run = p.kiln(args);
        assert_eq!(run.code, 1, "{args:?}");
        assert_eq!(
            run.stderr, "error: no `kiln up` is running in this project (start one with `kiln up`)\n",
            "{args:?}"
        );
    }
}

#[test]
fn status_trigger_token_host_and_down() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path(".kiln/api.json")).expect("api.json").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let info: serde_json::Value = serde_json::from_str(&p.read(".kiln/api.json")).expect("json");
    let addr = info["address"].as_str().expect("address").to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let status = p.kiln(&["--json", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(v["targets"]["core"]["status"], "built");
    assert_eq!((v["services"]["web"]["ready"].as_u64(), v["services"]["web"]["desired"].as_u64()), (Some(1), Some(1)));
    let human = p.kiln(&["status"]);
    assert!(human.stdout.contains("web") && human.stdout.contains("ready    1/1 replicas"), "{}", human.stdout);
    assert_eq!(p.kiln(&["wait", "core", "web", "--timeout", "5s"]).code, 0);

    let token = info["token"].as_str().expect("token").to_string();
    let no_token = raw(&addr, &format!("POST /api/stop HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(no_token.starts_with("HTTP/1.1 401"), "{no_token}");
    let wrong_token =
        raw(&addr, &format!("POST /api/stop HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer nope\r\n\r\n"));
    assert!(wrong_token.starts_with("HTTP/1.1 401"), "{wrong_token}");
    let foreign = raw(&addr, "GET /api/status HTTP/1.1\r\nHost: attacker.example\r\n\r\n");
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let nothing =
        raw(&addr, &format!("GET /api/nothing HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"));
    assert!(nothing.starts_with("HTTP/1.1 404"), "{nothing}");

    // The event stream as Server-Sent Events (`kiln logs -f` reads the log files instead:
    // see tests/logs.rs).
    let mut sse = TcpStream::connect(&addr).expect("connect");
    sse.write_all(
        format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes(),
    )
    .expect("send");

    let runs_before = up.runs();
    let trigger = p.kiln(&["trigger", "core"]);
    assert_eq!(trigger.code, 0, "{}", trigger.stderr);
    let forced = up.wait_for("the triggered build", |e| e["type"] == "target.finished" && e["target"] == "core");
    assert_eq!(
        (forced["status"].as_str(), forced["reason"].as_str()),
        (Some("built"), Some("triggered")),
        "runs even though up to date"
    );
    up.wait_for("its run", |e| e["type"] == "run.finished");
    assert!(up.runs() > runs_before);
    assert_eq!(p.kiln(&["trigger", "web"]).code, 0);
    up.wait_for("web restarted", |e| e["type"] == "service.phase" && e["phase"] == "stopping");
    up.wait_for("web ready again", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    sse.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("\"type\":\"service.phase\"") {
        let n = sse.read(&mut buf).expect("SSE data");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.to_ascii_lowercase().contains("\r\ncontent-type: text/event-stream\r\n"), "{got}");
    // Each event carries its seq as the SSE id, so that a client can say where it was.
    let data = got.lines().find(|l| l.starts_with("data: {\"type\":\"service.phase\"")).expect("an event");
    let event: serde_json::Value = serde_json::from_str(&data["data: ".len()..]).expect("JSON");
    assert!(got.contains(&format!("\nid: {}\n{data}\n", event["seq"])), "{got}");

    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    let status = up.child.wait().expect("kiln up exits");
    assert_eq!(status.code(), Some(0), "a requested stop is a clean exit");
    assert!(wait_until(Duration::from_secs(2), || !p.exists(".kiln/api.json")), "api.json removed");
}

/// Runs a prepared kiln command, failing the test if it has not ended within `limit`.
fn run_within(command: &mut std::process::Command, limit: Duration) -> common::Run {
    let mut child =
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("kiln starts");
    let ended = wait_until(limit, || child.try_wait().expect("wait").is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    assert!(ended, "still running after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn request_heads_over_16_kib_are_answered_431() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let up = Up::start(&p, &[]);
    let (addr, token) = api(&p);
    let padding = "a".repeat(20 * 1024);
    let whole = format!("GET /api/status HTTP/1.1\r\nHost: localhost\r\nX-Padding: {padding}\r\n\r\n");
    let answer = send_raw(&addr, whole.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");
    // A head that never ends is cut off at the limit, and the answer still reaches the
    // client: what it sent beyond is read and dropped instead of resetting the connection.
    let endless = format!("GET /api/status HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}", "a".repeat(100 * 1024));
    let answer = send_raw(&addr, endless.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");
    let many: String = (0..200).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let answer = send_raw(&addr, format!("GET /api/status HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    // Just under the limit is fine.
    let under = format!(
        "GET /api/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(15 * 1024)
    );
    let answer = raw(&addr, &under);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(up);
}

#[test]
fn every_endpoint_needs_the_token() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    for (method, path) in
        [("GET", "/api/status"), ("GET", "/api/events"), ("POST", "/api/trigger/core"), ("POST", "/api/stop")]
    {
        for auth in ["", "Authorization: Bearer nope\r\n", "Authorization: Basic eDp5\r\n"] {
            let answer = raw(&addr, &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\n"));
            assert!(answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{method} {path} {auth:?}: {answer}");
            assert!(body(&answer).contains(".kiln/api.json"), "says where the token is: {answer}");
        }
        // A token that is right but for its last character.
        let mut near = token.clone();
        near.pop();
        near.push(if token.ends_with('0') { '1' } else { '0' });
        let answer =
            raw(&addr, &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {near}\r\n\r\n"));
        assert!(answer.starts_with("HTTP/1.1 401 "), "{method} {path}: {answer}");
    }
    let answer =
        raw(&addr, &format!("GET /api/status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    // None of the refused requests did anything: the session is still up, web still ready.
    let status = p.kiln(&["--json", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(v["services"]["web"]["phase"], "ready");
    assert_eq!(up.count(|e| e["type"] == "target.started"), 1, "no triggered build:\n{}", up.dump());
}

#[test]
fn a_foreign_host_and_a_cross_site_origin_are_refused() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    let auth = format!("Authorization: Bearer {token}\r\n");
    for host in ["attacker.example", "attacker.example:80", "127.0.0.1.attacker.example", "localhost.attacker.example"]
    {
        let answer = raw(&addr, &format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n"));
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{host}: {answer}");
        assert!(body(&answer).contains("Host"), "{answer}");
    }
    for origin in ["https://attacker.example", "http://localhost.attacker.example", "null"] {
        let answer = raw(&addr, &format!("POST /api/stop HTTP/1.1\r\nHost: {addr}\r\n{auth}Origin: {origin}\r\n\r\n"));
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{origin}: {answer}");
        assert!(body(&answer).contains("Origin"), "{answer}");
    }
    // A loopback origin (a page kiln itself may serve) is fine; so is no origin (curl, kiln).
    let answer =
        raw(&addr, &format!("POST /api/trigger/core HTTP/1.1\r\nHost: {addr}\r\n{auth}Origin: http://{addr}\r\n\r\n"));
    assert!(answer.starts_with("HTTP/1.1 202 Accepted\r\n"), "{answer}");
    up.wait_for("the triggered build", |e| e["type"] == "target.finished" && e["reason"] == "triggered");
    // The refused stops did not stop the session.
    assert_eq!(p.kiln(&["status"]).code, 0);
}

#[test]
fn an_unknown_trigger_is_404_with_the_names_and_a_suggestion() {
    let config = format!("{CONFIG}[target.extra]\ncmd = \"echo extra\"\n");
    let p = Project::new(&config);
    p.write("src/a.txt", "a\n");
    // `extra` is in kiln.toml but not kept up to date by this session.
    let mut up = Up::start(&p, &["core", "web"]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    let answer =
        raw(&addr, &format!("POST /api/trigger/cor HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"));
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    let v: serde_json::Value = serde_json::from_str(body(&answer)).expect("a JSON body");
    assert_eq!(v["targets"], serde_json::json!(["core"]), "{v}");
    assert_eq!(v["services"], serde_json::json!(["web"]), "{v}");
    assert_eq!(v["did_you_mean"], "core", "{v}");
    assert_eq!(v["error"], "no target or running service named `cor`", "{v}");

    let typo = p.kiln(&["trigger", "cor"]);
    assert_eq!(typo.code, 2, "{typo:?}");
    assert_eq!(
        typo.stderr,
        "error: unknown target or service `cor`; did you mean `core`?\n  = targets: core, extra; services: web\n"
    );
    let unselected = p.kiln(&["trigger", "extra"]);
    assert_eq!(unselected.code, 2, "{unselected:?}");
    assert_eq!(
        unselected.stderr,
        "error: the running `kiln up` has no target or running service named `extra`\n  = targets: core; services: web\n"
    );
    assert_eq!(up.count(|e| e["type"] == "target.started"), 1, "nothing was built:\n{}", up.dump());
}

#[test]
fn wait_and_logs_follow_for_an_unknown_name_exit_2_at_once() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let names = "\n  = targets: core; services: web\n";
    // Without the check, both would wait for a name that never comes: give them far less
    // time than `--timeout`, so that waiting shows as a failure here.
    let wait = run_within(
        p.command(&["wait", "core", "wbe", "--timeout", "60s"]).env("NO_COLOR", "1"),
        Duration::from_secs(20),
    );
    assert_eq!(wait.code, 2, "{wait:?}");
    assert_eq!(wait.stderr, format!("error: unknown target or service `wbe`; did you mean `web`?{names}"));
    let logs = run_within(&mut p.command(&["logs", "-f", "cor"]), Duration::from_secs(20));
    assert_eq!(logs.code, 2, "{logs:?}");
    assert_eq!(logs.stderr, format!("error: unknown target or service `cor`; did you mean `core`?{names}"));
    let far = run_within(&mut p.command(&["logs", "-f", "zzzzzz"]), Duration::from_secs(20));
    assert_eq!((far.code, far.stderr), (2, format!("error: unknown target or service `zzzzzz`{names}")));
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds").count()
}

#[test]
fn three_hundred_half_open_connections_do_not_lock_out_a_client() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, _) = api(&p);
    let pid = up.child.id();
    let before = fds(pid);
    // Opened, and nothing sent or half a head (a slow client, or one that means harm).
    let idle: Vec<TcpStream> = (0..300)
        .map(|i| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            if i % 2 == 1 {
                s.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n").expect("half a head");
            }
            s
        })
        .collect();
    for s in &idle {
        s.set_nonblocking(true).expect("nonblocking");
    }
    // kiln holds at most 64 connections: it closes the longest idle ones to take new ones.
    let mut closed = vec![false; idle.len()];
    let all_but_64 = wait_until(Duration::from_secs(8), || {
        for (s, c) in idle.iter().zip(closed.iter_mut()).filter(|(_, c)| !**c) {
            let mut byte = [0u8; 1];
            *c = match (&*s).read(&mut byte) {
                Ok(n) => n == 0,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
        }
        closed.iter().filter(|c| **c).count() >= 300 - 64
    });
    let n_closed = closed.iter().filter(|c| **c).count();
    assert!(all_but_64, "kiln closed only {n_closed} of 300 idle connections");
    assert!(closed[..300 - 64].iter().all(|c| *c), "the oldest ones go first");
    let held = fds(pid);
    assert!(held <= before + 64 + 4, "kiln holds {held} fds with 300 idle connections (had {before})");
    // A client that sends its request is served now, not after the idle ones time out.
    let start = std::time::Instant::now();
    let status = run_within(&mut p.command(&["--json", "status"]), Duration::from_secs(20));
    let took = start.elapsed();
    assert_eq!(status.code, 0, "{status:?}");
    assert!(took < Duration::from_secs(5), "status took {took:?} with 300 idle connections open");
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(v["services"]["web"]["phase"], "ready");
    assert!(fds(pid) <= before + 64 + 4, "fds stay bounded");
    drop(idle);
}

#[test]
fn event_streams_that_never_read_cannot_lock_the_commands_out() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    // 64 streams, as many as there are connections, each read up to its head, then never.
    let request = format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n");
    let streams: Vec<std::io::BufReader<TcpStream>> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.write_all(request.as_bytes()).expect("request");
            let mut r = std::io::BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).expect("status line");
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            r
        })
        .collect();
    // At most 32 stay open: the first 32 were ended as newer ones came.
    let mut ended = 0;
    for mut r in streams.into_iter().take(32) {
        r.get_ref().set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut rest = Vec::new();
        // A stream that was ended closes its body: the read reaches its end.
        if r.read_to_end(&mut rest).is_ok() {
            ended += 1;
        }
    }
    assert_eq!(ended, 32, "the oldest streams were ended to keep connections for the commands");
    // The commands still get through, `kiln down` included.
    let status = run_within(&mut p.command(&["status"]), Duration::from_secs(20));
    assert_eq!(status.code, 0, "{status:?}");
    let down = run_within(&mut p.command(&["down", "--timeout", "10s"]), Duration::from_secs(30));
    assert_eq!(down.code, 0, "{down:?}");
    let (code, _) = up.stop();
    assert_eq!(code, 0, "kiln down stopped it");
}

#[test]
fn a_connection_that_sends_no_whole_head_is_closed_after_10_seconds() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let up = Up::start(&p, &[]);
    let (addr, _) = api(&p);
    let mut slow = TcpStream::connect(&addr).expect("connect");
    let start = std::time::Instant::now();
    // Half a head, then silence.
    slow.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n").expect("send");
    slow.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    let took = start.elapsed();
    assert!(read.is_ok(), "closed, not reset and not still open: {read:?} after {took:?}");
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(20), "closed after {took:?}");
    drop(up);
}

#[test]
fn api_json_is_not_written_through_a_symlink_planted_in_kiln_dir() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let outside = tempfile::tempdir().expect("tempdir");
    let (victim_tmp, victim) = (outside.path().join("tmp-target"), outside.path().join("target"));
    std::fs::write(&victim_tmp, "untouched\n").expect("write");
    std::fs::write(&victim, "untouched too\n").expect("write");
    std::fs::set_permissions(&victim_tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::create_dir_all(p.path(".kiln")).expect("mkdir");
    std::os::unix::fs::symlink(&victim_tmp, p.path(".kiln/api.json.tmp")).expect("symlink");
    std::os::unix::fs::symlink(&victim, p.path(".kiln/api.json")).expect("symlink");
    let up = Up::start(&p, &[]);
    assert_eq!(std::fs::read_to_string(&victim_tmp).expect("read"), "untouched\n");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "untouched too\n");
    assert_eq!(std::fs::metadata(&victim_tmp).expect("meta").permissions().mode() & 0o777, 0o644);
    let meta = std::fs::symlink_metadata(p.path(".kiln/api.json")).expect("api.json");
    assert!(meta.file_type().is_file(), "api.json is a file of its own now");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!p.path(".kiln/api.json.tmp").exists());
    assert_eq!(p.kiln(&["status"]).code, 0, "and it works");
    drop(up);
}

/// The value of header `name` in an answer's head (the first one), lowercase name match.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split_once("\r\n\r\n").map_or(answer, |(h, _)| h);
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn the_dashboard_signs_in_with_the_token_once_then_by_cookie() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    let port = addr.rsplit_once(':').map(|(_, p)| p.to_string()).expect("a port");

    // The URL `kiln dashboard` prints: the token goes into a cookie and out of the address bar.
    // The cookie is scoped to the dashboard's own path, a secret of the session (a browser
    // sends a host's cookies to all its ports: never to another server on 127.0.0.1).
    let signed_in = raw(&addr, &format!("GET /?token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(signed_in.starts_with("HTTP/1.1 303 See Other\r\n"), "{signed_in}");
    let root = header(&signed_in, "location").expect("a location").to_string();
    assert!(root.starts_with("/s/") && root.ends_with('/') && root.len() == 36, "{signed_in}");
    assert_eq!(
        header(&signed_in, "set-cookie"),
        Some(format!("kiln_token_{port}={token}; HttpOnly; SameSite=Strict; Path={root}").as_str()),
        "{signed_in}"
    );
    let cookie = format!("Cookie: theme=dark; kiln_token_{port}={token}\r\n");

    // With the cookie, under that path: the page and its files, embedded, never cached stale.
    for (path, kind) in [
        ("", "text/html; charset=utf-8"),
        ("assets/app.js", "text/javascript; charset=utf-8"),
        ("assets/style.css", "text/css; charset=utf-8"),
    ] {
        let answer = raw(&addr, &format!("GET {root}{path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}\r\n"));
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {answer}");
        assert_eq!(header(&answer, "content-type"), Some(kind), "{path}");
        assert_eq!(header(&answer, "cache-control"), Some("no-cache"), "{path}");
        assert!(header(&answer, "content-security-policy").is_some_and(|c| c.contains("default-src 'self'")));
        assert!(!body(&answer).is_empty(), "{path}");
    }
    let page = raw(&addr, &format!("GET {root} HTTP/1.1\r\nHost: {addr}\r\n{cookie}\r\n"));
    assert!(body(&page).contains("\"assets/app.js\""), "the page loads its script, relative to its path: {page}");
    let status = raw(&addr, &format!("GET {root}api/status HTTP/1.1\r\nHost: {addr}\r\n{cookie}\r\n"));
    assert!(status.starts_with("HTTP/1.1 200 OK\r\n"), "the API takes the cookie under the page's path: {status}");
    let slashless = raw(&addr, &format!("GET {} HTTP/1.1\r\nHost: {addr}\r\n\r\n", root.trim_end_matches('/')));
    assert!(slashless.starts_with("HTTP/1.1 308 ") && header(&slashless, "location") == Some(&root), "{slashless}");
    // Elsewhere the cookie is no credential (a browser would not even send it there).
    for path in ["/api/status", "/", "/s/00000000000000000000000000000000/api/status"] {
        let answer = raw(&addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}\r\n"));
        assert!(answer.starts_with("HTTP/1.1 401 "), "{path}: {answer}");
    }

    // Without a token, or with an old link: a page saying what to open.
    for request in [
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        format!("GET {root}assets/app.js HTTP/1.1\r\nHost: {addr}\r\nCookie: kiln_token_{port}=stale\r\n\r\n"),
        format!("GET {root}assets/app.js HTTP/1.1\r\nHost: {addr}\r\nCookie: kiln_token_1={token}\r\n\r\n"),
        format!("GET /?token=0123 HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    ] {
        let answer = raw(&addr, &request);
        assert!(answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{request}: {answer}");
        assert_eq!(header(&answer, "content-type"), Some("text/html; charset=utf-8"), "{answer}");
        assert!(body(&answer).contains("<code>kiln dashboard</code> prints"), "{answer}");
        assert!(header(&answer, "set-cookie").is_none(), "{answer}");
    }
    let api_without = raw(&addr, &format!("GET /api/status HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(api_without.starts_with("HTTP/1.1 401 ") && body(&api_without).contains(".kiln/api.json"), "{api_without}");
    // The token in the query signs in at `/` only; elsewhere it is no credential.
    let query_elsewhere = raw(&addr, &format!("GET /api/status?token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(query_elsewhere.starts_with("HTTP/1.1 401 "), "{query_elsewhere}");
    // The Host check holds for the sign-in too (DNS rebinding).
    let rebound = raw(&addr, &format!("GET /?token={token} HTTP/1.1\r\nHost: attacker.example\r\n\r\n"));
    assert!(rebound.starts_with("HTTP/1.1 403 "), "{rebound}");

    // A POST with the cookie needs the page's Origin: this server, not another site, and
    // not another port of this machine (a page served there is another origin).
    let post = |path: &str, origin: &str| {
        raw(&addr, &format!("POST {root}{path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}{origin}\r\n"))
    };
    let no_origin = post("api/trigger/core", "");
    assert!(no_origin.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{no_origin}");
    assert!(body(&no_origin).contains("Origin"), "{no_origin}");
    let other_port = if port == "19999" { "19998" } else { "19999" };
    for origin in ["https://attacker.example".to_string(), format!("http://127.0.0.1:{other_port}")] {
        let foreign = post("api/trigger/core", &format!("Origin: {origin}\r\n"));
        assert!(foreign.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{origin}: {foreign}");
    }
    let stop = post("api/stop", "");
    assert!(stop.starts_with("HTTP/1.1 403 "), "{stop}");
    assert_eq!(up.count(|e| e["type"] == "target.started"), 1, "nothing was triggered yet:\n{}", up.dump());
    let from_page = post("api/trigger/core", &format!("Origin: http://{addr}\r\n"));
    assert!(from_page.starts_with("HTTP/1.1 202 Accepted\r\n"), "{from_page}");
    up.wait_for("the triggered build", |e| e["type"] == "target.finished" && e["reason"] == "triggered");
    // The refused stops did not stop the session.
    assert_eq!(p.kiln(&["status"]).code, 0);
}

/// A client of `GET /api/events`: the answer's head, then its frames as (id, event) pairs.
struct Sse {
    stream: std::io::BufReader<TcpStream>,
    /// Decoded body not yet split into frames.
    pending: String,
    pub head: String,
}

impl Sse {
    /// Opens the stream with the extra header lines `extra` (each ending in `\r\n`).
    fn open(addr: &str, target: &str, token: &str, extra: &str) -> Sse {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        s.write_all(
            format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{extra}\r\n").as_bytes(),
        )
        .expect("send");
        let mut stream = std::io::BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut stream, &mut line).expect("the answer's head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        Sse { stream, pending: String::new(), head }
    }

    /// The next frame (the body is chunked: each chunk is decoded first).
    fn next(&mut self) -> (u64, serde_json::Value) {
        use std::io::BufRead;
        loop {
            if let Some((frame, rest)) = self.pending.split_once("\n\n") {
                let (frame, rest) = (frame.to_string(), rest.to_string());
                self.pending = rest;
                let id = frame.lines().find_map(|l| l.strip_prefix("id: ")).expect("an id").parse().expect("a number");
                let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
                return (id, serde_json::from_str(data).expect("JSON"));
            }
            let mut size = String::new();
            self.stream.read_line(&mut size).expect("a chunk's size");
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|_| panic!("chunk size {size:?}"));
            assert!(size > 0, "the stream ended");
            let mut chunk = vec![0u8; size + 2];
            self.stream.read_exact(&mut chunk).expect("a chunk");
            self.pending.push_str(std::str::from_utf8(&chunk[..size]).expect("UTF-8"));
        }
    }

    /// Frames up to and including the first with number `last` or more.
    fn until(&mut self, last: u64) -> Vec<(u64, serde_json::Value)> {
        let mut got = Vec::new();
        loop {
            let frame = self.next();
            let done = frame.0 >= last;
            got.push(frame);
            if done {
                return got;
            }
        }
    }
}

#[test]
fn a_client_that_reconnects_with_last_event_id_gets_what_it_missed_exactly_once_in_order() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    let ready = up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    // From the first event of the session on (the ring holds them all): the same events,
    // numbers and order as `--json` printed.
    let mut first = Sse::open(&addr, "/api/events?since=0", &token, "");
    assert!(first.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", first.head);
    let seen = first.until(ready["seq"].as_u64().expect("seq"));
    let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    for (id, event) in &seen {
        assert_eq!(event["seq"], *id);
        let printed = up.seen.iter().find(|e| e["seq"] == *id).expect("printed too");
        assert_eq!(printed, event, "the same event");
    }
    let last_seen = *ids.last().expect("some");
    drop(first);

    // While no client is connected: a build and a restart.
    assert_eq!(p.kiln(&["trigger", "core"]).code, 0);
    up.wait_for("the triggered build", |e| e["type"] == "target.finished" && e["reason"] == "triggered");
    assert_eq!(p.kiln(&["trigger", "web"]).code, 0);
    let again = up.wait_for("web ready again", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let last_published = again["seq"].as_u64().expect("seq");

    // What an EventSource sends on its reconnect; the URL's older `since` is overruled.
    let mut back = Sse::open(
        &addr,
        "/api/events?since=1",
        &token,
        &format!("Last-Event-ID: {last_seen}\r\nAccept: text/event-stream\r\n"),
    );
    let missed = back.until(last_published);
    let ids: Vec<u64> = missed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (last_seen + 1..=last_published).collect::<Vec<_>>(), "each missed event once, in order");
    let types: Vec<&str> = missed.iter().map(|(_, e)| e["type"].as_str().expect("type")).collect();
    for want in ["target.started", "target.finished", "service.phase"] {
        assert!(types.contains(&want), "{want} in {types:?}");
    }
    assert!(!types.contains(&"stream.lagged"), "{types:?}");
    // Then the live ones, right after.
    assert_eq!(p.kiln(&["trigger", "core"]).code, 0);
    let live = up.wait_for("the next build", |e| e["type"] == "target.finished" && e["reason"] == "triggered");
    let live_seq = live["seq"].as_u64().expect("seq");
    let after: Vec<u64> = back.until(live_seq).iter().map(|(id, _)| *id).collect();
    assert_eq!(after, (last_published + 1..=live_seq).collect::<Vec<_>>());

    let bad = raw(
        &addr,
        &format!("GET /api/events?since=x HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"),
    );
    assert!(bad.starts_with("HTTP/1.1 400 ") && body(&bad).contains("since"), "{bad}");
}

#[test]
fn a_client_further_behind_than_the_ring_is_told_it_lagged_first() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    // A ring of 5 events (a test knob of debug builds).
    let mut up = Up::start_with(&p, &[], |c| {
        c.env("KILN_TEST_REPLAY_EVENTS", "5");
    });
    let ready = up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let ready_seq = ready["seq"].as_u64().expect("seq");
    assert!(ready_seq > 8, "enough events to overflow the ring: {}", up.dump());
    let (addr, token) = api(&p);
    let mut sse = Sse::open(&addr, "/api/events", &token, "Last-Event-ID: 2\r\n");
    let (lag_id, lag) = sse.next();
    assert_eq!(lag["type"], "stream.lagged", "{lag}");
    let dropped = lag["dropped"].as_u64().expect("dropped");
    assert_eq!(lag_id, 2 + dropped, "numbered as the last event it stands for");
    assert_eq!(lag["seq"], lag_id);
    assert!(lag["ts"].is_string());
    let rest: Vec<u64> = sse.until(ready_seq).iter().map(|(id, _)| *id).collect();
    assert_eq!(rest.first(), Some(&(lag_id + 1)), "the ring's events follow, from its oldest");
    assert_eq!(rest, (lag_id + 1..=*rest.last().expect("some")).collect::<Vec<_>>());
    assert!(rest.len() >= 5, "{rest:?}");
}

/// `GET path` with the token; the answer's body as JSON, after checking it is `200 OK`.
fn get_json(addr: &str, token: &str, path: &str) -> serde_json::Value {
    let answer = raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {answer}");
    assert_eq!(header(&answer, "content-type"), Some("application/json"), "{answer}");
    serde_json::from_str(body(&answer)).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {answer}"))
}

#[test]
fn the_graph_is_the_running_configuration_s_and_follows_a_reload() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    let graph = get_json(&addr, &token, "/api/graph");
    assert_eq!(
        graph,
        serde_json::json!({
            "targets": [{ "name": "core", "kind": "cmd", "deps": [] }],
            "services": [{ "name": "web", "kind": "process", "target": null, "deps": [], "after": [] }],
        })
    );
    // Edited while running: a target that needs core, a service after web that needs it.
    p.write(
        "kiln.toml",
        &format!(
            "{CONFIG}[target.pack]\ncmd = \"echo packed\"\ndeps = [\"core\"]\n\
             [service.worker]\ncmd = \"exec sleep 1000\"\ndeps = [\"pack\"]\nafter = [\"web\"]\n"
        ),
    );
    up.wait_for("the reload", |e| e["type"] == "config.reloaded");
    let graph = get_json(&addr, &token, "/api/graph");
    assert_eq!(
        graph["targets"],
        serde_json::json!([
            { "name": "core", "kind": "cmd", "deps": [] },
            { "name": "pack", "kind": "cmd", "deps": ["core"] },
        ])
    );
    assert_eq!(
        graph["services"][1],
        serde_json::json!({ "name": "worker", "kind": "process", "target": null, "deps": ["pack"], "after": ["web"] })
    );
}

#[test]
fn logs_of_a_target_and_a_service_as_json_the_last_lines_and_a_suggestion_for_a_typo() {
    let config =
        CONFIG.replace("echo listening; exec sleep 1000", "echo one; echo two >&2; echo listening; exec sleep 1000");
    let p = Project::new(&config);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    let web = get_json(&addr, &token, "/api/logs/web");
    let lines = web["lines"].as_array().expect("lines");
    let printed: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["stream"] != "kiln")
        .map(|l| (l["stream"].as_str().expect("stream"), l["text"].as_str().expect("text")))
        .collect();
    // Two pipes: a line of one may be read before an earlier line of the other.
    let of = |stream: &str| printed.iter().filter(|(s, _)| *s == stream).map(|(_, t)| *t).collect::<Vec<_>>();
    assert_eq!((of("stdout"), of("stderr")), (vec!["one", "listening"], vec!["two"]), "{web}");
    for l in lines {
        assert_eq!((&l["source"], &l["replica"]), (&serde_json::json!("runtime"), &serde_json::json!(0)), "{l}");
        assert!(l["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
    }
    assert!(lines.iter().any(|l| l["stream"] == "kiln"), "kiln's note of the start: {web}");
    let last = get_json(&addr, &token, "/api/logs/web?tail=1");
    assert_eq!(last["lines"].as_array().map(Vec::len), Some(1), "{last}");
    assert_eq!(&last["lines"][0], lines.last().expect("a line"), "the last one");
    let none = get_json(&addr, &token, "/api/logs/web?tail=0");
    assert_eq!(none["lines"], serde_json::json!([]));

    let core = get_json(&addr, &token, "/api/logs/core");
    assert_eq!(
        core["lines"].as_array().expect("lines").iter().map(|l| l["text"].as_str().expect("text")).collect::<Vec<_>>(),
        vec!["built core"],
        "{core}"
    );
    assert_eq!(
        (&core["lines"][0]["source"], &core["lines"][0]["replica"]),
        (&"build".into(), &serde_json::Value::Null)
    );
    assert_eq!(core["lines"][0]["stream"], "output", "a target's log holds both streams as one");

    let typo =
        raw(&addr, &format!("GET /api/logs/wbe HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"));
    assert!(typo.starts_with("HTTP/1.1 404 Not Found\r\n"), "{typo}");
    let v: serde_json::Value = serde_json::from_str(body(&typo)).expect("JSON");
    assert_eq!(v["did_you_mean"], "web", "{v}");
    assert_eq!(v["error"], "no target or service named `wbe`");
    assert_eq!((&v["targets"], &v["services"]), (&serde_json::json!(["core"]), &serde_json::json!(["web"])));
    let bad = raw(
        &addr,
        &format!("GET /api/logs/web?tail=lots HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"),
    );
    assert!(bad.starts_with("HTTP/1.1 400 ") && body(&bad).contains("tail"), "{bad}");
}

#[test]
fn kiln_dashboard_and_kiln_up_print_the_url_that_signs_in() {
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut up = Up::start(&p, &[]);
    let (addr, token) = api(&p);
    let url = format!("http://{addr}/?token={token}");
    let printed = p.kiln(&["dashboard"]);
    assert_eq!((printed.code, printed.stdout.as_str(), printed.stderr.as_str()), (0, format!("{url}\n").as_str(), ""));
    let v: serde_json::Value = serde_json::from_str(&p.kiln(&["--json", "dashboard"]).stdout).expect("JSON");
    assert_eq!(v, serde_json::json!({ "url": url, "address": addr }));
    // `kiln up --json` said so first, in a line of its own (not an event of the bus: no
    // client of /api/events sees the token).
    let listening = up.wait_seen("api.listening", |e| e["type"] == "api.listening");
    assert_eq!((&listening["dashboard"], &listening["address"]), (&url.clone().into(), &addr.clone().into()));
    assert_eq!(up.seen.iter().position(|e| e["type"] == "api.listening"), Some(0), "{}", up.dump());
    // The URL signs in.
    let path = url.strip_prefix(&format!("http://{addr}")).expect("a path");
    let answer = raw(&addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(answer.starts_with("HTTP/1.1 303 "), "{answer}");
    let mut sse = Sse::open(&addr, "/api/events?since=0", &token, "");
    let (_, first) = sse.next();
    assert_eq!(first["seq"], 1, "the stream starts at the bus's first event: {first}");
    drop(up);

    // A human reads it as the first line of `kiln up`.
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let mut child = p
        .command(&["up"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kiln up");
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut first)
        .expect("a line");
    let (addr, token) = api(&p);
    assert_eq!(first, format!("dashboard: http://{addr}/?token={token}\n"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("SIGINT");
    assert_eq!(child.wait().expect("ends").code(), Some(130));
}

#[test]
fn a_target_and_a_service_of_one_name_are_triggered_and_logged_by_kind() {
    let p = Project::new(
        r#"
[settings]
debounce = "50ms"
[target.api]
cmd = "echo built api"
cache = false
[service.api]
cmd = "echo listening; exec sleep 1000"
ready = { log = "listening" }
"#,
    );
    let mut up = Up::start(&p, &[]);
    up.wait_seen("api ready", |e| e["type"] == "service.phase" && e["service"] == "api" && e["phase"] == "ready");
    let (addr, token) = api(&p);
    let post = |path: &str| {
        raw(&addr, &format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"))
    };

    // Without a kind, the service (as before), and the CLI says how to rebuild the target.
    let plain = p.kiln(&["trigger", "api"]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(
        plain.stdout,
        "restarted service api (a target is named api too: `kiln trigger --target api` rebuilds it)\n"
    );
    up.wait_for("api restarted", |e| e["type"] == "service.phase" && e["service"] == "api" && e["phase"] == "stopping");
    up.wait_for("api ready again", |e| e["type"] == "service.phase" && e["service"] == "api" && e["phase"] == "ready");

    let target = p.kiln(&["trigger", "--target", "api"]);
    assert_eq!(
        (target.code, target.stdout.as_str()),
        (0, "triggered target api (it builds now, with its dependents)\n")
    );
    let built = up.wait_for("the target rebuilt", |e| e["type"] == "target.finished" && e["target"] == "api");
    assert_eq!((built["status"].as_str(), built["reason"].as_str()), (Some("built"), Some("triggered")), "{built}");

    let by_api = post("/api/trigger/api?kind=target");
    assert!(by_api.starts_with("HTTP/1.1 202 "), "{by_api}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(body(&by_api)).expect("JSON")["triggered"], "target");
    up.wait_for("the target rebuilt again", |e| e["type"] == "target.finished" && e["target"] == "api");
    let by_api = post("/api/trigger/api?kind=service");
    assert_eq!(serde_json::from_str::<serde_json::Value>(body(&by_api)).expect("JSON")["triggered"], "service");
    up.wait_for("api restarted by kind", |e| {
        e["type"] == "service.phase" && e["service"] == "api" && e["phase"] == "ready"
    });
    let bad = post("/api/trigger/api?kind=both");
    assert!(bad.starts_with("HTTP/1.1 400 ") && body(&bad).contains("`target` or `service`"), "{bad}");
    let none = post("/api/trigger/nope?kind=service");
    assert!(none.starts_with("HTTP/1.1 404 ") && body(&none).contains("no running service named `nope`"), "{none}");
    let cli = p.kiln(&["trigger", "--service", "nope"]);
    assert_eq!(cli.code, 2, "{}", cli.stderr);
    assert!(cli.stderr.contains("kiln.toml has no service named `nope`"), "{}", cli.stderr);

    // Logs: the target's build output only, the service's replicas only, or both.
    let sources = |path: &str| -> Vec<String> {
        let v = get_json(&addr, &token, path);
        v["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["source"].as_str().expect("source").to_string())
            .collect()
    };
    let target = sources("/api/logs/api?kind=target");
    assert!(!target.is_empty() && target.iter().all(|s| s == "build"), "{target:?}");
    let service = sources("/api/logs/api?kind=service");
    assert!(!service.is_empty() && service.iter().all(|s| s == "runtime"), "{service:?}");
    let both = sources("/api/logs/api");
    assert_eq!(both.len(), target.len() + service.len(), "{both:?}");
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
}
