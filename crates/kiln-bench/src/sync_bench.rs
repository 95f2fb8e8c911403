//! The sync-transfer benchmark: how long one live-update transfer takes to deliver changed
//! files into a running container, by kiln's engine API (`PUT …/archive` of a tar, through
//! `podman system service`) against the engine's CLI (`podman cp`, `podman exec -i C tar -x`).
//!
//! Subject: a container of a `FROM scratch` busybox image (built once, nothing pulled). Each
//! trial writes a new version of a file (a unique string) and times its delivery: every
//! method is synchronous (the copy is in the container's file system when the call returns),
//! so the time is from the start of the copy to its return; each trial then checks, untimed,
//! that the container reads the new content. Methods alternate trial by trial so they see
//! the same machine load; medians and the 90th percentile are reported.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_engine::container::engine::{Engine, EngineKind};
use kiln_engine::container::engine_api::{EngineApi, Owner};
use kiln_engine::container::sync_batch::{SyncBatch, SyncCopy, apply};

pub struct SyncArgs {
    pub trials: usize,
    /// Files in the batch measured by the API alone.
    pub batch_files: usize,
}

const IMAGE: &str = "localhost/kiln-bench-sync:busybox-1";

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

fn podman(args: &[&str]) -> String {
    let out = Command::new("podman")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| fail(&format!("podman is needed ({e}): apt-get install podman runc busybox-static")));
    if !out.status.success() {
        fail(&format!("podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", "-t", "0", &self.0]).output();
    }
}

fn build_image() {
    let exists = Command::new("podman").args(["image", "exists", IMAGE]).status().is_ok_and(|s| s.success());
    if exists {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .unwrap_or_else(|e| fail(&format!("/bin/busybox is needed ({e}): apt-get install busybox-static")));
    std::fs::write(
        dir.path().join("Containerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN mkdir -p /code /tmp\n",
    )
    .unwrap_or_else(|e| fail(&format!("Containerfile: {e}")));
    podman(&["build", "-q", "-t", IMAGE, &dir.path().display().to_string()]);
}

struct Stats {
    median: Duration,
    p90: Duration,
    min: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Stats { median: at(0.5), p90: at(0.9), min: v[0] }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn run(args: &SyncArgs) {
    build_image();
    let name = format!("kiln-bench-sync-{}", std::process::id());
    podman(&["run", "-d", "--rm", "--name", &name, IMAGE, "sleep", "3600"]);
    let container = Container(name);
    let c = container.0.as_str();
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let root = dir.path().join("app");
    std::fs::create_dir_all(root.join("batch")).unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
    let file = root.join("one.txt");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let engine = Engine { kind: EngineKind::Podman, program: PathBuf::from("podman") };
    let started = Instant::now();
    let api = runtime
        .block_on(EngineApi::connect(&engine, dir.path()))
        .unwrap_or_else(|e| fail(&format!("podman's API: {e}")));
    let connect = started.elapsed();
    let owner = runtime.block_on(api.container_owner(c)).unwrap_or_else(|e| fail(&e.to_string()));

    let check = |expected: &str, path: &str| {
        let got = podman(&["exec", c, "cat", path]);
        if got != expected {
            fail(&format!("{path} in the container reads {got:?}, not {expected:?}"));
        }
    };
    let one =
        SyncBatch { copies: vec![SyncCopy::under(&root, "/code", &file).expect("under the root")], deletes: vec![] };
    let (mut api_t, mut cp_t, mut tar_t) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 0..args.trials {
        for method in 0..3 {
            let text = format!("trial {trial} method {method} {:?}\n", Instant::now());
            std::fs::write(&file, &text).unwrap_or_else(|e| fail(&format!("write: {e}")));
            let start = Instant::now();
            match method {
                0 => {
                    runtime.block_on(apply(&api, c, &one, owner, dir.path())).unwrap_or_else(|e| fail(&e.to_string()));
                    api_t.push(start.elapsed());
                }
                1 => {
                    podman(&["cp", &file.display().to_string(), &format!("{c}:/code/one.txt")]);
                    cp_t.push(start.elapsed());
                }
                _ => {
                    exec_tar(c, &one, owner, dir.path());
                    tar_t.push(start.elapsed());
                }
            }
            check(&text, "/code/one.txt");
        }
    }
    let names: Vec<String> = (0..args.batch_files).map(|i| format!("batch/file-{i:04}.txt")).collect();
    let batch = SyncBatch {
        copies: names.iter().map(|n| SyncCopy::under(&root, "/code", &root.join(n)).expect("under")).collect(),
        deletes: vec![],
    };
    let mut batch_t = Vec::new();
    let mut bytes = 0;
    for trial in 0..args.trials {
        for n in &names {
            std::fs::write(root.join(n), format!("{n} {trial}\n")).unwrap_or_else(|e| fail(&format!("write: {e}")));
        }
        let start = Instant::now();
        let report =
            runtime.block_on(apply(&api, c, &batch, owner, dir.path())).unwrap_or_else(|e| fail(&e.to_string()));
        batch_t.push(start.elapsed());
        bytes = report.bytes;
        let last = names.last().expect("a batch has files");
        check(&format!("{last} {trial}\n"), &format!("/code/{last}"));
    }
    runtime.block_on(api.shutdown());

    println!(
        "sync transfer into a running container (podman {}), {} trials each, times from the start of the copy to the file \
         readable in the container:",
        podman(&["version", "--format", "{{.Client.Version}}"]).trim(),
        args.trials
    );
    println!("  podman system service ready in {}", ms(connect));
    println!("  {:<44} {:>10} {:>10} {:>10}", "one file", "median", "p90", "min");
    for (label, v) in [
        ("(a) engine API: PUT /containers/C/archive", api_t),
        ("(b) podman cp FILE C:/code/one.txt", cp_t),
        ("(c) podman exec -i C tar -x -C /", tar_t),
    ] {
        let s = stats(v);
        println!("  {label:<44} {:>10} {:>10} {:>10}", ms(s.median), ms(s.p90), ms(s.min));
    }
    let s = stats(batch_t);
    let label = format!("{} files ({bytes} bytes), (a) engine API", args.batch_files);
    println!("  {label:<44} {:>10} {:>10} {:>10}", ms(s.median), ms(s.p90), ms(s.min));
}

/// `podman exec -i C tar -x -C /` with the batch's tar (written as kiln writes it) on stdin.
fn exec_tar(c: &str, batch: &SyncBatch, owner: Owner, dir: &Path) {
    let mut tmp = tempfile::tempfile_in(dir).unwrap_or_else(|e| fail(&format!("temp file: {e}")));
    batch.write_tar(owner, &mut tmp).unwrap_or_else(|e| fail(&e.to_string()));
    std::io::Seek::rewind(&mut tmp).unwrap_or_else(|e| fail(&format!("rewind: {e}")));
    let status = Command::new("podman")
        .args(["exec", "-i", c, "tar", "-x", "-C", "/"])
        .stdin(tmp)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| fail(&format!("podman exec: {e}")));
    if !status.success() {
        fail("podman exec tar -x failed");
    }
}
