//! The control API of `kiln up` and the commands that use it, against a real session.

mod common;
use common::{Project, Up, wait_until};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
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

fn raw(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// A relay from a port of its own to the session's API, for one connection. It hands over
/// the head of the session's answer once that arrives: the API answers `GET /api/events`
/// only after subscribing the client, so from then on the client sees every event.
fn relay(to: &str) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
    let addr = listener.local_addr().expect("relay address").to_string();
    let to = to.to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (client, _) = listener.accept().expect("a client connects");
        let session = TcpStream::connect(&to).expect("the relay reaches the session");
        let (mut from_client, mut to_session) =
            (client.try_clone().expect("clone"), session.try_clone().expect("clone"));
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_client, &mut to_session);
        });
        let (mut from_session, mut to_client) = (session, client);
        let mut head = Vec::new();
        let mut told = false;
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from_session.read(&mut buf) {
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
            if !told {
                head.extend_from_slice(&buf[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    let _ = tx.send(String::from_utf8_lossy(&head[..end]).into_owned());
                    told = true;
                }
            }
        }
        // The session ended the stream: so does the relay.
        let _ = to_client.shutdown(Shutdown::Both);
    });
    (addr, rx)
}

#[test]
fn without_a_session_the_commands_say_so() {
    let p = Project::new(CONFIG);
    for args in [&["status"][..], &["trigger", "core"], &["down"], &["wait", "core"]] {
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

    let no_token = raw(&addr, &format!("POST /api/stop HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(no_token.starts_with("HTTP/1.1 401"), "{no_token}");
    let wrong_token =
        raw(&addr, &format!("POST /api/stop HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer nope\r\n\r\n"));
    assert!(wrong_token.starts_with("HTTP/1.1 401"), "{wrong_token}");
    let foreign = raw(&addr, "GET /api/status HTTP/1.1\r\nHost: attacker.example\r\n\r\n");
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let events = raw(&addr, "GET /api/nothing HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(events.starts_with("HTTP/1.1 404"), "{events}");

    // The event stream as Server-Sent Events, and `kiln logs -f` on top of it. The follower
    // runs in a copy of the project whose api.json names a relay to this session, so that
    // the test sees when the session has subscribed it, before anything it should show.
    let mut sse = TcpStream::connect(&addr).expect("connect");
    sse.write_all(format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).expect("send");
    let (relay_addr, answered) = relay(&addr);
    let copy = Project::new(CONFIG);
    let mut relayed = info;
    relayed["address"] = relay_addr.into();
    copy.write(".kiln/api.json", &relayed.to_string());
    let follower = copy.command(&["logs", "web", "-f"]).stdout(std::process::Stdio::piped()).spawn().expect("logs -f");
    let head = answered.recv_timeout(Duration::from_secs(20)).expect("the session answers the follower");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");

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
    assert!(got.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"), "{got}");
    assert!(got.contains("\ndata: {\"type\":"), "{got}");

    let down = p.kiln(&["down"]);
    let out = follower.wait_with_output().expect("logs -f ends with the session");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[0] listening\n", "the restarted web's line, live");
    assert_eq!(down.code, 0, "{}", down.stderr);
    let status = up.child.wait().expect("kiln up exits");
    assert_eq!(status.code(), Some(0), "a requested stop is a clean exit");
    assert!(wait_until(Duration::from_secs(2), || !p.exists(".kiln/api.json")), "api.json removed");
}
