//! The watch benchmark: kiln up against watchexec in the same run.
//!
//! - latency: from writing a file to the start of the command it triggers, less the
//!   debounce window, over N trials (median and p95);
//! - detection: on a tree of 100,000 files, from starting the watcher until a change
//!   made in a loop from that moment is first detected;
//! - idle CPU: both watching that tree for 60 s with nothing changing;
//! - peak RSS of each;
//! - kiln only (and the `--baseline` binary, in the same run): the latency with a log file
//!   in the project root appended every 20 ms (a path no input matches), and the latency of
//!   an edit to one target while an unrelated target builds for 5 s.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEBOUNCE_MS: u64 = 50;

pub struct WatchArgs {
    pub kiln: PathBuf,
    pub watchexec: PathBuf,
    pub trials: usize,
    pub files: usize,
    pub idle_secs: u64,
    pub baseline: Option<PathBuf>,
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn read_stamp(path: &Path) -> Option<u128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits until the stamp file holds a value other than `old`, returning it.
fn wait_stamp(path: &Path, old: Option<u128>, timeout: Duration) -> Option<u128> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        let v = read_stamp(path);
        if v.is_some() && v != old {
            return v;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    None
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Latency trials for one watcher already running, whose command writes `stamp`.
fn latency(input: &Path, stamp: &Path, trials: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut last = wait_stamp(stamp, None, Duration::from_secs(30));
    for i in 0..trials {
        std::thread::sleep(Duration::from_millis(150));
        let t0 = now_ns();
        std::fs::write(input, format!("trial {i} {t0}\n")).expect("write input");
        let Some(t1) = wait_stamp(stamp, last, Duration::from_secs(10)) else {
            eprintln!("trial {i}: no reaction within 10 s");
            continue;
        };
        last = Some(t1);
        let ms = (t1.saturating_sub(t0)) as f64 / 1e6 - DEBOUNCE_MS as f64;
        out.push(ms);
    }
    out
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(") ").next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is 0, utime is 11, stime is 12.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A directory name for one binary's copy of a scenario.
fn tag(kiln: &Path) -> String {
    format!("{:016x}", kiln.to_string_lossy().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))))
}

/// Starts `kiln up` in `dir`, quietly.
fn kiln_up(kiln: &Path, dir: &Path) -> Guard {
    Guard(
        Command::new(kiln)
            .arg("up")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kiln up"),
    )
}

/// Write → command start with `app.log` in the project root appended every 20 ms.
fn noisy_root_latency(kiln: &Path, base: &Path, trials: usize) -> Vec<f64> {
    let base = &base.join(format!("noisy-{}", tag(kiln)));
    let dir = base.join("project");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::write(dir.join("src/input.txt"), "start\n").expect("write");
    std::fs::write(
        dir.join("kiln.toml"),
        format!(
            "[settings]\ndebounce = \"{DEBOUNCE_MS}ms\"\n[target.stamp]\ncmd = \"date +%s%N > ../stamp.noisy\"\ninputs = [\"src/input.txt\"]\n"
        ),
    )
    .expect("write");
    let _ = std::fs::remove_file(base.join("stamp.noisy"));
    let _k = kiln_up(kiln, &dir);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), dir.join("app.log"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(log).expect("log");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = writeln!(f, "a log line");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = latency(&dir.join("src/input.txt"), &base.join("stamp.noisy"), trials);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.join();
    out
}

/// Write → command start of one target while an unrelated one builds for 5 s.
fn beside_a_long_build_latency(kiln: &Path, base: &Path, trials: usize) -> Vec<f64> {
    let base = &base.join(format!("beside-{}", tag(kiln)));
    let dir = base.join("project");
    std::fs::create_dir_all(dir.join("a")).expect("mkdir");
    std::fs::create_dir_all(dir.join("b")).expect("mkdir");
    std::fs::write(dir.join("a/input.txt"), "start\n").expect("write");
    std::fs::write(dir.join("b/input.txt"), "start\n").expect("write");
    std::fs::write(
        dir.join("kiln.toml"),
        format!(
            "[settings]\ndebounce = \"{DEBOUNCE_MS}ms\"\n[target.stamp]\ncmd = \"date +%s%N > ../stamp.beside\"\ninputs = [\"a/input.txt\"]\n[target.slow]\ncmd = \"date +%s%N > ../slow.started; sleep 5\"\ninputs = [\"b/input.txt\"]\n"
        ),
    )
    .expect("write");
    for f in ["stamp.beside", "slow.started"] {
        let _ = std::fs::remove_file(base.join(f));
    }
    let _k = kiln_up(kiln, &dir);
    let stamp = base.join("stamp.beside");
    let slow = base.join("slow.started");
    let mut last = wait_stamp(&stamp, None, Duration::from_secs(30));
    let mut slow_last = wait_stamp(&slow, None, Duration::from_secs(30));
    // The first round builds both; wait until slow's first build is over.
    std::thread::sleep(Duration::from_millis(5200));
    let mut out = Vec::new();
    for i in 0..trials {
        std::fs::write(dir.join("b/input.txt"), format!("slow {i}\n")).expect("write");
        let Some(s) = wait_stamp(&slow, slow_last, Duration::from_secs(20)) else {
            eprintln!("beside trial {i}: the slow build did not start");
            continue;
        };
        slow_last = Some(s);
        std::thread::sleep(Duration::from_millis(200));
        let t0 = now_ns();
        std::fs::write(dir.join("a/input.txt"), format!("trial {i} {t0}\n")).expect("write");
        match wait_stamp(&stamp, last, Duration::from_secs(20)) {
            Some(t1) => {
                last = Some(t1);
                out.push(t1.saturating_sub(t0) as f64 / 1e6 - DEBOUNCE_MS as f64);
            }
            None => eprintln!("beside trial {i}: no reaction within 20 s"),
        }
        // Let the slow build end before the next trial starts another.
        let started = Duration::from_nanos(u64::try_from(now_ns().saturating_sub(s)).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5300).saturating_sub(started));
    }
    out
}

pub fn run(args: &WatchArgs) {
    let base = std::env::temp_dir().join(format!("kiln-watch-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);

    // Latency: a one-file project; each tool's command stamps the time it started.
    let small = base.join("small");
    std::fs::create_dir_all(small.join("src")).expect("mkdir");
    std::fs::write(small.join("src/input.txt"), "start\n").expect("write");
    std::fs::write(
        small.join("kiln.toml"),
        format!(
            "[settings]\ndebounce = \"{DEBOUNCE_MS}ms\"\n[target.stamp]\ncmd = \"date +%s%N > ../stamp.kiln\"\ninputs = [\"src/input.txt\"]\n"
        ),
    )
    .expect("write");
    let kiln_lat = {
        let _k = Guard(
            Command::new(&args.kiln)
                .arg("up")
                .current_dir(&small)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("kiln up"),
        );
        latency(&small.join("src/input.txt"), &base.join("stamp.kiln"), args.trials)
    };
    let wx_lat = {
        let _w = Guard(
            Command::new(&args.watchexec)
                .args(["-w", "src", "-d", &format!("{DEBOUNCE_MS}ms"), "--", "date +%s%N > ../stamp.wx"])
                .current_dir(&small)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("watchexec"),
        );
        latency(&small.join("src/input.txt"), &base.join("stamp.wx"), args.trials)
    };

    // The big tree.
    let big = base.join("big");
    let dirs = (args.files / 100).max(1);
    for d in 0..dirs {
        let dir = big.join(format!("tree/d{d:04}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:02}.txt")), format!("{d} {f}\n")).expect("write");
        }
    }
    std::fs::write(
        big.join("kiln.toml"),
        format!("[settings]\ndebounce = \"{DEBOUNCE_MS}ms\"\n[target.tree]\ncmd = \"date +%s%N > ../stamp.kiln\"\ninputs = [\"tree/**\"]\n"),
    )
    .expect("write");
    let probe = big.join(format!("tree/d{:04}/f50.txt", dirs / 2));

    // Detection: start, then change a file every 100 ms (longer than the debounce window,
    // so that neither tool's debouncing holds it back) until the watcher reports it.
    let detect = |child: &mut dyn FnMut() -> Guard, detected: &dyn Fn() -> bool| -> (f64, Guard) {
        let t0 = Instant::now();
        let guard = child();
        let mut i = 0u64;
        loop {
            std::fs::write(&probe, format!("probe {i}\n")).expect("write probe");
            i += 1;
            if detected() || t0.elapsed() > Duration::from_secs(120) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (t0.elapsed().as_secs_f64() * 1000.0, guard)
    };
    let (kiln_detect, kiln_guard) = {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let big2 = big.clone();
        let kiln = args.kiln.clone();
        detect(
            &mut || {
                let mut child = Command::new(&kiln)
                    .args(["--json", "up", "--no-build"])
                    .current_dir(&big2)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("kiln up");
                let out = child.stdout.take().expect("stdout");
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                        if line.contains("\"watch.changed\"") {
                            let _ = tx.send(());
                        }
                    }
                });
                Guard(child)
            },
            &|| rx.try_recv().is_ok(),
        )
    };
    let wx_stamp = base.join("stamp.wx-big");
    let (wx_detect, wx_guard) = detect(
        &mut || {
            Guard(
                Command::new(&args.watchexec)
                    .args([
                        "-w",
                        "tree",
                        "-d",
                        &format!("{DEBOUNCE_MS}ms"),
                        "--postpone",
                        "--",
                        "date +%s%N > ../stamp.wx-big",
                    ])
                    .current_dir(&big)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("watchexec"),
            )
        },
        &|| wx_stamp.exists(),
    );

    // Idle: both watching the tree, nothing changing.
    std::thread::sleep(Duration::from_secs(2));
    let (kp, wp) = (kiln_guard.0.id(), wx_guard.0.id());
    let (k0, w0) = (cpu_ticks(kp), cpu_ticks(wp));
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let (k1, w1) = (cpu_ticks(kp), cpu_ticks(wp));
    let ticks_per_sec = 100.0;
    let pct = |t: u64| t as f64 / ticks_per_sec / args.idle_secs as f64 * 100.0;
    let (krss, wrss) = (peak_rss_kb(kp), peak_rss_kb(wp));
    drop(kiln_guard);
    drop(wx_guard);

    let kiln_only = |kiln: &Path| {
        (noisy_root_latency(kiln, &base, args.trials), beside_a_long_build_latency(kiln, &base, args.trials.min(5)))
    };
    let (kiln_noisy, kiln_beside) = kiln_only(&args.kiln);
    let baseline = args.baseline.as_ref().map(|b| {
        let lat = {
            // A copy of its own: in `small` the initial round would find everything fresh
            // and the first stamp would be the other binary's.
            let copy = base.join("small-baseline");
            std::fs::create_dir_all(copy.join("src")).expect("mkdir");
            std::fs::write(copy.join("src/input.txt"), "start\n").expect("write");
            let config = std::fs::read_to_string(small.join("kiln.toml")).expect("read");
            std::fs::write(copy.join("kiln.toml"), config.replace("stamp.kiln", "stamp.baseline")).expect("write");
            let _k = kiln_up(b, &copy);
            latency(&copy.join("src/input.txt"), &base.join("stamp.baseline"), args.trials)
        };
        let (noisy, beside) = kiln_only(b);
        (lat, noisy, beside)
    });

    println!(
        "latency over {} trials beyond the {DEBOUNCE_MS} ms debounce; detection and idle on {} files in {dirs} directories\n",
        args.trials, args.files
    );
    println!("| measure | kiln up | watchexec |");
    println!("|---|---:|---:|");
    println!(
        "| write → command start, median | {:.1} ms | {:.1} ms |",
        percentile(kiln_lat.clone(), 0.5),
        percentile(wx_lat.clone(), 0.5)
    );
    println!(
        "| write → command start, p95 | {:.1} ms | {:.1} ms |",
        percentile(kiln_lat.clone(), 0.95),
        percentile(wx_lat, 0.95)
    );
    println!("| start → first change detected | {kiln_detect:.0} ms | {wx_detect:.0} ms |");
    println!("| CPU while idle for {} s | {:.3} % | {:.3} % |", args.idle_secs, pct(k1 - k0), pct(w1 - w0));
    println!("| peak RSS | {:.1} MB | {:.1} MB |", krss as f64 / 1024.0, wrss as f64 / 1024.0);
    let med = |v: &[f64]| if v.is_empty() { f64::NAN } else { percentile(v.to_vec(), 0.5) };
    println!("\nkiln alone, write → command start beyond the debounce, median:\n");
    match &baseline {
        Some((lat, noisy, beside)) => {
            println!("| measure | kiln up | baseline kiln up |");
            println!("|---|---:|---:|");
            println!("| plain (as above) | {:.1} ms | {:.1} ms |", med(&kiln_lat), med(lat));
            println!("| a root log appended every 20 ms | {:.1} ms | {:.1} ms |", med(&kiln_noisy), med(noisy));
            println!("| beside an unrelated 5 s build | {:.1} ms | {:.1} ms |", med(&kiln_beside), med(beside));
        }
        None => {
            println!("| measure | kiln up |");
            println!("|---|---:|");
            println!("| a root log appended every 20 ms | {:.1} ms |", med(&kiln_noisy));
            println!("| beside an unrelated 5 s build | {:.1} ms |", med(&kiln_beside));
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}
