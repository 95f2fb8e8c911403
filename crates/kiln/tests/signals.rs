//! How kiln ends on signals, with real terminals, processes and containers: closing the
//! terminal (a tmux session killed, which hangs up kiln's terminal: SIGHUP) stops services
//! gracefully and removes containers and api.json; a second signal while stopping exits at
//! once and still leaves no process, container or engine CLI behind, even after the
//! terminal is gone; a closed stdout and SIGPIPE do not kill kiln.
//!
//! These tests need tmux and podman (with Debian's busybox-static for a `FROM scratch`
//! image): without them they fail and say what to install.

mod common;
use common::{Project, Up, alive, kiln_bin, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "run `bash scripts/install-deps.sh` (apt-get install tmux podman runc busybox-static)";

/// The image the container services run: busybox, `FROM scratch`, built once and kept
/// under a tag of these tests' own (no test removes images: podman 4.3 fails builds that
/// look for cached layers while another client removes images).
const IMAGE: &str = "localhost/kiln-signals-busybox:v1";

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman is needed for these tests ({e}): {INSTALL}"))
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn busybox_image() -> &'static str {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::copy("/bin/busybox", dir.path().join("busybox"))
            .unwrap_or_else(|e| panic!("/bin/busybox (Debian's busybox-static) is needed ({e}): {INSTALL}"));
        std::fs::write(
            dir.path().join("Containerfile"),
            "FROM scratch\nLABEL kiln.test=signals\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .expect("write the Containerfile");
        let context = dir.path().to_str().expect("a UTF-8 temporary path");
        podman_ok(&["build", "-q", "-t", IMAGE, context]);
    });
    IMAGE
}

/// `kiln.project=…` of a running container of this project.
fn project_label(container: &str) -> String {
    let label = podman_ok(&["inspect", "--format", "{{index .Config.Labels \"kiln.project\"}}", container]);
    format!("kiln.project={}", label.trim())
}

fn containers_with(label: &str) -> Vec<String> {
    let out = podman_ok(&["ps", "-a", "--filter", &format!("label={label}"), "--format", "{{.Names}}"]);
    out.lines().map(str::to_string).collect()
}

/// Pids of processes whose command line holds every one of `words`.
fn processes_with(words: &[&str]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> =
                cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            alive(*pid) && words.iter().all(|w| args.iter().any(|a| a == w))
        })
        .collect()
}

/// What a test leaves if it fails half-way: its tmux server, its kiln (by pid), its
/// containers (by name). Dropped last, so it also runs when an assertion panics.
struct Cleanup {
    tmux: Option<String>,
    kiln: Option<i32>,
    containers: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(socket) = &self.tmux {
            let _ = Command::new("tmux").args(["-S", socket, "kill-server"]).stderr(Stdio::null()).status();
        }
        if let Some(pid) = self.kiln.filter(|pid| alive(*pid)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(prefix) = &self.containers {
            let out = podman(&["ps", "-a", "--filter", &format!("name=^{prefix}"), "--format", "{{.Names}}"]);
            let names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
            if !names.is_empty() {
                let mut args = vec!["rm", "-f", "-t", "0"];
                args.extend(names.iter().map(String::as_str));
                let _ = podman(&args);
            }
            common::remove_networks_named(prefix);
        }
    }
}

/// A tmux server of the test's own (its own socket, in a temporary directory that goes with
/// it, and no configuration file), so that the pane gets this process's environment and
/// killing it touches nobody else's sessions.
struct Tmux {
    socket: String,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        let dir = tempfile::tempdir().expect("temporary directory");
        let socket = dir.path().join("tmux.sock").to_str().expect("a UTF-8 temporary path").to_string();
        Tmux { socket, _dir: dir }
    }

    fn run(&self, args: &[&str]) {
        let mut all = vec!["-S", self.socket.as_str(), "-f", "/dev/null"];
        all.extend_from_slice(args);
        let out = Command::new("tmux")
            .args(&all)
            .output()
            .unwrap_or_else(|e| panic!("tmux is needed for these tests ({e}): {INSTALL}"));
        assert!(out.status.success(), "tmux {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs `kiln up` as the pane's own process (`exec`, so that kiln is the session leader
    /// of the terminal and the one the hangup signals), its JSON events into `events.jsonl`
    /// and its human output on the terminal.
    fn kiln_up(&self, p: &Project) {
        let root = p.root().to_str().expect("a UTF-8 temporary path");
        let command = format!("exec {} up --json > events.jsonl", kiln_bin());
        self.run(&["new-session", "-d", "-s", "kiln", "-x", "160", "-y", "40", "-c", root, &command]);
    }

    /// Closes the session's terminal, as closing a terminal window does: the kernel hangs it
    /// up and sends SIGHUP to its session leader, kiln.
    fn kill_session(&self) {
        self.run(&["kill-session", "-t", "kiln"]);
    }
}

/// The events `kiln up --json > events.jsonl` wrote so far.
fn events(p: &Project) -> Vec<Value> {
    std::fs::read_to_string(p.path("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn phase(e: &Value, service: &str, phase: &str) -> bool {
    e["type"] == "service.phase" && e["service"] == service && e["replica"] == 0 && e["phase"] == phase
}

/// Waits (at most 60 s: the machine may be busy) until the events file shows every one of
/// `services` ready.
fn wait_ready(p: &Project, services: &[&str]) {
    let ready = wait_until(Duration::from_secs(60), || {
        let seen = events(p);
        services.iter().all(|s| seen.iter().any(|e| phase(e, s, "ready")))
    });
    assert!(
        ready,
        "{services:?} never became ready; events:\n{}",
        events(p).iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    );
}

/// The pid of the running `kiln up`, from `.kiln/api.json`.
fn kiln_pid(p: &Project) -> i32 {
    let info: Value = serde_json::from_str(&p.read(".kiln/api.json")).expect("api.json is JSON");
    i32::try_from(info["pid"].as_i64().expect("api.json has the pid")).expect("a pid fits in i32")
}

fn pid_in(p: &Project, file: &str) -> i32 {
    p.read(file).trim().parse().unwrap_or_else(|e| panic!("{file} holds a pid: {e}"))
}

/// A process service that traps its stop signal: it writes `stopped.marker` and exits.
const WORKER: &str = "#!/bin/sh\ntrap 'echo stopped > stopped.marker; exit 0' TERM\necho $$ > worker.pid\n\
                      echo worker listening\nwhile :; do sleep 0.1; done\n";

/// A process service that ignores its stop signal (it notes each one in `term.log`).
const STUBBORN: &str = "#!/bin/sh\ntrap 'echo ignored >> term.log' TERM\necho $$ > stubborn.pid\n\
                        echo stubborn listening\nwhile :; do sleep 0.1; done\n";

fn script(p: &Project, name: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    p.write(name, text);
    std::fs::set_permissions(p.path(name), std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn closing_the_terminal_stops_services_gracefully_and_removes_containers_and_api_json() {
    let image = busybox_image();
    // `exec`: the script is the service's process, so the trap runs before kiln sees it exit.
    let p = Project::new(&format!(
        "[service.worker]\ncmd = \"exec ./worker.sh\"\nready = {{ log = \"listening\" }}\nstop_timeout = \"20s\"\n\n\
         [service.box]\nimage = \"{image}\"\ncommand = \"echo box up; exec sleep 1000\"\n\
         ready = {{ log = \"box up\" }}\nstop_timeout = \"2s\"\n"
    ));
    script(&p, "worker.sh", WORKER);
    let tmux = Tmux::new();
    let mut cleanup = Cleanup {
        tmux: Some(tmux.socket.clone()),
        kiln: None,
        containers: Some(kiln_engine::container_name(p.root(), "box", 0).trim_end_matches("box-0").to_string()),
    };
    tmux.kiln_up(&p);
    wait_ready(&p, &["worker", "box"]);
    let kiln = kiln_pid(&p);
    cleanup.kiln = Some(kiln);
    let label = project_label(&kiln_engine::container_name(p.root(), "box", 0));
    assert_eq!(containers_with(&label).len(), 1, "the container runs");

    tmux.kill_session();
    assert!(wait_until(Duration::from_secs(60), || !alive(kiln)), "kiln exits after its terminal closed");
    assert_eq!(p.read("stopped.marker").trim(), "stopped", "the process service got its stop signal");
    assert!(!alive(pid_in(&p, "worker.pid")));
    assert_eq!(containers_with(&label), Vec::<String>::new(), "no container of the project is left");
    assert!(!p.exists(".kiln/api.json"), "api.json is removed");
    // The graceful path, not a kill: both services went through `stopped`, and the events
    // kept coming after the terminal was gone.
    let seen = events(&p);
    for service in ["worker", "box"] {
        assert!(seen.iter().any(|e| phase(e, service, "stopped")), "{service} stopped: {seen:?}");
    }
}

#[test]
fn after_the_terminal_closed_a_second_signal_still_exits_at_once() {
    // The first signal's message goes to a terminal that hung up (every write fails with
    // EIO); it must not take the answer to the second signal down with it.
    let p = Project::new(
        "[service.stubborn]\ncmd = \"exec ./stubborn.sh\"\nready = { log = \"listening\" }\nstop_timeout = \"120s\"\n",
    );
    script(&p, "stubborn.sh", STUBBORN);
    let tmux = Tmux::new();
    let mut cleanup = Cleanup { tmux: Some(tmux.socket.clone()), kiln: None, containers: None };
    tmux.kiln_up(&p);
    wait_ready(&p, &["stubborn"]);
    let kiln = kiln_pid(&p);
    cleanup.kiln = Some(kiln);
    let stubborn = pid_in(&p, "stubborn.pid");

    tmux.kill_session();
    assert!(
        wait_until(Duration::from_secs(30), || p.exists("term.log")),
        "the hangup started a graceful stop: the service got (and ignored) its stop signal"
    );
    assert!(alive(kiln), "kiln waits for the service's stop_timeout");
    let sent = Instant::now();
    kill(Pid::from_raw(kiln), Signal::SIGTERM).expect("SIGTERM to kiln");
    assert!(wait_until(Duration::from_secs(30), || !alive(kiln)), "a second signal ends kiln at once");
    assert!(sent.elapsed() < Duration::from_secs(30), "well before the 120 s stop_timeout");
    assert!(wait_until(Duration::from_secs(10), || !alive(stubborn)), "the service's process group dies with kiln");
    assert!(!p.exists(".kiln/api.json"), "api.json is removed on the way out too");
}

#[test]
fn a_second_sigterm_while_stopping_exits_130_at_once_and_leaves_no_process_container_or_engine_call() {
    let image = busybox_image();
    // Both ignore their stop signal: `sleep` as a container's PID 1 has no SIGTERM handler.
    let p = Project::new(&format!(
        "[service.stubborn]\ncmd = \"exec ./stubborn.sh\"\nready = {{ log = \"listening\" }}\nstop_timeout = \"120s\"\n\n\
         [service.box]\nimage = \"{image}\"\ncommand = \"echo box up; exec sleep 1000\"\n\
         ready = {{ log = \"box up\" }}\nstop_timeout = \"60s\"\n"
    ));
    script(&p, "stubborn.sh", STUBBORN);
    let mut cleanup = Cleanup {
        tmux: None,
        kiln: None,
        containers: Some(kiln_engine::container_name(p.root(), "box", 0).trim_end_matches("box-0").to_string()),
    };
    let mut up = Up::start(&p, &[]);
    let kiln = i32::try_from(up.child.id()).expect("a pid fits in i32");
    cleanup.kiln = Some(kiln);
    up.wait_seen("stubborn ready", |e| phase(e, "stubborn", "ready"));
    up.wait_seen("box ready", |e| phase(e, "box", "ready"));
    let stubborn = pid_in(&p, "stubborn.pid");
    let container = kiln_engine::container_name(p.root(), "box", 0);
    let label = project_label(&container);

    kill(Pid::from_raw(kiln), Signal::SIGTERM).expect("first SIGTERM");
    assert!(wait_until(Duration::from_secs(30), || p.exists("term.log")), "the service got its stop signal");
    // The container's graceful stop is under way: the engine waits out its 60 s timeout.
    let stop_call = ["rm", "-f", "-t", "60", container.as_str()];
    assert!(wait_until(Duration::from_secs(30), || !processes_with(&stop_call).is_empty()), "podman rm -t 60 runs");

    let sent = Instant::now();
    kill(Pid::from_raw(kiln), Signal::SIGTERM).expect("second SIGTERM");
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            status = up.child.try_wait().expect("wait for kiln");
            status.is_some()
        }),
        "kiln exits at once on the second signal"
    );
    assert!(sent.elapsed() < Duration::from_secs(30), "well before the 60 s and 120 s stop timeouts");
    assert_eq!(status.and_then(|s| s.code()), Some(130), "the interrupted exit code");
    assert!(wait_until(Duration::from_secs(10), || !alive(stubborn)), "the service's process group dies with kiln");
    assert_eq!(containers_with(&label), Vec::<String>::new(), "the containers were removed before kiln exited");
    assert!(
        wait_until(Duration::from_secs(10), || processes_with(&stop_call).is_empty()),
        "the engine call still waiting out the stop timeout dies with kiln"
    );
    assert!(!p.exists(".kiln/api.json"), "api.json is removed");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut up.child.stderr.take().expect("stderr"), &mut stderr).expect("read stderr");
    assert!(stderr.contains("kiln: SIGTERM received, stopping gracefully"), "{stderr}");
    assert!(stderr.contains("kiln: SIGTERM again while stopping: exiting now"), "{stderr}");
    assert!(stderr.contains(&format!("kiln: removed 1 container(s): {container}")), "{stderr}");
}

#[test]
fn a_third_signal_does_not_wait_for_an_engine_that_hangs_and_kiln_down_removes_what_is_left() {
    let image = busybox_image();
    let real = String::from_utf8_lossy(&Command::new("sh").args(["-c", "command -v podman"]).output().unwrap().stdout)
        .trim()
        .to_string();
    assert!(!real.is_empty(), "podman is needed for these tests: {INSTALL}");
    let p = Project::new(&format!(
        "[service.box]\nimage = \"{image}\"\ncommand = \"echo box up; exec sleep 1000\"\n\
         ready = {{ log = \"box up\" }}\nstop_timeout = \"60s\"\n"
    ));
    // A podman that, once `hang` exists, answers `ps` only when `release` exists.
    let root = p.root().display().to_string();
    script(
        &p,
        "bin/podman",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = ps ] && [ -e {root}/hang ]; then\n  touch {root}/hanging\n  \
             while [ ! -e {root}/release ]; do sleep 0.05; done\nfi\nexec {real} \"$@\"\n"
        ),
    );
    let mut cleanup = Cleanup {
        tmux: None,
        kiln: None,
        containers: Some(kiln_engine::container_name(p.root(), "box", 0).trim_end_matches("box-0").to_string()),
    };
    let path = format!("{}:{}", p.path("bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut up = Up::start_with(&p, &[], |c| {
        c.env("PATH", &path);
    });
    let kiln = i32::try_from(up.child.id()).expect("a pid fits in i32");
    cleanup.kiln = Some(kiln);
    up.wait_seen("box ready", |e| phase(e, "box", "ready"));
    let container = kiln_engine::container_name(p.root(), "box", 0);
    let label = project_label(&container);

    kill(Pid::from_raw(kiln), Signal::SIGTERM).expect("first SIGTERM");
    up.wait_for("box stopping", |e| phase(e, "box", "stopping"));
    p.write("hang", "");
    kill(Pid::from_raw(kiln), Signal::SIGTERM).expect("second SIGTERM");
    assert!(wait_until(Duration::from_secs(30), || p.exists("hanging")), "the abort asks the engine for containers");
    kill(Pid::from_raw(kiln), Signal::SIGINT).expect("third signal");
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            status = up.child.try_wait().expect("wait for kiln");
            status.is_some()
        }),
        "kiln exits at once on a third signal"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(130));
    p.write("release", "");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut up.child.stderr.take().expect("stderr"), &mut stderr).expect("read stderr");
    assert!(stderr.contains("SIGTERM again while stopping: exiting now"), "{stderr}");
    // Neither the engine's answer nor the end of the 5 s bound was waited for.
    assert!(!stderr.contains("removed 1 container") && !stderr.contains("did not remove"), "{stderr}");
    assert_eq!(containers_with(&label), vec![container.clone()], "so the container is left");

    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(down.stdout.contains(&format!("left running (it did not stop cleanly): {container}")), "{}", down.stdout);
    assert_eq!(containers_with(&label), Vec::<String>::new());
}

#[test]
fn after_sigkill_the_leftover_sweep_kills_a_container_that_ignores_sigterm_at_once() {
    // What a kill -9 of kiln (or an engine too slow for a second signal) leaves: the next
    // `kiln down` or `kiln up` removes it by label, without waiting out its stop timeout.
    let image = busybox_image();
    let p = Project::new(&format!(
        "[service.box]\nimage = \"{image}\"\ncommand = \"echo box up; exec sleep 1000\"\n\
         ready = {{ log = \"box up\" }}\nstop_timeout = \"60s\"\n"
    ));
    let mut cleanup = Cleanup {
        tmux: None,
        kiln: None,
        containers: Some(kiln_engine::container_name(p.root(), "box", 0).trim_end_matches("box-0").to_string()),
    };
    let mut up = Up::start(&p, &[]);
    cleanup.kiln = i32::try_from(up.child.id()).ok();
    up.wait_seen("box ready", |e| phase(e, "box", "ready"));
    let container = kiln_engine::container_name(p.root(), "box", 0);
    let label = project_label(&container);
    up.child.kill().expect("kill -9 kiln");
    let _ = up.child.wait();
    assert_eq!(containers_with(&label), vec![container.clone()], "SIGKILL leaves the container running");

    let started = Instant::now();
    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(
        down.stdout.contains("removed 1 container an earlier kiln of this project left running"),
        "{}",
        down.stdout
    );
    assert!(started.elapsed() < Duration::from_secs(30), "not after the 60 s stop timeout: {:?}", started.elapsed());
    assert_eq!(containers_with(&label), Vec::<String>::new());
}

#[test]
fn kiln_up_survives_a_closed_stdout_and_sigpipe() {
    let p = Project::new(
        "[service.ticker]\ncmd = \"exec ./ticker.sh\"\nready = { log = \"listening\" }\nstop_timeout = \"20s\"\n",
    );
    // It prints a line every 50 ms, which kiln prints on its stdout.
    script(
        &p,
        "ticker.sh",
        "#!/bin/sh\ntrap 'echo stopped > stopped.marker; exit 0' TERM\necho ticker listening\n\
         while :; do echo tick; echo tick >> ticks.log; sleep 0.05; done\n",
    );
    let mut child = p
        .command(&["up", "--progress", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kiln up starts");
    let kiln = i32::try_from(child.id()).expect("a pid fits in i32");
    let _cleanup = Cleanup { tmux: None, kiln: Some(kiln), containers: None };
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("ticker[0] ready") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("read stdout") > 0, "kiln up printed its first lines");
    }
    drop(stdout);
    // Kiln goes on printing ticks into the closed pipe: EPIPE on every write.
    let ticks = || std::fs::read_to_string(p.path("ticks.log")).unwrap_or_default().lines().count();
    let closed_at = ticks();
    assert!(wait_until(Duration::from_secs(30), || ticks() > closed_at + 20), "the service keeps ticking");
    kill(Pid::from_raw(kiln), Signal::SIGPIPE).expect("SIGPIPE to kiln");
    let status = p.kiln(&["status", "--json"]);
    assert_eq!(status.code, 0, "kiln up still answers after EPIPE and SIGPIPE: {}", status.stderr);

    kill(Pid::from_raw(kiln), Signal::SIGINT).expect("SIGINT");
    let exit = child.wait().expect("kiln exits");
    assert_eq!(exit.code(), Some(130), "a graceful exit, not death by SIGPIPE: {exit:?}");
    assert_eq!(p.read("stopped.marker").trim(), "stopped");
}

#[test]
fn sighup_stops_a_build_like_ctrl_c() {
    let p = Project::new("[target.t]\ncmd = \"sleep 300 & echo $! > child.pid; sleep 300\"\n");
    let mut child = p.command(&["build"]).stdout(Stdio::piped()).spawn().expect("kiln build starts");
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(p.path("child.pid"))
            .is_ok_and(|s| s.trim().parse::<i32>().is_ok())),
        "the command started"
    );
    let kiln = i32::try_from(child.id()).expect("a pid fits in i32");
    let _cleanup = Cleanup { tmux: None, kiln: Some(kiln), containers: None };
    kill(Pid::from_raw(kiln), Signal::SIGHUP).expect("SIGHUP to kiln");
    let status = child.wait().expect("kiln exits");
    assert_eq!(status.code(), Some(130), "{status:?}");
    let grandchild = pid_in(&p, "child.pid");
    assert!(wait_until(Duration::from_secs(10), || !alive(grandchild)), "the command's process group was killed");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out).expect("read");
    assert!(out.contains("skipped t") && out.contains("interrupted"), "{out}");
}
