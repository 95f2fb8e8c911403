//! `kiln up` at the kernel's limits: out of inotify watches (polling takes over, with a
//! message naming the sysctl) and an overflowing event queue (a rescan that misses nothing
//! and builds nothing spurious). Both lower system-wide limits for the length of the test,
//! so they live in a test binary of their own and run one after the other; they need root.

mod common;
use common::{Project, wait_until};
use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

/// Sets a /proc/sys value for as long as it lives.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = std::fs::read_to_string(path).expect("readable sysctl");
        std::fs::write(path, value)
            .unwrap_or_else(|e| panic!("this test lowers {path} and needs root (CI runs as root): {e}"));
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

fn spawn_up(p: &Project) -> (std::process::Child, std::sync::mpsc::Receiver<serde_json::Value>) {
    let mut child = p.command(&["--json", "up"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("kiln up");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (child, rx)
}

fn wait_event(
    rx: &std::sync::mpsc::Receiver<serde_json::Value>,
    seen: &mut Vec<serde_json::Value>,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while let Ok(e) = rx.recv_timeout(end.saturating_duration_since(std::time::Instant::now())) {
        seen.push(e.clone());
        if pred(&e) {
            return e;
        }
    }
    panic!("timed out; events:\n{}", seen.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
}

const CONFIG: &str = r#"
[settings]
debounce = "50ms"
[target.all]
cmd = "find src -name '*.txt' | sort | xargs cat > all.out"
inputs = ["src/**/*.txt"]
outputs = ["all.out"]
"#;

#[test]
fn watch_limit_falls_back_to_polling_and_queue_overflow_rescans() {
    // Out of watches: 300 directories, a limit far below what they need.
    let p = Project::new(CONFIG);
    for d in 0..300 {
        p.write(&format!("src/d{d:03}/f.txt"), &format!("{d}\n"));
    }
    {
        let _limit = Sysctl::set("/proc/sys/fs/inotify/max_user_watches", "64");
        let (mut child, rx) = spawn_up(&p);
        let mut seen = Vec::new();
        let notice = wait_event(&rx, &mut seen, |e| e["type"] == "run.notice");
        let message = notice["message"].as_str().unwrap_or("");
        assert!(message.contains("fs.inotify.max_user_watches") && message.contains("polled"), "{message}");
        wait_event(&rx, &mut seen, |e| e["type"] == "run.finished");
        p.write("src/d299/f.txt", "changed in a polled directory\n");
        assert!(
            wait_until(Duration::from_secs(15), || p.read("all.out").contains("changed in a polled directory")),
            "a change in a polled directory was built"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    // Queue overflow: a tiny queue, then a burst of 2,000 new files.
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let _queue = Sysctl::set("/proc/sys/fs/inotify/max_queued_events", "16");
    let (mut child, rx) = spawn_up(&p);
    let mut seen = Vec::new();
    wait_event(&rx, &mut seen, |e| e["type"] == "run.finished");
    for i in 0..2000 {
        p.write(&format!("src/burst/f{i:04}.txt"), "b\n");
    }
    assert!(
        wait_until(Duration::from_secs(20), || p.read("all.out").lines().count() == 2001),
        "after the overflow every new file was found"
    );
    // Settle: the burst took one build (two if writing it straddled the 1 s cap) after the
    // first; then nothing more runs, rescan or not.
    std::thread::sleep(Duration::from_millis(1500));
    while let Ok(e) = rx.try_recv() {
        seen.push(e);
    }
    let builds = seen.iter().filter(|e| e["type"] == "run.finished" && e["built"] == 1).count() - 1;
    assert!((1..=2).contains(&builds), "builds for the burst: {builds}");
    std::thread::sleep(Duration::from_millis(1500));
    let later: Vec<serde_json::Value> = rx.try_iter().filter(|e| e["type"] == "run.finished").collect();
    assert!(later.is_empty(), "nothing spurious after the rescan: {later:?}");
    let _ = child.kill();
    let _ = child.wait();
}
