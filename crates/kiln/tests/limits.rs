//! `kiln up` at the kernel's limits: out of inotify watches (polling takes over, with a
//! message naming the sysctl) and an overflowing event queue (a rescan that misses nothing
//! and builds nothing spurious). Both lower system-wide limits for the length of the test,
//! so they live in a test binary of their own and run one after the other; they need root.

mod common;
use common::{Project, Up, wait_until};
use std::time::Duration;

/// Sets a /proc/sys value for as long as it lives, and puts the old value back on every exit
/// path: on drop (a pass or a failed assertion), and through a small `sh` restorer that
/// waits on a pipe from this process, so that a test binary killed outright (SIGKILL, a
/// timeout) still leaves the host as it found it.
struct Sysctl {
    path: &'static str,
    old: String,
    restorer: Option<std::process::Child>,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = std::fs::read_to_string(path).expect("readable sysctl").trim().to_string();
        // Started first: if it cannot start, nothing has been changed.
        let restorer = std::process::Command::new("sh")
            .args(["-c", "read _; printf '%s' \"$0\" > \"$1\"", &old, path])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("the sysctl restorer starts");
        std::fs::write(path, value)
            .unwrap_or_else(|e| panic!("this test lowers {path} and needs root (CI runs as root): {e}"));
        Sysctl { path, old, restorer: Some(restorer) }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, &self.old);
        if let Some(mut restorer) = self.restorer.take() {
            // Closing its stdin lets it restore too (the same value) and exit.
            drop(restorer.stdin.take());
            let _ = restorer.wait();
        }
    }
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
        let mut up = Up::start(&p, &[]);
        let notice = up.wait_seen("the notice", |e| e["type"] == "run.notice");
        let message = notice["message"].as_str().unwrap_or("");
        assert!(message.contains("fs.inotify.max_user_watches") && message.contains("polled"), "{message}");
        up.wait_seen("the first build", |e| e["type"] == "run.finished");
        p.write("src/d299/f.txt", "changed in a polled directory\n");
        assert!(
            wait_until(Duration::from_secs(15), || p.read("all.out").contains("changed in a polled directory")),
            "a change in a polled directory was built"
        );
    }

    // Queue overflow: a tiny queue, then a burst of 2,000 new files.
    let p = Project::new(CONFIG);
    p.write("src/a.txt", "a\n");
    let _queue = Sysctl::set("/proc/sys/fs/inotify/max_queued_events", "16");
    let mut up = Up::start(&p, &[]);
    up.wait_seen("the first build", |e| e["type"] == "run.finished");
    let writing = std::time::Instant::now();
    for i in 0..2000 {
        p.write(&format!("src/burst/f{i:04}.txt"), "b\n");
    }
    let wrote_for = writing.elapsed();
    assert!(
        wait_until(Duration::from_secs(20), || p.read("all.out").lines().count() == 2001),
        "after the overflow every new file was found"
    );
    // The debouncer cuts a batch at least every second while writes go on, so the burst
    // took one build per started second of writing, plus one for what was left (one or two
    // on an idle machine), counted once a touch after it has been evaluated; then nothing
    // more runs, rescan or not, up to a second touch evaluated.
    up.settled(&p, "src/a.txt");
    let builds = up.count(|e| e["type"] == "run.finished" && e["built"] == 1) - 1;
    let most = usize::try_from(wrote_for.as_millis().div_ceil(1000)).expect("small") + 1;
    assert!((1..=most).contains(&builds), "builds for a burst written in {wrote_for:?}: {builds}\n{}", up.dump());
    let before = up.seen.len();
    up.settled(&p, "src/a.txt");
    let later: Vec<&serde_json::Value> = up.seen[before..].iter().filter(|e| e["type"] == "run.finished").collect();
    assert!(later.is_empty(), "nothing spurious after the rescan: {later:?}");
}
