//! `kiln logs` on real runs: a service's history across restarts (with a line where each
//! attempt starts and ends), `--tail`, `--timestamps`, `--replica`, `--json`, every source
//! interleaved with no name, and `--follow` with and without a running `kiln up`.

mod common;
use common::{Project, Up};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

const CONFIG: &str = r#"
[target.core]
cmd = "echo building core"

[service.web]
cmd = "echo \"web $KILN_REPLICA run $(cat runs-$KILN_REPLICA 2>/dev/null | wc -l)\"; echo x >> runs-$KILN_REPLICA; printf 'bad \\377 byte\\n'; echo oops >&2; [ $(wc -l < runs-$KILN_REPLICA) -ge 2 ] && exec sleep 1000; exit 3"
replicas = 2
ready = { log = "web" }
restart = "always"

[service.worker]
cmd = "echo worker up; exec sleep 1000"
"#;

/// Runs the project until each web replica has run twice (its first run exits 3), then stops.
fn ran_twice() -> Project {
    let p = Project::new(CONFIG);
    let mut up = Up::start(&p, &[]);
    for r in 0..2u64 {
        up.wait_seen(&format!("web[{r}]'s second run"), |e| {
            e["type"] == "service.output"
                && e["replica"] == r
                && e["line"].as_str().is_some_and(|l| l.ends_with("run 1"))
        });
    }
    up.wait_seen("worker up", |e| e["type"] == "service.output" && e["line"] == "worker up");
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
    p
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn a_service_log_keeps_every_run_with_markers_and_reads_without_kiln_up() {
    let p = ran_twice();
    // One replica alone: its lines exactly, in order, the bytes as printed.
    let one = p.command(&["logs", "web", "--replica", "1"]).output().expect("kiln logs");
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let text = String::from_utf8_lossy(&one.stdout).into_owned();
    assert!(one.stdout.windows(11).any(|w| w == b"bad \xff byte\n"), "the invalid byte is kept:\n{text}");
    let got = lines(&text);
    let started = got.iter().filter(|l| l.starts_with("[kiln: started `echo")).count();
    assert_eq!(started, 2, "a marker per run:\n{text}");
    let exited = got.iter().position(|l| *l == "[kiln: exited with status 3]").expect("the first run's end");
    let second = got.iter().position(|l| *l == "web 1 run 1").expect("the second run's line");
    assert!(got.iter().position(|l| *l == "web 1 run 0").is_some_and(|first| first < exited));
    assert!(exited < second, "runs in order:\n{text}");
    assert!(got.contains(&"oops"), "stderr is kept too:\n{text}");
    assert_eq!(*got.last().expect("a last line"), "[kiln: stopped by kiln]", "{text}");

    // --tail N: the last N lines of each replica.
    let tail = p.kiln(&["logs", "web", "--replica", "1", "--tail", "2"]);
    assert_eq!(lines(&tail.stdout), got[got.len() - 2..].to_vec());

    // Both replicas: each line names its replica; each replica's own order is kept.
    let both = p.kiln(&["logs", "web"]);
    let of = |r: &str| -> Vec<String> {
        both.stdout.lines().filter_map(|l| l.strip_prefix(&format!("web[{r}] | "))).map(String::from).collect()
    };
    assert_eq!(of("1"), got.iter().map(|l| l.to_string()).collect::<Vec<_>>(), "{}", both.stdout);
    assert!(of("0").contains(&"web 0 run 0".to_string()), "{}", both.stdout);
    assert_eq!(both.stdout.lines().count(), of("0").len() + of("1").len(), "every line is prefixed");

    // --timestamps: each line starts with when it was printed, in order per replica.
    let stamped = p.kiln(&["logs", "web", "--replica", "0", "-t"]);
    let times: Vec<&str> = stamped.stdout.lines().map(|l| l.split(' ').next().unwrap_or("")).collect();
    let shaped = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").expect("regex");
    assert!(times.iter().all(|t| shaped.is_match(t)), "{}", stamped.stdout);
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "{}", stamped.stdout);

    // No name: every service and target, interleaved by time, prefixed and aligned.
    let all = p.kiln(&["logs", "-t"]);
    assert!(all.stdout.contains("core      | ") && all.stdout.contains(" building core\n"), "{}", all.stdout);
    assert!(all.stdout.contains("worker[0] | ") && all.stdout.contains(" worker up\n"), "{}", all.stdout);
    let all_times: Vec<&str> = all.stdout.lines().filter_map(|l| l.split(" | ").nth(1)?.split(' ').next()).collect();
    let mut all_sorted = all_times.clone();
    all_sorted.sort_unstable();
    assert_eq!(all_times, all_sorted, "interleaved by time:\n{}", all.stdout);

    // --json: one object per line, with its source.
    let json = p.kiln(&["logs", "worker", "--json"]);
    let first: serde_json::Value = serde_json::from_str(json.stdout.lines().nth(1).expect("two lines")).expect("JSON");
    assert_eq!((first["name"].as_str(), first["replica"].as_u64()), (Some("worker"), Some(0)));
    assert_eq!((first["stream"].as_str(), first["line"].as_str()), (Some("stdout"), Some("worker up")));

    // A target's log is still its bytes as printed; mistakes are said.
    assert_eq!(p.kiln(&["logs", "core"]).stdout, "building core\n");
    let wrong = p.kiln(&["logs", "core", "--replica", "0"]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("`core` is a target"), "{}", wrong.stderr);
    let none = p.kiln(&["logs", "web", "--replica", "7"]);
    assert!(none.stderr.contains("service `web` has no replica 7 (replicas = 2)"), "{}", none.stderr);
    // Asked for none: nothing, and no complaint.
    let zero = p.kiln(&["logs", "web", "-n", "0"]);
    assert_eq!((zero.code, zero.stdout.as_str(), zero.stderr.as_str()), (0, "", ""));
}

#[test]
fn follow_prints_new_lines_as_they_come_and_ends_with_the_session() {
    let p = Project::new(
        r#"
[service.web]
cmd = "echo \"serving $(cat n 2>/dev/null)\"; exec sleep 1000"
ready = { log = "serving" }
"#,
    );
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let mut follower =
        p.command(&["logs", "web", "-f", "--tail", "1"]).stdout(Stdio::piped()).spawn().expect("kiln logs -f");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Its history first (the last line), which shows it has the file open.
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).expect("history"), "serving ");
    p.write("n", "2");
    assert_eq!(p.kiln(&["trigger", "web"]).code, 0);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "serving 2") {
        seen.push(rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no new line: {seen:?}")));
    }
    assert!(seen.iter().any(|l| l.starts_with("[kiln: started `echo")), "the restart is marked: {seen:?}");
    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    let status = follower.wait().expect("the follower ends with the session");
    assert!(status.success());
    let rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(rest.last().map(String::as_str), Some("[kiln: stopped by kiln]"), "{rest:?}");
    let _ = up.child.wait();

    // With no session it goes on following: a new session's lines reach it.
    let mut follower = p.command(&["logs", "web", "-f", "-n", "1"]).stdout(Stdio::piped()).spawn().expect("logs -f");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).expect("history").as_str(), rest.last().expect("a line"));
    p.write("n", "3");
    let mut up = Up::start(&p, &[]);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "serving 3") {
        seen.push(rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no new line: {seen:?}")));
    }
    up.wait_seen("web ready", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let _ = follower.kill();
    let _ = follower.wait();
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
}

#[test]
fn follow_across_rotations_loses_splits_and_repeats_no_line() {
    // 20,000 numbered lines at about 4,000 a second into a log rotated every 128 KiB (about
    // every quarter second): the follower sees each once, whole, in order.
    let p = Project::new(
        r#"
[settings]
log_limit = "128KiB"

[service.chat]
cmd = "while [ ! -e go ]; do sleep 0.02; done; exec python3 -u chat.py"
"#,
    );
    p.write(
        "chat.py",
        "import sys, time\nfor i in range(20000):\n    sys.stdout.write('line %05d %s\\n' % (i, 'x' * 80))\n    if i % 100 == 99:\n        sys.stdout.flush(); time.sleep(0.025)\nsys.stdout.flush()\ntime.sleep(1000)\n",
    );
    let mut up = Up::start(&p, &[]);
    up.wait_seen("chat started", |e| e["type"] == "service.phase" && e["phase"] == "ready");
    let mut follower = p.command(&["logs", "chat", "-f"]).stdout(Stdio::piped()).spawn().expect("kiln logs -f");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Its history (the start marker) shows it follows before anything is printed.
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("history");
    assert!(first.starts_with("[kiln: started"), "{first}");
    p.write("go", "");
    let mut lines = Vec::new();
    while !lines.last().is_some_and(|l: &String| l.starts_with("line 19999 ")) {
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("stopped at {:?}", lines.last()));
        lines.push(line);
    }
    let want: Vec<String> = (0..20000).map(|i| format!("line {i:05} {}", "x".repeat(80))).collect();
    if lines != want {
        let bad: Vec<(usize, &String)> =
            lines.iter().enumerate().filter(|(i, l)| want.get(*i) != Some(*l)).take(5).collect();
        panic!("{} lines for 20000; first differences: {bad:?}", lines.len());
    }
    assert!(
        std::fs::metadata(p.path(".kiln/logs/services/chat.0.log.1")).is_ok(),
        "the log was rotated while followed"
    );
    let _ = follower.kill();
    let _ = follower.wait();
    let (code, err) = up.stop();
    assert_eq!(code, 130, "{err}");
}
