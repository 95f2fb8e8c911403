//! The container benchmark: from saving a file to the replaced container answering, for
//! `kiln up` and for the same work done by hand with engine commands, in the same run.
//!
//! Subject: a copy of `examples/plugins-containers`. Each trial writes a new version of the
//! postgres plugin's source (a unique string, so no cache of any kind can answer) and
//! measures until its HTTP port answers with that string:
//! - kiln: `kiln up` is running; the save is all the harness does;
//! - by hand: `cc` (the plugin binary), `podman build`, `podman rm -f`, `podman run -d`,
//!   then the same polling, in a second copy of the example.
//!
//! Trials alternate between the two; the medians are compared.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ContainerArgs {
    pub kiln: PathBuf,
    pub example: PathBuf,
    pub trials: usize,
    /// Fail unless every trial ended with the new version answering.
    pub check: bool,
}

const KILN_PORT: u16 = 18431;
const HAND_PORT: u16 = 18451;
const HAND_NAME: &str = "kiln-bench-by-hand";
const HAND_IMAGE: &str = "localhost/kiln-bench-by-hand";
const PLUGIN: &str = "plugins/postgres/plugin.c";
const CFLAGS: &str = "-O2 -Wall";

struct KilnUp(Child);

impl Drop for KilnUp {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
        }
        let _ = self.0.wait();
    }
}

struct HandContainer;

impl Drop for HandContainer {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", "-t", "0", HAND_NAME]).output();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {program}: {e} (is it installed?)")));
    if !out.status.success() {
        fail(&format!("{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    start.elapsed()
}

/// GET / on the port; the body, if something answered.
fn get(port: u16) -> Option<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Polls until the port answers with `marker`; how long it took from `since`. Every 10 ms
/// for both: while kiln builds, the old container answers each poll, and a tighter loop
/// would load the machine during kiln's trial only (by hand, polling starts after `run`).
fn wait_for(port: u16, marker: &str, since: Instant, timeout: Duration) -> Option<Duration> {
    while since.elapsed() < timeout {
        if get(port).is_some_and(|body| body.contains(marker)) {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| fail(&format!("mkdir {}: {e}", to.display())));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| fail(&format!("read {}: {e}", from.display()))) {
        let entry = entry.unwrap_or_else(|e| fail(&e.to_string()));
        let name = entry.file_name();
        if name == ".kiln" || name == "out" || name == "build" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| fail(&format!("copy: {e}")));
        }
    }
}

/// The tags of the postgres plugin's image that kiln built.
fn kiln_tags() -> Vec<String> {
    let out = Command::new("podman")
        .args([
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=localhost/kiln-demo-postgres:kiln-*",
        ])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()).unwrap_or_default()
}

/// The plugin's source with a unique description.
fn version(original: &str, marker: &str) -> String {
    original.replace("3 tables replicated", marker)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub fn run_bench(args: &ContainerArgs) {
    let tmp = std::env::temp_dir().join(format!("kiln-container-bench-{}", std::process::id()));
    let kiln_dir = tmp.join("kiln");
    let hand_dir = tmp.join("by-hand");
    copy_tree(&args.example, &kiln_dir);
    copy_tree(&args.example, &hand_dir);
    let original = std::fs::read_to_string(kiln_dir.join(PLUGIN)).unwrap_or_else(|e| fail(&format!("{PLUGIN}: {e}")));

    // By hand: the core object once, then a first container.
    std::fs::create_dir_all(hand_dir.join("out")).unwrap_or_else(|e| fail(&e.to_string()));
    std::fs::create_dir_all(hand_dir.join("plugins/postgres/build")).unwrap_or_else(|e| fail(&e.to_string()));
    run(&hand_dir, "sh", &["-c", &format!("cc {CFLAGS} -c core/core.c -o out/core.o")]);
    let _hand = HandContainer;
    let _ = Command::new("podman").args(["rm", "-f", "-t", "0", HAND_NAME]).output();
    let by_hand = |marker: &str, n: usize| -> Duration {
        std::fs::write(hand_dir.join(PLUGIN), version(&original, marker)).unwrap_or_else(|e| fail(&e.to_string()));
        let start = Instant::now();
        let tag = format!("{HAND_IMAGE}:{n}");
        run(
            &hand_dir,
            "sh",
            &["-c", &format!("cc {CFLAGS} -static -Icore {PLUGIN} out/core.o -o plugins/postgres/build/plugin")],
        );
        run(
            &hand_dir,
            "podman",
            &["build", "-q", "-f", "plugins/Containerfile", "--target", "production", "-t", &tag, "plugins/postgres"],
        );
        run(&hand_dir, "podman", &["rm", "-f", "--ignore", HAND_NAME]);
        let port = format!("{HAND_PORT}:8080");
        run(&hand_dir, "podman", &["run", "-d", "--name", HAND_NAME, "-p", &port, &tag]);
        wait_for(HAND_PORT, marker, start, Duration::from_secs(60))
            .unwrap_or_else(|| fail("the container started by hand never answered with the new version"))
    };
    by_hand(&format!("warm-up by hand {}", std::process::id()), 0);

    let tags_before = kiln_tags();
    // kiln: `kiln up` with a short debounce, as a save-triggered script would have none.
    let log = std::fs::File::create(tmp.join("kiln-up.log")).unwrap_or_else(|e| fail(&e.to_string()));
    let child = Command::new(&args.kiln)
        .args(["up", "--progress", "plain", "--debounce", "10ms"])
        .current_dir(&kiln_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap_or_else(|e| fail(&e.to_string())))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| fail(&format!("cannot start kiln: {e}")));
    let up = KilnUp(child);
    if wait_for(KILN_PORT, "tables replicated", Instant::now(), Duration::from_secs(120)).is_none() {
        fail(&format!("kiln up did not bring the postgres plugin up; see {}", tmp.join("kiln-up.log").display()));
    }
    let with_kiln = |marker: &str| -> Option<Duration> {
        let start = Instant::now();
        std::fs::write(kiln_dir.join(PLUGIN), version(&original, marker)).unwrap_or_else(|e| fail(&e.to_string()));
        let took = wait_for(KILN_PORT, marker, start, Duration::from_secs(60));
        // Let kiln finish the round (its probe, its bookkeeping) before the next save.
        std::thread::sleep(Duration::from_millis(500));
        took
    };
    with_kiln(&format!("warm-up with kiln {}", std::process::id()));

    // Unique across runs too: an image the engine kept from an earlier run would be reused.
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut kiln_times = Vec::new();
    let mut hand_times = Vec::new();
    let mut missed = 0;
    for n in 1..=args.trials {
        match with_kiln(&format!("{n} tables replicated by kiln {nonce:x}")) {
            Some(t) => kiln_times.push(t),
            None => missed += 1,
        }
        hand_times.push(by_hand(&format!("{n} tables replicated by hand {nonce:x}"), n));
        std::thread::sleep(Duration::from_millis(300));
        let last = |v: &Vec<Duration>| v.last().map_or_else(|| "-".to_string(), |d| ms(*d));
        eprintln!("trial {n}: kiln {}, by hand {}", last(&kiln_times), last(&hand_times));
    }
    if missed > 0 {
        let message = format!("kiln did not replace the container in {missed} of {} trials", args.trials);
        if args.check {
            fail(&message);
        }
        eprintln!("warning: {message}");
    }
    // The images of this run go: the ones built by hand, and those kiln built for the
    // unique versions (its earlier tags stay, as kiln leaves them).
    drop(up);
    for n in 0..=args.trials {
        let _ = Command::new("podman").args(["rmi", &format!("{HAND_IMAGE}:{n}")]).output();
    }
    let new_tags: Vec<String> = kiln_tags().into_iter().filter(|t| !tags_before.contains(t)).collect();
    if !new_tags.is_empty() {
        let _ = Command::new("podman").arg("rmi").args(&new_tags).output();
    }
    if std::env::var_os("KILN_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }

    let k = median(kiln_times.clone());
    let h = median(hand_times.clone());
    let overhead = (k.as_secs_f64() / h.as_secs_f64() - 1.0) * 100.0;
    println!("save → replaced container answering with the new version (postgres plugin of");
    println!("examples/plugins-containers: cc, image build, container replaced), {} trials:", args.trials);
    println!();
    println!("| measure | kiln up | by hand (cc, podman build, rm -f, run -d, poll) |");
    println!("|---|---|---|");
    println!("| median | {} | {} |", ms(k), ms(h));
    println!(
        "| fastest | {} | {} |",
        ms(*kiln_times.iter().min().unwrap_or(&k)),
        ms(*hand_times.iter().min().unwrap_or(&h))
    );
    println!(
        "| slowest | {} | {} |",
        ms(*kiln_times.iter().max().unwrap_or(&k)),
        ms(*hand_times.iter().max().unwrap_or(&h))
    );
    println!();
    println!("kiln adds {overhead:+.1} % to the by-hand median (goal: at most +10 %)");
}
