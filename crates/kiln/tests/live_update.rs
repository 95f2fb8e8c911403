//! Live update against a real engine: `sync` rules copy changed files into running
//! containers (podman, and the docker CLI talking to podman's Docker-compatible service),
//! `watch` globs restart services, and what cannot be synced falls back to a rebuild that
//! says why. Every test runs the real `kiln --json up` and waits for its events.
//!
//! Images are built `FROM` one base image (Debian's static busybox `FROM scratch`, a user
//! `app` = 1000:1000 in /etc/passwd, a /tmp) that the first test builds and all share;
//! nothing is pulled. Every image of a run carries the label `kiln.live-test=<run>`: they
//! are removed together once no test of this binary is running and no build runs on the
//! machine (podman 4.3 fails builds that look for cached layers while another client
//! removes images), and what an earlier, killed run left is removed when the base is built.
//! Without a working podman these tests fail and say what to install.

mod common;
use common::{Project, Up, wait_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

/// Runs podman, panicking with what to install when it is missing.
fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().unwrap_or_else(|e| {
        panic!(
            "podman is needed for these tests ({e}): run `bash scripts/install-deps.sh` \
             (apt-get install podman runc busybox-static)"
        )
    })
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman exec CONTAINER sh -c SCRIPT`: its stdout when it succeeds.
fn sh_in(container: &str, script: &str) -> Result<String, String> {
    let out = podman(&["exec", container, "sh", "-c", script]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{script}` in {container}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A file's content in a container (`podman exec cat`).
fn cat(container: &str, path: &str) -> String {
    sh_in(container, &format!("cat {path}")).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether a path exists in a container (a dangling link counts).
fn exists_in(container: &str, path: &str) -> bool {
    sh_in(container, &format!("test -e {path} || test -L {path}")).is_ok()
}

fn container_id(name: &str) -> String {
    podman_ok(&["inspect", "--format", "{{.Id}}", name]).trim().to_string()
}

/// The image a container runs, as an ID.
fn image_of(container: &str) -> String {
    podman_ok(&["inspect", "--format", "{{.Image}}", container]).trim().to_string()
}

fn image_id(reference: &str) -> String {
    podman_ok(&["image", "inspect", "--format", "{{.Id}}", reference]).trim().to_string()
}

/// This process's label value: every image its tests build carries `kiln.live-test=<it>`.
fn run_label() -> &'static str {
    static LABEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LABEL.get_or_init(|| {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        format!("{:x}-{n:x}", std::process::id())
    })
}

/// The tests running now, and the base image while one exists.
struct Suite {
    active: usize,
    base: Option<String>,
}

static SUITE: Mutex<Suite> = Mutex::new(Suite { active: 0, base: None });

fn suite() -> std::sync::MutexGuard<'static, Suite> {
    // A test that panicked while holding it left nothing half-done that matters here.
    SUITE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether an image build runs on this machine now (`podman build`, `docker build`,
/// `buildah bud`/`build`, `podman image build`), by anyone.
fn a_build_runs() -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.filter_map(Result::ok).any(|entry| {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { return false };
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let tool = argv.first().map(|a| a.rsplit(|b| *b == b'/').next().unwrap_or(a));
        matches!(tool, Some(b"podman" | b"docker" | b"buildah"))
            && argv.iter().skip(1).take(2).any(|a| matches!(*a, b"build" | b"bud"))
    })
}

/// Removes the images matching `filters`. Podman 4.3 fails a build that looks for cached
/// layers while an image is removed ("layer not known"), and other test binaries, or other
/// checkouts, may be building: this waits (at most 30 s) until no build runs, which narrows
/// that window to the time between the check and the removal.
fn remove_images(filters: &[&str]) {
    let mut args = vec!["images", "-a", "-q", "--no-trunc"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    // Never a panic: a guard calls this while a failed test unwinds.
    let Ok(out) = Command::new("podman").args(&args).output() else { return };
    let ids: BTreeSet<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    if !ids.is_empty() {
        wait_until(Duration::from_secs(30), || !a_build_runs());
        let mut args = vec!["rmi", "-f"];
        args.extend(ids.iter().map(String::as_str));
        let _ = Command::new("podman").args(&args).output();
    }
}

/// Builds the shared base image: busybox, `app` (1000:1000) in /etc/passwd and /etc/group,
/// a /tmp. First removes what earlier runs of this file left (older than half an hour, so
/// another checkout's run going on now keeps its own).
fn build_base() -> String {
    remove_images(&["label=kiln.live-test", "until=30m"]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .expect("/bin/busybox (Debian's busybox-static) is needed: apt-get install busybox-static");
    std::fs::write(
        dir.path().join("Containerfile"),
        format!(
            "FROM scratch\nLABEL kiln.live-test={}\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN mkdir -p /tmp /etc /home/app && chmod 1777 /tmp && chown 1000:1000 /home/app && \
             printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000:app:/home/app:/bin/sh\\n' > /etc/passwd && \
             printf 'root:x:0:\\napp:x:1000:\\n' > /etc/group\n",
            run_label()
        ),
    )
    .expect("write the base Containerfile");
    let tag = format!("localhost/kiln-live-test-base:{}", run_label());
    let dir_arg = dir.path().display().to_string();
    podman_ok(&["build", "-q", "-t", &tag, &dir_arg]);
    tag
}

/// One test's project: its own directory (so its own container names) and image name. While
/// it lives the run's images stay; dropped (also when the test fails), it removes the
/// project's containers, and the last test running removes every image of the run.
struct Live {
    p: Project,
    /// The image target's name (`localhost/kiln-live-test-<test>-<run>`).
    repo: String,
}

impl Live {
    /// A project whose `kiln.toml` is `config` with `REPO` replaced by the image name, and
    /// whose image context `app/` has a Containerfile `FROM` the base with `containerfile`
    /// after it, and `app/www/index.html` = `v1`.
    fn new(test: &str, config: &str, containerfile: &str) -> Live {
        let base = {
            let mut s = suite();
            let base = match &s.base {
                Some(b) => b.clone(),
                None => build_base(),
            };
            s.base = Some(base.clone());
            s.active += 1;
            base
        };
        let repo = format!("localhost/kiln-live-test-{test}-{}", run_label());
        let p = Project::new(&config.replace("REPO", &repo));
        p.write("app/Containerfile", &format!("FROM {base}\n{containerfile}"));
        p.write("app/www/index.html", "v1\n");
        Live { p, repo }
    }

    /// The container of `service`'s replica.
    fn name(&self, service: &str, replica: u32) -> String {
        kiln_engine::container_name(self.p.root(), service, replica)
    }

    /// `kiln-<dir>-<digest>-`: every container of this project starts so.
    fn prefix(&self) -> String {
        let name = self.name("s", 0);
        name.strip_suffix("s-0").expect("…-s-0").to_string()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Never a panic here: this runs while a failed test unwinds.
        let quiet = |args: &[&str]| Command::new("podman").args(args).output().ok();
        let filter = format!("name=^{}", self.prefix());
        let listed = quiet(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
        let names: Vec<String> = listed
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
            .unwrap_or_default();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f", "-t", "0"];
            args.extend(names.iter().map(String::as_str));
            quiet(&args);
        }
        common::remove_networks_named(&self.prefix());
        let mut s = suite();
        s.active -= 1;
        if s.active == 0 {
            // Nothing of this binary builds now: the images go, the base with them (the next
            // test, if any, builds it again).
            remove_images(&[&format!("label=kiln.live-test={}", run_label())]);
            s.base = None;
        }
    }
}

/// A service's container that runs `sleep` and says `serving` first: ready by its log.
const WEB: &str = r#"
[settings]
debounce = "50ms"

[target.img]
image = { name = "REPO", context = "app" }

[service.web]
image = "img"
stop_signal = "SIGKILL"
command = "sh -c 'echo serving; exec sleep 100000'"
ready = { log = "serving" }
"#;

fn phase(e: &Value, service: &str, replica: u64, phase: &str) -> bool {
    e["type"] == "service.phase" && e["service"] == service && e["replica"] == replica && e["phase"] == phase
}

fn is(e: &Value, kind: &str) -> bool {
    e["type"] == kind
}

/// Waits for `update.completed` events until their causes name every path of `paths`;
/// each must be `how`. Returns them.
fn wait_updates(up: &mut Up, how: &str, paths: &[&str]) -> Vec<Value> {
    let mut missing: BTreeSet<String> = paths.iter().map(|p| p.to_string()).collect();
    let mut got = Vec::new();
    while !missing.is_empty() {
        let e = up.wait_for(&format!("update.completed naming {missing:?}"), |e| is(e, "update.completed"));
        assert_eq!(e["how"], how, "{e}\n{}", up.dump());
        for c in e["cause"].as_array().expect("cause is a list") {
            missing.remove(c.as_str().unwrap_or_default());
        }
        got.push(e);
    }
    got
}

/// Asserts that the events from `from` on hold no build of the image target `img` and no
/// fallback.
fn assert_no_rebuild(up: &Up, from: usize) {
    let built = up.seen[from..].iter().find(|e| {
        ((is(e, "target.queued") || is(e, "target.started")) && e["target"] == "img") || is(e, "update.fallback")
    });
    assert!(built.is_none(), "no rebuild, no fallback: {built:?}\n{}", up.dump());
}

/// The `latency_ms` of an update: every phase there, and the total at least the deploy.
fn check_latency(e: &Value) {
    let l = &e["latency_ms"];
    for field in ["detect", "debounce", "build", "deploy", "ready", "total"] {
        assert!(l[field].is_u64(), "latency_ms.{field} in {e}");
    }
    assert!(l["total"].as_u64() >= l["deploy"].as_u64(), "total >= deploy: {e}");
}

#[test]
fn a_synced_file_reaches_the_running_container_without_a_rebuild() {
    let live =
        Live::new("sync", &format!("{WEB}sync = [{{ path = \"app/www\", target = \"/www\" }}]\n"), "COPY www /www\n");
    let p = &live.p;
    let web = live.name("web", 0);
    let mut up = Up::start(p, &[]);
    let ready = up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    let tag = ready["image"].as_str().expect("the image it runs").to_string();
    assert!(tag.starts_with(&format!("{}:kiln-", live.repo)), "{tag}");
    let image = image_id(&tag);
    let container = container_id(&web);
    assert_eq!(cat(&web, "/www/index.html"), "v1\n");

    let mark = up.seen.len();
    p.write("app/www/index.html", "v2\n");
    let synced = up.wait_for("service.synced", |e| is(e, "service.synced"));
    assert_eq!((synced["service"].as_str(), synced["replica"].as_u64()), (Some("web"), Some(0)), "{synced}");
    assert_eq!((synced["files"].as_u64(), synced["bytes"].as_u64()), (Some(1), Some(3)), "{synced}");
    assert!(synced["duration_ms"].is_u64() && synced.get("error").is_none(), "{synced}");
    let done = wait_updates(&mut up, "synced", &["app/www/index.html"]);
    assert_eq!(done[0]["services"], serde_json::json!(["web"]));
    assert_eq!(done[0]["targets"], serde_json::json!([]));
    check_latency(&done[0]);
    assert_eq!(cat(&web, "/www/index.html"), "v2\n");
    assert_no_rebuild(&up, mark);
    assert_eq!(container_id(&web), container, "the same container");
    assert_eq!(image_of(&web), image, "running the same image");
    assert_eq!(image_id(&tag), image);

    let (code, stderr) = up.stop();
    assert_eq!(code, 130);
    let line = stderr.lines().find(|l| l.starts_with("✓ web synced")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(synced_line(line, "web", "1 file"), "{line}");
}

/// Whether `line` is `✓ SERVICE synced N files in T (save → ready T)`, each T `<n> ms` or
/// `<n.nn> s`.
fn synced_line(line: &str, service: &str, files: &str) -> bool {
    let time = |t: &str| {
        t.strip_suffix(" ms").is_some_and(|n| n.parse::<u64>().is_ok())
            || t.strip_suffix(" s").is_some_and(|n| n.parse::<f64>().is_ok())
    };
    let Some(rest) = line.strip_prefix(&format!("✓ {service} synced {files} in ")) else { return false };
    let Some((deploy, rest)) = rest.split_once(" (save → ready ") else { return false };
    rest.strip_suffix(')').is_some_and(time) && time(deploy)
}

#[test]
fn deletions_renames_modes_and_symlinks_arrive_as_they_are_on_the_host() {
    let live =
        Live::new("tree", &format!("{WEB}sync = [{{ path = \"app/www\", target = \"/www\" }}]\n"), "COPY www /www\n");
    let p = &live.p;
    p.write("app/www/gone.txt", "bye\n");
    p.write("app/www/dir/inner/x.txt", "x\n");
    p.write("app/www/static/a/one.txt", "one\n");
    p.write("app/www/morph", "a file\n");
    let web = live.name("web", 0);
    let mut up = Up::start(p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    assert!(exists_in(&web, "/www/gone.txt") && exists_in(&web, "/www/dir/inner/x.txt"));
    let mark = up.seen.len();

    // A deleted file, then a deleted directory.
    std::fs::remove_file(p.path("app/www/gone.txt")).unwrap();
    wait_updates(&mut up, "synced", &["app/www/gone.txt"]);
    assert!(!exists_in(&web, "/www/gone.txt"), "the file is gone in the container");
    std::fs::remove_dir_all(p.path("app/www/dir")).unwrap();
    wait_updates(&mut up, "synced", &["app/www/dir"]);
    assert!(!exists_in(&web, "/www/dir"), "the directory is gone in the container");

    // A renamed directory: the old name gone, the new one with its files.
    // (Their modification times some seconds old, as an editor's rename leaves them.)
    let earlier = std::time::SystemTime::now() - Duration::from_secs(5);
    for old in ["app/www/static/a/one.txt", "app/www/static/a"] {
        std::fs::File::open(p.path(old)).unwrap().set_modified(earlier).unwrap();
    }
    std::fs::rename(p.path("app/www/static/a"), p.path("app/www/static/b")).unwrap();
    let done = wait_updates(&mut up, "synced", &["app/www/static/a", "app/www/static/b"]);
    // Saved now, though the files were last modified earlier: the rename is the save.
    let detect = done.last().unwrap()["latency_ms"]["detect"].as_u64().unwrap();
    assert!(detect < 3000, "the rename was seen at once, not {detect} ms after: {:?}", done.last());
    assert!(!exists_in(&web, "/www/static/a"), "the old name is gone");
    assert_eq!(cat(&web, "/www/static/b/one.txt"), "one\n");

    // An executable script stays executable; a symbolic link is copied as a link.
    p.write("app/www/run.sh", "#!/bin/sh\necho ran $0\n");
    std::fs::set_permissions(p.path("app/www/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    p.write("app/www/secret.txt", "s\n");
    std::fs::set_permissions(p.path("app/www/secret.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("static/b/one.txt", p.path("app/www/link")).unwrap();
    wait_updates(&mut up, "synced", &["app/www/run.sh", "app/www/secret.txt", "app/www/link"]);
    assert_eq!(sh_in(&web, "stat -c %a /www/run.sh /www/secret.txt").unwrap(), "755\n600\n");
    assert_eq!(sh_in(&web, "/www/run.sh").unwrap(), "ran /www/run.sh\n");
    assert_eq!(sh_in(&web, "readlink /www/link").unwrap(), "static/b/one.txt\n");
    assert_eq!(cat(&web, "/www/link"), "one\n", "the link resolves in the container");

    // Links pointing out of the tree or nowhere are links too, and do not stop the batch.
    std::os::unix::fs::symlink("/etc/passwd", p.path("app/www/abs-link")).unwrap();
    std::os::unix::fs::symlink("nowhere", p.path("app/www/dangling")).unwrap();
    p.write("app/www/after-links.txt", "after\n");
    wait_updates(&mut up, "synced", &["app/www/abs-link", "app/www/dangling", "app/www/after-links.txt"]);
    assert_eq!(sh_in(&web, "readlink /www/abs-link; readlink /www/dangling").unwrap(), "/etc/passwd\nnowhere\n");
    assert_eq!(cat(&web, "/www/after-links.txt"), "after\n");

    // A file that became a directory, and a directory that became a file.
    std::fs::remove_file(p.path("app/www/morph")).unwrap();
    p.write("app/www/morph/inside.txt", "inside\n");
    std::fs::remove_dir_all(p.path("app/www/static/b")).unwrap();
    p.write("app/www/static/b", "a file now\n");
    wait_updates(&mut up, "synced", &["app/www/morph", "app/www/static/b"]);
    assert_eq!(cat(&web, "/www/morph/inside.txt"), "inside\n");
    assert_eq!(cat(&web, "/www/static/b"), "a file now\n");
    assert_no_rebuild(&up, mark);
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn synced_files_belong_to_a_non_root_container_user() {
    // `USER app`: kiln resolves the name through the image's /etc/passwd (app = 1000:1000).
    let live = Live::new(
        "user",
        &format!("{WEB}sync = [{{ path = \"app/www\", target = \"/www\" }}]\n"),
        "COPY www /www\nUSER app\n",
    );
    let p = &live.p;
    let web = live.name("web", 0);
    let mut up = Up::start(p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    assert_eq!(sh_in(&web, "id -u; id -g").unwrap(), "1000\n1000\n", "the container runs as app");
    p.write("app/www/index.html", "v2\n");
    p.write("app/www/new/deep/page.html", "new\n");
    wait_updates(&mut up, "synced", &["app/www/index.html", "app/www/new"]);
    assert_eq!(
        sh_in(&web, "stat -c %u:%g /www/index.html /www/new /www/new/deep /www/new/deep/page.html").unwrap(),
        "1000:1000\n1000:1000\n1000:1000\n1000:1000\n",
        "files and the directories the sync made are the container user's"
    );
    assert_eq!(cat(&web, "/www/new/deep/page.html"), "new\n");
    // So the app can write them, as it could files it made itself.
    sh_in(&web, "echo more >> /www/new/deep/page.html && touch /www/new/deep/made-by-app").unwrap();
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn both_replicas_get_the_file_and_a_replica_scaled_up_too() {
    let live = Live::new(
        "replicas",
        &format!(
            "{WEB}replicas = 2\nsync = [\n  {{ path = \"app/www\", target = \"/www\" }},\n  \
             {{ path = \"settings.ini\", target = \"/etc/app/settings.ini\" }},\n]\n"
        ),
        "COPY www /www\n",
    );
    let p = &live.p;
    let mut up = Up::start(p, &[]);
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    let mark = up.seen.len();
    p.write("app/www/index.html", "v2\n");
    wait_updates(&mut up, "synced", &["app/www/index.html"]);
    let mut replicas: Vec<u64> = up.seen[mark..]
        .iter()
        .filter(|e| is(e, "service.synced"))
        .map(|e| {
            assert!(e.get("error").is_none() && e["files"] == 1, "{e}");
            e["replica"].as_u64().unwrap()
        })
        .collect();
    replicas.sort();
    assert_eq!(replicas, [0, 1], "one transfer per replica, before the update completes:\n{}", up.dump());
    for r in 0..2 {
        assert_eq!(cat(&live.name("web", r), "/www/index.html"), "v2\n", "web[{r}]");
    }
    // A rule naming one file outside the image's context: watched all the same, and its
    // directory in the container made.
    p.write("settings.ini", "debug = true\n");
    wait_updates(&mut up, "synced", &["settings.ini"]);
    for r in 0..2 {
        assert_eq!(cat(&live.name("web", r), "/etc/app/settings.ini"), "debug = true\n", "web[{r}]");
    }
    assert_no_rebuild(&up, mark);

    // A third replica (kiln.toml edited) starts from the image and is given what was synced.
    p.write("kiln.toml", &p.read("kiln.toml").replace("replicas = 2", "replicas = 3"));
    up.wait_for("web[2] ready", |e| phase(e, "web", 2, "ready"));
    let third = live.name("web", 2);
    assert_eq!(sh_in(&third, "cat /www/index.html /etc/app/settings.ini").unwrap(), "v2\ndebug = true\n");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_two_thousand_file_batch_arrives_and_its_deletion_too() {
    let live =
        Live::new("batch", &format!("{WEB}sync = [{{ path = \"app/www\", target = \"/www\" }}]\n"), "COPY www /www\n");
    let p = &live.p;
    std::fs::create_dir_all(p.path("app/www/many")).unwrap();
    let web = live.name("web", 0);
    let mut up = Up::start(p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    let mark = up.seen.len();
    let names: Vec<String> = (0..2000).map(|i| format!("a-long-enough-file-name-{i:04}.txt")).collect();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(p.path(&format!("app/www/many/{n}")), format!("{i}\n")).unwrap();
    }
    // However the watcher splits them into batches (a file created in one and written in
    // the next is copied twice), every file is synced: each sync is checked until all are in.
    let listing = || sh_in(&web, "ls /www/many | wc -l; cat /www/many/* | wc -l").unwrap_or_else(|e| e);
    let mut copied = 0;
    while copied < 2000 {
        let e = up.wait_for("the files synced", |e| is(e, "service.synced"));
        assert!(e.get("error").is_none(), "{e}");
        copied += e["files"].as_u64().unwrap();
    }
    // A file copied twice (created in one batch, written in the next) counts twice: the
    // last of its copies may still be on its way.
    assert!(wait_until(Duration::from_secs(20), || listing() == "2000\n2000\n"), "{}", listing());
    assert_eq!(cat(&web, &format!("/www/many/{}", names[1999])), "1999\n");
    assert_eq!(cat(&web, &format!("/www/many/{}", names[0])), "0\n");

    // Every file deleted (the directory stays): the deletions are split below ARG_MAX.
    for n in &names {
        std::fs::remove_file(p.path(&format!("app/www/many/{n}"))).unwrap();
    }
    let mut deleted = 0;
    while deleted < 2000 || sh_in(&web, "ls -A /www/many | wc -l").unwrap_or_default() != "0\n" {
        let e = up.wait_for("the deletions synced", |e| is(e, "service.synced"));
        assert!(e.get("error").is_none(), "{e}");
        deleted += e["deleted"].as_u64().unwrap();
    }
    assert!(exists_in(&web, "/www/many"), "the directory itself is still there");
    assert_no_rebuild(&up, mark);
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn sync_exec_runs_after_the_copy_in_each_replica_and_a_failing_exec_is_reported_not_rebuilt() {
    let live = Live::new(
        "exec",
        &format!(
            "{WEB}replicas = 2\nsync = [\n  \
             {{ path = \"app/conf\", target = \"/conf\", action = \"sync+exec\", exec = \"cp /conf/app.conf /tmp/reloaded\" }},\n  \
             {{ path = \"app/bad\", target = \"/bad\", action = \"sync+exec\", exec = \"echo failing now; exit 3\" }},\n  \
             {{ path = \"app/www\", target = \"/www\" }},\n]\n"
        ),
        "COPY www /www\nCOPY conf /conf\n",
    );
    let p = &live.p;
    p.write("app/conf/app.conf", "v1\n");
    let mut up = Up::start(p, &[]);
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    let names = [live.name("web", 0), live.name("web", 1)];
    let mark = up.seen.len();

    // The command runs in each replica, after the copy: it copies the new content.
    p.write("app/conf/app.conf", "v2\n");
    wait_updates(&mut up, "synced", &["app/conf/app.conf"]);
    for n in &names {
        assert_eq!(cat(n, "/tmp/reloaded"), "v2\n", "{n}");
    }

    // A failing command: said on each replica, never a rebuild.
    let failed_at = up.seen.len();
    p.write("app/bad/x.txt", "x\n");
    let mut errors = Vec::new();
    while errors.len() < 2 {
        let e = up.wait_for("the failed exec", |e| is(e, "service.synced"));
        let error = e["error"].as_str().unwrap_or_else(|| panic!("an error: {e}")).to_string();
        errors.push((e["replica"].as_u64().unwrap(), error));
    }
    errors.sort();
    for (replica, error) in &errors {
        assert!(error.contains("exited with 3"), "names the exit code: {error}");
        assert!(error.contains("echo failing now; exit 3"), "names the command: {error}");
        let reason = up.wait_seen("the phase saying so", |e| {
            is(e, "service.phase")
                && e["replica"] == *replica
                && e["reason"].as_str().is_some_and(|r| r.starts_with("sync failed:"))
        });
        assert!(reason["reason"].as_str().unwrap().contains("exited with 3"), "{reason}");
    }
    assert_eq!(errors.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [0, 1]);
    for n in &names {
        assert_eq!(cat(n, "/bad/x.txt"), "x\n", "the copy itself was done: {n}");
    }
    // A later sync still works, and nothing was rebuilt in between: no update for the
    // failed one either.
    p.write("app/www/index.html", "v2\n");
    wait_updates(&mut up, "synced", &["app/www/index.html"]);
    assert!(
        !up.seen[failed_at..].iter().any(|e| is(e, "update.completed") && e["cause"].to_string().contains("app/bad")),
        "a failed sync reached no running code:\n{}",
        up.dump()
    );
    assert_no_rebuild(&up, mark);
    for n in &names {
        assert_eq!(cat(n, "/www/index.html"), "v2\n");
    }
    let (code, stderr) = up.stop();
    assert_eq!(code, 130);
    assert!(stderr.lines().any(|l| l.starts_with("✗ web[0] sync failed: ") && l.contains("exited with 3")), "{stderr}");
}

#[test]
fn an_unmatched_image_input_or_a_rebuild_rule_falls_back_to_a_rebuild_that_says_why() {
    let live = Live::new(
        "fallback",
        &format!(
            "{WEB}sync = [\n  {{ path = \"app/www\", target = \"/www\" }},\n  \
             {{ path = \"app/deps.txt\", action = \"rebuild\" }},\n]\n"
        ),
        "COPY www /www\nCOPY deps.txt /deps.txt\n",
    );
    let p = &live.p;
    p.write("app/deps.txt", "deps 1\n");
    let web = live.name("web", 0);
    let mut up = Up::start(p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    let mut container = container_id(&web);

    let mut falls_back = |up: &mut Up, path: &str, reason: &str| {
        let mark = up.seen.len();
        let fallback = up.wait_for("update.fallback", |e| is(e, "update.fallback"));
        assert_eq!(
            (&fallback["service"], &fallback["target"], &fallback["path"], &fallback["reason"]),
            (&"web".into(), &"img".into(), &path.into(), &reason.into()),
            "{fallback}"
        );
        let built = up.wait_for("img rebuilt", |e| is(e, "target.finished") && e["target"] == "img");
        assert_eq!(built["status"], "built", "{built}");
        up.wait_for("web ready on the new image", |e| phase(e, "web", 0, "ready"));
        let done = up.wait_seen("update.completed", |e| {
            is(e, "update.completed") && e["seq"].as_u64() > fallback["seq"].as_u64()
        });
        assert_eq!((&done["how"], &done["targets"]), (&"rebuilt".into(), &serde_json::json!(["img"])), "{done}");
        check_latency(&done);
        assert!(up.seen[mark..].iter().all(|e| !is(e, "service.synced")), "nothing synced:\n{}", up.dump());
        let now = container_id(&web);
        assert_ne!(now, container, "the container was replaced");
        container = now;
    };

    // A `rebuild` rule.
    p.write("app/deps.txt", "deps 2\n");
    falls_back(&mut up, "app/deps.txt", "a `rebuild` rule matched");
    assert_eq!(cat(&web, "/deps.txt"), "deps 2\n");

    // An input of the image that no rule matches.
    let containerfile = p.read("app/Containerfile");
    p.write("app/Containerfile", &format!("{containerfile}ENV VERSION=2\n"));
    falls_back(&mut up, "app/Containerfile", "no sync rule matched");
    assert_eq!(sh_in(&web, "echo $VERSION").unwrap(), "2\n");

    let (code, stderr) = up.stop();
    assert_eq!(code, 130);
    for line in [
        "↻ web: rebuilding img: app/deps.txt changed and a `rebuild` rule matches it",
        "↻ web: rebuilding img: app/Containerfile changed and no sync rule matches it",
    ] {
        assert!(stderr.lines().any(|l| l == line), "{line}:\n{stderr}");
    }
}

#[test]
fn sync_restart_gives_the_new_container_the_synced_files_and_so_does_a_crash_restart() {
    let live = Live::new(
        "restart",
        "[settings]\ndebounce = \"50ms\"\n\n[target.img]\nimage = { name = \"REPO\", context = \"app\" }\n\n\
         [service.web]\nimage = \"img\"\nstop_signal = \"SIGKILL\"\nrestart = \"always\"\n\
         command = \"sh -c 'echo start: $(cat /code/msg); echo serving; exec sleep 100000'\"\n\
         ready = { log = \"serving\" }\n\
         sync = [{ path = \"app/code\", target = \"/code\", action = \"sync+restart\" }]\n",
        "COPY code /code\n",
    );
    let p = &live.p;
    p.write("app/code/msg", "v1");
    p.write("app/code/old.txt", "in the image\n");
    let web = live.name("web", 0);
    let said = |e: &Value, line: &str| is(e, "service.output") && e["service"] == "web" && e["line"] == line;
    let mut up = Up::start(p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("v1 at start", |e| said(e, "start: v1"));
    let first = container_id(&web);

    // Copied, then restarted: the new container starts with the synced files. (A deletion
    // under sync+restart rebuilds instead: see the test after this one.)
    let mark = up.seen.len();
    p.write("app/code/msg", "v2");
    p.write("app/code/new.txt", "new\n");
    let done = wait_updates(&mut up, "restarted", &["app/code/msg", "app/code/new.txt"]);
    check_latency(done.last().unwrap());
    let restarted = up.seen[mark..]
        .iter()
        .find(|e| is(e, "service.phase") && e["reason"] == "restarting for synced files (sync+restart)");
    assert!(restarted.is_some(), "the restart says why:\n{}", up.dump());
    let synced = up.seen[mark..].iter().position(|e| is(e, "service.synced")).expect("synced first");
    let started = up.seen[mark..].iter().position(|e| said(e, "start: v2")).expect("the new container said v2");
    assert!(synced < started, "copied into the running one, then restarted:\n{}", up.dump());
    assert!(!up.seen[mark..].iter().any(|e| said(e, "start: v1")), "never started from the image's content");
    let second = container_id(&web);
    assert_ne!(second, first, "a new container");
    assert_eq!(cat(&web, "/code/new.txt"), "new\n");
    assert!(exists_in(&web, "/code/old.txt"), "what the image holds and was not deleted stays");
    assert_no_rebuild(&up, mark);

    // A crash: the container that replaces it also has them.
    let mark = up.seen.len();
    podman_ok(&["kill", &web]);
    up.wait_for("a new start", |e| said(e, "start: v2"));
    up.wait_for("ready again", |e| phase(e, "web", 0, "ready"));
    assert!(!up.seen[mark..].iter().any(|e| said(e, "start: v1")), "{}", up.dump());
    assert_ne!(container_id(&web), second, "a new container after the crash");
    assert_eq!(cat(&web, "/code/msg"), "v2");
    assert_eq!(cat(&web, "/code/new.txt"), "new\n");
    assert_no_rebuild(&up, mark);
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_second_kiln_up_after_synced_edits_builds_the_image_from_the_tree() {
    let live =
        Live::new("again", &format!("{WEB}sync = [{{ path = \"app/www\", target = \"/www\" }}]\n"), "COPY www /www\n");
    let p = &live.p;
    let web = live.name("web", 0);
    let mut up = Up::start(p, &[]);
    let ready = up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    let first_tag = ready["image"].as_str().unwrap().to_string();
    let mark = up.seen.len();
    p.write("app/www/index.html", "v2\n");
    p.write("app/www/added.html", "added\n");
    wait_updates(&mut up, "synced", &["app/www/index.html", "app/www/added.html"]);
    assert_no_rebuild(&up, mark);
    let (code, _) = up.stop();
    assert_eq!(code, 130);

    // The image never drifts from the tree: the first round of the next `kiln up` builds it.
    let mut up = Up::start(p, &[]);
    let ready = up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    let built = up.wait_seen("img built", |e| is(e, "target.finished") && e["target"] == "img");
    assert_eq!(built["status"], "built", "{built}");
    let started = up.seen.iter().position(|e| is(e, "target.started") && e["target"] == "img");
    let first_run = up.seen.iter().position(|e| is(e, "run.finished"));
    assert!(started.is_some() && started < first_run, "in the first round:\n{}", up.dump());
    let tag = ready["image"].as_str().unwrap().to_string();
    assert_ne!(tag, first_tag);
    assert_eq!(cat(&web, "/www/index.html"), "v2\n");
    assert_eq!(cat(&web, "/www/added.html"), "added\n");
    // This session synced nothing: what the container holds is the image's.
    assert!(up.seen.iter().all(|e| !is(e, "service.synced")), "{}", up.dump());
    assert_eq!(image_of(&web), image_id(&tag), "the container runs the new image");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_watched_file_restarts_a_process_service_on_a_content_change_and_a_touch_restarts_nothing() {
    let p = Project::new(
        "[settings]\ndebounce = \"50ms\"\n\n\
         [target.gen]\ncmd = \"cp src/in.txt out.txt\"\ninputs = [\"src/in.txt\"]\noutputs = [\"out.txt\"]\n\n\
         [service.app]\ncmd = \"echo start: $(cat config/app.conf); exec sleep 100000\"\n\
         stop_signal = \"SIGKILL\"\nready = { log = \"start:\" }\nwatch = [\"config/**\"]\n",
    );
    p.write("config/app.conf", "v1");
    p.write("src/in.txt", "1\n");
    let said = |e: &Value, line: &str| is(e, "service.output") && e["service"] == "app" && e["line"] == line;
    let restarted = |e: &Value| {
        is(e, "service.phase")
            && e["service"] == "app"
            && e["reason"].as_str().is_some_and(|r| r.contains("a watched file changed"))
    };
    let mut up = Up::start(&p, &[]);
    up.wait_seen("app ready", |e| phase(e, "app", 0, "ready"));
    up.wait_seen("v1", |e| said(e, "start: v1"));

    // A content change: restarted, with the reason, and an update for it.
    let mark = up.seen.len();
    p.write("config/app.conf", "v2");
    let why = up.wait_for("the restart", restarted);
    assert_eq!(why["reason"], "restarting for a watched file changed", "{why}");
    up.wait_for("v2", |e| said(e, "start: v2"));
    let done = wait_updates(&mut up, "restarted", &["config/app.conf"]);
    assert_eq!((&done[0]["services"], &done[0]["targets"]), (&serde_json::json!(["app"]), &serde_json::json!([])));
    check_latency(&done[0]);
    assert!(!up.seen[mark..].iter().any(|e| is(e, "target.started")), "no target built:\n{}", up.dump());
    // `kiln status` shows it, phase by phase, and so does the API (the update history too).
    let total = done[0]["latency_ms"]["total"].as_u64().unwrap();
    let mut shown = Value::Null;
    let seen = wait_until(Duration::from_secs(10), || {
        let run = p.kiln(&["status", "--json"]);
        shown = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        shown["services"]["app"]["last_update"]["seq"] == done[0]["seq"]
    });
    assert!(seen, "the status holds the update {}:\n{shown:#}", done[0]);
    assert_eq!(shown["services"]["app"]["last_update"]["latency_ms"], done[0]["latency_ms"]);
    assert_eq!(shown["updates"].as_array().and_then(|u| u.last()), Some(&shown["services"]["app"]["last_update"]));
    let text = p.kiln(&["status"]).stdout;
    let line = text.lines().find(|l| l.starts_with("app ")).unwrap_or_default().to_string();
    assert!(
        line.contains(&format!("last update {:.2} s (", total as f64 / 1000.0)) && line.contains(", ready "),
        "{text}"
    );

    // A touch, and a save of the same bytes, then an unrelated input in the same batch (or a
    // later one): once that input's build is done, the touch was evaluated too.
    let mark = up.seen.len();
    let file = std::fs::File::options().append(true).open(p.path("config/app.conf")).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(2)).unwrap();
    drop(file);
    p.write("config/app.conf", "v2");
    p.write("src/in.txt", "2\n");
    let built = up.wait_for("gen built", |e| is(e, "target.finished") && e["target"] == "gen");
    assert_eq!(built["status"], "built", "{built}");
    up.wait_for("its round", |e| is(e, "run.finished"));
    assert!(
        !up.seen[mark..].iter().any(|e| restarted(e) || is(e, "update.completed") && e["how"] == "restarted"),
        "a touch restarts nothing:\n{}",
        up.dump()
    );
    assert_eq!(p.read("out.txt"), "2\n");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

/// `podman system service` on a socket of its own, stopped when dropped: what the docker CLI
/// (and kiln's API client, through `DOCKER_HOST`) talks to.
struct DockerApi {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl DockerApi {
    fn start() -> DockerApi {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("docker.sock");
        let child = Command::new("podman")
            .args(["system", "service", "--time=0", &format!("unix://{}", sock.display())])
            .spawn()
            .expect("podman system service starts (apt-get install podman)");
        assert!(wait_until(Duration::from_secs(10), || sock.exists()), "podman's Docker API socket did not appear");
        DockerApi { child, dir }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }
}

impl Drop for DockerApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sync_works_through_the_docker_cli_and_docker_host() {
    assert!(
        Command::new("docker").arg("--version").output().is_ok_and(|o| o.status.success()),
        "the docker CLI is needed for the docker path: apt-get install docker.io (only its client is used)"
    );
    let api = DockerApi::start();
    // A numeric `USER` here (the podman test resolves a name through /etc/passwd).
    let live = Live::new(
        "docker",
        &format!("{WEB}sync = [{{ path = \"app/www\", target = \"/www\" }}]\n")
            .replace("debounce = \"50ms\"", "debounce = \"50ms\"\nengine = \"docker\""),
        "COPY www /www\nUSER 1000:1000\n",
    );
    let p = &live.p;
    let web = live.name("web", 0);
    let mut up = Up::start_with(p, &[], |c| {
        c.env("DOCKER_HOST", api.host());
    });
    let built = up.wait_seen("img built", |e| is(e, "target.finished") && e["target"] == "img");
    assert_eq!(built["status"], "built", "{}", up.dump());
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    let said_docker = up.seen.iter().any(|e| {
        is(e, "target.output")
            && e["line"].as_str().is_some_and(|l| l.contains("legacy builder") || l.contains("DEPRECATED"))
    });
    assert!(said_docker, "built by the docker CLI:\n{}", up.dump());
    let mark = up.seen.len();
    p.write("app/www/index.html", "v2\n");
    p.write("app/www/new/page.html", "new\n");
    std::os::unix::fs::symlink("../index.html", p.path("app/www/new/link")).unwrap();
    let done = wait_updates(&mut up, "synced", &["app/www/index.html", "app/www/new"]);
    check_latency(&done[0]);
    let synced = up.seen[mark..].iter().find(|e| is(e, "service.synced")).unwrap();
    assert!(synced.get("error").is_none() && synced["files"].as_u64() >= Some(3), "{synced}");
    // The same store: podman sees what docker's daemon (podman's service) holds.
    assert_eq!(cat(&web, "/www/index.html"), "v2\n");
    assert_eq!(cat(&web, "/www/new/link"), "v2\n");
    assert_eq!(
        sh_in(&web, "stat -c %u:%g /www/new/page.html; readlink /www/new/link").unwrap(),
        "1000:1000\n../index.html\n"
    );
    std::fs::remove_file(p.path("app/www/new/page.html")).unwrap();
    wait_updates(&mut up, "synced", &["app/www/new/page.html"]);
    assert!(!exists_in(&web, "/www/new/page.html"));
    assert_no_rebuild(&up, mark);
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_deletion_under_sync_restart_rebuilds_so_the_new_container_starts_without_the_file() {
    let live = Live::new(
        "deleted",
        "[settings]\ndebounce = \"50ms\"\n\n[target.img]\nimage = { name = \"REPO\", context = \"app\" }\n\n\
         [service.web]\nimage = \"img\"\nstop_signal = \"SIGKILL\"\n\
         command = \"sh -c 'echo files: $(ls /code); echo serving; exec sleep 100000'\"\n\
         ready = { log = \"serving\" }\n\
         sync = [{ path = \"app/code\", target = \"/code\", action = \"sync+restart\" }]\n",
        "COPY code /code\n",
    );
    let p = &live.p;
    p.write("app/code/kept.py", "");
    p.write("app/code/plugin.py", "");
    let mut up = Up::start(p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    let mark = up.seen.len();
    // An app that loads every module it finds at start must not find the deleted one.
    std::fs::remove_file(p.path("app/code/plugin.py")).unwrap();
    wait_updates(&mut up, "rebuilt", &["app/code/plugin.py"]);
    let fallback = up.seen[mark..].iter().find(|e| is(e, "update.fallback")).expect("the rebuild says why");
    assert_eq!(fallback["path"], "app/code/plugin.py");
    assert!(fallback["reason"].as_str().is_some_and(|r| r.starts_with("a file the image holds was deleted")));
    let listed = up.seen[mark..]
        .iter()
        .find(|e| is(e, "service.output") && e["line"].as_str().is_some_and(|l| l.starts_with("files:")))
        .expect("the new container listed its files");
    assert_eq!(listed["line"], "files: kept.py", "{}", up.dump());
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_directory_moved_in_keeps_what_ignore_leaves_out_and_a_lost_api_service_is_started_again() {
    let live = Live::new(
        "moved",
        &format!(
            "{WEB}sync = [{{ path = \"app/www\", target = \"/www\", ignore = [\"**/.env\", \"**/__pycache__/**\"] }}]\n"
        ),
        "COPY www /www\n",
    );
    let p = &live.p;
    let web = live.name("web", 0);
    let mut up = Up::start(p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));

    // A package made elsewhere and moved in arrives as one directory event.
    let outside = tempfile::tempdir().expect("tempdir");
    let pkg = outside.path().join("pkg");
    std::fs::create_dir_all(pkg.join("__pycache__")).unwrap();
    std::fs::write(pkg.join("a.txt"), "a\n").unwrap();
    std::fs::write(pkg.join(".env"), "SECRET=1\n").unwrap();
    std::fs::write(pkg.join("__pycache__/m.pyc"), "pyc").unwrap();
    std::fs::rename(&pkg, p.path("app/www/pkg")).unwrap();
    up.wait_for("the package synced", |e| is(e, "update.completed") && e["how"] == "synced");
    assert_eq!(cat(&web, "/www/pkg/a.txt"), "a\n");
    assert!(!exists_in(&web, "/www/pkg/.env"), "ignored files stay out, however they arrive");
    assert!(!exists_in(&web, "/www/pkg/__pycache__/m.pyc"));

    // The API's service kiln started dies: the next sync starts it again.
    let socket = p.path(".kiln/run/podman.sock").display().to_string();
    let killed =
        Command::new("pkill").args(["-KILL", "-f", &format!("system service --time=0 unix://{socket}")]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kiln's podman system service for {socket} was running");
    p.write("app/www/index.html", "v3\n");
    wait_updates(&mut up, "synced", &["app/www/index.html"]);
    assert_eq!(cat(&web, "/www/index.html"), "v3\n");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_deletion_in_an_image_without_rm_still_copies_the_rest_and_says_why() {
    let live = Live::new(
        "no-rm",
        &format!("{WEB}sync = [{{ path = \"app/www\", target = \"/www\" }}]\n"),
        "COPY www /www\nRUN [\"/bin/busybox\", \"rm\", \"/bin/rm\"]\n",
    );
    let p = &live.p;
    p.write("app/www/old.txt", "old\n");
    let web = live.name("web", 0);
    let mut up = Up::start(p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    let mark = up.seen.len();
    p.write("app/www/index.html", "v2\n");
    std::fs::remove_file(p.path("app/www/old.txt")).unwrap();
    let synced = up.wait_for("service.synced", |e| is(e, "service.synced"));
    let error = synced["error"].as_str().unwrap_or_else(|| panic!("an error: {synced}"));
    assert!(error.contains("the image has no `rm` or `sh`"), "{error}");
    assert!(error.ends_with("the changed files were copied"), "{error}");
    assert_eq!(cat(&web, "/www/index.html"), "v2\n", "one deletion does not hold back the batch");
    up.wait_seen("the reason on the replica", |e| {
        is(e, "service.phase") && e["reason"].as_str().is_some_and(|r| r.starts_with("sync failed:"))
    });
    assert_no_rebuild(&up, mark);
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}
