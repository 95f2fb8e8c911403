//! The CloudEvents sink of a real `kiln up` / `kiln build`, posting to a receiver built on the
//! CloudEvents Python SDK (tests/sink/receiver.py, in the venv scripts/python-venv.sh makes),
//! which validates every event: received valid and in order, 429 + Retry-After honoured, a
//! slow sink that does not slow the loop, a sink down at start that gets later events, and
//! the drops counted in `GET /metrics` and said once; a sink that refuses connections costs
//! the end of `kiln build` and of `kiln up` no wait, and the total not delivered is said.

mod common;
use common::{Project, Up, wait_until};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
deps = ["core"]
ready = { log = "listening" }
"#;

fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/python-venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import cloudevents.core.bindings.http"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the CloudEvents Python SDK is missing at {}: run scripts/python-venv.sh (scripts/install-deps.sh does)",
        python.display()
    );
    python
}

/// A port nobody listens on now (the receiver is started on it, maybe later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running receiver.py and the file it records into.
struct Receiver {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(port: u16, args: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = dir.path().join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sink/receiver.py");
        let child = Command::new(venv_python())
            .arg(script)
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the receiver starts");
        let mut r = Receiver { child, out, _dir: dir };
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() || r.child.try_wait().ok().flatten().is_some()
        });
        assert!(up && r.child.try_wait().ok().flatten().is_none(), "the receiver did not start on port {port}");
        r
    }

    /// Everything recorded so far.
    fn records(&self) -> Vec<Value> {
        let Ok(file) = std::fs::File::open(&self.out) else { return Vec::new() };
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["kind"] == "event").collect()
    }

    /// Waits (at most 20 s) until an event matching `pred` was received.
    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(20), || {
            found = self.events().into_iter().find(|e| pred(e));
            found.is_some()
        });
        assert!(ok, "the receiver never got {what}; it has:\n{}", dump(&self.records()));
        found.expect("found")
    }

    /// No event was refused as invalid.
    fn assert_all_valid(&self) {
        let invalid: Vec<Value> = self.records().into_iter().filter(|r| r["kind"] == "invalid").collect();
        assert!(invalid.is_empty(), "the receiver refused events:\n{}", dump(&invalid));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dump(values: &[Value]) -> String {
    values.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
}

fn seq(e: &Value) -> u64 {
    e["data"]["seq"].as_u64().expect("data has a seq")
}

fn api_address(p: &Project) -> String {
    let info: Value = serde_json::from_str(&p.read(".kiln/api.json")).expect("json");
    info["address"].as_str().expect("address").to_string()
}

fn metrics(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the answer");
    out
}

fn dropped_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("kiln_events_dropped_total ")?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn sink_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/events")
}

#[test]
fn every_event_reaches_the_receiver_valid_in_order_over_one_connection() {
    let port = free_port();
    let receiver = Receiver::start(port, &[]);
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let url = sink_url(port);
    let mut up = Up::start(&p, &["--events-sink", &url]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    p.write("src/a.txt", "b\n");
    let round = up.wait_for("the edit's round", |e| e["type"] == "run.finished");
    up.wait_for("web ready again", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let last = up.seen.last().map(|e| e["seq"].as_u64().expect("seq")).expect("events");
    receiver.wait_for("the last event kiln printed", |e| seq(e) >= last);
    // `api.listening` (the dashboard's URL, with its token) is written by the JSON view
    // alone, never put on the bus: it is no event of the stream, and is never posted.
    let mut seen = std::mem::take(&mut up.seen);
    seen.retain(|e| e["type"] != "api.listening");
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
    assert!(!err.contains("events sink"), "nothing was dropped: {err}");

    receiver.assert_all_valid();
    let got = receiver.events();
    // Every event kiln printed was received, in order, each once.
    let printed: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    let received: Vec<u64> = got.iter().map(seq).collect();
    assert!(received.windows(2).all(|w| w[0] < w[1]), "in order: {received:?}");
    let received_set: BTreeSet<u64> = received.iter().copied().collect();
    let missing: Vec<u64> = printed.iter().copied().filter(|s| !received_set.contains(s)).collect();
    assert!(missing.is_empty(), "events printed but never received: {missing:?}\n{}", dump(&got));
    let ids: HashSet<&str> = got.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), got.len(), "ids are unique");
    // Every type seen, as dev.kiln.<type>, from this project's source.
    let printed_types: BTreeSet<String> =
        seen.iter().map(|e| format!("dev.kiln.{}", e["type"].as_str().expect("type"))).collect();
    let received_types: BTreeSet<String> = got.iter().map(|e| e["type"].as_str().expect("type").to_string()).collect();
    assert!(printed_types.is_subset(&received_types), "{printed_types:?} ⊄ {received_types:?}");
    for t in ["run.started", "target.finished", "service.phase", "watch.changed", "run.finished", "update.completed"] {
        assert!(received_types.contains(&format!("dev.kiln.{t}")), "{t} received: {received_types:?}");
    }
    // The directory name as container names have it (a temporary directory's leading `.` goes).
    let dir = p.root().canonicalize().expect("root").file_name().expect("name").to_string_lossy().to_lowercase();
    let dir = dir.trim_start_matches('.');
    let source = got[0]["source"].as_str().expect("source");
    assert!(
        source.starts_with(&format!("urn:kiln:{dir}-")) && source.len() == "urn:kiln:".len() + dir.len() + 9,
        "{source}"
    );
    assert!(got.iter().all(|e| e["source"] == source), "one source");
    let finished = got.iter().find(|e| seq(e) == round["seq"].as_u64().expect("seq")).expect("the round's end");
    assert_eq!(finished["data"], round, "data is the event as --json prints it");
    let built = got.iter().find(|e| e["type"] == "dev.kiln.target.finished").expect("a target.finished");
    assert_eq!(built["subject"], "core");
    // One connection, kept alive.
    let conns: HashSet<&str> = got.iter().map(|e| e["conn"].as_str().expect("conn")).collect();
    assert_eq!(conns.len(), 1, "one kept-alive connection: {conns:?}");
}

/// `kiln build` posts its events too; `--events-sink` wins over `$K_SINK`, which wins over
/// `settings.events_sink`.
#[test]
fn kiln_build_posts_too_and_the_flag_wins_over_k_sink_over_the_settings() {
    let port = free_port();
    let receiver = Receiver::start(port, &[]);
    let dead = sink_url(free_port());
    let config = format!("[settings]\nevents_sink = \"{dead}\"\n[target.a]\ncmd = \"echo a\"\n");
    let p = Project::new(&config);
    let run = common::Run::of(p.command(&["--json", "build"]).env("K_SINK", sink_url(port)));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run2 = common::Run::of(p.command(&["--json", "build", "--events-sink", &sink_url(port)]).env("K_SINK", &dead));
    assert_eq!(run2.code, 0, "{}", run2.stderr);
    receiver.assert_all_valid();
    let got = receiver.events();
    let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types.iter().filter(|t| **t == "dev.kiln.run.finished").count(), 2, "both builds: {types:?}");
    assert_eq!(got.len(), run.events().len() + run2.events().len(), "every event of both:\n{}", dump(&got));
    let sources: HashSet<&str> = got.iter().map(|e| e["source"].as_str().expect("source")).collect();
    assert_eq!(sources.len(), 1, "the same project: {sources:?}");
    let ids: HashSet<&str> = got.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), got.len(), "ids are unique across runs");

    // A bad URL in the flag or the variable stops kiln before it builds.
    let bad = p.kiln(&["build", "--events-sink", "https://127.0.0.1:1/"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("error: https:// is not supported in --events-sink"), "{}", bad.stderr);
    let bad = common::Run::of(p.command(&["build"]).env("K_SINK", "127.0.0.1:9000"));
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("error: $K_SINK must be an http:// URL"), "{}", bad.stderr);
}

#[test]
fn retry_after_is_honoured_on_429_and_503_in_seconds_and_as_an_http_date() {
    // `Retry-After: 0` and a date past wait the backoff (250 ms, then 500 ms, …) still.
    for (status, retry_after, throttled, gap) in [
        ("429", "1", 2, 1.0),
        ("429", "date:2", 1, 1.0),
        ("503", "2", 1, 2.0),
        ("429", "0", 3, 0.25),
        ("503", "date:-30", 2, 0.25),
    ] {
        let port = free_port();
        let throttle = throttled.to_string();
        let receiver =
            Receiver::start(port, &["--throttle", &throttle, "--retry-after", retry_after, "--status", status]);
        let p = Project::new(CONFIG);
        p.write("src/a.txt", "a\n");
        let url = sink_url(port);
        let mut up = Up::start(&p, &["--events-sink", &url]);
        let ready = up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
        receiver.wait_for("web ready", |e| seq(e) == ready["seq"].as_u64().expect("seq"));
        let (code, err) = up.stop();
        assert_eq!(code, 130, "{err}");
        receiver.assert_all_valid();
        let records = receiver.records();
        let first: Vec<&Value> = records.iter().filter(|r| r["id"] == records[0]["id"]).collect();
        assert_eq!(first.len(), throttled + 1, "the first event: {throttled} × 429 then accepted:\n{}", dump(&records));
        assert_eq!(first.last().expect("accepted")["kind"], "event");
        for w in first.windows(2) {
            let waited = w[1]["at"].as_f64().expect("at") - w[0]["at"].as_f64().expect("at");
            assert!(waited >= gap - 0.05, "{status} Retry-After {retry_after}: the next try came after {waited:.3} s");
        }
        let got: Vec<u64> = receiver.events().iter().map(seq).collect();
        assert!(got.windows(2).all(|w| w[0] < w[1]) && got[0] == 1, "in order, none lost: {got:?}");
    }
}

#[test]
fn a_slow_sink_does_not_slow_the_loop() {
    let port = free_port();
    let receiver = Receiver::start(port, &["--slow", "2"]);
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let url = sink_url(port);
    let mut up = Up::start(&p, &["--events-sink", &url]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let edited = std::time::Instant::now();
    p.write("src/a.txt", "b\n");
    let round = up.wait_for("the edit's round", |e| e["type"] == "run.finished");
    let ready = up.wait_for("web ready again", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let took = edited.elapsed();
    // The save reached running code while the sink, at 2 s a request, is far behind.
    let received = receiver.events();
    let newest = received.iter().map(seq).max().unwrap_or(0);
    assert!(
        newest < round["seq"].as_u64().expect("seq"),
        "the sink is behind the loop (it got up to seq {newest}, the round ended at {}, ready at {}, {took:?} after the edit)",
        round["seq"],
        ready["seq"]
    );
    assert!(took < Duration::from_secs(10), "the edit's round and restart took {took:?}");
    // At the end the sink gets 2 s (said, as that is long), then what is left is dropped and
    // said once, with the total.
    let stopping = std::time::Instant::now();
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
    assert!(stopping.elapsed() < Duration::from_secs(15), "kiln ended {:?} after SIGINT", stopping.elapsed());
    assert!(err.contains(&format!("kiln: giving the events sink {url} up to 2 s for ")), "{err}");
    assert_eq!(err.matches("not delivered").count(), 1, "said once: {err}");
    assert!(
        err.contains(&format!(" events were not delivered to {url}: all still waiting when kiln ended, after the 2 s")),
        "{err}"
    );
    assert!(err.contains("= check that a CloudEvents receiver runs at"), "{err}");
    receiver.assert_all_valid();
}

#[test]
fn a_sink_down_at_start_gets_later_events_and_the_drops_are_counted_and_said_once() {
    let port = free_port();
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let url = sink_url(port);
    let mut up = Up::start_with(&p, &[], |c| {
        c.env("K_SINK", &url);
    });
    // The first event is tried for about 8 s, then given up: said once.
    let notice = up.wait_for("the sink's warning", |e| e["type"] == "run.notice" && e["level"] == "warning");
    let message = notice["message"].as_str().expect("message");
    assert!(message.starts_with(&format!("events sink {url}: event ")), "{message}");
    assert!(
        message.contains("no answer after 6 attempts") && message.contains("kiln_events_dropped_total"),
        "{message}"
    );
    let receiver = Receiver::start(port, &[]);
    p.write("src/a.txt", "b\n");
    let round = up.wait_for("the edit's round", |e| e["type"] == "run.finished" && e["built"] == 1);
    let round_seq = round["seq"].as_u64().expect("seq");
    receiver.wait_for("the edit's round", |e| seq(e) == round_seq);
    receiver.assert_all_valid();
    let received: BTreeSet<u64> = receiver.events().iter().map(seq).filter(|s| *s <= round_seq).collect();
    let lost = (1..=round_seq).filter(|s| !received.contains(s)).count() as u64;
    assert!(lost >= 1, "the events while it was down are lost");
    // What was sent once it was up arrived, every one: the received seqs end in a run.
    let first = *received.first().expect("received");
    assert_eq!(received.len() as u64, round_seq - first + 1, "from seq {first} on, none lost: {received:?}");
    let text = metrics(&api_address(&p));
    assert_eq!(dropped_total(&text), Some(lost), "every event not received is counted:\n{text}");
    assert_eq!(up.count(|e| e["type"] == "run.notice" && e["level"] == "warning"), 1, "said once:\n{}", up.dump());
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
    // The end says the total: what was lost while the sink was down (nothing is left, as it
    // answers now), without the hint again.
    let total = format!("warning: {lost} events were not delivered to {url}: the last one because ");
    assert!(err.contains(&total), "{total:?} in:\n{err}");
    assert_eq!(err.matches("= check that").count(), 1, "the hint said once:\n{err}");
}

/// A sink that refuses connections: the end of `kiln build` gives up at once instead of
/// waiting its 2 s, and says how many events were not delivered, with what to do.
#[test]
fn kiln_build_with_a_refused_sink_ends_at_once_and_says_what_was_not_delivered() {
    let url = sink_url(free_port());
    let p = Project::new("[target.a]\ncmd = \"echo a\"\n");
    let started = std::time::Instant::now();
    let run = common::Run::of(&mut p.command(&["--json", "build", "--events-sink", &url]));
    let took = started.elapsed();
    assert_eq!(run.code, 0, "a sink that is down does not fail the build: {}", run.stderr);
    let events = run.events();
    let warnings: Vec<&Value> =
        events.iter().filter(|e| e["type"] == "run.notice" && e["level"] == "warning").collect();
    assert_eq!(warnings.len(), 1, "one warning:\n{}", dump(&events));
    let warning = warnings[0];
    // Every event before the warning was published while the sink refused: none delivered.
    let before = events.iter().filter(|e| e["seq"].as_u64() < warning["seq"].as_u64()).count();
    let message = warning["message"].as_str().expect("message");
    assert!(
        message.starts_with(&format!(
            "{before} events were not delivered to {url}: all still waiting when kiln ended, given up at once as the sink does not answer; the last failed attempt: cannot connect to "
        )),
        "{message}"
    );
    assert!(message.contains("\n  = check that a CloudEvents receiver runs at"), "{message}");
    assert!(!run.stderr.contains("giving the events sink"), "no wait to say: {}", run.stderr);
    assert!(run.stderr.contains(&format!("warning: {before} events were not delivered to {url}")), "{}", run.stderr);
    // Generous: the sink's 2 s grace is not spent.
    assert!(took < Duration::from_millis(1500), "kiln build took {took:?} with a refused sink");
}
